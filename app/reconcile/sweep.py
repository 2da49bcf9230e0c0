"""The reconciliation sweep: find tickets whose webhook was lost, queue a job for each.

One pass (:meth:`Reconciler.run_once`) searches Zammad twice — tickets carrying the trigger tag,
tickets carrying ``pdf:processing`` (:meth:`app.zammad.client.ZammadClient.search_tickets`,
small pages with a pause between them) — reads the latest job of each from the job store,
lets :func:`app.reconcile.decisions.decide` choose, and queues the chosen tickets through the
same store path as a webhook (the same delivery-id dedupe, the same one-active-job-per-ticket
coalescing) with the delivery id ``reconcile:<ticket>:<unix seconds of the pass>`` and the job
reason ``reconcile``. It leaves a tenth of the queue (``WORKFLOW_QUEUE_MAX``) to webhooks;
tickets beyond that wait for the next pass.

In the service the pass runs every ``RECONCILE_INTERVAL_SECONDS`` (the first one interval after
the start; 0 = off), inside the job store's sweep turn (:meth:`app.jobs.store.JobStore.sweep_turn`):
with several replicas on PostgreSQL one sweeps at a time, and a replica skips its turn when
another one swept within half an interval. ``python -m app reconcile`` runs one pass
(:mod:`app.reconcile.cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.config import Settings
from app.jobs.records import Admission, JobRecord, JobRequest
from app.jobs.store import JobStore
from app.observability.metrics import Metrics
from app.reconcile.decisions import Finding, ReconcileReason, Skip, TicketHit, decide
from app.workflow.tags import TAG_PROCESSING
from app.zammad.client import SEARCH_PAGE_PAUSE_SECONDS, SEARCH_PAGE_SIZE

log = logging.getLogger("app.reconcile")

SWEEP_NAME = "reconcile"
"""The sweep's name in the job store's sweep turn (:meth:`~app.jobs.store.JobStore.sweep_turn`)."""
SUBMIT_CHUNK = 50
"""Tickets recorded per store transaction."""
WEBHOOK_SHARE = 10
"""The sweep leaves ``WORKFLOW_QUEUE_MAX // WEBHOOK_SHARE`` queue places free for webhooks."""
REASON = "reconcile"
"""The job reason of the requests the sweep queues (``/jobs`` shows it)."""

Submit = Callable[[list[JobRequest]], Awaitable[list[Admission]]]
"""Records job requests as ``/ingest`` does: the worker pool's ``submit_many`` in the service,
the store's ``accept_many`` on the command line."""


class TicketSearch(Protocol):
    """The search the sweep needs (:class:`~app.zammad.client.ZammadClient`)."""

    def search_tickets(
        self, query: str, *, per_page: int = ..., pause_seconds: float = ..., max_pages: int = ...
    ) -> AsyncIterator[dict[str, Any]]: ...


def tag_query(tag: str) -> str:
    """The search query for tickets carrying ``tag``: ``tags:"<tag>"`` (Elasticsearch
    ``query_string``; quoted for the colon, ``"`` and ``\\`` escaped)."""
    escaped = tag.replace("\\", "\\\\").replace('"', '\\"')
    return f'tags:"{escaped}"'


@dataclass
class SweepReport:
    """What one pass found and did.

    Attributes:
        started_at: Unix seconds (also in the delivery ids).
        dry_run: nothing was queued.
        searched: ``{query: tickets found}``.
        queue: the tickets decided for a job.
        skipped: tickets found that need none now, with why.
        admissions: ``{ticket: Admission}`` of the tickets queued (empty in a dry run).
        deferred: tickets decided for a job but left for the next pass (no room in the queue).
        store_consulted: whether the job store was read (the command line cannot while a
            service holds a SQLite store: then every ticket found is listed).
    """

    started_at: float
    dry_run: bool
    searched: dict[str, int] = field(default_factory=dict)
    queue: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    admissions: dict[int, Admission] = field(default_factory=dict)
    deferred: list[Finding] = field(default_factory=list)
    store_consulted: bool = True

    def queued(self) -> dict[ReconcileReason, int]:
        """Tickets given a new job, by reason (a request merged into the ticket's pending job,
        or answered as a duplicate, is not counted: it added no job)."""
        counts = dict.fromkeys(ReconcileReason, 0)
        for finding in self.queue:
            admission = self.admissions.get(finding.ticket_id)
            if admission is not None and admission.status == "accepted":
                counts[finding.reason] += 1
        return counts

    def lines(self) -> list[str]:
        """The report for a terminal: one line per ticket, then a summary."""
        out = [f"searched {query}: {count} ticket(s)" for query, count in self.searched.items()]
        if not self.store_consulted:
            out.append(
                "job store not read: every ticket found is listed (tickets with a job are not told apart)"
            )
        deferred = {f.ticket_id for f in self.deferred}
        for finding in self.queue:
            if self.dry_run:
                action, detail = "would queue", ""
            elif finding.ticket_id in deferred:
                action, detail = "deferred", "no room in the job queue; next pass"
            else:
                admission = self.admissions.get(finding.ticket_id)
                action = "queued" if admission is not None and admission.accepted else "refused"
                detail = f"{admission.status}, job {admission.job_id}" if admission is not None else ""
            out.append(f"{action:<12} ticket {finding.ticket_id:<8} {finding.reason:<17} {detail}".rstrip())
        for skip in self.skipped:
            out.append(f"{'skipped':<12} ticket {skip.ticket_id:<8} {skip.reason:<17} {skip.why}")
        done = "dry run: none queued" if self.dry_run else f"{sum(self.queued().values())} new jobs"
        out.append(
            f"{len(self.queue)} to queue ({done}), {len(self.deferred)} deferred, {len(self.skipped)} skipped"
        )
        return out


class Reconciler:
    """Runs reconciliation passes (see the module docstring).

    Args:
        search: Zammad's ticket search.
        store: the job store (opened), or ``None``: then no job is looked up and every ticket
            found is decided for (only for a dry run on the command line).
        submit: records job requests (:data:`Submit`), or ``None`` for dry runs only.
        trigger_tag: ``WORKFLOW_TRIGGER_TAG``.
        stale_seconds: ``RECONCILE_STALE_SECONDS``.
        interval_seconds: ``RECONCILE_INTERVAL_SECONDS`` (0 = no passes of its own).
        metrics: counts the service's passes (``reconcile_*``), or ``None``.
        clock: Unix seconds.
        page_size, page_pause_seconds: search pages (see ``search_tickets``).
    """

    def __init__(
        self,
        search: TicketSearch,
        store: JobStore | None,
        submit: Submit | None,
        *,
        trigger_tag: str,
        stale_seconds: float,
        interval_seconds: float = 0.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        page_size: int = SEARCH_PAGE_SIZE,
        page_pause_seconds: float = SEARCH_PAGE_PAUSE_SECONDS,
    ) -> None:
        self.search = search
        self.store = store
        self.submit = submit
        self.trigger_tag = trigger_tag
        self.stale_seconds = stale_seconds
        self.interval_seconds = interval_seconds
        self.metrics = metrics
        self._clock = clock
        self._page_size = page_size
        self._page_pause = page_pause_seconds
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        search: TicketSearch,
        store: JobStore | None,
        submit: Submit | None,
        metrics: Metrics | None = None,
    ) -> Reconciler:
        """A reconciler with the settings' trigger tag, stale time and interval."""
        return cls(
            search,
            store,
            submit,
            trigger_tag=settings.workflow_trigger_tag,
            stale_seconds=settings.reconcile_stale_seconds,
            interval_seconds=settings.reconcile_interval_seconds,
            metrics=metrics,
        )

    # -- one pass ------------------------------------------------------------------------------
    async def run_once(self, *, dry_run: bool = False) -> SweepReport:
        """Search, decide and (unless ``dry_run``) queue; returns what it found and did.

        Raises:
            ZammadApiError: a search failed (nothing was queued).
            JobStoreUnavailable: the job store could not be read or written.
            ShuttingDown: the worker pool stopped taking jobs.
        """
        report = SweepReport(
            started_at=self._clock(), dry_run=dry_run, store_consulted=self.store is not None
        )
        tagged = await self._hits(tag_query(self.trigger_tag), report)
        processing = await self._hits(tag_query(TAG_PROCESSING), report)
        latest: dict[int, JobRecord] = {}
        if self.store is not None:
            latest = await self.store.latest_jobs([hit.ticket_id for hit in (*tagged, *processing)])
        decision = decide(tagged, processing, latest, now=self._clock(), stale_seconds=self.stale_seconds)
        report.queue, report.skipped = decision.queue, decision.skipped
        if not dry_run and decision.queue:
            await self._queue(report)
        return report

    async def _hits(self, query: str, report: SweepReport) -> list[TicketHit]:
        hits = []
        async for ticket in self.search.search_tickets(
            query, per_page=self._page_size, pause_seconds=self._page_pause
        ):
            hit = TicketHit.from_ticket(ticket)
            if hit is not None:
                hits.append(hit)
        report.searched[query] = len(hits)
        return hits

    async def _queue(self, report: SweepReport) -> None:
        """Record a request per finding, in chunks, within the room left for the sweep."""
        if self.submit is None:
            raise RuntimeError("a reconciler without submit can only make dry runs")
        findings = report.queue
        if self.store is not None:
            room = self.store.max_pending - self.store.pending_count - self.store.max_pending // WEBHOOK_SHARE
            findings, report.deferred = findings[: max(0, room)], findings[max(0, room) :]
        stamp = int(report.started_at)
        for start in range(0, len(findings), SUBMIT_CHUNK):
            chunk = findings[start : start + SUBMIT_CHUNK]
            requests = [
                JobRequest(f.ticket_id, delivery_id=f"reconcile:{f.ticket_id}:{stamp}", reason=REASON)
                for f in chunk
            ]
            admissions = await self.submit(requests)
            if any(a.status == "full" for a in admissions):  # all-or-nothing: none was recorded
                report.deferred = [*findings[start:], *report.deferred]
                break
            for finding, admission in zip(chunk, admissions, strict=True):
                report.admissions[finding.ticket_id] = admission
                log.info(
                    "reconcile queued a ticket",
                    extra={
                        "ticket_id": finding.ticket_id,
                        "reason": str(finding.reason),
                        "admission": admission.status,
                        "job_id": admission.job_id,
                    },
                )

    # -- the service's turns ---------------------------------------------------------------------
    async def sweep(self, *, min_interval_seconds: float | None = None) -> SweepReport | None:
        """One turn: a pass when the store says it is this instance's turn (``None`` when not).

        ``min_interval_seconds`` (default half the interval): skip when a pass ended that
        recently on any replica. Counts the turn in the metrics and logs its outcome; raises
        what :meth:`run_once` raises.
        """
        if self.store is None:
            raise RuntimeError("a sweep needs the job store")
        if min_interval_seconds is None:
            min_interval_seconds = self.interval_seconds / 2
        started = time.monotonic()
        try:
            async with self.store.sweep_turn(SWEEP_NAME, min_interval_seconds=min_interval_seconds) as mine:
                if not mine:
                    self._count("skipped")
                    log.debug("reconcile: not this replica's turn")
                    return None
                report = await self.run_once()
        except Exception:
            self._count("failed")
            raise
        self._count("completed", report)
        log.info(
            "reconcile pass",
            extra={
                "searched": report.searched,
                "queued": sum(report.queued().values()),
                "deferred": len(report.deferred),
                "skipped": len(report.skipped),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return report

    def _count(self, status: str, report: SweepReport | None = None) -> None:
        if self.metrics is not None:
            self.metrics.record_reconcile(
                status,
                {str(reason): count for reason, count in report.queued().items()} if report else {},
                self._clock() if report is not None else None,
            )

    def start(self) -> None:
        """Run :meth:`sweep` every ``interval_seconds`` in a task (nothing when it is 0)."""
        if self.interval_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._run_forever(), name="reconcile-sweep")

    async def stop(self) -> None:
        """End the task (a pass under way is cancelled: what it queued stays queued)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next turn tries again; one failure ends nothing
                log.warning("reconcile pass failed", extra={"error": f"{type(exc).__name__}: {exc}"})
