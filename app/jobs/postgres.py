"""The PostgreSQL job store: several replicas share one database (``JOB_STORE_URL``).

Same semantics as the SQLite store (:mod:`app.jobs.sqlite`, :class:`app.jobs.store.JobStore`),
made safe for several writers. The parts, one module each:

- :mod:`app.jobs.pg_schema`: the tables, the admission function ``accept_jobs``, migrations;
- :mod:`app.jobs.pg_database`: the connection pool, outages (``/ingest`` answers 503
  ``job_store_unavailable`` while the database is unreachable; the store recovers by itself),
  ``LISTEN``;
- :mod:`app.jobs.pg_admission`: webhooks recorded, one ``accept_jobs`` call per loop turn,
  committed and flushed before the 202;
- :mod:`app.jobs.pg_leases`: claims, leases, fencing, renewals — which jobs this replica holds;
- :mod:`app.jobs.pg_sweeps`: the reconciliation sweep's queries and its one-replica turn.

This module ties them together and has the transitions of a claimed job (each a fenced
write) and the queries. ``LISTEN``/``NOTIFY`` tells the replicas when a job became claimable
(:attr:`PostgresJobStore.work_available`; not durable, so the worker pool also polls).
:meth:`PostgresJobStore.close` gives back what this replica still holds before it disconnects.
It is a little over 450 lines because it implements every member of the ``JobStore``
protocol, most of them a docstring and one delegated call.

Times are Unix seconds from the store's clock, each replica's own (NTP-synchronised hosts: a
lease of 60 s tolerates a skew of 15 s; the store warns when this replica's clock is further
off the database server's, :meth:`app.jobs.pg_leases.Leases.check_clock`). Given the
fingerprint of the settings every replica must share, the store names its connections with it
and warns when another replica's differs (:mod:`app.jobs.pg_replicas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import orjson

from app.config import redact_url
from app.config_fingerprint import application_name
from app.jobs import pg_schema, pg_sweeps
from app.jobs.pg_admission import AdmissionQueue
from app.jobs.pg_database import PgDatabase
from app.jobs.pg_leases import TERMINAL, Leases
from app.jobs.pg_replicas import SettingsCheck
from app.jobs.pg_schema import SCHEMA
from app.jobs.records import (
    TERMINAL_STATES,
    Admission,
    FailingStreak,
    JobRecord,
    JobRequest,
    JobState,
    JobStoreUnavailable,
    LeaseLost,
    Recovery,
    failing_streak_sql,
    new_job_id,
)

log = logging.getLogger("app.jobs.store")

PURGE_BATCH = 1000
"""Rows one purge statement deletes at most (short transactions, no long locks)."""
CLOSE_WAIT_SECONDS = 10.0
"""How long :meth:`PostgresJobStore.close` waits for admissions under way."""
PENDING_REFRESH_SECONDS = 1.0
"""How often a replica with no free worker reads the shared pending count at most
(:meth:`PostgresJobStore.claim_due` with ``limit`` 0): its readiness and ``queue_depth`` lag the
other replicas' admissions by no more than this."""


class PostgresJobStore:
    """Jobs and delivery ids in PostgreSQL, shared by every replica (see the module docstring).

    Args:
        url: ``postgresql://user:password@host:port/database`` (``JOB_STORE_URL``).
        delivery_ttl_seconds: how long a delivery id counts as seen.
        max_pending: most pending jobs (all replicas together); beyond it new jobs are
            refused (``full``).
        lease_seconds: how long a claim holds without renewal (``JOB_LEASE_SECONDS``): the
            longest a dead replica's job waits before another replica reclaims it.
        retention_seconds: finished, reported jobs older than this are pruned (each ticket's
            latest job is kept for ``/jobs``).
        clock: Unix seconds; injectable for tests.
        owner: this replica's name in ``lease_owner`` (default: host, pid and a random part).
        pool_size: most connections this replica opens.
        start_wait_seconds: how long :meth:`open` keeps trying while the database is
            unreachable (it may still be starting) before it gives up.
        settings_fingerprint: this replica's
            :func:`app.config_fingerprint.settings_fingerprint`, put into its connections'
            ``application_name`` and compared with the other replicas' every quarter lease;
            ``None`` (tools, tests): the connections are named ``zammad-pdf-archiver`` and
            nothing is compared.
    """

    shared = True
    """Several replicas may use the database at once (the worker pool claims and polls)."""

    def __init__(
        self,
        url: str,
        *,
        delivery_ttl_seconds: float,
        max_pending: int,
        lease_seconds: float = 60.0,
        retention_seconds: float = 30 * 86400.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        pool_size: int = 10,
        start_wait_seconds: float = 30.0,
        settings_fingerprint: str | None = None,
    ) -> None:
        self.url = url
        self.delivery_ttl = delivery_ttl_seconds
        self.max_pending = max_pending
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self._clock = clock
        self.database = PgDatabase(
            url,
            pool_size=pool_size,
            start_wait_seconds=start_wait_seconds,
            application_name=application_name(settings_fingerprint),
        )
        self.settings_check = (
            SettingsCheck(self.database, settings_fingerprint) if settings_fingerprint else None
        )
        """Compares this replica's settings with the other replicas' (``None``: no fingerprint)."""
        self.leases = Leases(
            self.database,
            owner=owner or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}",
            lease_seconds=lease_seconds,
            clock=clock,
        )
        self._admission = AdmissionQueue(
            self.database,
            delivery_ttl_seconds=delivery_ttl_seconds,
            max_pending=max_pending,
            clock=clock,
            on_admitted=self._admitted,
        )
        self._pending_count = 0
        self._pending_read_at = -PENDING_REFRESH_SECONDS  # monotonic time of claim_due(0)'s last read
        self._maintainer: asyncio.Task[None] | None = None
        self.work_available = asyncio.Event()
        """Set when a NOTIFY says a job may be claimable (the pool clears it)."""

    @property
    def on_lease_lost(self) -> Callable[[LeaseLost], None] | None:
        """Called when a renewal finds that a job's fence moved on (see
        :attr:`app.jobs.pg_leases.Leases.on_lease_lost`)."""
        return self.leases.on_lease_lost

    @on_lease_lost.setter
    def on_lease_lost(self, callback: Callable[[LeaseLost], None] | None) -> None:
        self.leases.on_lease_lost = callback

    @property
    def on_reclaimed(self) -> Callable[[str, int], None] | None:
        """Called with ``run`` or ``report`` and a count when a claim took over jobs or reports
        whose lease ran out (see :attr:`app.jobs.pg_leases.Leases.on_reclaimed`)."""
        return self.leases.on_reclaimed

    @on_reclaimed.setter
    def on_reclaimed(self, callback: Callable[[str, int], None] | None) -> None:
        self.leases.on_reclaimed = callback

    @property
    def commits(self) -> int:
        """Admission transactions committed so far."""
        return self._admission.commits

    def _admitted(self, admissions: list[Admission]) -> None:
        self._pending_count += sum(1 for a in admissions if a.new)

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> Recovery:
        """Connect, create or migrate the schema (one replica at a time), and start the lease
        renewals and the ``LISTEN`` connection.

        Returns an empty :class:`Recovery`: jobs left by a replica that stopped are reclaimed
        through :meth:`claim_due` and :meth:`claim_reports` once their leases run out.

        Raises:
            JobStoreUnavailable: the database cannot be reached within ``start_wait_seconds``,
                refuses the login or the database, or is Zammad's own.
        """
        await self.database.connect()
        now, name = self._clock(), redact_url(self.url)
        await self.database.call(lambda conn: pg_schema.migrate(conn, now=now, database=name))
        self._pending_count = await self.database.call(
            lambda conn: conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.jobs WHERE state = 'pending'")
        )
        self._maintainer = asyncio.create_task(self._maintain(), name="job-store-leases")
        return Recovery([], [], [], 0)

    async def close(self) -> None:
        """Give back what this replica holds — running jobs to pending (the attempt does not
        count), undelivered reports to whichever replica claims them next — then disconnect.
        Idempotent."""
        if self.database.closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self._admission.drained()
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
        with contextlib.suppress(JobStoreUnavailable):
            await self.leases.release_all()
        await self.database.close()

    async def _maintain(self) -> None:
        """Renew this replica's leases every ``lease / 4`` s, keep the ``LISTEN`` connection up,
        keep :attr:`unavailable` current, compare this replica's clock with the database
        server's (:meth:`app.jobs.pg_leases.Leases.check_clock`: a warning when they differ by
        more than a quarter lease) and its settings with the other replicas'
        (:meth:`app.jobs.pg_replicas.SettingsCheck.check`: a warning when one differs)."""
        while True:
            try:
                if await self.database.listen(pg_schema.NOTIFY_CHANNEL, self._notified):
                    self.work_available.set()  # a NOTIFY may have been missed while it was down
                await self.leases.renew()
                await self.leases.check_clock()
                if self.settings_check is not None:
                    await self.settings_check.check()
            except JobStoreUnavailable:
                pass
            except Exception:
                log.exception("job store lease renewal failed")
            await asyncio.sleep(self.lease_seconds / 4)

    def _notified(self, *_: Any) -> None:
        self.work_available.set()

    async def renew_leases(self) -> None:
        """Renew this replica's leases now (see :meth:`app.jobs.pg_leases.Leases.renew`)."""
        await self.leases.renew()

    async def confirm_lease(self, job_id: str) -> None:
        """Check that this replica still holds ``job_id`` and extend its lease (see
        :meth:`app.jobs.pg_leases.Leases.confirm`).

        Raises:
            LeaseLost: another replica holds the job now, or this replica no longer holds it.
            JobStoreUnavailable: the database cannot be reached.
        """
        await self.leases.confirm(job_id)

    # -- admission -------------------------------------------------------------------------------
    async def accept(self, request: JobRequest) -> Admission:
        """Record ``request`` durably; returns once committed (see :meth:`accept_many`)."""
        return (await self.accept_many([request]))[0]

    def accept_many(self, requests: list[JobRequest]) -> asyncio.Future[list[Admission]]:
        """Record several requests in one transaction, all or nothing on capacity.

        Returns a future with one :class:`Admission` per request, in order, set once the
        transaction is committed (``synchronous_commit = on``). Requests of other callers in the
        same turn of the event loop share the transaction (group commit), each group keeping
        its all-or-nothing rule.

        Raises (through the future):
            JobStoreUnavailable: the database cannot be reached (the edge answers 503).
            asyncpg.PostgresError: the statement failed.
        """
        return self._admission.accept_many(requests)

    # -- claims and transitions --------------------------------------------------------------
    async def start(self, job_id: str, archived_at: str) -> JobRecord | None:
        """Claim one job: ``pending → running`` with this replica's lease (see
        :meth:`app.jobs.pg_leases.Leases.claim`); ``None`` when it is not claimable now."""
        record = await self.leases.claim(job_id, archived_at)
        if record is not None:
            self._pending_count = max(0, self._pending_count - 1)
        return record

    async def claim_due(self, limit: int, archived_at: str) -> list[JobRecord]:
        """Claim up to ``limit`` jobs that are due, oldest first (see
        :meth:`app.jobs.pg_leases.Leases.claim_due`); refreshes :attr:`pending_count`, also
        with ``limit`` 0 (no free worker: nothing is claimed, the count is still read, so that
        a busy replica's readiness and ``queue_depth`` follow the other replicas' admissions; at
        most once per :data:`PENDING_REFRESH_SECONDS`, as every admission's NOTIFY wakes the
        claimer)."""
        if limit <= 0:
            now = time.monotonic()
            if now - self._pending_read_at >= PENDING_REFRESH_SECONDS:
                self._pending_read_at = now
                self._pending_count = await self.leases.pending_count()
            return []
        records, pending = await self.leases.claim_due(limit, archived_at)
        # Set only now, with no await before the caller gets the jobs: a count that dropped
        # while the claimed jobs were still on their way (the connection's release awaits)
        # made the pool look idle with work in hand.
        self._pending_count = pending
        return records

    async def claim_reports(self, limit: int) -> list[JobRecord]:
        """Take over up to ``limit`` undelivered reports whose lease ran out (their replica
        died or shut down), for this replica to deliver."""
        if limit <= 0:
            return []
        return await self.leases.claim_reports(limit)

    async def requeue(self, job_id: str) -> None:
        """``running → pending`` for a run interrupted by shutdown (the attempt does not count);
        the lease is given back and the other replicas are told."""
        await self.leases.write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0), "
            "updated_at = $3, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE job_id = $1 AND fence = $2 AND state = 'running' "
            f"RETURNING job_id, pg_notify('{pg_schema.NOTIFY_CHANNEL}', '')",
            self._clock(),
        )
        self.leases.forget(job_id)
        self._pending_count += 1

    async def retry_later(
        self, job_id: str, *, at: float, error: str, step: str, classification: str
    ) -> None:
        """``running → pending`` after a Transient failure, to run again at ``at`` (Unix
        seconds) on whichever replica claims it then.

        Raises:
            LeaseLost: another replica holds the job now; nothing was written.
            JobStoreUnavailable: the database is unreachable; the lease is kept, write again.
        """
        await self.leases.write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET state = 'pending', next_attempt_at = $3, last_error = $4, "
            "last_step = $5, classification = $6, updated_at = $7, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE job_id = $1 AND fence = $2 AND state = 'running' "
            "RETURNING job_id",
            at,
            error,
            step,
            classification,
            self._clock(),
        )
        self.leases.forget(job_id)
        self._pending_count += 1

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
        """``running → done | failed | dead`` with ``result`` and the report to deliver
        (``None``: nothing to report, and the lease is given back). Creates the follow-up job
        when one was requested, in the same transaction; returns its id.

        Raises:
            LeaseLost: another replica holds the job now; nothing was written.
            JobStoreUnavailable: the database is unreachable; the lease is kept, write again
                (if the commit's answer was lost, the job has ended: the next try finds no
                running row and raises :class:`LeaseLost`).
        """
        assert state in TERMINAL_STATES
        fence = self.leases.fences.get(job_id)
        if fence is None:
            raise await self.leases.lost(job_id)
        now = self._clock()
        keep = state != JobState.DONE
        follow_id = new_job_id()

        async def op(conn: asyncpg.Connection) -> str | None | bool:
            async with conn.transaction():
                # Lock the row first: a webhook merged meanwhile (follow_up set by another
                # replica) is seen, whichever commits first.
                row = await conn.fetchrow(
                    f"SELECT ticket_id, follow_up, follow_up_force FROM {SCHEMA}.jobs "
                    "WHERE job_id = $1 AND fence = $2 AND state = 'running' FOR UPDATE",
                    job_id,
                    fence,
                )
                if row is None:
                    return False
                await conn.execute(
                    f"UPDATE {SCHEMA}.jobs SET state = $2, result = $3, report = $4, reported = $5, "
                    "last_error = CASE WHEN $6 THEN coalesce($7, last_error) END, "
                    "last_step = CASE WHEN $6 THEN coalesce($8, last_step) END, "
                    "classification = CASE WHEN $6 THEN coalesce($9, classification) END, "
                    "output_path = $10, sha256 = $11, finished_at = $12, updated_at = $12, "
                    "follow_up = false, lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END "
                    "WHERE job_id = $1",
                    job_id,
                    state,
                    result,
                    orjson.dumps(report).decode() if report is not None else None,
                    report is None,
                    keep,
                    error,
                    step,
                    classification,
                    output_path,
                    sha256,
                    now,
                )
                if not row["follow_up"]:
                    return None
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.jobs (job_id, ticket_id, state, reason, force, created_at, "
                    "updated_at) VALUES ($1, $2, 'pending', 'follow_up', $3, $4, $4)",
                    follow_id,
                    row["ticket_id"],
                    row["follow_up_force"],
                    now,
                )
                await conn.execute("SELECT pg_notify($1, '')", pg_schema.NOTIFY_CHANNEL)
                return follow_id

        outcome = await self.database.call(op)
        if outcome is False:
            raise await self.leases.lost(job_id)
        if report is None:
            self.leases.forget(job_id)
        if outcome is not None:
            self._pending_count += 1
        return outcome if isinstance(outcome, str) else None

    async def mark_reported(self, job_id: str, *, given_up: str | None = None) -> None:
        """The job's report reached Zammad, or was given up (``given_up`` says why); the lease
        is given back and the ticket's next job becomes claimable (the replicas are told).

        Raises:
            LeaseLost: another replica holds the report now; nothing was written.
        """
        await self.leases.write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET reported = true, report_error = $3, updated_at = $4, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE job_id = $1 AND fence = $2 "
            f"RETURNING job_id, pg_notify('{pg_schema.NOTIFY_CHANNEL}', '')",
            given_up,
            self._clock(),
        )
        self.leases.forget(job_id)

    # -- queries and housekeeping ---------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """One job by id, with its :class:`~app.jobs.records.Lease` while a replica holds it
        (``expired`` by this replica's clock at the read)."""
        row = await self.database.call(
            lambda conn: conn.fetchrow(f"SELECT * FROM {SCHEMA}.jobs WHERE job_id = $1", job_id)
        )
        return JobRecord.from_row(row, now=self._clock()) if row is not None else None

    async def latest(self, ticket_id: int) -> JobRecord | None:
        """The ticket's most recent job (an active one first), with its
        :class:`~app.jobs.records.Lease` while a replica holds it (``expired`` by this
        replica's clock at the read: ``/jobs`` tells a dead replica's job from a live one)."""
        row = await self.database.call(
            lambda conn: conn.fetchrow(
                f"SELECT * FROM {SCHEMA}.jobs WHERE ticket_id = $1 "
                "ORDER BY state IN ('pending', 'running') DESC, created_at DESC LIMIT 1",
                ticket_id,
            )
        )
        return JobRecord.from_row(row, now=self._clock()) if row is not None else None

    async def failing_streak(self, job_id: str) -> FailingStreak | None:
        """Since when the job's ticket has been failing to archive (see
        :class:`~app.jobs.records.FailingStreak`); ``None`` for an unknown job.

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        sql = failing_streak_sql(f"{SCHEMA}.jobs", "$1")
        row = await self.database.call(lambda conn: conn.fetchrow(sql, job_id))
        return FailingStreak.from_row(row) if row is not None else None

    async def purge_deliveries(self) -> int:
        """Delete expired delivery ids, and finished, reported jobs older than the retention
        (each ticket's latest job stays), in batches of :data:`PURGE_BATCH`, by one replica at
        a time (an advisory lock; the others skip the turn). Returns how many delivery ids."""
        now = self._clock()

        async def op(conn: asyncpg.Connection) -> int:
            deleted = 0
            while True:
                async with conn.transaction():
                    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", pg_schema.PURGE_LOCK):
                        return deleted
                    status = await conn.execute(
                        f"DELETE FROM {SCHEMA}.deliveries WHERE delivery_id IN (SELECT delivery_id FROM "
                        f"{SCHEMA}.deliveries WHERE expires_at <= $1 LIMIT $2)",
                        now,
                        PURGE_BATCH,
                    )
                    count = int(status.split()[-1])
                    jobs = await conn.execute(
                        f"DELETE FROM {SCHEMA}.jobs WHERE job_id IN (SELECT j.job_id FROM {SCHEMA}.jobs j "
                        f"WHERE j.state IN {TERMINAL} AND j.reported AND j.finished_at < $1 AND EXISTS "
                        f"(SELECT 1 FROM {SCHEMA}.jobs n WHERE n.ticket_id = j.ticket_id "
                        "AND n.created_at > j.created_at) LIMIT $2)",
                        now - self.retention_seconds,
                        PURGE_BATCH,
                    )
                deleted += count
                if count < PURGE_BATCH and int(jobs.split()[-1]) < PURGE_BATCH:
                    return deleted

        return int(await self.database.call(op))

    # -- reconciliation (app.reconcile; the SQL in pg_sweeps) ---------------------------------
    async def latest_jobs(self, ticket_ids: Sequence[int]) -> dict[int, JobRecord]:
        """The latest job (an active one first, as :meth:`latest`, with its lease) of each
        ticket in ``ticket_ids`` that has one, in one statement."""
        return await pg_sweeps.latest_jobs(self.database, ticket_ids, now=self._clock())

    def sweep_turn(self, name: str, *, min_interval_seconds: float) -> AbstractAsyncContextManager[bool]:
        """Whether this replica runs sweep ``name`` now (``async with … as mine``): see
        :func:`app.jobs.pg_sweeps.sweep_turn`.

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        return pg_sweeps.sweep_turn(
            self.database,
            name,
            min_interval_seconds=min_interval_seconds,
            clock=self._clock,
            owner=self.leases.owner,
        )

    @property
    def unavailable(self) -> str | None:
        """Why the store cannot record jobs now (the database unreachable at the last call,
        or the store closed), else ``None``."""
        return self.database.unavailable

    @property
    def pending_count(self) -> int:
        """Pending jobs of all replicas, as last seen (refreshed by every poll)."""
        return self._pending_count
