"""The worker pool: a fixed number of workers fed by an ``asyncio.Queue``, backed by the job store.

Admission goes through the job store, :class:`app.jobs.store.JobStore` (committed before
``/ingest`` answers); the queue is only the in-process hand-off of job ids to the workers. A worker
takes a job, runs it (:meth:`JobRunner.execute`), decides what comes next
(:mod:`app.jobs.outcomes`: done, retry later (Transient, attempts left), dead (Transient,
attempts used up) or failed (Permanent)), records that, and hands the job's report to a
delivery task that retries until Zammad takes it. The worker takes its next job at once
(``WORKERS`` bounds archive runs, not report deliveries); the ticket is free for its next
job only once its report is delivered: one job per ticket at a time, across all workers.

At start the store's recovery is resumed: interrupted jobs run again, scheduled retries
wait for their time, undelivered reports are delivered. An operator's ``/retry`` merged into a
job waiting for its retry ends the wait: the job runs now (with a shared store, the claimer
takes it on the store's ``NOTIFY``).

With a shared store (PostgreSQL, several replicas) a job accepted here is still handed over
in memory, but the store decides who runs it: a run starts only with a claim (a lease), and a
claimer task also takes work the other replicas accepted, retried or left behind — when the
store's ``NOTIFY`` says so, and every :data:`CLAIM_POLL_SECONDS` — as long as a
worker is free. A job whose lease another replica took over is cancelled here and writes
nothing more (:class:`~app.jobs.records.LeaseLost`): not to the store (fenced writes), and
not to the ticket — runs and deliveries await a lease check (the workflow's guard) before
their writes to Zammad, so a replica that stalled past its lease and wakes up puts no tag
back and posts no note a second time. A run's end that meets a database outage is kept and
recorded once the database is back.

This module stays one class of about 500 lines on purpose: the workers,
the report deliveries, the claimer and the retry scheduler share the per-ticket bookkeeping
(the busy tickets and what waits for them, the running jobs and their tasks); split, each part
would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from app.errors import ArchiverError
from app.jobs.outcomes import RetryPolicy, job_end
from app.jobs.records import Admission, JobRecord, JobRequest, JobState, JobStoreUnavailable, LeaseLost
from app.jobs.store import JobStore
from app.observability.logging import job_log_context
from app.workflow.archive import HANDED_OVER, ArchiveOutcome
from app.workflow.classify import classify
from app.workflow.ports import Guard
from app.workflow.report import Report, UndeliverableReport

log = logging.getLogger("app.jobs")
T = TypeVar("T")

PURGE_INTERVAL_SECONDS = 60.0
CLAIM_POLL_SECONDS = 1.0
"""With a shared store: how often the claimer looks for work without a NOTIFY."""
RECORD_RETRY_MAX_SECONDS = 2.0
"""With a shared store: longest pause between two attempts to record a claimed job's end, retry
or give-back while the database is unreachable — so it is recorded within this many seconds of
the database answering again (a longer backoff kept the job ``running`` and the ticket
``pdf:processing`` that much longer, with the database up). One connection attempt per held
job every 2 s costs the database nothing."""


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever comes first.

    A cancellation always ends the wait: ``asyncio.wait_for`` of Python 3.11 swallows one that
    arrives in the same turn as the event is set (a NOTIFY as ``stop()`` cancels the claimer),
    and the task then lived on, with ``stop()`` waiting for it forever.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


class JobRunner(Protocol):
    """What the pool needs from the workflow (implemented by :class:`app.runtime.ArchiveRunner`).

    ``guard`` (with a shared store): awaited before each write to the ticket; raises
    :class:`LeaseLost` once another replica holds the job (see :data:`app.workflow.ports.Guard`).
    """

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome: ...

    def report(self, job: JobRecord, outcome: ArchiveOutcome, *, gave_up: bool) -> Report | None: ...

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _Work:
    kind: str  # "run" or "deliver"
    job_id: str
    ticket_id: int
    claimed: JobRecord | None = None  # already claimed from a shared store (lease held)


class WorkerPool:
    """Runs jobs from the store with ``workers`` concurrent workers.

    Args:
        store: the job store (opened by :meth:`start`, not closed by the pool).
        runner: executes, reports and delivers jobs.
        workers: number of worker tasks (``WORKERS``).
        retry: the retry policy.
        on_outcome: ``callback(job, outcome, seconds)`` after each run (metrics).
        deliver_backoff_max_seconds: longest pause between report deliveries.
    """

    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        *,
        workers: int,
        retry: RetryPolicy,
        on_outcome: Callable[[JobRecord, ArchiveOutcome, float], None] | None = None,
        deliver_backoff_max_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.retry = retry
        self._workers = workers
        self._on_outcome = on_outcome
        self._deliver_max = deliver_backoff_max_seconds
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._busy: dict[int, list[_Work]] = {}
        self._none_busy = asyncio.Event()  # set while no ticket is busy (_busy is empty)
        self._none_busy.set()
        self._running: dict[int, str] = {}
        self._schedule: list[tuple[float, str, int]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._accepting = False
        self._runs: dict[str, asyncio.Task[ArchiveOutcome]] = {}
        self._lost: dict[str, LeaseLost] = {}
        self.shutting_down = False

    # -- admission ---------------------------------------------------------------------------
    async def submit(self, request: JobRequest) -> Admission:
        """Record ``request`` in the store and hand a new job to the workers."""
        return (await self.submit_many([request]))[0]

    async def submit_many(self, requests: list[JobRequest]) -> list[Admission]:
        """Record several requests in one transaction (all refused when they do not fit)."""
        if not self._accepting:
            raise ShuttingDown()
        admissions = await self.store.accept_many(requests)
        for request, admission in zip(requests, admissions, strict=True):
            if admission.new and admission.job_id is not None:
                self._queue.put_nowait(_Work("run", admission.job_id, request.ticket_id))
            elif admission.due_now and admission.job_id is not None:
                # An operator's retry ended the job's wait for its next attempt (RETRY_REASON).
                self._unschedule(admission.job_id)
                self._queue.put_nowait(_Work("run", admission.job_id, request.ticket_id))
        return admissions

    def _unschedule(self, job_id: str) -> None:
        """Drop ``job_id``'s time from the retry schedule: the job runs now (an operator's
        retry ended its wait, or a claim took it), so that time is stale. A stale time left
        behind would run nothing (the store starts no job before its ``next_attempt_at``), but
        would keep the pool from looking :attr:`idle` until it passed."""
        kept = [entry for entry in self._schedule if entry[1] != job_id]
        if len(kept) != len(self._schedule):
            heapq.heapify(kept)
            self._schedule = kept

    # -- introspection ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Jobs waiting (due now or scheduled for a retry)."""
        return self.store.pending_count

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def free_slots(self) -> int:
        """How many more new jobs the store takes."""
        return max(0, self.store.max_pending - self.store.pending_count)

    @property
    def saturated(self) -> bool:
        """Whether no new job fits."""
        return self.free_slots == 0

    @property
    def idle(self) -> bool:
        """Nothing queued, running, scheduled or being delivered."""
        return not self._busy and self._queue.empty() and not self._schedule and self.store.pending_count == 0

    async def status(self, ticket_id: int) -> dict[str, Any]:
        """The ticket's latest job from the store (``state``: pending, running, done, failed,
        dead; attempts, next attempt, last error, output path, timestamps; with a shared store,
        ``lease`` while a replica holds the job: :class:`~app.jobs.records.Lease`), or
        ``{"state": "none"}``; plus ``in_flight`` (with a shared store: ``running`` anywhere,
        also under a lease that ran out — ``lease.expired`` tells that one apart)."""
        record = await self.store.latest(ticket_id)
        out: dict[str, Any] = record.describe() if record is not None else {"state": "none"}
        # With a shared store the job may run on another replica: the store's state says it.
        out["in_flight"] = ticket_id in self._running or (
            self.store.shared and record is not None and record.state == JobState.RUNNING
        )
        return out

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, resume what it recovered, start workers and the scheduler."""
        recovery = await self.store.open()
        for record in recovery.unreported:
            self._queue.put_nowait(_Work("deliver", record.job_id, record.ticket_id))
        for job_id, ticket_id in recovery.due:
            self._queue.put_nowait(_Work("run", job_id, ticket_id))
        for job_id, ticket_id, at in recovery.scheduled:
            heapq.heappush(self._schedule, (at, job_id, ticket_id))
        if recovery.interrupted or recovery.unreported or recovery.due or recovery.scheduled:
            log.info(
                "resuming jobs",
                extra={
                    "interrupted": recovery.interrupted,
                    "due": len(recovery.due),
                    "scheduled": len(recovery.scheduled),
                    "unreported": len(recovery.unreported),
                },
            )
        self._accepting = True
        self._tasks = [
            asyncio.create_task(self._work(), name=f"archive-worker-{i}") for i in range(self._workers)
        ]
        self._tasks.append(asyncio.create_task(self._scheduler(), name="retry-scheduler"))
        if self.store.shared:
            self.store.on_lease_lost = self._lease_lost
            self._tasks.append(asyncio.create_task(self._claimer(), name="job-claimer"))

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking jobs; let running jobs (and their reports) finish for ``grace_seconds``; then cancel.

        A cancelled run goes back to pending in the store (and its ticket gets its trigger
        tag back); queued and scheduled jobs stay in the store for the next start.
        """
        self._accepting = False
        self.shutting_down = True
        with contextlib.suppress(TimeoutError):  # runs and their report deliveries
            async with asyncio.timeout(grace_seconds):
                await self._none_busy.wait()
        tasks = [*self._tasks, *self._deliveries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []

    # -- workers -----------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            work = await self._queue.get()
            if self.shutting_down:
                continue
            if work.ticket_id in self._busy:
                self._busy[work.ticket_id].append(work)  # one job per ticket at a time
                continue
            self._busy[work.ticket_id] = []
            self._none_busy.clear()
            with job_log_context(job_id=work.job_id, ticket_id=work.ticket_id):
                await self._handle(work)

    async def _handle(self, work: _Work) -> None:
        """Run or deliver ``work``; a run's report is delivered by a task of its own (which
        copies the job's log context)."""
        delivery = None
        try:
            if work.kind == "deliver":
                record = work.claimed or await self.store.get(work.job_id)
                if record is not None and record.report is not None and not record.reported:
                    await self._deliver(record, Report.from_dict(record.report))
            else:
                delivery = await self._run(work)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job handling failed", extra={"job_id": work.job_id, "ticket_id": work.ticket_id})
        finally:
            if delivery is None:
                self._release(work.ticket_id)
        if delivery is not None:
            # The report goes to Zammad alongside: the worker takes the next job now, and
            # the ticket stays busy (its follow-up waits) until the report is delivered.
            task = asyncio.create_task(
                self._deliver_then_release(work, delivery), name=f"report-{work.job_id}"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    def _release(self, ticket_id: int) -> None:
        """The ticket is free: queue what waited for it."""
        for waiting in self._busy.pop(ticket_id, []):
            self._queue.put_nowait(waiting)
        if not self._busy:
            self._none_busy.set()

    async def _deliver_then_release(self, work: _Work, delivery: Coroutine[Any, Any, None]) -> None:
        try:
            await delivery
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "report delivery failed", extra={"job_id": work.job_id, "ticket_id": work.ticket_id}
            )
        finally:
            self._release(work.ticket_id)

    async def _run(self, work: _Work) -> Coroutine[Any, Any, None] | None:
        """Run one job to its end in the store; the delivery of its report, not yet awaited
        (``None`` when there is nothing to deliver)."""
        record = work.claimed or await self.store.start(work.job_id, datetime.now(UTC).isoformat())
        if record is None:
            return None
        self._running[record.ticket_id] = record.job_id
        started = time.perf_counter()
        try:
            if self.store.shared:  # a task of its own, so that a lost lease can cancel the run alone
                run = self._runs[record.job_id] = asyncio.ensure_future(
                    self.runner.execute(record, guard=self._guard(record.job_id))
                )
                outcome = await run
            else:
                outcome = await self.runner.execute(record)
        except LeaseLost as lost:  # the guard, before the run's first write to the ticket
            log.warning(
                "run stopped before writing to the ticket: %s",
                lost.what,
                extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
            )
            return None
        except JobStoreUnavailable:  # the guard could not confirm the lease: nothing written, give it back
            log.warning(
                "run stopped before writing to the ticket: the job store is unavailable; giving the job back",
                extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
            )
            with contextlib.suppress(LeaseLost):
                await self._recorded(record, lambda: self.store.requeue(record.job_id))
            return None
        except asyncio.CancelledError:
            taken = self._lost.get(record.job_id)
            if taken is not None:  # this replica's lease is gone: nothing to give back
                log.warning(
                    "run cancelled: %s",
                    taken.what,
                    extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
                )
                return None
            try:
                await asyncio.shield(self.store.requeue(record.job_id))
            except LeaseLost:
                pass
            except JobStoreUnavailable:  # the lease runs out and another replica runs it again
                log.warning(
                    "run interrupted; the job could not be given back: the job store is unavailable",
                    extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
                )
            raise  # the cancellation, not the store's error: the worker must end
        finally:
            self._running.pop(record.ticket_id, None)
            self._runs.pop(record.job_id, None)
            self._lost.pop(record.job_id, None)
        if self._on_outcome is not None:
            self._on_outcome(record, outcome, time.perf_counter() - started)

        failure = outcome.failure
        end = job_end(outcome, attempts=record.attempts, max_attempts=self.retry.max_attempts)
        if end is None:  # a Transient failure with attempts left
            assert failure is not None
            at = time.time() + self.retry.delay(record.attempts, retry_after=failure.retry_after)
            try:
                await self._recorded(
                    record,
                    lambda: self.store.retry_later(
                        record.job_id,
                        at=at,
                        error=failure.cause,
                        step=outcome.reason,
                        classification=failure.classification.value,
                    ),
                )
            except LeaseLost as lost:
                log.warning(
                    "retry not recorded: %s",
                    lost.what,
                    extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
                )
                return None
            heapq.heappush(self._schedule, (at, record.job_id, record.ticket_id))
            self._wake.set()
            log.warning(
                "job will be retried",
                extra={
                    "job_id": record.job_id,
                    "ticket_id": record.ticket_id,
                    "attempt": record.attempts,
                    "next_attempt_at": at,
                },
            )
            return None

        report = self.runner.report(record, outcome, gave_up=end.gave_up)
        try:
            follow_up = await self._recorded(
                record,
                lambda: self.store.finish(
                    record.job_id,
                    state=end.state,
                    result=end.result,
                    report=report.as_dict() if report else None,
                    error=failure.cause if failure else None,
                    step=outcome.reason if failure else None,
                    classification=failure.classification.value if failure else None,
                    output_path=outcome.stored.relative_path if outcome.stored else None,
                    sha256=outcome.stored.sha256 if outcome.stored else None,
                ),
            )
        except LeaseLost as lost:
            log.warning(
                "outcome not recorded: %s",
                lost.what,
                extra={"job_id": record.job_id, "ticket_id": record.ticket_id, "status": outcome.status},
            )
            return None
        if follow_up is not None:
            self._busy[record.ticket_id].append(_Work("run", follow_up, record.ticket_id))
        if report is None:
            return None
        # An archive an earlier run of this job stored (a restored job store) may have its note
        # on the ticket already: its delivery looks first, as a repeated one does.
        already_stored = outcome.stored is not None and outcome.stored.already_stored
        return self._deliver(record, report, fresh=not already_stored)

    async def _recorded(self, record: JobRecord, write: Callable[[], Awaitable[T]]) -> T:
        """``write()``, a store write that records where a claimed job stands (its end, its
        retry), done again while a shared store is unavailable (the database unreachable), with
        backoff (0.5 s doubling up to :data:`RECORD_RETRY_MAX_SECONDS`), until it succeeds or
        raises anything else (:class:`LeaseLost`: another replica holds the job now). The
        first failed attempt is one warning line naming the cause (no traceback: the outage is
        the store's, which logs it once), the later ones are DEBUG lines.

        The outcome waits here meanwhile and the lease is renewed again once the database is
        back: the job is not left ``running`` under a lease this replica keeps renewing. A
        shutdown cancels the wait; the lease then runs out and the job is run again elsewhere
        (its archive is found, not written twice). With a store of one instance (SQLite) the
        error is raised at once, as before.
        """
        delay = 0.5
        level = logging.WARNING
        while True:
            try:
                return await write()
            except JobStoreUnavailable as exc:
                if not self.store.shared:
                    raise
                log.log(
                    level,
                    "job store unavailable; recording the job's outcome again",
                    extra={
                        "job_id": record.job_id,
                        "ticket_id": record.ticket_id,
                        "retry_in": delay,
                        "cause": str(exc),
                    },
                )
            level = logging.DEBUG  # once per job and outage is enough at WARNING
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_SECONDS)

    async def _deliver(self, record: JobRecord, report: Report, *, fresh: bool = False) -> None:
        """Deliver until Zammad takes it (backoff doubling up to the maximum); a shutdown
        leaves it undelivered in the store, for the next start. An undeliverable report
        (ticket gone) is logged and given up. Each failed attempt is logged as one line with
        its classification, code and cause; a traceback only for an error that is not an
        :class:`~app.errors.ArchiverError` (a defect, not Zammad's answer or the store's
        outage, :class:`JobStoreUnavailable`: Transient ``job_store_unavailable``).

        ``fresh``: the job has just ended in this process and its report was never
        delivered (only the first attempt is; a report from the store's outbox never is).
        """
        delay = 1.0
        while True:
            first, fresh = fresh, False  # a retry may follow a post that reached Zammad
            try:
                if self.store.shared:
                    await self.runner.deliver(record, report, fresh=first, guard=self._guard(record.job_id))
                else:
                    await self.runner.deliver(record, report, fresh=first)
                await self.store.mark_reported(record.job_id)
                return
            except UndeliverableReport as exc:
                log.error(
                    "report given up",
                    extra={"job_id": record.job_id, "ticket_id": record.ticket_id, "cause": str(exc)},
                )
                with contextlib.suppress(LeaseLost):
                    await self.store.mark_reported(record.job_id, given_up=str(exc))
                return
            except LeaseLost as lost:  # its lease holder delivers it (the note is posted once per job id)
                log.warning(
                    "report not delivered here: %s",
                    lost.what,
                    extra={"job_id": record.job_id, "ticket_id": record.ticket_id},
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # An ArchiverError (Zammad's 401, a 5xx, a timeout; a shared job store's outage
                # in the lease check or marking the report delivered, which the store logs
                # itself) is an expected, classified failure: one line with its cause. Anything
                # else is a defect: its traceback too.
                failure = classify(exc)
                log.warning(
                    "report not delivered; retrying",
                    exc_info=not isinstance(exc, ArchiverError),
                    extra={
                        "job_id": record.job_id,
                        "ticket_id": record.ticket_id,
                        "retry_in": delay,
                        "classification": failure.classification.value,
                        "code": failure.code,
                        "cause": failure.cause,
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._deliver_max)

    def _guard(self, job_id: str) -> Guard:
        """The check a run or a delivery awaits before writing to the ticket (shared store
        only): this replica still holds ``job_id``'s lease (extended by the check); raises
        :class:`LeaseLost` or :class:`JobStoreUnavailable` otherwise."""
        return lambda: self.store.confirm_lease(job_id)

    def _lease_lost(self, lost: LeaseLost) -> None:
        """The store found that this replica lost ``lost.job_id``'s lease (another replica took
        it over, as a rule): cancel its run here, without putting the ticket's tags back
        (:data:`~app.workflow.archive.HANDED_OVER`)."""
        run = self._runs.get(lost.job_id)
        if run is not None and not run.done():
            self._lost[lost.job_id] = lost
            run.cancel(HANDED_OVER)  # the workflow leaves the tags to the new run

    async def _claimer(self) -> None:
        """With a shared store: claim due work (new, retried, or left by a replica that died
        or stopped) and undelivered reports whose lease ran out, while workers are free; on
        the store's NOTIFY, else every :data:`CLAIM_POLL_SECONDS`."""
        event = self.store.work_available
        assert event is not None
        while True:
            await _wait(event, CLAIM_POLL_SECONDS)
            event.clear()
            if not self._accepting:
                continue
            try:
                free = self._workers - len(self._running) - self._queue.qsize()
                # Called with no free worker too (it claims nothing then): it refreshes the
                # shared pending count, which readiness (`saturated`) and `queue_depth` show.
                for record in await self.store.claim_due(max(free, 0), datetime.now(UTC).isoformat()):
                    if self._schedule:  # e.g. a retry's time here, cut short by an operator's /retry
                        self._unschedule(record.job_id)
                    self._queue.put_nowait(_Work("run", record.job_id, record.ticket_id, record))
                for record in await self.store.claim_reports(max(self._workers, 1)):
                    self._queue.put_nowait(_Work("deliver", record.job_id, record.ticket_id, record))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store logs outages; the next turn tries again
                log.debug("claiming work failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def _scheduler(self) -> None:
        next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        while True:
            now = time.time()
            while self._schedule and self._schedule[0][0] <= now:
                _, job_id, ticket_id = heapq.heappop(self._schedule)
                self._queue.put_nowait(_Work("run", job_id, ticket_id))
            timeout = min(self._schedule[0][0] - now, 30.0) if self._schedule else 30.0
            self._wake.clear()
            await _wait(self._wake, max(timeout, 0.01))
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                try:
                    await self.store.purge_deliveries()
                except Exception:
                    log.exception("purging expired delivery ids failed")


class ShuttingDown(Exception):
    """The pool no longer takes jobs."""
