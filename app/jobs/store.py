"""The job store's interface, and the choice of backend from the settings.

Every accepted webhook is a job in the store before ``/ingest`` answers 202; its delivery id
is recorded in the same transaction. One ticket has at most one active (pending or running)
job: a request for a ticket with a pending job is merged into it (an operator's retry also
ends its wait for a next attempt, :data:`~app.jobs.records.RETRY_REASON`), one for a running
ticket sets ``follow_up`` and a new pending job is created when the running one ends, in the
same transaction. Terminal jobs carry their report (tags and note) until it is delivered: the
outbox. The records are in :mod:`app.jobs.records`.

Two backends implement :class:`JobStore`, chosen by ``JOB_STORE_URL``
(:func:`create_job_store`):

- unset: :class:`~app.jobs.sqlite.SqliteJobStore`, one file in ``STATE_DIR``, for one
  instance (the default);
- ``postgresql://…``: :class:`~app.jobs.postgres.PostgresJobStore`, shared by several
  replicas (claims with leases and fencing, ``LISTEN``/``NOTIFY``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from app.config import Settings
from app.jobs.records import Admission, FailingStreak, JobRecord, JobRequest, JobState, LeaseLost, Recovery

SQLITE_FILE = "jobs.sqlite3"
"""The SQLite store's file name in ``STATE_DIR``."""


class JobStore(Protocol):
    """What the worker pool and the routes need from a job store.

    ``shared`` says whether several replicas use it: then the pool also claims work that
    other replicas accepted or left behind (:meth:`claim_due`, :meth:`claim_reports`) when
    :attr:`work_available` is set or every poll interval, awaits :meth:`confirm_lease` before
    each write to a ticket, and sets :attr:`on_lease_lost` to cancel a run another replica took
    over. A store of one instance (SQLite) holds every job it runs: there those members do
    nothing.
    """

    shared: bool
    max_pending: int
    on_lease_lost: Callable[[LeaseLost], None] | None
    """Called when the store finds that a job's lease was lost (taken over by another replica,
    or it is not known who: :attr:`~app.jobs.records.LeaseLost.taken_over`)."""
    on_reclaimed: Callable[[str, int], None] | None
    """Called with a kind (:data:`~app.jobs.records.RECLAIM_KINDS`: ``run``, ``report``) and a
    count when this replica took over jobs or reports whose lease ran out (a shared store only;
    the ``jobs_reclaimed_total`` counter)."""

    @property
    def work_available(self) -> asyncio.Event | None:
        """Set when work may be claimable (a shared store's ``NOTIFY``); ``None``: never."""
        ...

    async def open(self) -> Recovery: ...

    async def close(self) -> None: ...

    async def accept(self, request: JobRequest) -> Admission: ...

    def accept_many(self, requests: list[JobRequest]) -> Awaitable[list[Admission]]: ...

    async def start(self, job_id: str, archived_at: str) -> JobRecord | None: ...

    async def claim_due(self, limit: int, archived_at: str) -> list[JobRecord]: ...

    async def claim_reports(self, limit: int) -> list[JobRecord]: ...

    async def confirm_lease(self, job_id: str) -> None:
        """Raise :class:`~app.jobs.records.LeaseLost` unless this replica still holds ``job_id``
        (and extend its lease)."""
        ...

    async def requeue(self, job_id: str) -> None: ...

    async def retry_later(
        self, job_id: str, *, at: float, error: str, step: str, classification: str
    ) -> None: ...

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
    ) -> str | None: ...

    async def mark_reported(self, job_id: str, *, given_up: str | None = None) -> None: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def latest(self, ticket_id: int) -> JobRecord | None: ...

    async def failing_streak(self, job_id: str) -> FailingStreak | None:
        """Since when the job's ticket has been failing to archive (:class:`FailingStreak`),
        ``None`` for an unknown job. Read-only.

        Raises:
            JobStoreUnavailable: the store cannot be read.
        """
        ...

    async def purge_deliveries(self) -> int: ...

    # The reconciliation sweep (app.reconcile): each ticket's latest job, and whose turn it is.
    async def latest_jobs(self, ticket_ids: Sequence[int]) -> dict[int, JobRecord]: ...

    def sweep_turn(self, name: str, *, min_interval_seconds: float) -> AbstractAsyncContextManager[bool]: ...

    @property
    def unavailable(self) -> str | None: ...

    @property
    def pending_count(self) -> int: ...


def create_job_store(settings: Settings, *, settings_fingerprint: str | None = None) -> JobStore:
    """The job store the settings ask for: PostgreSQL when ``JOB_STORE_URL`` is set, else
    SQLite in ``STATE_DIR`` (in memory with ``STATE_DURABLE=false``). Not opened yet.

    ``settings_fingerprint`` (:func:`app.config_fingerprint.settings_fingerprint`) is given to
    the PostgreSQL store, which compares it with the other replicas'; SQLite ignores it."""
    if settings.job_store_url is not None:
        from app.jobs.postgres import PostgresJobStore

        return PostgresJobStore(
            settings.job_store_url.reveal(),
            delivery_ttl_seconds=settings.workflow_delivery_id_ttl_seconds,
            max_pending=settings.workflow_queue_max,
            lease_seconds=settings.job_lease_seconds,
            settings_fingerprint=settings_fingerprint,
        )
    from app.jobs.sqlite import SqliteJobStore

    path = (
        settings.state_dir / SQLITE_FILE
        if settings.state_durable and settings.state_dir is not None
        else None
    )
    return SqliteJobStore(
        path,
        delivery_ttl_seconds=settings.workflow_delivery_id_ttl_seconds,
        max_pending=settings.workflow_queue_max,
    )
