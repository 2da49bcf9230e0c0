"""Group commit for the SQLite store (:class:`app.jobs.sqlite_batches.GroupCommit`) on a real
database file: one transaction per loop turn, a failing op isolated, batches in the store's
thread without the helper, checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import app.jobs.sqlite_batches as batches_module
from app.jobs.records import JobRequest, JobStoreUnavailable
from app.jobs.sqlite import SqliteJobStore
from app.jobs.sqlite_batches import GroupCommit
from app.jobs.sqlite_schema import connect
from app.jobs.sqlite_thread import StoreThread


class Writer:
    """A GroupCommit on ``tmp_path/jobs.sqlite3`` without a WAL sync helper (answered at once)."""

    def __init__(self, path: Path, *, in_thread: bool = False) -> None:
        self.path = path
        self.rollbacks = 0
        self.thread = StoreThread("test-store")
        self.conn = connect(path, wal_sync_helper=not in_thread)
        self.batches = GroupCommit(self.thread, on_rollback=self._rolled_back)
        self.batches.attach(self.conn, asyncio.get_running_loop(), wal_sync=None, in_thread=in_thread)

    def _rolled_back(self, conn: sqlite3.Connection) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        conn = self.batches.detach()
        assert conn is not None
        conn.close()
        self.thread.stop()


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    w = Writer(tmp_path / "jobs.sqlite3")
    yield w
    w.close()


def insert(ticket_id: int) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO jobs (job_id, ticket_id, state, reason, created_at, updated_at) "
            "VALUES (?, ?, 'pending', 'webhook', 0, 0)",
            (f"j{ticket_id}", ticket_id),
        )
        return ticket_id

    return op


def tickets(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT ticket_id FROM jobs ORDER BY ticket_id")]


async def test_the_ops_of_one_turn_share_one_transaction(writer: Writer) -> None:
    before = writer.batches.commits
    answers = await asyncio.gather(*(writer.batches.run(insert(t)) for t in range(1, 51)))
    assert answers == list(range(1, 51))
    assert writer.batches.commits - before == 1
    assert tickets(writer.path) == list(range(1, 51))
    # The next turn's ops are the next transaction.
    await writer.batches.run(insert(51))
    assert writer.batches.commits - before == 2


async def test_a_failing_op_does_not_sink_its_batch(writer: Writer) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        insert(2)(conn)  # written, then undone with its savepoint
        raise ValueError("bad op")

    results = await asyncio.gather(
        writer.batches.run(insert(1)),
        writer.batches.run(fails),
        writer.batches.run(insert(3)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)
    assert tickets(writer.path) == [1, 3]
    assert writer.rollbacks >= 1  # what the ops counted in memory is counted again


async def test_a_failing_commit_fails_every_op_of_the_batch(writer: Writer) -> None:
    """A ``COMMIT`` that fails (here a deferred foreign key left dangling) is rolled back and
    handed to every op of its batch: none of them is answered as written."""
    writer.conn.execute("PRAGMA foreign_keys = ON")
    writer.conn.execute("CREATE TABLE t (job_id TEXT REFERENCES jobs(job_id))")

    def dangling(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, not now
        conn.execute("INSERT INTO t VALUES ('nowhere')")

    rollbacks = writer.rollbacks
    results = await asyncio.gather(
        writer.batches.run(insert(1)), writer.batches.run(dangling), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert tickets(writer.path) == [] and writer.rollbacks == rollbacks + 1
    assert await writer.batches.run(insert(2)) == 2  # the next batch is written as usual


async def test_after_detach_ops_are_refused(tmp_path: Path) -> None:
    w = Writer(tmp_path / "jobs.sqlite3")
    conn = w.batches.detach()
    assert conn is not None
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await w.batches.run(insert(1))
    conn.close()
    w.thread.stop()


async def test_without_the_helper_each_batch_runs_in_the_stores_thread(tmp_path: Path) -> None:
    w = Writer(tmp_path / "jobs.sqlite3", in_thread=True)
    threads: list[int] = []

    def where(conn: sqlite3.Connection) -> None:
        threads.append(threading.get_ident())

    try:
        await asyncio.gather(w.batches.run(where), w.batches.run(insert(1)))
        assert threads and threads[0] != threading.get_ident()
        assert tickets(w.path) == [1] and w.batches.commits == 1
        await w.batches.drained()
    finally:
        w.close()


async def test_drained_waits_for_the_batch_under_way(writer: Writer) -> None:
    future = writer.batches.run(insert(1))
    waiting = asyncio.ensure_future(writer.batches.drained())
    await asyncio.sleep(0)
    assert not future.done() or waiting.done()
    await asyncio.wait_for(waiting, 5)
    assert future.done()


async def test_checkpoints_move_the_wal_into_the_database_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(batches_module, "CHECKPOINT_BATCHES", 3)
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path, delivery_ttl_seconds=3600, max_pending=100)
    await store.open()
    for ticket in range(1, 6):  # one batch each: the opening batch and these make a checkpoint
        await store.accept(JobRequest(ticket))
    # The database file alone (no -wal beside it) already holds what was checkpointed.
    alone = tmp_path / "alone" / "jobs.sqlite3"
    alone.parent.mkdir()
    alone.write_bytes(path.read_bytes())
    assert tickets(alone)[:2] == [1, 2]
    await store.close()
