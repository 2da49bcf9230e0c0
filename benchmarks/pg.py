"""A throw-away PostgreSQL for the benchmarks, configured like a production server.

Reuses the tests' server (:mod:`tests.postgres_server`: Debian's ``initdb``/``pg_ctl`` in a
temporary folder, TCP on 127.0.0.1 only, password authentication) but overrides its speed
settings: the tests run with ``fsync=off`` and ``full_page_writes=off``, which would compare
a store that flushes (SQLite, whose WAL is fdatasync'ed before each 202) with one that does
not. The benchmark server keeps PostgreSQL's own defaults for durability instead
(:data:`BENCH_SETTINGS`): every commit of ``accept_jobs`` waits for its WAL flush, as it
would in production.
"""

from __future__ import annotations

from tests.postgres_server import PostgresError, PostgresNotInstalled, PostgresServer, start

__all__ = ["BENCH_SETTINGS", "PostgresError", "PostgresNotInstalled", "PostgresServer", "start_postgres"]

BENCH_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "wal_sync_method": "fdatasync",
    "shared_buffers": "128MB",
}
"""``postgresql.conf`` entries of the benchmark server: PostgreSQL's defaults on Linux for
durability (``fsync``, ``full_page_writes``, ``synchronous_commit`` on; WAL flushed with
``fdatasync``) and its default ``shared_buffers`` (the tests use 32 MB). Everything else as
:func:`tests.postgres_server.start` sets it (``max_connections=200``, 127.0.0.1 only)."""


def start_postgres() -> PostgresServer:
    """Start a throw-away server with :data:`BENCH_SETTINGS`; stop it with ``.stop()``.

    Raises:
        PostgresNotInstalled: Debian's ``postgresql`` package is missing (``make system-deps``).
        PostgresError: ``initdb`` or the start failed (the message holds the server log).
    """
    return start(settings=BENCH_SETTINGS)
