"""How the PostgreSQL job store records webhooks: one ``accept_jobs`` call per turn of the event loop.

Requests that arrive in one turn of the event loop are recorded by one call of the function
``accept_jobs`` (:data:`app.jobs.pg_schema.ACCEPT_FUNCTION`): one round trip, one
transaction, ``synchronous_commit = on`` — a 202 is only answered once the job and its delivery
id are committed and flushed. Each caller's requests form a group that keeps its
all-or-nothing rule on capacity (``/ingest/batch``). A delivery id is deduplicated across
replicas; one active job per ticket is a unique index.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from app.jobs.pg_database import PgDatabase
from app.jobs.pg_schema import SCHEMA
from app.jobs.records import Admission, JobRequest, JobStoreUnavailable, admission_status, new_job_id

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""serialization_failure, deadlock_detected: the admission batch is tried again."""
ACCEPT_TRIES = 5
"""How often one batch is tried in all (the first time and the retries)."""

_ACCEPT_SQL = (
    f"SELECT o_status, o_job_id, o_created FROM {SCHEMA}.accept_jobs("
    "$1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::integer[], $6::text[], "
    "$7::float8, $8::float8, $9::bigint)"
)

Pending = list[tuple[list[JobRequest], asyncio.Future[list[Admission]]]]
"""Queued groups of requests with the futures their callers await."""


class AdmissionQueue:
    """Queues admission requests and records each turn's in one ``accept_jobs`` call.

    Args:
        db: the store's database.
        delivery_ttl_seconds: how long a delivery id counts as seen.
        max_pending: most pending jobs (all replicas together).
        clock: Unix seconds.
        on_admitted: called with each committed batch's admissions (the store counts its new
            pending jobs).
    """

    def __init__(
        self,
        db: PgDatabase,
        *,
        delivery_ttl_seconds: float,
        max_pending: int,
        clock: Callable[[], float],
        on_admitted: Callable[[list[Admission]], None],
    ) -> None:
        self._db = db
        self.delivery_ttl = delivery_ttl_seconds
        self.max_pending = max_pending
        self._clock = clock
        self._on_admitted = on_admitted
        self._queued: Pending = []
        self._flushing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.commits = 0
        """Admission transactions committed so far."""

    def accept_many(self, requests: list[JobRequest]) -> asyncio.Future[list[Admission]]:
        """Queue ``requests`` (one group) for this turn's ``accept_jobs`` call.

        Returns a future with one :class:`Admission` per request, in order, set once the
        transaction is committed.

        Raises (through the future):
            JobStoreUnavailable: the store is closed, or the database cannot be reached.
            asyncpg.PostgresError: the statement failed (after :data:`ACCEPT_TRIES` tries for
                a serialization failure or a deadlock).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Admission]] = loop.create_future()
        if self._db.closed:
            future.set_exception(JobStoreUnavailable("the job store is closed"))
            return future
        self._queued.append((requests, future))
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            loop.create_task(self._flush())
        return future

    async def drained(self) -> None:
        """Wait until nothing is queued and no ``accept_jobs`` call is under way."""
        await self._idle.wait()

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._accept_batch(batch)
        finally:
            self._flushing = False
            self._idle.set()

    async def _accept_batch(self, batch: Pending) -> None:
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
                    rows = await self._db.call(lambda conn: conn.fetch(_ACCEPT_SQL, *args))
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
        admissions = [
            Admission(admission_status(row["o_status"]), row["o_job_id"], row["o_created"]) for row in rows
        ]
        self._on_admitted(admissions)
        position = 0
        for requests, future in batch:
            if not future.done():
                future.set_result(admissions[position : position + len(requests)])
            position += len(requests)
