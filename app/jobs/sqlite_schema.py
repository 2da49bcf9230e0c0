"""The SQLite job store's tables, and how its connection is opened (WAL mode, sync level).

One file, ``STATE_DIR/jobs.sqlite3``: ``jobs`` (one row per job, its report until delivered)
and ``deliveries`` (``X-Zammad-Delivery`` ids within their TTL). Columns are only ever added
(:func:`add_missing_columns`), so a newer release opens an older file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    force INTEGER NOT NULL DEFAULT 0,
    delivery_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    archived_at TEXT,
    last_error TEXT,
    last_step TEXT,
    classification TEXT,
    output_path TEXT,
    sha256 TEXT,
    result TEXT,
    follow_up INTEGER NOT NULL DEFAULT 0,
    follow_up_force INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    reported INTEGER NOT NULL DEFAULT 1,
    report_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_ticket ON jobs (ticket_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_expiry ON deliveries (expires_at);
"""


def connect(path: Path | None, *, wal_sync_helper: bool = True) -> sqlite3.Connection:
    """Open the database at ``path`` (its folder is created), or an in-memory one for ``None``,
    and create or complete the tables. Rows come back as ``sqlite3.Row``; transactions are the
    caller's (``isolation_level=None``); any thread may use it, one at a time.

    A file runs in WAL mode. With ``wal_sync_helper`` (the service): ``synchronous=NORMAL``
    (``COMMIT`` writes the WAL without waiting for the disk; the WAL sync helper's
    ``fdatasync`` before each batch is answered makes it ``FULL``'s durability) and no automatic
    checkpoint (it would run inside a ``COMMIT`` on the event loop; the store checkpoints in its
    thread). Without: SQLite's own ``synchronous=FULL`` and automatic checkpoint.

    Raises:
        sqlite3.Error: the file cannot be opened, or SQLite refuses WAL mode.
    """
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # the helper's sync of the -wal file would protect nothing
            conn.close()
            raise sqlite3.OperationalError(f"{path}: SQLite refused WAL mode (journal_mode={mode})")
        if wal_sync_helper:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            conn.execute("PRAGMA synchronous=FULL")
    conn.row_factory = sqlite3.Row
    conn.executescript(SCHEMA)
    add_missing_columns(conn)
    return conn


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a ``jobs`` table made by an older version up to :data:`SCHEMA` (columns are only
    ever added, with NULL or their default)."""
    have = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    for line in SCHEMA.split("CREATE TABLE IF NOT EXISTS jobs (")[1].split(");")[0].splitlines():
        parts = line.strip().rstrip(",").split()
        if parts and parts[0] not in have and parts[0].isidentifier() and "PRIMARY" not in parts:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {' '.join(parts)}")
