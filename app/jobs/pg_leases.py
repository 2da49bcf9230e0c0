"""Which jobs this replica holds in the PostgreSQL job store: claims, fences, renewals, lease checks.

A replica runs a job only after claiming it: ``pending → running`` with a lease
(``lease_owner`` = this replica, ``lease_expires_at``) and a fencing counter ``fence`` raised by
one; claims take rows ``FOR UPDATE SKIP LOCKED``, so two replicas never claim the same one. A
job is not claimed while its ticket has another job running or a report undelivered (one job
per ticket at a time, across replicas). An undelivered report is held the same way.

:class:`Leases` remembers the fence of every claim this replica still works on. Every write
for such a job names that fence (:meth:`Leases.write`) and changes nothing once another
replica claimed the job since: it raises :class:`~app.jobs.records.LeaseLost`. The leases are
renewed every ``lease / 4`` seconds (by the store, :meth:`Leases.renew`); a replica that dies
stops renewing, and once its lease has run out another replica reclaims the job (a running job
runs again; an undelivered report is delivered by the new owner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from app.jobs import pg_schema
from app.jobs.pg_database import PgDatabase
from app.jobs.pg_schema import SCHEMA
from app.jobs.records import (
    RECLAIMED_REPORT,
    RECLAIMED_RUN,
    JobRecord,
    JobStoreUnavailable,
    LeaseLost,
)

log = logging.getLogger("app.jobs.store")

TERMINAL = "('done', 'failed', 'dead')"
"""The terminal states as an SQL list (:data:`app.jobs.records.TERMINAL_STATES`)."""
_NO_OTHER_BUSY_JOB = (
    f"NOT EXISTS (SELECT 1 FROM {SCHEMA}.jobs o WHERE o.ticket_id = j.ticket_id "
    f"AND o.job_id <> j.job_id AND (o.state = 'running' OR "
    f"(NOT o.reported AND o.state IN {TERMINAL})))"
)
_CLAIM_ONE = (
    f"UPDATE {SCHEMA}.jobs j SET state = 'running', attempts = attempts + 1, started_at = $3, "
    "updated_at = $3, next_attempt_at = NULL, archived_at = coalesce(archived_at, $2), lease_owner = $4, "
    "lease_expires_at = $3 + $5, fence = fence + 1 "
    "WHERE job_id = $1 AND state = 'pending' AND coalesce(next_attempt_at, 0) <= $3 "
    f"AND {_NO_OTHER_BUSY_JOB} RETURNING *"
)
_CLAIM_DUE = (
    f"WITH due AS (SELECT job_id, state AS was FROM {SCHEMA}.jobs j "
    "WHERE ((state = 'pending' AND coalesce(next_attempt_at, 0) <= $2) "
    "OR (state = 'running' AND lease_expires_at < $2)) "
    f"AND {_NO_OTHER_BUSY_JOB} ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
    f"UPDATE {SCHEMA}.jobs j SET state = 'running', attempts = attempts + 1, started_at = $2, "
    "updated_at = $2, next_attempt_at = NULL, archived_at = coalesce(archived_at, $3), "
    "lease_owner = $4, lease_expires_at = $2 + $5, fence = fence + 1 FROM due WHERE j.job_id = due.job_id "
    "RETURNING j.*, due.was"
)
# was_owner: NULL for a report given back at a shutdown (release_all), else the replica whose
# lease ran out.
_CLAIM_REPORTS = (
    f"WITH orphan AS (SELECT job_id, lease_owner AS was_owner FROM {SCHEMA}.jobs "
    f"WHERE NOT reported AND state IN {TERMINAL} "
    "AND coalesce(lease_expires_at, 0) < $2 ORDER BY finished_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
    f"UPDATE {SCHEMA}.jobs j SET lease_owner = $3, lease_expires_at = $2 + $4, fence = fence + 1 "
    "FROM orphan WHERE j.job_id = orphan.job_id RETURNING j.*, orphan.was_owner"
)
# Only what this replica still works on, each by its fence: a row it owns but let go of (or a
# claim whose answer was lost) must run out, so that another replica takes it.
_RENEW = (
    "WITH mine AS (SELECT * FROM unnest($3::text[], $4::bigint[]) AS m(job_id, fence)), "
    f"renewed AS (UPDATE {SCHEMA}.jobs j SET lease_expires_at = $2 FROM mine "
    "WHERE j.job_id = mine.job_id AND j.fence = mine.fence AND j.lease_owner = $1 "
    f"AND (j.state = 'running' OR (NOT j.reported AND j.state IN {TERMINAL})) "
    "RETURNING j.job_id) "
    f"SELECT mine.job_id, coalesce(j.lease_owner <> $1 AND (j.state = 'running' OR "
    f"(NOT j.reported AND j.state IN {TERMINAL})), false) AS taken_over "
    f"FROM mine LEFT JOIN {SCHEMA}.jobs j ON j.job_id = mine.job_id "
    "WHERE j.job_id IS NULL OR j.fence <> mine.fence"
)
_HOLDER = (
    f"SELECT lease_owner FROM {SCHEMA}.jobs WHERE job_id = $1 AND lease_owner IS NOT NULL "
    f"AND (state = 'running' OR (NOT reported AND state IN {TERMINAL}))"
)
_PENDING_COUNT = f"SELECT count(*) FROM {SCHEMA}.jobs WHERE state = 'pending'"
SERVER_CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"
"""The database server's clock, Unix seconds: the last statement of each round of the store's
lease maintenance (:meth:`Leases.check_clock`)."""
CLOCK_SKEW_SHARE = 0.25
"""The most a replica's clock may be off the database server's, as a share of the lease (15 s
of the default 60 s) before :meth:`Leases.check_clock` warns. Lease times are written and
compared with each replica's own clock: two replicas each within a quarter lease of the server
are within half a lease of each other, less than the three quarters a lease has left after its
renewal (every quarter lease), so no replica takes a live job over."""


class Leases:
    """This replica's claims in the shared store (see the module docstring).

    Args:
        db: the store's database.
        owner: this replica's name in ``lease_owner``.
        lease_seconds: how long a claim holds without renewal (``JOB_LEASE_SECONDS``).
        clock: Unix seconds (the store's; injectable for tests).
    """

    def __init__(
        self, db: PgDatabase, *, owner: str, lease_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._db = db
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._clock = clock
        self.fences: dict[str, int] = {}
        """The fence of each job this replica works on (claimed, not yet ended or given back)."""
        self.on_lease_lost: Callable[[LeaseLost], None] | None = None
        """Called when a renewal finds that a job's fence moved on (another replica took the
        job over, or it is not known who: :attr:`LeaseLost.taken_over`)."""
        self.clock_skewed = False
        """Whether :meth:`check_clock` found this replica's clock too far off the server's."""
        self.on_reclaimed: Callable[[str, int], None] | None = None
        """Called with :data:`~app.jobs.records.RECLAIMED_RUN` or
        :data:`~app.jobs.records.RECLAIMED_REPORT` and how many, when a claim took over jobs or
        reports whose lease ran out (their replica stopped renewing; jobs and reports given
        back at a shutdown are not counted): the ``jobs_reclaimed_total`` counter."""

    def _claimed(self, rows: Sequence[asyncpg.Record]) -> list[JobRecord]:
        records = []
        for row in rows:
            self.fences[row["job_id"]] = row["fence"]
            records.append(JobRecord.from_row(row))
        return records

    def fence(self, job_id: str) -> int:
        """The fence this replica claimed ``job_id`` with; raises :class:`LeaseLost` (not
        saying who holds it: see :meth:`lost` for that) when it holds no claim on it."""
        fence = self.fences.get(job_id)
        if fence is None:
            raise LeaseLost(job_id)
        return fence

    def forget(self, job_id: str) -> None:
        """This replica no longer works on ``job_id`` (ended, given back, or lost)."""
        self.fences.pop(job_id, None)

    async def lost(self, job_id: str) -> LeaseLost:
        """Forget ``job_id`` here and return the :class:`LeaseLost` to raise for it, saying
        whether another replica holds it now (its lease names another replica): the one
        statement this costs runs only once a write found the lease gone. Another replica is
        not the only cause — after an outage longer than the lease this replica's own claimer
        may have reclaimed the job, and its first run ended it — so it is named only when the
        database says so; when the database cannot be asked, it is not known."""
        self.forget(job_id)
        try:
            owner = await self._db.call(lambda conn: conn.fetchval(_HOLDER, job_id))
        except (JobStoreUnavailable, asyncpg.PostgresError):
            owner = None
        return LeaseLost(job_id, taken_over=owner is not None and owner != self.owner)

    # -- claims --------------------------------------------------------------------------------
    async def claim(self, job_id: str, archived_at: str) -> JobRecord | None:
        """Claim one pending job that is due: ``pending → running`` under this replica's lease,
        counting the attempt and fixing the archive time on the first start. ``None`` when it
        is not claimable now (another replica took it, it ended, it waits for a retry, or its
        ticket has another job running or a report undelivered)."""
        now = self._clock()
        rows = await self._db.call(
            lambda conn: conn.fetch(_CLAIM_ONE, job_id, archived_at, now, self.owner, self.lease_seconds)
        )
        return self._claimed(rows)[0] if rows else None

    async def claim_due(self, limit: int, archived_at: str) -> tuple[list[JobRecord], int]:
        """Claim up to ``limit`` jobs that are due — pending (its retry time reached), or running
        under a lease that ran out (its replica died) — oldest first, skipping rows other
        replicas are claiming and tickets with another job running or a report undelivered.
        Returns the claimed jobs and the number of pending jobs left (all replicas)."""
        now = self._clock()

        async def op(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], int]:
            rows: list[asyncpg.Record] = await conn.fetch(
                _CLAIM_DUE, limit, now, archived_at, self.owner, self.lease_seconds
            )
            return rows, await conn.fetchval(_PENDING_COUNT)

        rows, pending = await self._db.call(op)
        reclaimed = [row["job_id"] for row in rows if row["was"] == "running"]
        if reclaimed:
            log.warning("reclaimed jobs whose lease ran out", extra={"job_ids": reclaimed})
            if self.on_reclaimed is not None:
                self.on_reclaimed(RECLAIMED_RUN, len(reclaimed))
        return self._claimed(rows), pending

    async def pending_count(self) -> int:
        """The number of pending jobs of all replicas, read now.

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        count: int = await self._db.call(lambda conn: conn.fetchval(_PENDING_COUNT))
        return count

    async def claim_reports(self, limit: int) -> list[JobRecord]:
        """Take over up to ``limit`` undelivered reports whose lease ran out (their replica died
        or shut down), for this replica to deliver. Those whose lease ran out (not given back
        at a shutdown) are counted (:attr:`on_reclaimed`)."""
        now = self._clock()
        rows = await self._db.call(
            lambda conn: conn.fetch(_CLAIM_REPORTS, limit, now, self.owner, self.lease_seconds)
        )
        reclaimed = sum(1 for row in rows if row["was_owner"] is not None)
        if reclaimed and self.on_reclaimed is not None:
            self.on_reclaimed(RECLAIMED_REPORT, reclaimed)
        return self._claimed(rows)

    # -- writes under a lease ------------------------------------------------------------------
    async def write(self, job_id: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A fenced write: ``sql`` must end in ``WHERE job_id = $1 AND fence = $2 …`` and return
        rows; its further parameters are ``args``.

        Raises:
            LeaseLost: this replica holds no claim on the job, or no row matched (another
                replica holds the job now, or it moved on since); it is forgotten here.
            JobStoreUnavailable: the database cannot be reached. The fence is kept: the worker
                pool writes again once it is back (:meth:`app.jobs.pool.WorkerPool._recorded`).
        """
        fence = self.fences.get(job_id)
        if fence is None:
            raise await self.lost(job_id)
        rows: list[asyncpg.Record] = await self._db.call(lambda conn: conn.fetch(sql, job_id, fence, *args))
        if not rows:
            raise await self.lost(job_id)
        return rows

    async def confirm(self, job_id: str) -> None:
        """Check that this replica still holds ``job_id`` (its run, or its undelivered report)
        and extend the lease; awaited right before a write to the ticket in Zammad, so that a
        replica that stalled past its lease (paused, cut off from the database) and was taken
        over writes nothing there when it wakes: no note a second time, no tag put back. A
        lease that ran out without anyone reclaiming the job is taken back.

        Raises:
            LeaseLost: another replica holds the job now (its fence moved on), or this replica
                no longer holds it (it ended here, e.g. by a first run of a job this replica
                reclaimed after an outage); it is forgotten here.
            JobStoreUnavailable: the database cannot be reached (whether it is held is unknown).
        """
        await self.write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET lease_expires_at = $3 WHERE job_id = $1 AND fence = $2 "
            f"AND lease_owner = $4 AND (state = 'running' OR (NOT reported AND state IN {TERMINAL})) "
            "RETURNING job_id",
            self._clock() + self.lease_seconds,
            self.owner,
        )

    # -- renewals and giving back --------------------------------------------------------------
    async def renew(self) -> None:
        """Extend the leases of the jobs this replica works on (those it claimed and has not
        ended or given back: their fences); a job whose fence moved on (another replica took
        it over, or it is not known who: a claim of this replica's whose answer was lost) is
        forgotten, logged (``lease lost: …``) and reported to :attr:`on_lease_lost`.

        Only the claims this replica still tracks are renewed, each by its fence: a job it
        lost track of (a claim whose answer never came back, a run that ended without its end
        being recorded) is not kept alive by the renewals, its lease runs out and another
        replica reclaims it. A job is reported lost only when its fence moved on, not when it
        was claimed, ended or given back here while the renewal was under way.

        Raises:
            JobStoreUnavailable: the database cannot be reached (also with nothing to renew:
                a ``SELECT 1`` keeps :attr:`PgDatabase.unavailable` current).
        """
        if not self.fences:
            await self._db.call(lambda conn: conn.fetchval("SELECT 1"))
            return
        sent = dict(self.fences)
        expires = self._clock() + self.lease_seconds
        # Claims and releases made while the UPDATE runs are not judged.
        rows = await self._db.call(
            lambda conn: conn.fetch(_RENEW, self.owner, expires, list(sent), list(sent.values()))
        )
        for row in rows:
            job_id = row["job_id"]
            if self.fences.get(job_id) != sent[job_id]:
                continue  # ended or claimed again here meanwhile
            self.forget(job_id)
            lost = LeaseLost(job_id, taken_over=row["taken_over"])
            log.warning("lease lost: %s", lost.what, extra={"job_id": job_id})
            if self.on_lease_lost is not None:
                self.on_lease_lost(lost)

    async def check_clock(self) -> float:
        """Compare this replica's clock with the database server's and warn when they differ
        by more than :data:`CLOCK_SKEW_SHARE` of the lease (once, until they agree again; then
        an info line). A replica whose clock is ahead by more than the time a lease has left
        takes the other replicas' live jobs over at once (their leases look run out to it), and
        its own jobs are reclaimed late; nothing else would tell.

        Returns:
            The skew in seconds: this replica's clock minus the server's (positive: ahead),
            the request's round trip taken into account.

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        before = self._clock()
        server: float = await self._db.call(lambda conn: conn.fetchval(SERVER_CLOCK))
        after = self._clock()
        skew = (before + after) / 2 - server
        limit = self.lease_seconds * CLOCK_SKEW_SHARE
        if abs(skew) > limit + (after - before) / 2:
            if not self.clock_skewed:
                log.warning(
                    "this replica's clock is %.1f s %s the database server's; leases (JOB_LEASE_SECONDS "
                    "%g s) need the replicas' clocks within %g s of each other: synchronise every "
                    "replica host and the database server with NTP",
                    abs(skew),
                    "ahead of" if skew > 0 else "behind",
                    self.lease_seconds,
                    limit,
                    extra={"skew_seconds": round(skew, 3), "limit_seconds": limit},
                )
            self.clock_skewed = True
        elif self.clock_skewed:
            log.info(
                "this replica's clock agrees with the database server's again",
                extra={"skew_seconds": round(skew, 3), "limit_seconds": limit},
            )
            self.clock_skewed = False
        return skew

    async def release_all(self) -> None:
        """Give back everything this replica holds, at once rather than after the lease:
        running jobs to pending (the attempt does not count), undelivered reports to whichever
        replica claims them next; the other replicas are told (``NOTIFY``).

        Raises:
            JobStoreUnavailable: the database cannot be reached (the leases then run out).
        """
        if not self.fences:
            return
        now = self._clock()

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    f"UPDATE {SCHEMA}.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0), "
                    "lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 "
                    "WHERE lease_owner = $1 AND state = 'running'",
                    self.owner,
                    now,
                )
                await conn.execute(
                    f"UPDATE {SCHEMA}.jobs SET lease_owner = NULL, lease_expires_at = 0, updated_at = $2 "
                    f"WHERE lease_owner = $1 AND NOT reported AND state IN {TERMINAL}",
                    self.owner,
                    now,
                )
                await conn.execute("SELECT pg_notify($1, '')", pg_schema.NOTIFY_CHANNEL)

        await self._db.call(op)
        self.fences.clear()
