"""Job-store fixtures: the same tests run on both backends (a SQLite file, a real PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.jobs.postgres import PostgresJobStore
from app.jobs.sqlite import SqliteJobStore
from app.jobs.store import SQLITE_FILE, JobStore
from tests.conftest import JobStoreBackend


@dataclass(frozen=True)
class StoreFactory:
    """Makes new, unopened stores on one test's database; every call opens another connection
    to the same data (a restart, or another replica).

    Attributes:
        backend: ``"sqlite"`` or ``"postgres"``.
        path: the SQLite file (``STATE_DIR/jobs.sqlite3``, what ``job_store.rows`` reads).
        url: the PostgreSQL database, ``None`` for SQLite.
    """

    backend: str
    path: Path
    url: str | None

    def __call__(self, **kw: Any) -> JobStore:
        """``make_store(ttl=3600, max_pending=100, clock=…, lease=60)``; ``lease`` only counts
        on PostgreSQL, other keywords go to the store's class."""
        ttl = kw.pop("ttl", 3600)
        max_pending = kw.pop("max_pending", 100)
        if self.url is None:
            kw.pop("lease", None)
            return SqliteJobStore(self.path, delivery_ttl_seconds=ttl, max_pending=max_pending, **kw)
        return PostgresJobStore(
            self.url,
            delivery_ttl_seconds=ttl,
            max_pending=max_pending,
            lease_seconds=kw.pop("lease", 60),
            **kw,
        )


@pytest.fixture
def make_store(job_store: JobStoreBackend) -> StoreFactory:
    """Stores on this test's database: ``job_store``'s backend, so ids ``[sqlite]``/``[postgres]``
    (a SQLite file in its ``STATE_DIR``, or a fresh PostgreSQL database)."""
    return StoreFactory(job_store.name, job_store.state_dir / SQLITE_FILE, job_store.url)
