"""One archive run for one ticket: gate, tags, fetch, render, sign, store, report back.

:class:`ArchiveWorkflow` is the only place that knows the order of steps. It talks to
Zammad, the renderer, the signer and the storage through the protocols in
:mod:`app.workflow.ports`, so its decisions are the same whatever adapters run below it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.workflow.classify import ClassifiedFailure, classify
from app.workflow.gate import should_process
from app.workflow.notes import failure_note, success_note
from app import SERVICE_NAME, __version__
from app.workflow.ports import (
    RenderedPdf,
    RendererPort,
    SignedPdf,
    SignerPort,
    StoragePort,
    StoredArchive,
    TicketSnapshot,
    ZammadPort,
)
from app.workflow.tags import (
    STATE_TAGS,
    TAG_ERROR,
    TagTransition,
    failure_transition,
    revert_transition,
    start_transition,
    success_transition,
)

log = logging.getLogger("app.workflow")

WRITE_ATTEMPTS = 3
"""How often a tag or note write on the way out (success or failure) is tried."""


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """How a run ended.

    Attributes:
        status: ``"archived"``, ``"skipped"`` or ``"failed"``.
        reason: for ``skipped`` the gate's reason; for ``failed`` the failing step.
        stored: where the archive landed (``archived`` only).
        failure: the classified failure (``failed`` only).
        step_seconds: wall time per step, seconds.
    """

    status: str
    reason: str = ""
    stored: StoredArchive | None = None
    failure: ClassifiedFailure | None = None
    step_seconds: dict[str, float] | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for ``/jobs/{ticket_id}``: status, reason, path, sha256,
        classification and cause, where they apply."""
        out: dict[str, Any] = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.stored is not None:
            out["path"] = self.stored.relative_path
            out["sha256"] = self.stored.sha256
        if self.failure is not None:
            out["classification"] = self.failure.classification.value
            out["code"] = self.failure.code
            out["cause"] = self.failure.cause
        return out


def sidecar_fields(snapshot: TicketSnapshot, rendered: RenderedPdf, signed: SignedPdf, *, job_id: str,
                   delivery_id: str | None) -> dict[str, Any]:
    """The run's facts for the archive's JSON sidecar (the storage adds path, SHA-256 and size)."""
    ticket = snapshot.ticket
    return {
        "ticket_id": ticket.get("id"),
        "ticket_number": ticket.get("number"),
        "title": ticket.get("title"),
        "archived_at": snapshot.archived_at.isoformat(),
        "articles_included": rendered.articles_included,
        "articles_total": rendered.articles_total,
        "pages": rendered.page_count,
        "missing_glyphs": rendered.missing_glyphs,
        "signed": signed.signed,
        "pades_level": signed.pades_level,
        "signer_subject": signed.signer_subject,
        "signer_cert_sha256": signed.signer_cert_sha256,
        "timestamp": signed.timestamp.isoformat() if signed.timestamp else None,
        "service": SERVICE_NAME,
        "service_version": __version__,
        "job_id": job_id,
        "delivery_id": delivery_id,
    }


class ArchiveWorkflow:
    """Runs the archive of one ticket (the runbook's tag protocol, see :mod:`app.workflow.tags`).

    Args:
        zammad, renderer, signer, storage: the adapters.
        trigger_tag: the tag that requests archiving (``WORKFLOW_TRIGGER_TAG``).
        require_tag: skip tickets without it (``WORKFLOW_REQUIRE_TAG``).
        redact: applied to every failure cause before it is written into a note or log.
        clock: returns the archive time (UTC, aware); injectable for tests.
        write_backoff_seconds: first pause between attempts of a tag or note write.
    """

    def __init__(
        self,
        *,
        zammad: ZammadPort,
        renderer: RendererPort,
        signer: SignerPort,
        storage: StoragePort,
        trigger_tag: str = "pdf:sign",
        require_tag: bool = True,
        redact: Callable[[str], str] = lambda s: s,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        write_backoff_seconds: float = 0.5,
    ) -> None:
        self.zammad = zammad
        self.renderer = renderer
        self.signer = signer
        self.storage = storage
        self.trigger_tag = trigger_tag
        self.require_tag = require_tag
        self._redact = redact
        self._clock = clock
        self._write_backoff = write_backoff_seconds

    async def run(self, ticket_id: int, *, job_id: str, delivery_id: str | None = None,
                  force: bool = False) -> ArchiveOutcome:
        """Archive ticket ``ticket_id`` once.

        Never raises for a failure of the run itself: failures end as ``status="failed"``
        with ``pdf:error`` and a failure note on the ticket (as far as Zammad accepts them).
        ``asyncio.CancelledError`` (shutdown) is re-raised after the ticket's tags were put
        back (trigger tag restored, ``pdf:processing`` removed).
        """
        ctx = {"ticket_id": ticket_id, "job_id": job_id, "delivery_id": delivery_id}
        timings: dict[str, float] = {}
        step = "fetch tags"
        started = False
        try:
            tags = await self._timed(timings, "fetch_tags", self.zammad.get_tags(ticket_id))
            decision = should_process(tags, trigger_tag=self.trigger_tag, require_tag=self.require_tag, force=force)
            if not decision.process:
                log.info("job skipped", extra={**ctx, "reason": decision.reason})
                return ArchiveOutcome("skipped", decision.reason, step_seconds=timings)

            step = "tag processing"
            started = True
            await self._apply(ticket_id, start_transition(self.trigger_tag), attempts=1)

            step = "fetch ticket"
            ticket = await self._timed(timings, "fetch_ticket", self.zammad.get_ticket(ticket_id))
            step = "fetch articles"
            articles = await self._timed(timings, "fetch_articles", self.zammad.list_articles(ticket_id))
            shown_tags = [t for t in tags if t not in STATE_TAGS and t != self.trigger_tag]
            snapshot = TicketSnapshot(ticket=ticket, articles=articles, tags=shown_tags, archived_at=self._clock())

            step = "render"
            rendered = await self._timed(timings, "render", self.renderer.render(snapshot))
            step = "sign"
            signed = await self._timed(timings, "sign", self.signer.sign(rendered.data))
            step = "store"
            sidecar = sidecar_fields(snapshot, rendered, signed, job_id=job_id, delivery_id=delivery_id)
            stored = await self._timed(timings, "store", self.storage.store(snapshot, signed.data, sidecar=sidecar))
            log.info("archive stored", extra={**ctx, "path": stored.relative_path, "sha256": stored.sha256,
                                              "size": stored.size, "pages": rendered.page_count})

            step = "tag signed"
            await self._apply(ticket_id, success_transition(self.trigger_tag), attempts=WRITE_ATTEMPTS)
            step = "success note"
            note = success_note(stored, signed, rendered, job_id=job_id, delivery_id=delivery_id)
            await self._retry(lambda: self.zammad.create_internal_note(
                ticket_id, subject=note.subject, body_html=note.body_html), attempts=WRITE_ATTEMPTS)
            log.info("job archived", extra={**ctx, "seconds": timings})
            return ArchiveOutcome("archived", stored=stored, step_seconds=timings)
        except asyncio.CancelledError:
            if started:
                log.warning("job interrupted; putting the trigger tag back", extra={**ctx, "step": step})
                await asyncio.shield(self._revert(ticket_id, ctx))
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends as a classified note
            failure = classify(exc)
            failure = ClassifiedFailure(failure.classification, failure.code, self._redact(failure.cause))
            log.error("job failed", exc_info=True,
                      extra={**ctx, "step": step, "classification": failure.classification.value,
                             "code": failure.code, "cause": failure.cause})
            await self._report_failure(ticket_id, failure, step=step, job_id=job_id, delivery_id=delivery_id,
                                       started=started, ctx=ctx)
            return ArchiveOutcome("failed", step, failure=failure, step_seconds=timings)

    async def _report_failure(self, ticket_id: int, failure: ClassifiedFailure, *, step: str, job_id: str,
                              delivery_id: str | None, started: bool, ctx: dict[str, Any]) -> None:
        if started:
            transition = failure_transition(self.trigger_tag, transient=failure.transient)
        else:
            # The tags were never read, so the trigger tag was not touched: leave it as it is.
            transition = TagTransition(add=(TAG_ERROR,))
        note = failure_note(failure, job_id=job_id, delivery_id=delivery_id, step=step)
        try:
            await self._apply(ticket_id, transition, attempts=WRITE_ATTEMPTS)
        except Exception:  # noqa: BLE001
            log.error("could not set the error tags", exc_info=True, extra=ctx)
        try:
            await self._retry(lambda: self.zammad.create_internal_note(
                ticket_id, subject=note.subject, body_html=note.body_html), attempts=WRITE_ATTEMPTS)
        except Exception:  # noqa: BLE001
            log.error("could not post the failure note", exc_info=True, extra=ctx)

    async def _revert(self, ticket_id: int, ctx: dict[str, Any]) -> None:
        try:
            await self._apply(ticket_id, revert_transition(self.trigger_tag), attempts=WRITE_ATTEMPTS)
        except Exception:  # noqa: BLE001
            log.error("could not put the trigger tag back", exc_info=True, extra=ctx)

    async def _apply(self, ticket_id: int, transition: TagTransition, *, attempts: int) -> None:
        for tag in transition.add:
            await self._retry(lambda tag=tag: self.zammad.add_tag(ticket_id, tag), attempts=attempts)
        for tag in transition.remove:
            await self._retry(lambda tag=tag: self.zammad.remove_tag(ticket_id, tag), attempts=attempts)

    async def _retry(self, call: Callable[[], Awaitable[Any]], *, attempts: int) -> Any:
        delay = self._write_backoff
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except Exception as exc:
                if attempt == attempts or not classify(exc).transient:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _timed(timings: dict[str, float], name: str, awaitable: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return await awaitable
        finally:
            timings[name] = round(time.perf_counter() - t0, 6)
