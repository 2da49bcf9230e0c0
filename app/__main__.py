"""Command line: ``python -m app serve`` runs the service; ``reconcile``, ``render``, ``extract``,
``audit`` and ``lta-refresh`` are tools.

``serve`` reads the settings (``CONFIG_PATH`` and the environment), then runs Hypercorn on
``SERVER_HOST:SERVER_PORT`` until SIGTERM or SIGINT, draining running jobs within
``SHUTDOWN_GRACE_SECONDS``. A bad setting exits with status 2 and a message naming it.

Python warnings that libraries raise while they load (pyHanko, cryptography) are held back from
the first line of :func:`main` on and written through the JSON log once logging is configured
(:mod:`app.observability.warning_capture`): a bad setting stays one line on stderr. Known ones
that ask nothing of an operator (cryptography's DSA deprecation on pyHanko's import) are not
shown at all.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

_STATE_LOCK: list[int] = []
"""The open, locked ``STATE_DIR/.lock`` of this process (held until it exits)."""


def _lock_state_dir(state_dir: Path) -> None:
    """Take ``STATE_DIR/.lock`` (``flock``, exclusive): one service per job store. A second
    instance on the same folder would resume and run the first one's jobs."""
    from app.errors import ConfigError

    lock = state_dir / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR / state.dir: cannot open {str(lock)!r}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"STATE_DIR / state.dir: {str(state_dir)!r} is in use by another running instance "
            "(its .lock is held); run one instance per STATE_DIR"
        ) from None
    _STATE_LOCK.append(fd)


def _check_bind(host: str, port: int) -> None:
    """Bind the server's address once, so a wrong host or a port in use is one line."""
    from app.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"SERVER_HOST / server.host: cannot resolve {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Hypercorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"SERVER_PORT / server.port: {host}:{port} is in use by another program"
                ) from None
            raise ConfigError(
                f"SERVER_HOST / server.host: cannot listen on {host}:{port} ({exc.strerror or exc})"
            ) from None


def preflight(settings: object) -> None:
    """Check what the settings name on disk and on the network before the server starts, so
    a missing folder, a second instance or a port in use is one clear line naming the
    setting rather than a traceback (and nothing of the job store was touched).

    Raises:
        ConfigError: ``STORAGE_ROOT`` is not an existing folder; ``STATE_DIR`` cannot be
            created or another instance holds its lock (when ``STATE_DURABLE``); the server
            cannot listen on ``SERVER_HOST:SERVER_PORT``.
    """
    from app.config import Settings
    from app.errors import ConfigError

    assert isinstance(settings, Settings)
    root = settings.storage_root
    if root is not None and not root.is_dir():
        raise ConfigError(
            f"STORAGE_ROOT / storage.root: {str(root)!r} is not an existing folder "
            "(create it, or mount the share, before starting)"
        )
    if settings.state_durable and settings.state_dir is not None:
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"STATE_DIR / state.dir: cannot create {str(settings.state_dir)!r}: {exc.strerror or exc}"
            ) from None
        _lock_state_dir(settings.state_dir)
    _check_bind(settings.server_host, settings.server_port)


GC_GEN0_THRESHOLD = 10_000
"""The collector's first-generation threshold while the service runs (Python's default: 700).

The collector runs a young-generation pass whenever the tracked objects allocated since the
last pass, less those freed, exceed it. Every request in flight holds a few dozen such objects
(coroutines, closures, futures) while it waits for its group commit, so at the default a pass
runs every dozen or so webhooks under load and scans the objects of all requests in flight each
time. With 10,000 the count stays below it on the ingest benchmark's load: what a request
allocates is freed by reference counting when it ends, and only cyclic garbage waits longer
(at most ~10,000 objects, a few MB). The older generations keep their defaults; a higher
threshold set before the start is kept. Kept for ``make bench`` ingest: full / bare requests/s."""


def tune_gc() -> None:
    """Tune the garbage collector for serving, once everything is built (process-wide).

    Everything imported and built up to now lives as long as the process: :func:`gc.freeze`
    moves it out of the collector's reach, so a full collection does not walk fpdf2's,
    pyHanko's and fontTools' objects again and again under load (it stalled ``/ingest`` for
    tens of ms); then the first generation's threshold is raised to :data:`GC_GEN0_THRESHOLD`.
    Only ``serve`` calls it: an application factory that other ASGI servers import leaves the
    process's collector alone.
    """
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, threshold[0]), *threshold[1:])


def serve() -> int:
    """Run the service in the foreground; returns the exit status."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from app.config import load_settings
    from app.errors import ConfigError
    from app.main import create_app

    try:
        settings = load_settings()
        preflight(settings)
        app = create_app(settings, on_started=tune_gc)
    except ConfigError as exc:
        # Logging was not configured: warnings buffered since main() started are dropped,
        # so this stays the one line on stderr.
        from app.observability.warning_capture import ROUTER

        ROUTER.discard()
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    config = Config()
    config.bind = [f"{settings.server_host}:{settings.server_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our JSON handler
    config.graceful_timeout = settings.shutdown_grace_seconds + 5
    # No config.read_timeout: it wraps every socket read in asyncio.wait_for. A client that
    # stalls mid-body gets 408 from the body-limit middleware instead
    # (HARDENING_BODY_READ_TIMEOUT_SECONDS); one that stalls before its headers are complete
    # is dropped by Hypercorn's keep_alive_timeout.

    from app.http.body_limit import expire_body_reads

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def shut_down() -> None:
            # Stalled uploads get their 408 now instead of holding Hypercorn's graceful wait.
            expire_body_reads()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shut_down)
        # Starlette types ASGI messages as plain mappings, Hypercorn as TypedDicts: the same protocol.
        await hypercorn_serve(cast("ASGIFramework", app), config, shutdown_trigger=stop.wait)

    from hypercorn.utils import LifespanFailureError

    try:
        asyncio.run(run())
    except LifespanFailureError:
        # The lifespan logged the cause with its traceback; the terminal gets one line.
        cause = app.state.runtime.startup_error
        print(f"start failed: {cause or 'see the log'}", file=sys.stderr)
        return 1
    return 0


USAGE = """usage: python -m app COMMAND

commands:
  serve                                   run the service (settings from CONFIG_PATH and the environment)
  render TICKET.json ARTICLES.json [-o OUT.pdf] [--tags TAGS.json] [--template NAME] [--timezone TZ]
         [--language en|de]
                                          lay a ticket out as an unsigned PDF, without a server
  extract ARCHIVE.pdf -o DIR [--sidecar ARCHIVE.pdf.json] [--trust PEM]
                                          write the embedded originals out, check them against the sidecar
                                          and the PDF's signatures
  audit [--since DATE] [--json] [--manifest] [--expiry-days N] [--trust PEM] [--root DIR]
                                          re-read every archive: SHA-256, sidecar, signatures, manifest chain
  lta-refresh [--within-days N] [--dry-run]
                                          add validation data and a document timestamp (PAdES B-LTA) to
                                          archives whose timestamp or signing chain expires within N days
  reconcile [--dry-run]                   one reconciliation sweep: queue tickets whose webhook was lost
"""


def main(argv: list[str]) -> int:
    """Dispatch ``argv`` (without the program name) to a command; returns the exit status.

    Python warnings are captured before any command imports its libraries: ``serve`` writes
    them through the JSON log once it has configured logging from the settings (never on a
    configuration error); ``render``, ``extract`` and ``audit`` configure the JSON log at WARNING for them.
    """
    from app.observability.warning_capture import capture_early, ignore_known_library_warnings

    ignore_known_library_warnings()
    capture_early()
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve()
    if command in {"render", "extract", "audit"}:
        from app.observability.logging import configure_logging

        configure_logging("WARNING")
    if command == "render":
        from app.render.cli import main as render_main

        return render_main(rest)
    if command == "extract":
        from app.render.extract import main as extract_main

        return extract_main(rest)
    if command == "audit":
        from app.audit.cli import main as audit_main

        return audit_main(rest)
    if command == "lta-refresh":
        from app.signing.lta_cli import main as lta_refresh_main

        return lta_refresh_main(rest)
    if command == "reconcile":
        from app.reconcile.cli import main as reconcile_main

        return reconcile_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
