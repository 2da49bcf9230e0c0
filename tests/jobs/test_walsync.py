"""The job store's WAL sync helper: a batch is answered only once its WAL is synced, a failed or
vanished helper makes the store refuse writes, and the helper itself follows its WAL file."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import app.jobs.sqlite as store_module
import app.jobs.sqlite_batches as batches_module
import app.jobs.sqlite_walsync as walsync_module
from app.jobs.records import JobRequest, JobStoreUnavailable
from app.jobs.sqlite import SqliteJobStore as JobStore

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


def open_store(path: Path) -> JobStore:
    return JobStore(path, delivery_ttl_seconds=3600, max_pending=100)


def use_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: str) -> None:
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(code))
    monkeypatch.setattr(walsync_module, "WALSYNC_SCRIPT", script)


def jobs_in(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT ticket_id FROM jobs ORDER BY ticket_id")]


async def test_a_batch_is_answered_only_after_its_wal_sync(monkeypatch, tmp_path):
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


async def test_a_failed_sync_makes_the_store_refuse_writes_but_answer_reads(monkeypatch, tmp_path):
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


async def test_a_killed_helper_is_started_again(tmp_path):
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    await asyncio.sleep(walsync_module.RESPAWN_SECONDS + 0.1)
    helper = store._wal_sync._proc
    helper.kill()
    await asyncio.to_thread(helper.wait, 10)
    assert (await asyncio.wait_for(store.accept(JobRequest(2)), 10)).status == "accepted"
    assert store._wal_sync._proc.pid != helper.pid and store.unavailable is None
    await asyncio.wait_for(store.close(), 15)
    assert jobs_in(tmp_path / "jobs.sqlite3") == [2]


async def test_a_helper_that_keeps_ending_makes_the_store_refuse_writes(monkeypatch, tmp_path):
    use_helper(monkeypatch, tmp_path, ENDING_HELPER)
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    with pytest.raises(JobStoreUnavailable, match="ended again"):
        await asyncio.wait_for(store.accept(JobRequest(1)), 10)
    await asyncio.wait_for(store.close(), 15)


async def test_a_hung_sync_fails_readiness_and_close_still_ends(monkeypatch, tmp_path):
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


async def test_checkpoints_move_the_wal_into_the_database_file(monkeypatch, tmp_path):
    monkeypatch.setattr(batches_module, "CHECKPOINT_BATCHES", 3)
    path = tmp_path / "jobs.sqlite3"
    store = open_store(path)
    await store.open()
    for ticket in range(1, 6):  # one batch each: the opening batch and these make a checkpoint
        await store.accept(JobRequest(ticket))
    # The database file alone (no -wal beside it) already holds what was checkpointed.
    alone = tmp_path / "alone" / "jobs.sqlite3"
    alone.parent.mkdir()
    alone.write_bytes(path.read_bytes())
    assert jobs_in(alone)[:2] == [1, 2]
    await store.close()


async def test_the_real_helper_survives_close_and_reopen(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    for ticket in (1, 2):
        store = open_store(path)
        await store.open()
        assert (await store.accept(JobRequest(ticket))).status == "accepted"
        helper = store._wal_sync._proc
        await store.close()
        assert helper.returncode == 0
    assert jobs_in(path) == [1, 2]


def _fd_inodes(pid: int) -> set[int]:
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            inodes.add(os.stat(f"/proc/{pid}/fd/{name}").st_ino)
        except FileNotFoundError:
            pass
    return inodes


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")
def test_helper_syncs_the_current_wal_file_ignores_sigterm_and_ends_with_stdin(tmp_path):
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"first")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(walsync_module.WALSYNC_SCRIPT), str(wal)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"s")
        assert proc.stdout.read(1) == b"k"
        first = wal.stat().st_ino
        assert first in _fd_inodes(proc.pid)
        wal.rename(tmp_path / "old-wal")  # SQLite made a new WAL file: the next sync must be of
        # that one (the old file stays, so its inode number cannot be reused for the new one)
        wal.write_bytes(b"second")
        second = wal.stat().st_ino
        proc.send_signal(signal.SIGTERM)  # ignored: only the end of stdin ends it
        proc.stdin.write(b"s")
        assert proc.stdout.read(1) == b"k"
        assert second in _fd_inodes(proc.pid) and first not in _fd_inodes(proc.pid)
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


async def test_a_write_while_the_store_closes_is_refused_not_committed(tmp_path):
    store = open_store(tmp_path / "jobs.sqlite3")
    await store.open()
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # close() is now waiting for the helper to exit
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await asyncio.wait_for(store.accept(JobRequest(9)), 5)
    await asyncio.wait_for(closing, 15)
    assert jobs_in(tmp_path / "jobs.sqlite3") == []
