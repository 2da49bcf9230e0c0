"""``python -m app serve`` with SQLite's own durability instead of the WAL sync helper.

The SQLite job store runs with ``wal_sync_helper=False``: ``synchronous=FULL`` and each batch
of calls committed in the store's thread — the design the helper process
(:mod:`app.jobs.sqlite_walsync`) replaced. ``benchmarks/ingest.py`` runs it beside the default
to show what the helper buys (its row "WAL sync helper / SQLite synchronous=FULL in a thread").

Run: ``python -m benchmarks.serve_sqlite_full_sync`` with the service's environment.
"""

from __future__ import annotations

import functools
import sys

import app.jobs.sqlite


def main() -> int:
    """Serve as ``python -m app serve`` does, with the store's variant; returns the exit status."""
    store = app.jobs.sqlite.SqliteJobStore
    # The variant replaces the class for this process only (create_job_store looks it up there).
    setattr(app.jobs.sqlite, "SqliteJobStore", functools.partial(store, wal_sync_helper=False))  # noqa: B010 - mypy refuses assigning to a class name
    from app.__main__ import main as app_main

    return app_main(["serve"])


if __name__ == "__main__":
    sys.exit(main())
