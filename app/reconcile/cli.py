"""``python -m app reconcile [--dry-run]``: one reconciliation pass from the command line.

Reads the service's settings (``CONFIG_PATH`` and the environment), searches Zammad as the
service's sweep does (:mod:`app.reconcile.sweep`), prints one line per ticket found — queued,
would queue (``--dry-run``), deferred or skipped, and why — and a summary.

Where the jobs go depends on the job store:

- PostgreSQL (``JOB_STORE_URL``): into the shared store, in the sweep's turn (not while a
  replica sweeps); the running replicas take them at once.
- SQLite (``STATE_DIR``): the store belongs to one process. While the service runs it holds
  ``STATE_DIR/.lock``: a pass that would queue is refused (the service sweeps itself every
  ``RECONCILE_INTERVAL_SECONDS``, unless that is 0), a dry run lists what Zammad shows without
  reading the store.
  With the service stopped the jobs are recorded and run when it starts. A dry run never
  creates the store: without ``STATE_DIR/jobs.sqlite3`` it lists what Zammad shows, as while the
  service runs; a pass that creates it says so on stderr, as ``serve`` warns when it does.

Exit status: 0 after a pass, 1 when Zammad or the job store failed or another replica was
sweeping, 2 for a configuration error (a setting, or the SQLite store in use).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import sys
from pathlib import Path

import aiohttp
import orjson

from app.config import Settings, load_settings
from app.errors import ConfigError, ZammadApiError
from app.jobs.records import JobStoreUnavailable
from app.jobs.store import SQLITE_FILE, JobStore, create_job_store
from app.observability.logging import configure_logging
from app.reconcile.sweep import Reconciler, SweepReport
from app.zammad.client import ZammadClient


def main(argv: list[str]) -> int:
    """Run the command with ``argv`` (after ``reconcile``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m app reconcile",
        description="Find tickets whose webhook was lost (trigger tag, stale pdf:processing) and queue them.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be queued; queue nothing")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(require_complete=False)
        if not settings.zammad_base_url or not settings.zammad_api_token:
            raise ConfigError("ZAMMAD_BASE_URL and ZAMMAD_API_TOKEN are required")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("WARNING", settings.secrets())
    return asyncio.run(_run(settings, dry_run=args.dry_run))


async def _run(settings: Settings, *, dry_run: bool) -> int:
    lock_fd: int | None = None
    store: JobStore | None = None
    try:
        if settings.job_store_url is None:
            refusal, lock_fd = _claim_sqlite(settings, dry_run=dry_run)
            if refusal is not None:
                print(refusal, file=sys.stderr)
                return 2
            if lock_fd is None:
                print("note: the service holds the job store; it filters tickets with active jobs itself")
            elif dry_run and not _sqlite_file(settings).exists():
                # Creating the store here would write in a dry run, and take the warning of the
                # next `serve` (it warns when it creates the store) from the operator.
                print(
                    f"note: no {SQLITE_FILE} in STATE_DIR {str(settings.state_dir)!r} (a first start, or "
                    "STATE_DIR was deleted or changed while the service was stopped): no job store to "
                    "compare with; this dry run creates none"
                )
                os.close(lock_fd)
                lock_fd = None
        if settings.job_store_url is not None or lock_fd is not None:
            store = create_job_store(settings)
            await store.open()
            if getattr(store, "created", False):
                print(
                    f"warning: new empty job store created in STATE_DIR {str(settings.state_dir)!r} "
                    f"(no {SQLITE_FILE} was there): jobs the service accepted before are lost; this "
                    "pass queues the tickets Zammad's search shows",
                    file=sys.stderr,
                )
        return await _pass(settings, store, dry_run=dry_run)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except JobStoreUnavailable as exc:
        print(f"job store unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            await store.close()
        if lock_fd is not None:
            os.close(lock_fd)


async def _pass(settings: Settings, store: JobStore | None, *, dry_run: bool) -> int:
    assert settings.zammad_api_token is not None
    async with aiohttp.ClientSession(json_serialize=lambda o: orjson.dumps(o).decode()) as session:
        zammad = ZammadClient(
            session,
            settings.zammad_base_url,
            settings.zammad_api_token.reveal(),
            timeout_seconds=settings.zammad_timeout_seconds,
        )
        submit = store.accept_many if store is not None and not dry_run else None
        reconciler = Reconciler.from_settings(settings, zammad, store, submit)
        try:
            report: SweepReport | None
            if dry_run or store is None:
                report = await reconciler.run_once(dry_run=True)
            else:  # the sweep's turn, as the service takes it, but regardless of the last pass
                report = await reconciler.sweep(min_interval_seconds=0)
        except ZammadApiError as exc:
            print(f"Zammad's ticket search failed: {exc}", file=sys.stderr)
            return 1
    if report is None:
        print("another replica is sweeping now; nothing was done (try again, or wait for its pass)")
        return 1
    for line in report.lines():
        print(line)
    if report.admissions and settings.job_store_url is None:
        print("the jobs run when the service starts (it holds the SQLite job store while it runs)")
    return 0


def _claim_sqlite(settings: Settings, *, dry_run: bool) -> tuple[str | None, int | None]:
    """Take ``STATE_DIR/.lock`` as ``serve`` does. Returns ``(refusal, lock)``: a refusal to
    print (exit 2), else the open, locked file (``None``: a dry run without the store)."""
    state_dir = settings.state_dir
    if not settings.state_durable or state_dir is None:
        if dry_run:
            return None, None
        return (
            "STATE_DURABLE=false keeps the jobs in the running service's memory: only its own "
            f"sweep can queue them ({_service_sweep(settings)}); --dry-run lists what it would find",
            None,
        )
    fd = _try_lock(state_dir)
    if fd is not None or dry_run:
        return None, fd
    return (
        f"the service is running on STATE_DIR {str(state_dir)!r} and holds its SQLite job store "
        f"({_service_sweep(settings)}). "
        "Run this with the service stopped, use --dry-run, or use PostgreSQL (JOB_STORE_URL)",
        None,
    )


def _sqlite_file(settings: Settings) -> Path:
    """``STATE_DIR/jobs.sqlite3``, the SQLite job store's file (``STATE_DIR`` is set)."""
    assert settings.state_dir is not None
    return settings.state_dir / SQLITE_FILE


def _service_sweep(settings: Settings) -> str:
    """What the running service's own sweep does, as far as these settings tell (the service
    may have been started with others)."""
    seconds = settings.reconcile_interval_seconds
    if seconds <= 0:
        return (
            "its sweep is off with these settings: RECONCILE_INTERVAL_SECONDS=0; set it and restart for one"
        )
    return f"it sweeps itself every RECONCILE_INTERVAL_SECONDS, {seconds:g} s with these settings"


def _try_lock(state_dir: Path) -> int | None:
    """``STATE_DIR/.lock`` open and locked (``flock``, exclusive, as ``serve`` takes it), or
    ``None`` when another process holds it.

    Raises:
        ConfigError: the folder or the lock file cannot be created or opened.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR / state.dir: cannot use {str(state_dir)!r}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
