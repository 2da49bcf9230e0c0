"""The running service: the parts the lifespan builds and the routes reach.

:func:`app.main.create_app` makes one :class:`Runtime` per application; its lifespan fills in
the worker pool, the job store, the signer and the workflow, and the routes
(:func:`app.http.routes.build_routes`) are given the same object, typed. The other pieces here
join those parts: :class:`ArchiveRunner` lets the worker pool run the archive workflow, and
:func:`open_spool` makes the folder for the per-job working files.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from app.config import Settings
from app.errors import SigningError
from app.jobs.pool import WorkerPool
from app.jobs.records import FailingStreak, JobRecord, JobStoreUnavailable
from app.jobs.store import JobStore
from app.observability.metrics import Metrics
from app.render.coverage import FontCoverage
from app.storage.probe import StorageProbe
from app.workflow.archive import ArchiveOutcome, ArchiveWorkflow, Guard, Report
from app.workflow.originals import Attempt
from app.workflow.ports import SignerPort

log = logging.getLogger("app.workflow")

SPOOL_FOLDER = "spool"
"""The folder under ``STATE_DIR`` for per-job working files (snapshot, rendered and signed PDF)."""


@dataclass
class Runtime:
    """What the routes and the lifespan share: settings, metrics and live components.

    ``pool``, ``store``, ``signer`` and ``workflow`` are ``None`` until the lifespan has
    started them (a request that arrives before is answered 503 ``not_started``).
    """

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: WorkerPool | None = None
    store: JobStore | None = None
    signer: SignerPort | None = None
    workflow: ArchiveWorkflow | None = None
    startup_error: str | None = None
    """Why the lifespan could not start (``serve`` prints it as its one line), else ``None``."""
    font_check: asyncio.Task[FontCoverage] | None = None
    """The start check of which scripts the fonts cover (:mod:`app.render.coverage`), run in a
    render process; ``/healthz?deep=true`` reports its result."""
    storage_probe: StorageProbe = field(default_factory=StorageProbe)
    """The readiness check's test write under the storage root, shared by concurrent probes
    and reused for a second (:mod:`app.storage.probe`)."""

    def signer_error(self) -> str | None:
        """Why the signer is not usable, or ``None`` when it is (or signing is off).

        A signer whose key could not be loaded is replaced by a stand-in that carries the load
        error as ``error`` (a :class:`~app.errors.SigningError`) and raises it on every job.
        """
        if self.signer is None:
            return "not loaded yet"
        error = getattr(self.signer, "error", None)
        return str(error) if isinstance(error, SigningError) else None


FailingStreakOf = Callable[[str], Awaitable[FailingStreak | None]]
"""The job store's :meth:`~app.jobs.store.JobStore.failing_streak`: a job id → since when its
ticket has been failing to archive."""


class ArchiveRunner:
    """Adapts :class:`ArchiveWorkflow` to the worker pool's :class:`~app.jobs.pool.JobRunner`.

    Args:
        workflow: the archive workflow.
        max_attempts: ``WORKFLOW_MAX_ATTEMPTS``.
        give_up_seconds: ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS`` in seconds (see
            :class:`~app.workflow.originals.Attempt`).
        failing_streak: the store's :meth:`~app.jobs.store.JobStore.failing_streak`, asked on a
            job's last attempt only; ``None``: the job's own ``created_at`` is the streak's start.
        clock: Unix seconds (the stores' clock).
    """

    def __init__(
        self,
        workflow: ArchiveWorkflow,
        *,
        max_attempts: int,
        give_up_seconds: float = 0.0,
        failing_streak: FailingStreakOf | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workflow = workflow
        self.max_attempts = max_attempts
        self.give_up_seconds = give_up_seconds
        self.failing_streak = failing_streak
        self.clock = clock

    async def attempt(self, job: JobRecord) -> Attempt:
        """The job's run as the downloads see it (:class:`~app.workflow.originals.Attempt`).

        Only a last attempt with a waiting time asks the store how long the ticket has been
        failing: before its last attempt a job never gives up. A store that cannot answer
        (``JobStoreUnavailable``) leaves the job's own age, which gives up later, never sooner.
        """
        attempt = Attempt(job.attempts, self.max_attempts, self.give_up_seconds)
        if not attempt.last or self.give_up_seconds <= 0:
            return attempt
        since, runs = job.created_at, job.attempts
        if self.failing_streak is not None:
            try:
                streak = await self.failing_streak(job.job_id)
            except JobStoreUnavailable as exc:
                log.warning(
                    "failing streak not read; the job's own age counts",
                    extra={"job_id": job.job_id, "ticket_id": job.ticket_id, "error": str(exc)},
                )
                streak = None
            if streak is not None:
                since, runs = min(since, streak.since), max(runs, streak.attempts)
        return replace(attempt, failing_seconds=max(0.0, self.clock() - since), runs=runs)

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        """Run the job's archive.

        Every job runs with ``resume=True``: the store lets one job per ticket run at a time
        (with several replicas too: a run needs the job's lease), so a ``pdf:processing`` tag
        found when a job starts was left by an interrupted run (a crash, a replica that died,
        or a shutdown whose tag revert did not reach Zammad) — the job takes it over instead
        of leaving the ticket stuck.

        ``guard``: see :data:`app.workflow.archive.Guard` (the pool's lease check).
        """
        archived_at = datetime.fromisoformat(job.archived_at) if job.archived_at else None
        return await self.workflow.execute(
            job.ticket_id,
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            force=job.force,
            resume=True,
            archived_at=archived_at,
            guard=guard,
            attempt=await self.attempt(job),
        )

    def report(self, job: JobRecord, outcome: ArchiveOutcome, *, gave_up: bool) -> Report | None:
        """The job's final tags and note."""
        return self.workflow.report(
            outcome, job_id=job.job_id, delivery_id=job.delivery_id, attempts=job.attempts, gave_up=gave_up
        )

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        """Write the report to the ticket (idempotent; ``fresh`` and ``guard`` as for
        :meth:`ArchiveWorkflow.deliver`)."""
        await self.workflow.deliver(job.ticket_id, report, job_id=job.job_id, fresh=fresh, guard=guard)


def open_spool(settings: Settings) -> tuple[Path, bool]:
    """The folder for per-job working files, emptied: ``STATE_DIR/spool`` with a durable state
    (local disk, see the runbook), else a new temporary folder. Returns it and whether it is
    temporary (remove it at shutdown).

    Leftovers in ``STATE_DIR/spool`` are from jobs a crash interrupted; the job store runs
    those jobs again from the start, so they are removed.

    Raises:
        OSError: the folder cannot be created.
    """
    if settings.state_durable and settings.state_dir is not None:
        spool = settings.state_dir / SPOOL_FOLDER
        shutil.rmtree(spool, ignore_errors=True)
        spool.mkdir(parents=True, exist_ok=True)
        return spool, False
    return Path(tempfile.mkdtemp(prefix="zammad-pdf-archiver-spool-")), True


__all__ = ["SPOOL_FOLDER", "ArchiveRunner", "Runtime", "open_spool"]
