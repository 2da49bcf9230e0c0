"""Job-store fixtures: the same tests run on both backends (SQLite files, a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.jobs.postgres import PostgresJobStore
from app.jobs.sqlite import SqliteJobStore
from app.jobs.store import JobStore
from tests.conftest import JobStoreBackend

StoreFactory = Callable[..., JobStore]


@pytest.fixture
def make_store(job_store: JobStoreBackend, tmp_path: Any) -> Iterator[StoreFactory]:
    """``make_store(ttl=3600, max_pending=100, clock=…, lease=60)``: a new, unopened store on
    this test's database (a SQLite file under ``tmp_path``, or a fresh PostgreSQL database:
    the ``job_store`` backend, so ids ``[sqlite]``/``[postgres]``); every call opens another
    connection to the same data (a restart, or another replica). ``make_store.backend`` names
    the backend."""
    url = job_store.url

    def make(**kw: Any) -> JobStore:
        ttl = kw.pop("ttl", 3600)
        max_pending = kw.pop("max_pending", 100)
        if url is None:
            kw.pop("lease", None)
            return SqliteJobStore(
                tmp_path / "jobs.sqlite3", delivery_ttl_seconds=ttl, max_pending=max_pending, **kw
            )
        return PostgresJobStore(
            url, delivery_ttl_seconds=ttl, max_pending=max_pending, lease_seconds=kw.pop("lease", 60), **kw
        )

    make.backend = job_store.name  # type: ignore[attr-defined]
    yield make
