"""The SQLite job store (the default backend): ``STATE_DIR/jobs.sqlite3``, for one instance.

Implements :class:`app.jobs.store.JobStore` (the semantics are described there and in
:mod:`app.jobs.records`): every accepted webhook is a row in ``jobs`` before ``/ingest``
answers 202, its delivery id in ``deliveries`` in the same transaction; terminal jobs carry
their report until it is delivered (``reported = 1``), so a crash between archiving and
reporting is repaired on the next start (:meth:`SqliteJobStore.open` returns what to resume).

The parts, one module each:

- :mod:`app.jobs.sqlite_schema`: the tables and the connection (WAL mode, sync level);
- :mod:`app.jobs.sqlite_admission`: requests into jobs (deduplication, coalescing, capacity);
- :mod:`app.jobs.sqlite_batches`: group commit — the store's calls queued and written in
  batches on the event loop, each answered once its WAL is synced;
- :mod:`app.jobs.sqlite_walsync` and :mod:`app.jobs.walsync`: the WAL sync helper process;
- :mod:`app.jobs.sqlite_thread`: the thread for the store's blocking calls.

This module has the job's transitions and the queries, each an op of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from app.jobs.records import (
    TERMINAL_STATES,
    Admission,
    FailingStreak,
    JobRecord,
    JobRequest,
    JobState,
    LeaseLost,
    Recovery,
    failing_streak_sql,
    new_job_id,
)
from app.jobs.sqlite_admission import admit_many, admit_one
from app.jobs.sqlite_batches import GroupCommit
from app.jobs.sqlite_schema import connect
from app.jobs.sqlite_thread import StoreThread
from app.jobs.sqlite_walsync import WalSyncProcess

CLOSE_WAIT_SECONDS = 30.0
"""How long :meth:`SqliteJobStore.close` waits for batches in flight before it ends the WAL sync helper."""
START_EARLY_SECONDS = 1.0
"""How far ahead of now a job's ``next_attempt_at`` may be for :meth:`SqliteJobStore.start` to
start it anyway (see there). A job's retry can thus start up to this much before its time:
far less than the default retry waits (``WORKFLOW_RETRY_BASE_SECONDS``, 30 s and doubling)."""


class SqliteJobStore:
    """Jobs and delivery ids in SQLite (see the module docstring); implements
    :class:`app.jobs.store.JobStore` for one instance (``STATE_DIR`` is locked by ``serve``).

    Args:
        path: the database file (its folder is created), or ``None`` for an in-memory
            database (not durable: ``STATE_DURABLE=false``, tests, the benchmark baseline).
        delivery_ttl_seconds: how long a delivery id counts as seen.
        max_pending: most pending jobs; beyond it new jobs are refused (``full``).
        clock: Unix seconds; injectable for tests.
        wal_sync_helper: make commits durable with the WAL sync helper (the default). ``False``:
            SQLite's own ``synchronous=FULL``, each batch committed in the store's thread —
            the design the helper replaced, kept as the ingest benchmark's comparison.
    """

    shared = False
    """One instance only: the worker pool hands jobs over in memory and never claims or polls."""
    work_available = None
    on_lease_lost: Callable[[LeaseLost], None] | None = None
    """Never called: no other replica takes a job over."""
    on_reclaimed: Callable[[str, int], None] | None = None
    """Never called: there are no leases to run out."""
    created = False
    """``True`` once :meth:`open` created the database file: none was at :attr:`path` (a first
    start, or ``STATE_DIR`` was deleted or changed while the service was stopped, losing the
    jobs it held). Always ``False`` in memory."""

    def __init__(
        self,
        path: Path | None,
        *,
        delivery_ttl_seconds: float,
        max_pending: int,
        clock: Callable[[], float] = time.time,
        wal_sync_helper: bool = True,
    ) -> None:
        self.path = path
        self.delivery_ttl = delivery_ttl_seconds
        self.max_pending = max_pending
        self.wal_sync_helper = wal_sync_helper
        self._clock = clock
        self._thread = StoreThread("job-store")
        self._batches = GroupCommit(self._thread, on_rollback=self._recount)
        self._run = self._batches.run
        self._pending_count = 0
        self._wal_sync: WalSyncProcess | None = None

    @property
    def commits(self) -> int:
        """Transactions committed so far (one per batch of calls)."""
        return self._batches.commits

    def _recount(self, conn: sqlite3.Connection) -> None:
        """Set the pending counter from the database (after a rollback)."""
        self._pending_count = conn.execute("SELECT COUNT(*) FROM jobs WHERE state='pending'").fetchone()[0]

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> Recovery:
        """Open (creating the schema) and prepare recovery: jobs that were running are put
        back to pending; returns what to resume. Sets :attr:`created`.

        Raises:
            sqlite3.Error: the database cannot be opened (or refuses WAL mode).
            OSError: its folder cannot be created, or the WAL sync helper cannot be started.
        """
        loop = asyncio.get_running_loop()
        durable, helper = self.path is not None, self.path is not None and self.wal_sync_helper
        path = self.path
        self.created = path is not None and not await self._thread.call(path.exists)
        conn = await self._thread.call(functools.partial(connect, path, wal_sync_helper=helper))
        if helper:
            assert self.path is not None
            self._wal_sync = WalSyncProcess(self.path, loop)
        self._batches.attach(conn, loop, wal_sync=self._wal_sync, in_thread=durable and not helper)

        def recover(conn: sqlite3.Connection) -> Recovery:
            now = self._clock()
            interrupted = conn.execute(
                "UPDATE jobs SET state='pending', updated_at=? WHERE state='running'", (now,)
            ).rowcount
            due, scheduled = [], []
            for row in conn.execute(
                "SELECT job_id, ticket_id, next_attempt_at FROM jobs WHERE state='pending' "
                "ORDER BY created_at"
            ):
                if row["next_attempt_at"] and row["next_attempt_at"] > now:
                    scheduled.append((row["job_id"], row["ticket_id"], row["next_attempt_at"]))
                else:
                    due.append((row["job_id"], row["ticket_id"]))
            self._pending_count = len(due) + len(scheduled)
            unreported = [
                JobRecord.from_row(r)
                for r in conn.execute(
                    "SELECT * FROM jobs WHERE reported=0 AND state IN ('done','failed','dead') "
                    "ORDER BY finished_at"
                )
            ]
            return Recovery(due, scheduled, unreported, interrupted)

        result: Recovery = await self._run(recover)
        return result

    async def close(self) -> None:
        """Wait for queued writes (up to :data:`CLOSE_WAIT_SECONDS`), then close the database."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self._batches.drained()
        if self._wal_sync is not None:
            await self._wal_sync.close()  # a sync still unanswered (a hung disk) fails its batch
            await self._batches.drained()  # what queued behind it is answered read-only
        conn = self._batches.detach()
        if conn is not None:
            await self._thread.call(conn.close)
        self._thread.stop()

    # -- admission -------------------------------------------------------------------------
    async def accept(self, request: JobRequest) -> Admission:
        """Record ``request`` durably (see :mod:`app.jobs.sqlite_admission`); returns once committed."""
        return (await self.accept_many([request]))[0]

    def accept_many(self, requests: list[JobRequest]) -> asyncio.Future[list[Admission]]:
        """Record several requests in one transaction, all or nothing on capacity: when the new
        jobs they need do not fit under ``max_pending``, every one is answered ``full``.

        Returns a future (await it) with one :class:`Admission` per request, in order, set once
        the transaction is committed; it raises what the commit raised (e.g. ``sqlite3.Error``,
        ``OSError`` for a full disk), and :class:`JobStoreUnavailable` once a WAL sync failed —
        also for a delivery id already on record: what the failed sync left is not known to be
        on disk. Queued when called, written on the loop's next turn."""
        refusal = self._batches.refusal()
        if refusal is not None:
            refused: asyncio.Future[list[Admission]] = asyncio.get_running_loop().create_future()
            refused.set_exception(refusal)
            return refused

        def op(conn: sqlite3.Connection) -> list[Admission]:
            now = self._clock()
            if len(requests) == 1:
                admission = admit_one(
                    conn,
                    requests[0],
                    now,
                    pending=self._pending_count,
                    max_pending=self.max_pending,
                    ttl=self.delivery_ttl,
                )
                self._pending_count += admission.new
                return [admission]
            admissions = admit_many(
                conn,
                requests,
                now,
                pending=self._pending_count,
                max_pending=self.max_pending,
                ttl=self.delivery_ttl,
            )
            self._pending_count += sum(a.new for a in admissions)
            return admissions

        return self._run(op)

    # -- transitions ---------------------------------------------------------------------------
    async def start(self, job_id: str, archived_at: str) -> JobRecord | None:
        """``pending → running``: counts the attempt and fixes the job's archive time on its
        first start (so a resumed job writes to the same path). ``None`` when the job is not
        pending (already started elsewhere, or finished) or waits for a retry that is not due
        yet (``next_attempt_at`` later than now: the worker pool's schedule may still hold the
        time of a wait an operator's ``/retry`` ended, and the job may wait again since).
        A time up to :data:`START_EARLY_SECONDS` ahead counts as due: the pool's schedule
        hands a job over once ``time.time()`` reached it, and a wall clock stepped back a
        moment later must not leave that job pending with nothing scheduled."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            now = self._clock()
            changed = conn.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, started_at=?, "
                "updated_at=?, next_attempt_at=NULL, archived_at=COALESCE(archived_at, ?) "
                "WHERE job_id=? AND state='pending' AND COALESCE(next_attempt_at, 0) <= ?",
                (now, now, archived_at, job_id, now + START_EARLY_SECONDS),
            ).rowcount
            if not changed:
                return None
            self._pending_count -= 1
            return JobRecord.from_row(conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone())

        return await self._run(op)

    async def requeue(self, job_id: str) -> None:
        """``running → pending`` for a run interrupted by shutdown; the attempt does not count."""

        def op(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE jobs SET state='pending', attempts=MAX(attempts-1, 0), updated_at=? "
                "WHERE job_id=? AND state='running'",
                (self._clock(), job_id),
            ).rowcount
            self._pending_count += changed

        await self._run(op)

    async def retry_later(
        self, job_id: str, *, at: float, error: str, step: str, classification: str
    ) -> None:
        """``running → pending`` after a Transient failure, to run again at ``at`` (Unix seconds)."""

        def op(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE jobs SET state='pending', next_attempt_at=?, last_error=?, last_step=?, "
                "classification=?, updated_at=? WHERE job_id=? AND state='running'",
                (at, error, step, classification, self._clock(), job_id),
            ).rowcount
            self._pending_count += changed

        await self._run(op)

    async def finish(
        self,
        job_id: str,
        *,
        state: JobState,
        result: str,
        report: dict[str, Any] | None = None,
        error: str | None = None,
        step: str | None = None,
        classification: str | None = None,
        output_path: str | None = None,
        sha256: str | None = None,
    ) -> str | None:
        """``running → done | failed | dead`` with ``result`` (e.g. ``"archived"``,
        ``"skipped: already_signed"``) and the report to deliver (``None``: nothing to report).
        Creates the follow-up job when one was requested; returns its id."""
        assert state in TERMINAL_STATES

        def op(conn: sqlite3.Connection) -> str | None:
            now = self._clock()
            row = conn.execute(
                "SELECT ticket_id, follow_up, follow_up_force FROM jobs WHERE job_id=?", (job_id,)
            ).fetchone()
            # A job that ends done carries no error (an earlier attempt's error would mislead);
            # a failed or dead job keeps the newest error it has.
            keep = "NULL" if state == JobState.DONE else None
            conn.execute(
                "UPDATE jobs SET state=?, result=?, report=?, reported=?, "
                f"last_error={keep or 'COALESCE(?, last_error)'}, "
                f"last_step={keep or 'COALESCE(?, last_step)'}, "
                f"classification={keep or 'COALESCE(?, classification)'}, "
                "output_path=?, sha256=?, finished_at=?, updated_at=?, follow_up=0 WHERE job_id=?",
                (
                    state,
                    result,
                    orjson.dumps(report).decode() if report is not None else None,
                    0 if report is not None else 1,
                    *(() if keep else (error, step, classification)),
                    output_path,
                    sha256,
                    now,
                    now,
                    job_id,
                ),
            )
            if row is None or not row["follow_up"]:
                return None
            follow_id = new_job_id()
            conn.execute(
                "INSERT INTO jobs (job_id, ticket_id, state, reason, force, created_at, updated_at) "
                "VALUES (?,?,'pending','follow_up',?,?,?)",
                (follow_id, row["ticket_id"], row["follow_up_force"], now, now),
            )
            self._pending_count += 1
            return follow_id

        return await self._run(op)

    async def mark_reported(self, job_id: str, *, given_up: str | None = None) -> None:
        """The job's report reached Zammad, or was given up (``given_up`` says why; it shows
        in ``/jobs`` as ``report_error``)."""
        await self._run(
            lambda conn: conn.execute(
                "UPDATE jobs SET reported=1, report_error=?, updated_at=? WHERE job_id=?",
                (given_up, self._clock(), job_id),
            )
        )

    async def claim_due(self, limit: int, archived_at: str) -> list[JobRecord]:
        """Nothing: one instance knows all its jobs (they come from :meth:`open` and admission)."""
        return []

    async def claim_reports(self, limit: int) -> list[JobRecord]:
        """Nothing: undelivered reports come from :meth:`open`."""
        return []

    async def confirm_lease(self, job_id: str) -> None:
        """Nothing to check: one instance holds every job it runs."""

        # -- queries and housekeeping --------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """One job by id."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            return JobRecord.from_row(row) if row else None

        return await self._run(op)

    async def latest(self, ticket_id: int) -> JobRecord | None:
        """The ticket's most recent job (an active one first)."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(
                "SELECT * FROM jobs WHERE ticket_id=? ORDER BY state IN ('pending','running') DESC, "
                "created_at DESC LIMIT 1",
                (ticket_id,),
            ).fetchone()
            return JobRecord.from_row(row) if row else None

        return await self._run(op)

    async def failing_streak(self, job_id: str) -> FailingStreak | None:
        """Since when the job's ticket has been failing to archive (see
        :class:`~app.jobs.records.FailingStreak`); ``None`` for an unknown job."""
        sql = failing_streak_sql("jobs", "?")

        def op(conn: sqlite3.Connection) -> FailingStreak | None:
            return FailingStreak.from_row(conn.execute(sql, (job_id,)).fetchone())

        return await self._run(op)

    async def purge_deliveries(self) -> int:
        """Delete expired delivery ids; returns how many."""
        return await self._run(
            lambda conn: conn.execute("DELETE FROM deliveries WHERE expires_at<=?", (self._clock(),)).rowcount
        )

    # -- reconciliation (app.reconcile) --------------------------------------------------------
    async def latest_jobs(self, ticket_ids: Sequence[int]) -> dict[int, JobRecord]:
        """The latest job (an active one first, as :meth:`latest`) of each ticket in
        ``ticket_ids`` that has one, read in one turn (in chunks of 500 ids)."""
        ids = sorted(set(ticket_ids))

        def op(conn: sqlite3.Connection) -> dict[int, JobRecord]:
            out: dict[int, JobRecord] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(
                    "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY ticket_id ORDER BY "
                    "state IN ('pending','running') DESC, created_at DESC) AS newest FROM jobs "
                    f"WHERE ticket_id IN ({','.join('?' * len(chunk))})) WHERE newest = 1",
                    chunk,
                ):
                    out[row["ticket_id"]] = JobRecord.from_row(row)
            return out

        return await self._run(op) if ids else {}

    @contextlib.asynccontextmanager
    async def sweep_turn(self, name: str, *, min_interval_seconds: float) -> AsyncIterator[bool]:
        """Always this instance's turn: it is the store's only user (``STATE_DIR`` is locked)."""
        yield True

    @property
    def unavailable(self) -> str | None:
        """Why the store cannot make writes durable (a failed WAL sync), or why it may not (a
        sync unanswered for long, see :attr:`WalSyncProcess.unavailable`), else ``None``."""
        return self._wal_sync.unavailable if self._wal_sync is not None else None

    @property
    def pending_count(self) -> int:
        """Pending jobs (due or scheduled), as last committed."""
        return self._pending_count
