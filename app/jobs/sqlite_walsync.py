"""The SQLite job store's side of the WAL sync helper: start it, ask it for one sync at a time.

The helper (:mod:`app.jobs.walsync`, a process of its own) calls ``fdatasync`` on the WAL file
after the store's ``COMMIT`` (``synchronous=NORMAL``): together that is ``synchronous=FULL``'s
durability in WAL mode (see :mod:`app.jobs.walsync`), without a thread of the service
waiting on the disk. Why a process and not a thread: a thread that fsyncs must take the GIL
back afterwards from the busy event loop, and under load it loses that race again and again
(``docs/performance.md``, "The webhook edge: no sync thread").

Failures: a helper that ends is started again and asked again (at most once per
:data:`RESPAWN_SECONDS`). A sync that fails is final: from then on every write fails with
:class:`~app.jobs.records.JobStoreUnavailable` (503 at the edge, ``job_store`` failing in
``/healthz?deep=true``) until the service restarts. A sync unanswered for
:data:`STALL_SECONDS` fails readiness too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.jobs.records import JobStoreUnavailable

log = logging.getLogger("app.jobs.store")

WALSYNC_SCRIPT = Path(__file__).with_name("walsync.py")
"""The WAL sync helper's program (:mod:`app.jobs.walsync`), run with ``python -I -S``."""


RESPAWN_SECONDS = 1.0
"""A WAL sync helper that ends (without reporting a failed sync) is started again, unless the
previous one was started less than this many seconds before: then the store gives up."""
STALL_SECONDS = 10.0
"""A WAL sync unanswered for longer makes :attr:`WalSyncProcess.unavailable` say so (readiness fails)."""
HELPER_EXIT_SECONDS = 10.0
"""How long closing waits for the helper to exit after its stdin closed, before killing it."""


# Kept for `make bench` ingest: "WAL sync helper / SQLite synchronous=FULL in a thread requests/s".
class WalSyncProcess:
    """Asks the WAL sync helper process (:mod:`app.jobs.walsync`) for one ``fdatasync`` at a
    time and hands its answer to a callback on the event loop.

    Nothing here blocks or needs another thread: the request is a one-byte pipe write and the
    answer arrives through ``loop.add_reader``. A helper that ends is started again and asked
    again (a new ``fdatasync`` covers what the old one may not have finished), at most once per
    :data:`RESPAWN_SECONDS`. A sync that fails (``EIO``, ``ENOSPC``: the disk may have dropped
    the data) is final: that request and every later one fail with
    :class:`JobStoreUnavailable`.

    Args:
        database: the database file (the helper syncs its ``-wal`` file).
        loop: the event loop that calls :meth:`request` and gets the answers.
    """

    def __init__(self, database: Path, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wal = f"{database}-wal"
        self._waiting: Callable[[BaseException | None], None] | None = None
        self._requested_at = 0.0
        self._closed = False
        self.error: JobStoreUnavailable | None = None
        self._start()

    def _start(self) -> None:
        self._started_at = time.monotonic()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WALSYNC_SCRIPT), self._wal],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._loop.add_reader(self._stdout.fileno(), self._readable)

    def _stop_reading(self) -> None:
        self._loop.remove_reader(self._stdout.fileno())
        self._stdin.close()
        self._stdout.close()

    def request(self, done: Callable[[BaseException | None], None]) -> None:
        """Sync what is committed now; ``done(None)`` once it is on disk, ``done(error)`` if not.
        One request at a time (the store's batches are sequential)."""
        assert self._waiting is None, "one WAL sync at a time"
        refusal = self.refusal()
        if refusal is not None:
            self._loop.call_soon(done, refusal)
            return
        self._waiting = done
        self._requested_at = time.monotonic()
        self._send()

    def _send(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the helper is gone; its end is read in _readable
            self._stdin.write(b"s")

    def refusal(self) -> JobStoreUnavailable | None:
        """Why writes must be refused now (a failed sync, or the store closing), else ``None``."""
        if self.error is None and self._closed:
            return JobStoreUnavailable("the job store is closed")
        return self.error

    def stalled_for(self) -> float:
        """Seconds the current request has waited (0 with none waiting)."""
        return time.monotonic() - self._requested_at if self._waiting is not None else 0.0

    @property
    def unavailable(self) -> str | None:
        """Why writes cannot be made durable (a failed sync), or may not be (a sync unanswered
        for more than :data:`STALL_SECONDS`), else ``None``."""
        if self.error is not None:
            return str(self.error)
        stalled = self.stalled_for()
        return (
            f"a WAL sync has not answered for {stalled:.0f} s (is the state disk hung?)"
            if stalled > STALL_SECONDS
            else None
        )

    def _readable(self) -> None:
        try:
            answer = os.read(self._stdout.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            answer = f"E{exc}".encode()
        if answer == b"k":
            done, self._waiting = self._waiting, None
            if done is not None:
                done(None)
        elif answer.startswith(b"E"):
            self._fail("the WAL sync failed: " + answer[1:].decode("utf-8", "replace").strip())
        elif answer or self._closed:
            self._fail(
                f"the WAL sync helper answered {answer[:40]!r}" if answer else "the job store is closed"
            )
        elif time.monotonic() - self._started_at < RESPAWN_SECONDS:
            self._fail(
                f"the WAL sync helper ended again within {RESPAWN_SECONDS:g} s (exit status "
                f"{self._proc.poll()})"
            )
        else:
            log.warning("WAL sync helper ended; starting it again", extra={"exit_status": self._proc.poll()})
            self._stop_reading()
            try:
                self._proc.wait(1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._start()
            if self._waiting is not None:
                self._send()

    def _fail(self, reason: str) -> None:
        if self.error is None and not self._closed:
            self.error = JobStoreUnavailable(f"the job store cannot make writes durable: {reason}")
            log.error("job store unavailable", extra={"reason": reason})
            self._stop_reading()
        done, self._waiting = self._waiting, None
        if done is not None:
            done(self.error or JobStoreUnavailable(reason))

    async def close(self) -> None:
        """End the helper (it exits when its stdin closes) and wait for it; a request still
        waiting fails. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.error is None:
            self._stop_reading()
        self._fail("the job store was closed before the WAL sync answered")
        try:
            await asyncio.to_thread(self._proc.wait, HELPER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait)
