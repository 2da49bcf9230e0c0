"""The job queue and the fixed pool of workers that consume it.

An :class:`asyncio.Queue` hands jobs to ``workers`` tasks. One ticket has at most one job
at a time: a job for a ticket that is already queued is coalesced into the queued one; a job
for a ticket that is running is kept as a single follow-up and queued when the running job
ends. The queue is bounded; a full queue refuses new jobs (the edge answers 503).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("app.jobs")


@dataclass(slots=True)
class Job:
    """One request to archive one ticket.

    Attributes:
        ticket_id: Zammad ticket id.
        delivery_id: the webhook's ``X-Zammad-Delivery`` id, if any.
        reason: ``"webhook"`` or ``"retry"``.
        force: re-archive even when the ticket is ``pdf:signed``.
        job_id: 32 random hex digits, written into notes and logs.
        accepted_at: ``time.time()`` when the job was accepted.
    """

    ticket_id: int
    delivery_id: str | None = None
    reason: str = "webhook"
    force: bool = False
    job_id: str = field(default_factory=lambda: os.urandom(16).hex())
    accepted_at: float = field(default_factory=time.time)


class SubmitResult(enum.Enum):
    """What :meth:`WorkerPool.submit` did with a job."""

    QUEUED = "queued"
    COALESCED = "coalesced"
    FULL = "full"
    SHUTTING_DOWN = "shutting_down"

    @property
    def accepted(self) -> bool:
        return self in (SubmitResult.QUEUED, SubmitResult.COALESCED)


JobHandler = Callable[[Job], Awaitable[Any]]


class WorkerPool:
    """A bounded queue consumed by a fixed number of worker tasks.

    Args:
        handler: ``async handler(job)``; its return value is kept as the ticket's last
            result (see :meth:`status`). It should not raise; if it does, the error is logged
            and the worker goes on.
        workers: number of worker tasks (``WORKERS``).
        max_queue: most jobs waiting (``WORKFLOW_QUEUE_MAX``).
    """

    def __init__(self, handler: JobHandler, *, workers: int, max_queue: int) -> None:
        self._handler = handler
        self._workers = workers
        self._max_queue = max_queue
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._queued: dict[int, Job] = {}
        self._running: dict[int, Job] = {}
        self._follow_up: dict[int, Job] = {}
        self._last: dict[int, dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False
        self.shutting_down = False

    # -- admission -------------------------------------------------------------------------
    def submit(self, job: Job) -> SubmitResult:
        """Queue ``job`` without waiting; safe to call from the event loop only.

        Returns:
            ``QUEUED``, ``COALESCED`` (merged into a queued or running job of the same
            ticket), ``FULL`` or ``SHUTTING_DOWN``. Only the first two mean the job will run.
        """
        if not self._accepting:
            return SubmitResult.SHUTTING_DOWN
        tid = job.ticket_id
        if tid in self._queued:
            self._queued[tid].force |= job.force
            return SubmitResult.COALESCED
        if tid in self._running:
            earlier = self._follow_up.get(tid)
            if earlier is not None:
                earlier.force |= job.force
            else:
                self._follow_up[tid] = job
            return SubmitResult.COALESCED
        if self._queue.qsize() >= self._max_queue:
            return SubmitResult.FULL
        self._queued[tid] = job
        self._queue.put_nowait(job)
        return SubmitResult.QUEUED

    # -- introspection ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Jobs waiting in the queue."""
        return self._queue.qsize()

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def free_slots(self) -> int:
        """How many more jobs the queue takes before it is full."""
        return max(0, self._max_queue - self._queue.qsize())

    @property
    def saturated(self) -> bool:
        """Whether the queue is full."""
        return self._queue.qsize() >= self._max_queue

    def status(self, ticket_id: int) -> dict[str, Any]:
        """What the pool knows about a ticket: ``state`` (``queued``, ``running``, ``idle``),
        ``follow_up`` queued, and the ``last`` finished run, if any."""
        if ticket_id in self._running:
            state, job = "running", self._running[ticket_id]
        elif ticket_id in self._queued:
            state, job = "queued", self._queued[ticket_id]
        else:
            state, job = "idle", None
        out: dict[str, Any] = {"state": state, "follow_up": ticket_id in self._follow_up}
        if job is not None:
            out["job_id"] = job.job_id
        if ticket_id in self._last:
            out["last"] = self._last[ticket_id]
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker tasks and accept jobs."""
        self._accepting = True
        self._tasks = [asyncio.create_task(self._work(i), name=f"archive-worker-{i}") for i in range(self._workers)]

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting jobs, let running jobs finish for ``grace_seconds``, then cancel.

        Jobs still queued are dropped from memory (their tickets keep the trigger tag, as no
        run started). Cancelled jobs put their ticket's trigger tag back (the workflow does).
        """
        self._accepting = False
        self.shutting_down = True
        # Queued jobs that no worker picked up yet are not started during shutdown.
        while not self._queue.empty():
            job = self._queue.get_nowait()
            self._queued.pop(job.ticket_id, None)
            self._queue.task_done()
            log.info("job not started before shutdown", extra={"ticket_id": job.ticket_id, "job_id": job.job_id})
        self._follow_up.clear()
        if self._running and grace_seconds > 0:
            deadline = time.monotonic() + grace_seconds
            while self._running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self, index: int) -> None:
        while True:
            job = await self._queue.get()
            tid = job.ticket_id
            self._queued.pop(tid, None)
            if self.shutting_down:
                self._queue.task_done()
                continue
            self._running[tid] = job
            started = time.time()
            try:
                result = await self._handler(job)
                self._last[tid] = {"job_id": job.job_id, "started_at": started, "finished_at": time.time(),
                                   **_describe(result)}
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a worker never dies of one job
                log.exception("job handler raised", extra={"ticket_id": tid, "job_id": job.job_id})
                self._last[tid] = {"job_id": job.job_id, "started_at": started, "finished_at": time.time(),
                                   "status": "failed", "reason": "internal error"}
            finally:
                self._running.pop(tid, None)
                self._queue.task_done()
                follow = self._follow_up.pop(tid, None)
                if follow is not None and self._accepting:
                    self._queued[tid] = follow
                    self._queue.put_nowait(follow)


def _describe(result: Any) -> dict[str, Any]:
    describe = getattr(result, "describe", None)
    if callable(describe):
        return describe()
    return {"status": str(result)}
