"""The SQLite job store as one instance sees it: recovery after a crash, the pending count, the
in-memory store, and the comparison variant without the WAL sync helper. What both stores share
is in ``test_store.py``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from app.jobs.records import JobRequest, JobState
from app.jobs.sqlite import SqliteJobStore
from tests.jobs.support import REPORT, job_of, new_job, record_of

AT = "2025-01-01T00:00:00+00:00"


def store_at(path: Path | None, **kw: Any) -> SqliteJobStore:
    return SqliteJobStore(
        path, delivery_ttl_seconds=kw.pop("ttl", 3600), max_pending=kw.pop("max_pending", 100), **kw
    )


async def test_recovery_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = store_at(path)
    await store.open()
    running = await new_job(store, 1)
    await store.start(running, AT)
    pending = await new_job(store, 2)
    later = await new_job(store, 3)
    await store.start(later, AT)
    await store.retry_later(later, at=9e9, error="boom", step="sign", classification="Transient")
    done = await new_job(store, 4)
    await store.start(done, AT)
    await store.finish(done, state=JobState.DONE, result="archived", report=REPORT)
    # No close(): the process "dies" here; a new store opens the same file.
    again = store_at(path)
    recovery = await again.open()
    assert recovery.interrupted == 1
    assert sorted(recovery.due) == sorted([(running, 1), (pending, 2)])
    assert recovery.scheduled == [(later, 3, 9e9)]
    assert [r.job_id for r in recovery.unreported] == [done]
    assert (await record_of(again, running)).archived_at == AT
    assert again.pending_count == 3
    await again.close()
    await store.close()


async def test_in_memory_store_works_the_same() -> None:
    store = store_at(None)
    await store.open()
    assert (await store.accept(JobRequest(1, delivery_id="a"))).status == "accepted"
    assert (await store.accept(JobRequest(1, delivery_id="a"))).status == "duplicate"
    assert store.unavailable is None and store._wal_sync is None
    await store.close()


async def test_pending_count_follows_the_database(tmp_path: Path) -> None:
    """The counter behind ``full`` and ``/healthz`` never counts a change that did not happen:
    a retry of a job that is not running changes nothing, and an op that fails after
    counting is rolled back together with its count."""
    store = store_at(tmp_path / "jobs.sqlite3")
    await store.open()
    job = await new_job(store, 1)
    assert store.pending_count == 1
    await store.retry_later(job, at=9e9, error="e", step="s", classification="Transient")  # not running
    assert store.pending_count == 1

    def counts_then_fails(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO jobs (job_id, ticket_id, state, reason, created_at, updated_at) "
            "VALUES ('x', 2, 'pending', 'webhook', 0, 0)"
        )
        store._pending_count += 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store._run(counts_then_fails)
    assert store.pending_count == 1
    assert (await store.get("x")) is None
    await store.close()


async def test_a_full_queue_counts_only_pending_jobs(tmp_path: Path) -> None:
    store = store_at(tmp_path / "jobs.sqlite3", max_pending=1)
    await store.open()
    first = await new_job(store, 1)
    assert (await store.accept(JobRequest(2))).status == "full"
    await store.start(first, AT)  # running: no longer pending, room for one more
    second = await store.accept(JobRequest(2))
    assert second.status == "accepted" and store.pending_count == 1
    await store.close()


async def test_without_the_helper_sqlite_full_sync_is_just_as_durable(tmp_path: Path) -> None:
    """``wal_sync_helper=False`` (the ingest benchmark's comparison): ``synchronous=FULL``, batches
    committed in the store's thread, no helper process; the same answers, and what was answered
    is in the file after a crash (no close)."""
    path = tmp_path / "jobs.sqlite3"
    store = store_at(path, wal_sync_helper=False)
    await store.open()
    assert store._wal_sync is None
    # Each batch in the store's thread: the loop never waits for SQLite's fsync.
    assert await store._run(lambda conn: threading.get_ident()) != threading.get_ident()
    answers = [await store.accept(JobRequest(t, delivery_id=f"d{i}")) for i, t in enumerate((1, 1, 2))]
    assert [a.status for a in answers] == ["accepted", "coalesced", "accepted"]
    job = job_of(answers[0])
    await store.start(job, AT)
    await store.finish(job, state=JobState.DONE, result="archived")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT ticket_id, state FROM jobs ORDER BY ticket_id").fetchall() == [
            (1, "done"),
            (2, "pending"),
        ]
    again = store_at(path)
    recovery = await again.open()
    assert recovery.due == [(job_of(answers[2]), 2)]
    await again.close()
    await store.close()
