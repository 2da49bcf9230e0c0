"""Command line: ``python -m app serve`` runs the service; ``python -m app render`` lays out a ticket.

``serve`` reads the settings (``CONFIG_PATH`` and the environment), then runs Hypercorn on
``SERVER_HOST:SERVER_PORT`` until SIGTERM or SIGINT, draining running jobs within
``SHUTDOWN_GRACE_SECONDS``. A bad setting exits with status 2 and a message naming it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys


def preflight(settings: object) -> None:
    """Check what the settings name on disk before the server starts, so a missing folder is
    one clear line naming the setting rather than a traceback from the lifespan.

    Raises:
        ConfigError: ``STORAGE_ROOT`` is not an existing folder, or ``STATE_DIR`` cannot be
            created (when ``STATE_DURABLE``).
    """
    from app.config import Settings
    from app.errors import ConfigError

    assert isinstance(settings, Settings)
    root = settings.storage_root
    if root is not None and not root.is_dir():
        raise ConfigError(f"STORAGE_ROOT / storage.root: {str(root)!r} is not an existing folder "
                          "(create it, or mount the share, before starting)")
    if settings.state_durable and settings.state_dir is not None:
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"STATE_DIR / state.dir: cannot create {str(settings.state_dir)!r}: "
                              f"{exc.strerror or exc}") from None


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
        app = create_app(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    config = Config()
    config.bind = [f"{settings.server_host}:{settings.server_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our JSON handler
    config.graceful_timeout = settings.shutdown_grace_seconds + 5
    # No config.read_timeout: it wraps every socket read in asyncio.wait_for (~11 µs a request).
    # A client that stalls mid-body gets 408 from the body-limit middleware instead
    # (HARDENING_BODY_READ_TIMEOUT_SECONDS); one that stalls before its headers are complete
    # is dropped by Hypercorn's keep_alive_timeout.

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(run())
    return 0


USAGE = """usage: python -m app COMMAND

commands:
  serve                                   run the service (settings from CONFIG_PATH and the environment)
  render TICKET.json ARTICLES.json [-o OUT.pdf] [--tags TAGS.json] [--template NAME] [--timezone TZ]
                                          lay a ticket out as an unsigned PDF, without a server
  extract ARCHIVE.pdf -o DIR [--sidecar ARCHIVE.pdf.json]
                                          write the embedded originals out, check them against the sidecar
"""


def main(argv: list[str]) -> int:
    """Dispatch ``argv`` (without the program name) to a command; returns the exit status."""
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve()
    if command == "render":
        from app.render.cli import main as render_main

        return render_main(rest)
    if command == "extract":
        from app.render.extract import main as extract_main

        return extract_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
