"""The SQLite job store's tables and connection: WAL mode, the sync level for each way of making
commits durable, and a file of an older release brought up to date."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.jobs.sqlite import SqliteJobStore
from app.jobs.sqlite_schema import connect


def test_a_file_runs_in_wal_mode_with_the_sync_level_its_durability_needs(tmp_path: Path) -> None:
    helped = connect(tmp_path / "a" / "jobs.sqlite3")  # the folder is created
    plain = connect(tmp_path / "b.sqlite3", wal_sync_helper=False)
    try:
        assert helped.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # NORMAL (1): the helper's fdatasync makes it FULL's durability; no automatic checkpoint.
        assert helped.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert helped.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert plain.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert plain.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's default
        tables = {r[0] for r in helped.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"jobs", "deliveries"}
        assert isinstance(helped.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)
    finally:
        helped.close()
        plain.close()


def test_in_memory() -> None:
    conn = connect(None)
    try:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    finally:
        conn.close()


async def test_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, ticket_id INTEGER NOT NULL, state TEXT NOT NULL, "
        "reason TEXT NOT NULL, force INTEGER NOT NULL DEFAULT 0, delivery_id TEXT, attempts INTEGER NOT "
        "NULL DEFAULT 0, next_attempt_at REAL, archived_at TEXT, last_error TEXT, last_step TEXT, "
        "classification TEXT, output_path TEXT, sha256 TEXT, follow_up INTEGER NOT NULL DEFAULT 0, "
        "follow_up_force INTEGER NOT NULL DEFAULT 0, report TEXT, reported INTEGER NOT NULL DEFAULT 1, "
        "created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL)"
    )
    conn.execute(
        "INSERT INTO jobs (job_id, ticket_id, state, reason, created_at, updated_at) "
        "VALUES ('old', 5, 'pending', 'webhook', 1, 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteJobStore(path, delivery_ttl_seconds=3600, max_pending=100)
    recovery = await store.open()
    assert recovery.due == [("old", 5)]
    record = await store.get("old")
    assert record is not None and record.result is None and record.report_error is None
    await store.close()
