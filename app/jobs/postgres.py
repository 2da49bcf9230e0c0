"""The PostgreSQL job store: several replicas share one database (``JOB_STORE_URL``).

Same semantics as the SQLite store (:mod:`app.jobs.sqlite`), made safe for several writers
(the SQL is in :mod:`app.jobs.pg_schema`):

- **Admission**: webhooks that arrive in one turn of the event loop are recorded by one call
  of ``accept_jobs`` (one round trip, one transaction, ``synchronous_commit = on``): a 202 is
  only answered once the job and its delivery id are committed and flushed. A delivery id is
  deduplicated across replicas; one active job per ticket is a unique index.
- **Claims**: a replica runs a job only after claiming it — ``pending → running`` with a lease
  (``lease_owner`` = this replica, ``lease_expires_at``) and a fencing counter raised by one;
  :meth:`PostgresJobStore.claim_due` claims with ``FOR UPDATE SKIP LOCKED``. A job is not
  claimed while its ticket has another job running or a report undelivered (one job per
  ticket at a time, across replicas).
- **Leases**: the store renews its leases every ``lease / 4`` seconds. A replica that dies
  (SIGKILL, power cut, a network cut from the database) stops renewing; once its lease has
  run out another replica reclaims the job (a running job runs again; an undelivered report
  is delivered by the new owner). Every later write by the old owner names the fence it
  claimed with and changes nothing: it gets :class:`~app.jobs.records.LeaseLost`.
- **Wake-up**: ``LISTEN``/``NOTIFY`` tells the replicas when a job became claimable; NOTIFY is
  not durable, so the worker pool also polls (:data:`app.jobs.pool.CLAIM_POLL_SECONDS`).
- **Shutdown**: :meth:`PostgresJobStore.close` gives back what this replica still holds
  (running jobs to pending, undelivered reports to any replica) before it disconnects.
- **Outages**: a failed statement raises (``/ingest`` answers 503 ``job_store_unavailable``);
  :attr:`PostgresJobStore.unavailable` names the cause until a statement succeeds again.
  asyncpg's pool opens new connections by itself, so the store recovers when the database
  returns.

Times are Unix seconds from the store's clock (NTP-synchronised hosts: a lease of 60 s
tolerates skew of seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from app.jobs import pg_schema
from app.jobs.pg_schema import SCHEMA
from app.jobs.records import (
    TERMINAL_STATES,
    Admission,
    JobRecord,
    JobRequest,
    JobStoreUnavailable,
    LeaseLost,
    Recovery,
    new_job_id,
)

log = logging.getLogger("app.jobs.store")

PURGE_BATCH = 1000
"""Rows one purge statement deletes at most (short transactions, no long locks)."""
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""serialization_failure, deadlock_detected: the admission batch is tried again."""
ACCEPT_TRIES = 5
START_RETRY_SECONDS = 2.0
"""Pause between connection attempts while the database is not reachable at start."""
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 15.0

_ACCEPT_SQL = (
    f"SELECT o_status, o_job_id, o_created FROM {SCHEMA}.accept_jobs("
    "$1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::integer[], $6::text[], "
    "$7::float8, $8::float8, $9::bigint)"
)
_TERMINAL = "('done', 'failed', 'dead')"
_NO_OTHER_BUSY_JOB = (
    f"NOT EXISTS (SELECT 1 FROM {SCHEMA}.jobs o WHERE o.ticket_id = j.ticket_id "
    f"AND o.job_id <> j.job_id AND (o.state = 'running' OR "
    f"(NOT o.reported AND o.state IN {_TERMINAL})))"
)


_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,
)  # class 53: disk full, too many connections
"""What makes the database unreachable for now (not a fault of the statement)."""


def redact_url(url: str) -> str:
    """``JOB_STORE_URL`` without its password (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back: nothing to undo.

    The store leaves no session state on a pooled connection: settings are transaction-local
    (``set_config(..., true)``), advisory locks transaction-level, no cursors outside a
    transaction, ``LISTEN`` on a connection of its own; asyncpg still rolls back a transaction
    left open before it calls this. asyncpg's default reset (``pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL``) cost one more round trip per statement, and each admission
    batch waited for it before its webhooks were answered.
    """


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
    ) -> None:
        self.url = url
        self.delivery_ttl = delivery_ttl_seconds
        self.max_pending = max_pending
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._clock = clock
        self._pool_size = pool_size
        self.start_wait_seconds = start_wait_seconds
        self._pool: asyncpg.Pool | None = None
        self._fences: dict[str, int] = {}
        self._pending_count = 0
        self._error: str | None = None
        self._failures = 0  # raised by every failed call (see _call)
        self._closed = False
        self._ops: list[tuple[list[JobRequest], asyncio.Future[list[Admission]]]] = []
        self._flushing = False
        self._listener: asyncpg.Connection | None = None
        self._maintainer: asyncio.Task[None] | None = None
        self.work_available = asyncio.Event()
        """Set when a NOTIFY says a job may be claimable (the pool clears it)."""
        self.on_lease_lost: Callable[[str], None] | None = None
        """Called with a job id when a renewal finds that another replica took the job over."""
        self.commits = 0

    # -- plumbing ------------------------------------------------------------------------------
    def _ok(self) -> None:
        if self._error is not None:
            log.info("job store reachable again", extra={"store": redact_url(self.url)})
            self._error = None

    def _failed(self, exc: BaseException) -> JobStoreUnavailable:
        reason = f"the PostgreSQL job store is unreachable: {_describe(exc)}"
        self._failures += 1
        if self._error is None:
            log.error("job store unavailable", extra={"reason": reason, "store": redact_url(self.url)})
        self._error = reason
        return JobStoreUnavailable(reason)

    async def _call(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """Run ``fn(connection)`` on a pooled connection; connection-level failures become
        :class:`JobStoreUnavailable` (and :attr:`unavailable` says so until a call that began
        after the last failure succeeds: one already under way when the database went away may
        still come back with its answer)."""
        if self._closed or self._pool is None:
            raise JobStoreUnavailable("the job store is closed")
        failures = self._failures
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                result = await fn(conn)
        except _UNREACHABLE as exc:
            raise self._failed(exc) from exc
        if failures == self._failures:
            self._ok()
        return result

    async def _write(self, job_id: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A fenced write: ``sql`` must end in ``WHERE job_id = $1 AND fence = $2``; raises
        :class:`LeaseLost` when no row matched (another replica holds the job now), and
        :class:`JobStoreUnavailable` when the database cannot be reached (the fence is kept: the
        worker pool writes again once it is back, see :meth:`app.jobs.pool.WorkerPool._recorded`)."""
        fence = self._fences.get(job_id)
        if fence is None:
            raise LeaseLost(job_id)
        rows: list[asyncpg.Record] = await self._call(lambda conn: conn.fetch(sql, job_id, fence, *args))
        if not rows:
            self._fences.pop(job_id, None)
            raise LeaseLost(job_id)
        return rows

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
        deadline = time.monotonic() + self.start_wait_seconds
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    command_timeout=COMMAND_TIMEOUT_SECONDS,
                    reset=_keep_session,
                    server_settings={"synchronous_commit": "on", "application_name": "zammad-pdf-archiver"},
                )
                break
            except _UNREACHABLE as exc:  # the database may still be starting (compose, a failover)
                cause = f"cannot connect to the job store {redact_url(self.url)}: {_describe(exc)}"
                if time.monotonic() >= deadline:
                    raise JobStoreUnavailable(cause) from None
                log.warning("waiting for the job store", extra={"cause": cause})
                await asyncio.sleep(START_RETRY_SECONDS)
            except asyncpg.PostgresError as exc:  # wrong password, no such database: final
                raise JobStoreUnavailable(
                    f"cannot use the job store {redact_url(self.url)}: {_describe(exc)}"
                ) from None
        await self._call(self._migrate)
        self._pending_count = await self._call(
            lambda conn: conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.jobs WHERE state = 'pending'")
        )
        self._maintainer = asyncio.create_task(self._maintain(), name="job-store-leases")
        return Recovery([], [], [], 0)

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        zammads = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name IN ('tickets', 'ticket_articles')"
        )
        if zammads == 2:
            raise JobStoreUnavailable(
                f"{redact_url(self.url)} is Zammad's own database; give the archiver a "
                "database of its own (CREATE DATABASE zammad_pdf_archiver)"
            )
        async with conn.transaction():
            # Held until this transaction ends (also when it fails): replicas migrate one at a time.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", pg_schema.MIGRATION_LOCK)
            await conn.execute(pg_schema.BOOTSTRAP)
            version = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version")
            if version > len(pg_schema.MIGRATIONS):
                raise JobStoreUnavailable(
                    f"the job store's schema is version {version}, newer than this "
                    f"release knows ({len(pg_schema.MIGRATIONS)}); upgrade the service"
                )
            for number, migration in enumerate(pg_schema.MIGRATIONS[version:], start=version + 1):
                await conn.execute(migration)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_version VALUES ($1, $2)", number, self._clock()
                )
                log.info("job store schema migrated", extra={"version": number})
            await conn.execute(pg_schema.ACCEPT_FUNCTION)

    async def close(self) -> None:
        """Give back what this replica holds — running jobs to pending (the attempt does not
        count), undelivered reports to whichever replica claims them next — then disconnect.
        Idempotent."""
        if self._closed:
            return
        deadline = time.monotonic() + 10.0
        while (self._flushing or self._ops) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
        with contextlib.suppress(JobStoreUnavailable):
            await self._release_all()
        self._closed = True
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                self._pool.terminate()

    async def _release_all(self) -> None:
        if not self._fences:
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
                    f"WHERE lease_owner = $1 AND NOT reported AND state IN {_TERMINAL}",
                    self.owner,
                    now,
                )
                await conn.execute("SELECT pg_notify($1, '')", pg_schema.NOTIFY_CHANNEL)

        await self._call(op)
        self._fences.clear()

    async def _maintain(self) -> None:
        """Renew this replica's leases every ``lease / 4`` s, keep the ``LISTEN`` connection up,
        and keep :attr:`unavailable` current."""
        while True:
            try:
                await self._listen()
                await self.renew_leases()
            except JobStoreUnavailable:
                pass
            except Exception:
                log.exception("job store lease renewal failed")
            await asyncio.sleep(self.lease_seconds / 4)

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(
                self.url,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={"application_name": "zammad-pdf-archiver"},
            )
            await self._listener.add_listener(pg_schema.NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError, TimeoutError) as exc:
            self._listener = None
            raise self._failed(exc) from exc
        self.work_available.set()  # a NOTIFY may have been missed while it was down

    def _notified(self, *_: Any) -> None:
        self.work_available.set()

    async def renew_leases(self) -> None:
        """Extend the leases of the jobs this replica works on (those it claimed and has not
        ended or given back: their fences); a job whose fence moved on (another replica took
        it over) is forgotten and reported to :attr:`on_lease_lost`.

        Only the claims this replica still tracks are renewed, each by its fence: a job it
        lost track of (a claim whose answer never came back, a run that ended without its end
        being recorded) is not kept alive by the renewals, its lease runs out and another
        replica reclaims it. A job is reported lost only when its fence moved on, not when it
        was claimed, ended or given back here while the renewal was under way.
        """
        if not self._fences:
            await self._call(lambda conn: conn.fetchval("SELECT 1"))  # keeps `unavailable` current
            return
        sent = dict(self._fences)
        now = self._clock()
        # Only what this replica still works on, each by its fence: a row it owns but let go of
        # (or a claim whose answer was lost) must run out, so that another replica takes it.
        # Claims and releases made while the UPDATE runs are not judged.
        rows = await self._call(
            lambda conn: conn.fetch(
                f"WITH mine AS (SELECT * FROM unnest($3::text[], $4::bigint[]) AS m(job_id, fence)), "
                f"renewed AS (UPDATE {SCHEMA}.jobs j SET lease_expires_at = $2 FROM mine "
                "WHERE j.job_id = mine.job_id AND j.fence = mine.fence AND j.lease_owner = $1 "
                f"AND (j.state = 'running' OR (NOT j.reported AND j.state IN {_TERMINAL})) RETURNING j.job_id) "
                f"SELECT mine.job_id FROM mine LEFT JOIN {SCHEMA}.jobs j ON j.job_id = mine.job_id "
                "WHERE j.job_id IS NULL OR j.fence <> mine.fence",
                self.owner,
                now + self.lease_seconds,
                list(sent),
                list(sent.values()),
            )
        )
        for row in rows:
            job_id = row["job_id"]
            if self._fences.get(job_id) != sent[job_id]:
                continue  # ended or claimed again here meanwhile
            self._fences.pop(job_id, None)
            log.warning("lease lost: another replica took the job over", extra={"job_id": job_id})
            if self.on_lease_lost is not None:
                self.on_lease_lost(job_id)

    async def confirm_lease(self, job_id: str) -> None:
        """Check that this replica still holds ``job_id`` (its run, or its undelivered report)
        and extend the lease; awaited right before a write to the ticket in Zammad, so that a
        replica that stalled past its lease (paused, cut off from the database) and was taken
        over writes nothing there when it wakes: no note a second time, no tag put back. A
        lease that ran out without anyone reclaiming the job is taken back.

        Raises:
            LeaseLost: another replica holds the job now (its fence moved on), or this replica
                no longer holds it; it is forgotten here.
            JobStoreUnavailable: the database cannot be reached (whether it is held is unknown).
        """
        await self._write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET lease_expires_at = $3 WHERE job_id = $1 AND fence = $2 "
            f"AND lease_owner = $4 AND (state = 'running' OR (NOT reported AND state IN {_TERMINAL})) "
            "RETURNING job_id",
            self._clock() + self.lease_seconds,
            self.owner,
        )

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Admission]] = loop.create_future()
        if self._closed:
            future.set_exception(JobStoreUnavailable("the job store is closed"))
            return future
        self._ops.append((requests, future))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._ops:
                batch, self._ops = self._ops, []
                await self._accept_batch(batch)
        finally:
            self._flushing = False

    async def _accept_batch(
        self, batch: list[tuple[list[JobRequest], asyncio.Future[list[Admission]]]]
    ) -> None:
        tickets: list[int] = []
        deliveries: list[str | None] = []
        reasons: list[str] = []
        forces: list[bool] = []
        groups: list[int] = []
        job_ids: list[str] = []
        for group, (requests, _) in enumerate(batch):
            for req in requests:
                tickets.append(req.ticket_id)
                deliveries.append(req.delivery_id)
                reasons.append(req.reason)
                forces.append(req.force)
                groups.append(group)
                job_ids.append(new_job_id())
        args = (
            tickets,
            deliveries,
            reasons,
            forces,
            groups,
            job_ids,
            self._clock(),
            float(self.delivery_ttl),
            self.max_pending,
        )
        try:
            for attempt in range(ACCEPT_TRIES):
                try:
                    rows = await self._call(lambda conn: conn.fetch(_ACCEPT_SQL, *args))
                    break
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate not in RETRYABLE_SQLSTATES or attempt == ACCEPT_TRIES - 1:
                        raise
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else JobStoreUnavailable(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        self.commits += 1
        admissions = [Admission(row["o_status"], row["o_job_id"], row["o_created"]) for row in rows]
        self._pending_count += sum(1 for a in admissions if a.new)
        position = 0
        for requests, future in batch:
            if not future.done():
                future.set_result(admissions[position : position + len(requests)])
            position += len(requests)

    # -- claims and transitions --------------------------------------------------------------
    def _claimed(self, rows: Sequence[asyncpg.Record]) -> list[JobRecord]:
        records = []
        for row in rows:
            self._fences[row["job_id"]] = row["fence"]
            records.append(JobRecord.from_row(row))
        return records

    async def start(self, job_id: str, archived_at: str) -> JobRecord | None:
        """Claim one job: ``pending → running`` with this replica's lease, counting the
        attempt and fixing the archive time on the first start. ``None`` when it is not
        claimable now (another replica took it, it ended, it waits for a retry, or its ticket
        has another job running or a report undelivered)."""
        now = self._clock()
        rows = await self._call(
            lambda conn: conn.fetch(
                f"UPDATE {SCHEMA}.jobs j SET state = 'running', attempts = attempts + 1, started_at = $3, updated_at = $3, "
                "next_attempt_at = NULL, archived_at = coalesce(archived_at, $2), lease_owner = $4, "
                "lease_expires_at = $3 + $5, fence = fence + 1 "
                "WHERE job_id = $1 AND state = 'pending' AND coalesce(next_attempt_at, 0) <= $3 "
                f"AND {_NO_OTHER_BUSY_JOB} RETURNING *",
                job_id,
                archived_at,
                now,
                self.owner,
                self.lease_seconds,
            )
        )
        if not rows:
            return None
        self._pending_count = max(0, self._pending_count - 1)
        return self._claimed(rows)[0]

    async def claim_due(self, limit: int, archived_at: str) -> list[JobRecord]:
        """Claim up to ``limit`` jobs that are due — pending (its retry time reached), or
        running under a lease that ran out (its replica died) — oldest first, skipping rows
        other replicas are claiming (``FOR UPDATE SKIP LOCKED``) and tickets with another job
        running or a report undelivered."""
        if limit <= 0:
            return []
        now = self._clock()

        async def op(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], int]:
            rows: list[asyncpg.Record] = await conn.fetch(
                f"WITH due AS (SELECT job_id, state AS was FROM {SCHEMA}.jobs j "
                "WHERE ((state = 'pending' AND coalesce(next_attempt_at, 0) <= $2) "
                "OR (state = 'running' AND lease_expires_at < $2)) "
                f"AND {_NO_OTHER_BUSY_JOB} ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
                f"UPDATE {SCHEMA}.jobs j SET state = 'running', attempts = attempts + 1, started_at = $2, "
                "updated_at = $2, next_attempt_at = NULL, archived_at = coalesce(archived_at, $3), lease_owner = $4, "
                "lease_expires_at = $2 + $5, fence = fence + 1 FROM due WHERE j.job_id = due.job_id "
                "RETURNING j.*, due.was",
                limit,
                now,
                archived_at,
                self.owner,
                self.lease_seconds,
            )
            return rows, await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.jobs WHERE state = 'pending'")

        rows, pending = await self._call(op)
        # Set only now, with no await before the caller gets the jobs: a count that dropped
        # while the claimed jobs were still on their way (the connection's release awaits)
        # made the pool look idle with work in hand.
        self._pending_count = pending
        reclaimed = [row["job_id"] for row in rows if row["was"] == "running"]
        if reclaimed:
            log.warning("reclaimed jobs whose lease ran out", extra={"job_ids": reclaimed})
        return self._claimed(rows)

    async def claim_reports(self, limit: int) -> list[JobRecord]:
        """Take over up to ``limit`` undelivered reports whose lease ran out (their replica
        died or shut down), for this replica to deliver."""
        if limit <= 0:
            return []
        now = self._clock()
        rows = await self._call(
            lambda conn: conn.fetch(
                f"WITH orphan AS (SELECT job_id FROM {SCHEMA}.jobs WHERE NOT reported AND state IN {_TERMINAL} "
                "AND coalesce(lease_expires_at, 0) < $2 ORDER BY finished_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
                f"UPDATE {SCHEMA}.jobs j SET lease_owner = $3, lease_expires_at = $2 + $4, fence = fence + 1 "
                "FROM orphan WHERE j.job_id = orphan.job_id RETURNING j.*",
                limit,
                now,
                self.owner,
                self.lease_seconds,
            )
        )
        return self._claimed(rows)

    async def requeue(self, job_id: str) -> None:
        """``running → pending`` for a run interrupted by shutdown (the attempt does not count);
        the lease is given back and the other replicas are told."""
        await self._write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0), "
            "updated_at = $3, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE job_id = $1 AND fence = $2 AND state = 'running' "
            f"RETURNING job_id, pg_notify('{pg_schema.NOTIFY_CHANNEL}', '')",
            self._clock(),
        )
        self._fences.pop(job_id, None)
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
        await self._write(
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
        self._fences.pop(job_id, None)
        self._pending_count += 1

    async def finish(
        self,
        job_id: str,
        *,
        state: str,
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
        fence = self._fences.get(job_id)
        if fence is None:
            raise LeaseLost(job_id)
        now = self._clock()
        keep = state != "done"
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
                    "output_path = $10, sha256 = $11, finished_at = $12, updated_at = $12, follow_up = false, "
                    "lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END WHERE job_id = $1",
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
                    f"INSERT INTO {SCHEMA}.jobs (job_id, ticket_id, state, reason, force, created_at, updated_at) "
                    "VALUES ($1, $2, 'pending', 'follow_up', $3, $4, $4)",
                    follow_id,
                    row["ticket_id"],
                    row["follow_up_force"],
                    now,
                )
                await conn.execute("SELECT pg_notify($1, '')", pg_schema.NOTIFY_CHANNEL)
                return follow_id

        outcome = await self._call(op)
        if outcome is False:
            self._fences.pop(job_id, None)
            raise LeaseLost(job_id)
        if report is None:
            self._fences.pop(job_id, None)
        if outcome is not None:
            self._pending_count += 1
        return outcome if isinstance(outcome, str) else None

    async def mark_reported(self, job_id: str, *, given_up: str | None = None) -> None:
        """The job's report reached Zammad, or was given up (``given_up`` says why); the lease
        is given back and the ticket's next job becomes claimable (the replicas are told).

        Raises:
            LeaseLost: another replica holds the report now; nothing was written.
        """
        await self._write(
            job_id,
            f"UPDATE {SCHEMA}.jobs SET reported = true, report_error = $3, updated_at = $4, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE job_id = $1 AND fence = $2 "
            f"RETURNING job_id, pg_notify('{pg_schema.NOTIFY_CHANNEL}', '')",
            given_up,
            self._clock(),
        )
        self._fences.pop(job_id, None)

    # -- queries and housekeeping ---------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """One job by id."""
        row = await self._call(
            lambda conn: conn.fetchrow(f"SELECT * FROM {SCHEMA}.jobs WHERE job_id = $1", job_id)
        )
        return JobRecord.from_row(row) if row is not None else None

    async def latest(self, ticket_id: int) -> JobRecord | None:
        """The ticket's most recent job (an active one first)."""
        row = await self._call(
            lambda conn: conn.fetchrow(
                f"SELECT * FROM {SCHEMA}.jobs WHERE ticket_id = $1 "
                "ORDER BY state IN ('pending', 'running') DESC, created_at DESC LIMIT 1",
                ticket_id,
            )
        )
        return JobRecord.from_row(row) if row is not None else None

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
                        f"WHERE j.state IN {_TERMINAL} AND j.reported AND j.finished_at < $1 AND EXISTS "
                        f"(SELECT 1 FROM {SCHEMA}.jobs n WHERE n.ticket_id = j.ticket_id AND n.created_at > j.created_at) "
                        "LIMIT $2)",
                        now - self.retention_seconds,
                        PURGE_BATCH,
                    )
                deleted += count
                if count < PURGE_BATCH and int(jobs.split()[-1]) < PURGE_BATCH:
                    return deleted

        return int(await self._call(op))

    # -- reconciliation (app.reconcile) ---------------------------------------------------------
    async def latest_jobs(self, ticket_ids: Sequence[int]) -> dict[int, JobRecord]:
        """The latest job (an active one first, as :meth:`latest`) of each ticket in
        ``ticket_ids`` that has one, in one statement."""
        ids = sorted(set(ticket_ids))
        if not ids:
            return {}
        rows = await self._call(
            lambda conn: conn.fetch(
                f"SELECT DISTINCT ON (ticket_id) * FROM {SCHEMA}.jobs WHERE ticket_id = ANY($1::bigint[]) "
                "ORDER BY ticket_id, state IN ('pending', 'running') DESC, created_at DESC",
                ids,
            )
        )
        return {row["ticket_id"]: JobRecord.from_row(row) for row in rows}

    @contextlib.asynccontextmanager
    async def sweep_turn(self, name: str, *, min_interval_seconds: float) -> AsyncIterator[bool]:
        """Whether this replica runs sweep ``name`` now (``async with … as mine``): only while it
        holds the sweep's advisory lock, and only when no sweep of that name ended, on any
        replica, within ``min_interval_seconds`` (the ``sweeps`` table). The lock is
        session-level on one pooled connection, kept for the ``async with`` body and released
        after it — or with the connection, should the replica die. The end is recorded
        however the body ends.

        Raises:
            JobStoreUnavailable: the database cannot be reached.
        """
        if self._closed or self._pool is None:
            raise JobStoreUnavailable("the job store is closed")
        lock = "SELECT pg_{}advisory_{}($1::integer, hashtext($2))"
        try:
            conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS)
        except _UNREACHABLE as exc:
            raise self._failed(exc) from exc
        locked = mine = False
        try:
            try:
                locked = await conn.fetchval(lock.format("try_", "lock"), pg_schema.SWEEP_LOCK_CLASS, name)
                last = (
                    await conn.fetchval(f"SELECT finished_at FROM {SCHEMA}.sweeps WHERE name = $1", name)
                    if locked
                    else None
                )
            except _UNREACHABLE as exc:
                raise self._failed(exc) from exc
            mine = bool(locked) and (last is None or last <= self._clock() - min_interval_seconds)
            try:
                yield mine
            finally:
                if mine:
                    with contextlib.suppress(*_UNREACHABLE):
                        await conn.execute(
                            f"INSERT INTO {SCHEMA}.sweeps (name, finished_at, owner) VALUES ($1, $2, $3) "
                            "ON CONFLICT (name) DO UPDATE SET finished_at = excluded.finished_at, "
                            "owner = excluded.owner",
                            name,
                            self._clock(),
                            self.owner,
                        )
        finally:
            if locked:
                with contextlib.suppress(*_UNREACHABLE):
                    await conn.execute(lock.format("", "unlock"), pg_schema.SWEEP_LOCK_CLASS, name)
            await self._pool.release(conn)

    @property
    def unavailable(self) -> str | None:
        """Why the store cannot record jobs now (the database unreachable at the last call),
        else ``None``."""
        if self._closed:
            return "the job store is closed"
        return self._error

    @property
    def pending_count(self) -> int:
        """Pending jobs of all replicas, as last seen (refreshed by every poll)."""
        return self._pending_count
