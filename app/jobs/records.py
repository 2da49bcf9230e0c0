"""What the job store takes and gives: requests, admissions, job records, recovery, errors.

Shared by both backends (:mod:`app.jobs.sqlite`, :mod:`app.jobs.postgres`) and by the worker
pool and the routes. A job moves ``pending → running → done | failed | dead`` (or back to
``pending`` with a ``next_attempt_at`` when a Transient failure is retried); terminal jobs carry
their report (tags and note for Zammad) until it is delivered (the outbox).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from app.errors import ArchiverError


class JobState(StrEnum):
    """Where a job stands: ``jobs.state`` in both stores and ``state`` in ``/jobs/{ticket_id}``
    (the values are what is stored and answered)."""

    PENDING = "pending"
    """Waiting to run: new, coalesced into, put back by a shutdown, or waiting for a retry
    (``next_attempt_at``; an operator's ``/retry`` ends the wait, see :data:`RETRY_REASON`)."""
    RUNNING = "running"
    """A worker runs it (with a shared store: under this replica's lease)."""
    DONE = "done"
    """Ended well: archived, or skipped by the gate (``result`` says which)."""
    FAILED = "failed"
    """Ended with a Permanent failure."""
    DEAD = "dead"
    """Ended with a Transient failure after its last attempt (``WORKFLOW_MAX_ATTEMPTS``)."""


ACTIVE_STATES = (JobState.PENDING, JobState.RUNNING)
"""A ticket has at most one job in one of these states (across all replicas)."""
TERMINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.DEAD)
"""States a job ends in; its report may still wait for delivery (``reported`` false)."""


class OutcomeStatus(StrEnum):
    """How one run of a job ended (:attr:`app.workflow.archive.ArchiveOutcome.status`; the label
    of ``jobs_processed_total``). Not a :class:`JobState`: a ``failed`` run ends its job
    ``failed`` (Permanent) or ``dead`` (Transient, attempts used up), or the job runs again."""

    ARCHIVED = "archived"
    SKIPPED = "skipped"
    FAILED = "failed"


class AdmissionStatus(StrEnum):
    """The job store's answer to a :class:`JobRequest` (:attr:`Admission.status`; the values are
    what the PostgreSQL function ``accept_jobs`` returns)."""

    ACCEPTED = "accepted"
    """A new pending job."""
    COALESCED = "coalesced"
    """Merged into the ticket's pending job, or a follow-up of its running job."""
    DUPLICATE = "duplicate"
    """The delivery id was accepted within its TTL; nothing changes."""
    FULL = "full"
    """Too many pending jobs (``WORKFLOW_QUEUE_MAX``); nothing recorded."""


_JOB_STATES = {state.value: state for state in JobState}
_ADMISSION_STATUSES = {status.value: status for status in AdmissionStatus}


def admission_status(value: str) -> AdmissionStatus:
    """The :class:`AdmissionStatus` named ``value`` as stored or returned by SQL (a dictionary
    look-up: ``AdmissionStatus(value)`` costs ten times more, once per webhook)."""
    return _ADMISSION_STATUSES[value]


RECLAIMED_RUN = "run"
"""The kind of a running job a replica reclaimed after its lease ran out (it runs again here):
a label value of ``jobs_reclaimed_total`` (:attr:`app.jobs.store.JobStore.on_reclaimed`)."""
RECLAIMED_REPORT = "report"
"""The kind of an undelivered report a replica took over after its lease ran out (it is
delivered here): a label value of ``jobs_reclaimed_total``."""
RECLAIM_KINDS = (RECLAIMED_RUN, RECLAIMED_REPORT)


class JobStoreUnavailable(ArchiverError, OSError):
    """The job store cannot make writes durable (SQLite: a WAL sync failed, or the store is
    closed; PostgreSQL: the database cannot be reached). The edge answers 503.

    An :class:`~app.errors.ArchiverError` pinned Transient with code ``job_store_unavailable``,
    so :func:`app.workflow.classify.classify` knows it wherever it ends an attempt (a lease
    check before a write to the ticket, marking a report delivered): the database may come
    back. Still an ``OSError``, as the stores and the edge catch it.
    """

    code = "job_store_unavailable"
    transient = True


RETRY_REASON = "retry"
""":attr:`JobRequest.reason` of an operator's ``POST /retry/{ticket_id}`` (:mod:`app.http.admin`).

Merged into the ticket's pending job, it makes that job a fresh operator request: a job waiting
for its next attempt (``next_attempt_at``, after a Transient failure) is due now instead, and its
``attempts`` count from zero again. The operator retries because the cause was fixed (the share
is back, the token was corrected): the run should not wait out a backoff of up to
``WORKFLOW_RETRY_MAX_SECONDS``, and it gets the ``WORKFLOW_MAX_ATTEMPTS`` runs a ``/retry`` of a
dead job gets (a new job), rather than being the job's last attempt. The job's archive time
(``archived_at``) stays, so it still writes to the first run's path. A webhook or the
reconciliation sweep merged into a waiting job changes neither: Zammad may still be down."""


class LeaseLost(Exception):
    """This replica no longer holds the job's lease (its fencing counter moved on, or this
    replica holds no claim on the job any more), so it writes nothing more for that job.

    Another replica taking the job over is one cause, not the only one: after an outage longer
    than the lease, a replica's own claimer may reclaim its own job, whose first run then ends
    it, and the second run finds no claim left. The message (:attr:`what`) blames another
    replica only when the store saw one hold the job (:attr:`taken_over`).

    Attributes:
        job_id: the job.
        taken_over: the job's lease names another replica now. ``False`` when that is not
            known: no replica holds it now (it ended or was given back since), it names this
            replica, or the database could not be asked.
    """

    def __init__(self, job_id: str, *, taken_over: bool = False) -> None:
        self.job_id = job_id
        self.taken_over = taken_over
        super().__init__(f"job {job_id}: {self.what}")

    @property
    def what(self) -> str:
        """What became of the lease, for the log (without the job id)."""
        if self.taken_over:
            return "the job's lease was taken over by another replica"
        return (
            "the job's lease was lost (it may have been taken over by another replica or "
            "reclaimed after an outage)"
        )


def new_job_id() -> str:
    """A new job id: 32 hex digits (128 random bits)."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class JobRequest:
    """What an ingest or retry asks for: archive ``ticket_id``.

    Not ``frozen``: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, and one is built per webhook. Treat it as immutable all the same.

    Attributes:
        ticket_id: Zammad ticket id.
        delivery_id: ``X-Zammad-Delivery`` (deduped for the TTL), or ``None``.
        reason: ``"webhook"``, ``"retry"`` or ``"reconcile"`` (queued by the sweep, :mod:`app.reconcile`).
        force: re-archive even a ``pdf:signed`` ticket.
    """

    ticket_id: int
    delivery_id: str | None = None
    reason: str = "webhook"
    force: bool = False


@dataclass(slots=True)
class Admission:
    """The store's answer to a :class:`JobRequest` (not ``frozen``, for the reason given
    there; treat it as immutable).

    Attributes:
        status: what became of the request (see :class:`AdmissionStatus`).
        job_id: the job that will do the work (``None`` for ``full``).
        new: whether ``job_id`` is a new job that must be handed to the workers.
        due_now: whether the request (a :data:`RETRY_REASON`) was merged into a job that waited
            for its next attempt and made it due now: the workers must be told. Only the SQLite
            store sets it; with PostgreSQL the store's ``NOTIFY`` tells every replica's claimer.
    """

    status: AdmissionStatus
    job_id: str | None
    new: bool = False
    due_now: bool = False

    @property
    def accepted(self) -> bool:
        """Whether a job will do the work (every status but ``full``)."""
        return self.status != AdmissionStatus.FULL


@dataclass(frozen=True, slots=True)
class Lease:
    """Which replica holds a job of a shared store (PostgreSQL), as read with its row: the
    ``lease`` of ``/jobs/{ticket_id}``. Only a running job, or a finished job whose report is
    not delivered yet, has one (:meth:`JobRecord.from_row` with ``now``).

    Attributes:
        owner: ``lease_owner`` as the store records it: the holding replica's
            ``host:pid:random`` (the host name — a container's id in a container —, its
            process id and 6 random hex digits; no secret).
        expires_at: ``lease_expires_at``, Unix seconds of the holder's clock: when another
            replica may reclaim the job unless the holder renews it first (every quarter lease).
        expired: whether ``expires_at`` had passed at the read (by the reading replica's clock,
            the comparison its claimer makes): the holder stopped renewing — it died, froze or
            lost the database — and the job waits for a replica with a free worker to reclaim it.
    """

    owner: str
    expires_at: float
    expired: bool

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields: ``owner``, ``expires_at``, ``expired``."""
        return {"owner": self.owner, "expires_at": self.expires_at, "expired": self.expired}


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A row of ``jobs`` (times are Unix seconds).

    ``lease`` is set only by a shared store's reads for ``/jobs`` (:meth:`from_row` with
    ``now``) while a replica holds the job; ``None`` otherwise, and always with SQLite."""

    job_id: str
    ticket_id: int
    state: JobState
    reason: str
    force: bool
    delivery_id: str | None
    attempts: int
    next_attempt_at: float | None
    archived_at: str | None
    last_error: str | None
    last_step: str | None
    classification: str | None
    output_path: str | None
    sha256: str | None
    result: str | None
    follow_up: bool
    report: dict[str, Any] | None
    reported: bool
    report_error: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    lease: Lease | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, now: float | None = None) -> JobRecord:
        """Build from a database row (``sqlite3.Row`` or ``asyncpg.Record``: looked up by column name).

        ``now`` (Unix seconds, the store's clock; only for a row with ``lease_owner`` and
        ``lease_expires_at``, i.e. PostgreSQL's): also read the job's :class:`Lease`, when the
        row is held — running, or terminal with its report undelivered (as
        :mod:`app.jobs.pg_leases` counts a row held) — and names an owner."""
        state = _JOB_STATES[row["state"]]
        lease = None
        if now is not None:
            owner, expires_at = row["lease_owner"], row["lease_expires_at"]
            held = state == JobState.RUNNING or (state in TERMINAL_STATES and not row["reported"])
            if held and owner is not None and expires_at is not None:
                lease = Lease(owner, float(expires_at), expires_at < now)
        return cls(
            job_id=row["job_id"],
            ticket_id=row["ticket_id"],
            state=state,
            reason=row["reason"],
            force=bool(row["force"]),
            delivery_id=row["delivery_id"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            archived_at=row["archived_at"],
            last_error=row["last_error"],
            last_step=row["last_step"],
            classification=row["classification"],
            output_path=row["output_path"],
            sha256=row["sha256"],
            result=row["result"],
            follow_up=bool(row["follow_up"]),
            report=orjson.loads(row["report"]) if row["report"] else None,
            reported=bool(row["reported"]),
            report_error=row["report_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            lease=lease,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields for ``/jobs/{ticket_id}``; ``lease`` (:meth:`Lease.describe`) only
        when the record has one (a shared store's held job: never with SQLite)."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "state": self.state,
            "reason": self.reason,
            "force": self.force,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "last_step": self.last_step,
            "classification": self.classification,
            "output_path": self.output_path,
            "sha256": self.sha256,
            "result": self.result,
            "follow_up": self.follow_up,
            "reported": self.reported,
            "report_error": self.report_error,
            "delivery_id": self.delivery_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.lease is not None:
            out["lease"] = self.lease.describe()
        return out


@dataclass(frozen=True, slots=True)
class FailingStreak:
    """How long a ticket has been failing to archive, as of one of its jobs
    (:meth:`app.jobs.store.JobStore.failing_streak`).

    The streak is that job and the ticket's jobs before it back to (not including) the latest
    one that ended ``done`` or ``failed``: the ``dead`` jobs a Transient failure ended, each
    queued again by a webhook, an operator's ``/retry`` or the reconciliation sweep (a new job
    row each time). Both stores answer from the ``jobs`` rows they already keep (``created_at``,
    ``attempts``); the PostgreSQL store's pruning of reported jobs older than its retention
    (30 days) could only make the streak look shorter.

    Attributes:
        since: Unix seconds: ``created_at`` of the streak's first job (when the store clock
            recorded the request that started it).
        attempts: runs of the streak's jobs (their ``attempts`` summed, the asking job's own
            included; an operator's ``/retry`` merged into a waiting job restarts that job's count).
        jobs: how many jobs the streak holds (1: the asking job alone).
    """

    since: float
    attempts: int
    jobs: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> FailingStreak | None:
        """From the row of :func:`failing_streak_sql` (either store); ``None`` for an unknown job."""
        since, attempts, jobs = row
        return None if since is None else cls(float(since), int(attempts), int(jobs))


def failing_streak_sql(table: str, param: str) -> str:
    """The one statement both stores run for :class:`FailingStreak` (``table``: the ``jobs``
    table's name, ``param``: the placeholder of the job id): one row of ``MIN(created_at)``,
    ``SUM(attempts)``, ``COUNT(*)``, the first ``NULL`` when the job is unknown."""
    return (
        f"SELECT MIN(j.created_at), SUM(j.attempts), COUNT(*) FROM {table} c "
        f"JOIN {table} j ON j.ticket_id = c.ticket_id "
        f"WHERE c.job_id = {param} AND j.created_at <= c.created_at AND j.created_at > COALESCE(("
        f"SELECT MAX(b.created_at) FROM {table} b WHERE b.ticket_id = c.ticket_id "
        "AND b.created_at < c.created_at AND b.state IN ('done', 'failed')), -1)"
    )


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a store's ``open()`` found to resume.

    Attributes:
        due: ``(job_id, ticket_id)`` of pending jobs to run now (including jobs that were
            running at the crash).
        scheduled: ``(job_id, ticket_id, next_attempt_at)`` of pending jobs waiting for a retry.
        unreported: terminal jobs whose report (tags, note) was not delivered yet.
        interrupted: how many jobs were running when the service stopped.
    """

    due: list[tuple[str, int]]
    scheduled: list[tuple[str, int, float]]
    unreported: list[JobRecord]
    interrupted: int
