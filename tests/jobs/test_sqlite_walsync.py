"""The SQLite store's side of the WAL sync helper (:mod:`app.jobs.sqlite_walsync`), through the
store: a batch is answered only once its WAL is synced; a failed, vanished or hung helper makes
the store refuse writes (reads still answer) or fail readiness. The helper program itself is
tested in ``test_walsync.py``."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

import app.jobs.sqlite as store_module
import app.jobs.sqlite_walsync as walsync_module
from app.jobs.records import JobRequest, JobStoreUnavailable
from app.jobs.sqlite import SqliteJobStore

# Stand-in helpers for faults a real disk does not produce on demand; they speak the same
# protocol as app/jobs/walsync.py (one byte in, ``k`` or ``E<text>\n`` out).
GATED_HELPER = """
import os, sys, time
gate = sys.argv[1].removesuffix("-wal") + ".gate"
while os.read(0, 1):
    while not os.path.exists(gate):
        time.sleep(0.01)
    os.write(1, b"k")
"""
ENDING_HELPER = """
import os
os.read(0, 1)
os.write(1, b"k")  # the store's opening batch; then it ends without an answer
os.read(0, 1)
"""
HANGING_HELPER = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.read(0, 1)
os.write(1, b"k")
os.read(0, 1)
time.sleep(3600)  # a hung disk
"""
FAILING_HELPER = """
import os
os.read(0, 1)
os.write(1, b"k")  # the store's opening batch
os.read(0, 1)
os.write(1, b"E[Errno 5] Input/output error\\n")
"""


def open_store(path: Path) -> SqliteJobStore:
    return SqliteJobStore(path, delivery_ttl_seconds=3600, max_pending=100)


def helper_of(store: SqliteJobStore) -> subprocess.Popen[bytes]:
    """The store's WAL sync helper process now."""
    assert store._wal_sync is not None
    return store._wal_sync._proc


def use_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: str) -> None:
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(code))
    monkeypatch.setattr(walsync_module, "WALSYNC_SCRIPT", script)


def jobs_in(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT ticket_id FROM jobs ORDER BY ticket_id")]


async def test_a_batch_is_answered_only_after_its_wal_sync(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_helper(monkeypatch, tmp_path, GATED_HELPER)
    path = tmp_path / "jobs.sqlite3"
    gate = tmp_path / "jobs.sqlite3.gate"
    gate.touch()
    store = open_store(path)
    await store.open()
    gate.unlink()
    accepting = asyncio.ensure_future(store.accept(JobRequest(7, delivery_id="d7")))
    await asyncio.sleep(0.3)
    assert not accepting.done()  # committed (NORMAL) but not synced: no answer yet
    queued = asyncio.ensure_future(store.accept(JobRequest(8)))  # waits for the next batch
    await asyncio.sleep(0.05)
    assert not queued.done()
    gate.touch()
    assert (await asyncio.wait_for(accepting, 5)).status == "accepted"
    assert (await asyncio.wait_for(queued, 5)).status == "accepted"
    await store.close()
    assert jobs_in(path) == [7, 8]


async def test_a_failed_sync_makes_the_store_refuse_writes_but_answer_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_helper(monkeypatch, tmp_path, FAILING_HELPER)
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    assert store.unavailable is None
    with pytest.raises(JobStoreUnavailable, match="Input/output error"):
        await store.accept(JobRequest(1))
    assert "the WAL sync failed" in (store.unavailable or "")
    with pytest.raises(JobStoreUnavailable):
        await store.accept(JobRequest(2))
    job = await store.latest(1)  # reads still work (GET /jobs/{id} while the disk is failing)
    assert job is not None and job.ticket_id == 1
    assert await store.latest(2) is None
    await asyncio.wait_for(store.close(), 15)
    assert jobs_in(tmp_path / "jobs.sqlite3") == [1]  # committed, never answered; nothing after it


async def test_a_killed_helper_is_started_again(tmp_path: Path) -> None:
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    await asyncio.sleep(walsync_module.RESPAWN_SECONDS + 0.1)
    helper = helper_of(store)
    helper.kill()
    await asyncio.to_thread(helper.wait, 10)
    assert (await asyncio.wait_for(store.accept(JobRequest(2)), 10)).status == "accepted"
    assert helper_of(store).pid != helper.pid and store.unavailable is None
    await asyncio.wait_for(store.close(), 15)
    assert jobs_in(tmp_path / "jobs.sqlite3") == [2]


async def test_a_helper_that_keeps_ending_makes_the_store_refuse_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_helper(monkeypatch, tmp_path, ENDING_HELPER)
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    with pytest.raises(JobStoreUnavailable, match="ended again"):
        await asyncio.wait_for(store.accept(JobRequest(1)), 10)
    await asyncio.wait_for(store.close(), 15)


async def test_a_hung_sync_fails_readiness_and_close_still_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_helper(monkeypatch, tmp_path, HANGING_HELPER)
    monkeypatch.setattr(walsync_module, "STALL_SECONDS", 0.2)
    monkeypatch.setattr(store_module, "CLOSE_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(walsync_module, "HELPER_EXIT_SECONDS", 0.5)
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    accepting = asyncio.ensure_future(store.accept(JobRequest(1)))
    await asyncio.sleep(0.4)
    assert not accepting.done()
    assert "has not answered" in (store.unavailable or "")
    await asyncio.wait_for(store.close(), 20)
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await accepting


async def test_the_real_helper_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    for ticket in (1, 2):
        store = open_store(path)
        await store.open()
        assert (await store.accept(JobRequest(ticket))).status == "accepted"
        helper = helper_of(store)
        await store.close()
        assert helper.returncode == 0
    assert jobs_in(path) == [1, 2]


async def test_a_write_while_the_store_closes_is_refused_not_committed(tmp_path: Path) -> None:
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # close() is now waiting for the helper to exit
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await asyncio.wait_for(store.accept(JobRequest(9)), 5)
    await asyncio.wait_for(closing, 15)
    assert jobs_in(tmp_path / "jobs.sqlite3") == []
