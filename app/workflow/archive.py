"""One archive run for one ticket: gate, tags, fetch, render, sign, store.

:class:`ArchiveWorkflow` is the only place that knows the order of steps (:class:`Step`). It
talks to Zammad, the renderer, the signer and the storage through the protocols in
:mod:`app.workflow.ports`, so its decisions are the same whatever adapters run below it.

A run has two halves, so that a durable job store can sit between them (an outbox):

1. :meth:`ArchiveWorkflow.execute` does the work and returns an :class:`ArchiveOutcome`
   without telling Zammad how it ended;
2. :meth:`ArchiveWorkflow.report` turns a final outcome into a
   :class:`~app.workflow.report.Report`, and :meth:`ArchiveWorkflow.deliver` writes it to the
   ticket, idempotently (:mod:`app.workflow.report`).

With several replicas, the caller passes a :data:`~app.workflow.ports.Guard` (a lease check)
that is awaited before the run's and the delivery's writes to the ticket: a replica that lost
the job to another one writes nothing there.

The originals embedded in the PDF are chosen in :mod:`app.workflow.originals`, the layout's
images in :mod:`app.workflow.images`; both only for the articles the PDF holds
(``PDF_MAX_ARTICLES``: :func:`app.render.content.kept_articles`).

Over 450 lines: the order of the steps, how each one's failure ends the run and the job's
spool folder they share are one question, and read best in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from app.errors import ArchiverError
from app.jobs.records import OutcomeStatus
from app.render.content import kept_articles
from app.workflow.classify import ClassifiedFailure, classify
from app.workflow.gate import should_process
from app.workflow.images import LayoutImages, fetch_images
from app.workflow.merged import find_merge_target, is_merged
from app.workflow.notes import Note, success_note
from app.workflow.originals import ONLY_ATTEMPT, Attempt, EmbedPolicy, collect_originals
from app.workflow.ports import (
    FETCH_CONCURRENCY,
    EmbeddedFile,
    Guard,
    ImageRefLike,
    OmittedFile,
    RenderedPdf,
    RendererPort,
    SignedPdf,
    SignerPort,
    StoragePort,
    StoredArchive,
    TicketSnapshot,
    ZammadPort,
)
from app.workflow.report import Report, deliver, final_report
from app.workflow.sidecar import sidecar_fields
from app.workflow.steps import Step
from app.workflow.tags import STATE_TAGS, revert_transition, start_transition
from app.workflow.tasks import reaped
from app.workflow.writes import WRITE_ATTEMPTS, apply_transition

log = logging.getLogger("app.workflow")
T = TypeVar("T")

SPOOL_ORIGINALS_FROM = 100
"""Articles from which a ticket's originals wait in files, not in memory (``ArchiveWorkflow``'s
``spool_originals_from``)."""

HANDED_OVER = "handed over to another replica"
"""The message of a cancellation whose job another replica now runs (its lease was taken over):
the run stops without touching the ticket's tags, which belong to the new run."""


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """How :meth:`ArchiveWorkflow.execute` ended.

    Attributes:
        status: :class:`~app.jobs.records.OutcomeStatus` (``archived``, ``skipped`` or ``failed``).
        reason: for ``skipped`` the gate's reason; for ``failed`` the failing :class:`Step`.
        started: whether the processing tags were set (the run got past the gate).
        stored: where the archive landed (``archived`` only).
        failure: the classified failure (``failed`` only).
        note: the success note (``archived`` only).
        step_seconds: wall time per timed :class:`Step`, seconds.
    """

    status: OutcomeStatus
    reason: str = ""
    started: bool = False
    stored: StoredArchive | None = None
    failure: ClassifiedFailure | None = None
    note: Note | None = None
    step_seconds: dict[str, float] | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: status, reason, path, sha256, classification and cause."""
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


async def _bytes_of(images: Awaitable[LayoutImages]) -> dict[int, bytes]:
    """The downloaded bytes of the layout's images, for the originals to reuse."""
    return (await images).images


class _StepClock:
    """The step a run is in (named when it fails) and the wall time of each timed step."""

    def __init__(self) -> None:
        self.current = Step.FETCH_TAGS
        self.seconds: dict[str, float] = {}

    async def time(self, step: Step, awaitable: Awaitable[T]) -> T:
        """Enter ``step`` and await ``awaitable``; its wall time is recorded even when it fails."""
        self.current = step
        t0 = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.seconds[step.value] = round(time.perf_counter() - t0, 6)  # orjson: str keys only


class ArchiveWorkflow:
    """Runs the archive of one ticket (the runbook's tag protocol, see :mod:`app.workflow.tags`).

    Args:
        zammad, renderer, signer, storage: the adapters.
        spool_dir: a folder (on disk, writable by the render processes) for per-job working
            files: the originals (as they are fetched), the snapshot and the PDF travel through
            files in a ``job-*`` folder below it, removed when the run ends, so neither a big
            ticket's originals nor its PDF are ever held whole in this process's memory.
        trigger_tag: the tag that requests archiving (``WORKFLOW_TRIGGER_TAG``).
        require_tag: skip tickets without it (``WORKFLOW_REQUIRE_TAG``).
        redact: applied to every failure cause before it is written into a note or log.
        write_backoff_seconds: first pause between attempts of a tag or note write.
        image_references: ``(ticket_id, articles) -> [ImageRef]``, the images the layout
            shows (inline images, image attachments); they are downloaded before rendering.
            ``None`` downloads none.
        template: the layout template's name, recorded in the sidecar.
        embed: which originals to embed as PDF/A-3 associated files (``None``: none).
        spool_originals_from: a ticket of this many articles or more has its originals
            written into the job's folder as they are fetched; a smaller one keeps them in
            memory (no file per original for an everyday ticket).
        language: the language of failure notes (``PDF_LANGUAGE``); a success note takes
            its archive's language (:attr:`~app.workflow.ports.RenderedPdf.language`).
        max_articles: ``PDF_MAX_ARTICLES`` (0 = no limit), the renderer's limit: over it,
            images and originals are fetched for the oldest this many articles only, those
            a ``cap_and_continue`` PDF holds (:func:`app.render.content.kept_articles`); in
            ``fail`` mode the renderer refuses the ticket without the rest downloaded. The
            snapshot still carries every article and the whole ``articles.json``.
    """

    def __init__(
        self,
        *,
        zammad: ZammadPort,
        renderer: RendererPort,
        signer: SignerPort,
        storage: StoragePort,
        spool_dir: Path,
        trigger_tag: str = "pdf:sign",
        require_tag: bool = True,
        redact: Callable[[str], str] = lambda s: s,
        write_backoff_seconds: float = 0.5,
        image_references: Callable[[int, Sequence[dict[str, Any]]], Sequence[ImageRefLike]] | None = None,
        template: str = "default",
        embed: EmbedPolicy | None = None,
        spool_originals_from: int = SPOOL_ORIGINALS_FROM,
        language: str = "en",
        max_articles: int = 0,
    ) -> None:
        self.zammad = zammad
        self.renderer = renderer
        self.signer = signer
        self.storage = storage
        self.spool_dir = spool_dir
        self.trigger_tag = trigger_tag
        self.require_tag = require_tag
        self._redact = redact
        self._write_backoff = write_backoff_seconds
        self._image_references = image_references
        self.template = template
        self.embed = embed
        self.spool_originals_from = spool_originals_from
        self.language = language
        self.max_articles = max_articles

    # -- the work ------------------------------------------------------------------------------
    async def execute(
        self,
        ticket_id: int,
        *,
        job_id: str,
        delivery_id: str | None = None,
        force: bool = False,
        resume: bool = False,
        archived_at: datetime | None = None,
        guard: Guard | None = None,
        attempt: Attempt = ONLY_ATTEMPT,
    ) -> ArchiveOutcome:
        """Archive ticket ``ticket_id`` once, without the final report.

        Args:
            job_id, delivery_id: written into the sidecar and logs.
            force: re-archive even a ``pdf:signed`` ticket (``/retry?force=true``).
            resume: this job ran before (a retry or a run interrupted by a crash), so a
                ``pdf:processing`` tag left by it counts as the request to archive.
            archived_at: the archive time (UTC); fixed per job so a resumed job writes the
                same path. Defaults to now.
            guard: awaited right before the run's writes to the ticket (the start transition,
                a revert): it raises when this run may no longer write there (several
                replicas: another one took the job over). See :data:`~app.workflow.ports.Guard`.
            attempt: the job's run of ``WORKFLOW_MAX_ATTEMPTS``: a layout image's or an
                original's download that may heal fails the run (Transient) unless the attempt
                gives up on it (:attr:`~app.workflow.originals.Attempt.gives_up`: the job's last,
                once the ticket has been failing for ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS``).

        A failed step is logged as one line, ``job step failed``, with its classification,
        code and cause: at WARNING when the job will run again (a Transient failure, not the
        last ``attempt``), else at ERROR; with a traceback only for a defect (an exception that
        is not an :class:`~app.errors.ArchiverError`).

        Never raises for a failure of the run itself: it ends as ``status="failed"``. The
        guard's exception before the start transition is raised unchanged (nothing was
        written). ``asyncio.CancelledError`` (shutdown) is re-raised after the ticket's tags
        were put back (trigger tag restored, ``pdf:processing`` removed) — unless the guard
        refuses, or the cancellation says :data:`HANDED_OVER`: then the tags are left to the
        replica that holds the job now.
        """
        ctx = {"ticket_id": ticket_id, "job_id": job_id, "delivery_id": delivery_id}
        clock = _StepClock()
        started = False
        refused: BaseException | None = None
        try:
            # Tags are read right before the processing transition (no stale decision).
            tags = await clock.time(Step.FETCH_TAGS, self.zammad.get_tags(ticket_id))
            decision = should_process(
                tags, trigger_tag=self.trigger_tag, require_tag=self.require_tag, force=force, resume=resume
            )
            if not decision.process:
                log.info("job skipped", extra={**ctx, "reason": decision.reason})
                return ArchiveOutcome(OutcomeStatus.SKIPPED, decision.reason, step_seconds=clock.seconds)

            clock.current = Step.START
            # Only what changes the tags just read: Zammad's add/remove are idempotent, and a
            # stale state tag left by a race is removed by the report's transition anyway.
            needed = start_transition(self.trigger_tag).needed(tags)
            if guard is not None and (needed.add or needed.remove):
                try:
                    await guard()
                except Exception as exc:
                    refused = exc
                    raise
            started = True
            await apply_transition(
                self.zammad, ticket_id, needed, attempts=1, backoff_seconds=self._write_backoff
            )
            shown_tags = [t for t in tags if t not in STATE_TAGS and t != self.trigger_tag]
            at = archived_at or datetime.now(UTC)
            stored, rendered, signed, light = await self._archive(
                ticket_id,
                shown_tags,
                at,
                clock,
                job_id=job_id,
                delivery_id=delivery_id,
                ctx=ctx,
                attempt=attempt,
            )
            log.info(
                "archive stored",
                extra={
                    **ctx,
                    "path": stored.relative_path,
                    "sha256": stored.sha256,
                    "size": stored.size,
                    "pages": rendered.page_count,
                    "seconds": clock.seconds,
                },
            )
            note = success_note(
                stored,
                signed,
                rendered,
                job_id=job_id,
                delivery_id=delivery_id,
                omitted=light.omitted,
                merged_into=light.merged_into,
                placeholders=light.placeholders,
            )
            return ArchiveOutcome(
                OutcomeStatus.ARCHIVED, started=True, stored=stored, note=note, step_seconds=clock.seconds
            )
        except asyncio.CancelledError as cancel:
            if started and HANDED_OVER not in cancel.args:
                await asyncio.shield(self._revert(ticket_id, {**ctx, "step": clock.current.value}, guard))
            raise
        except Exception as exc:
            if exc is refused:
                raise
            failure = classify(exc)
            failure = dataclasses.replace(failure, cause=self._redact(failure.cause))
            # Zammad's answers, timeouts, render/sign/storage errors are expected outcomes: one
            # line (the pool's "job will be retried" follows a Transient one). A traceback only
            # for a defect.
            log.log(
                logging.WARNING if failure.transient and not attempt.last else logging.ERROR,
                "job step failed",
                exc_info=not isinstance(exc, ArchiverError),
                extra={
                    **ctx,
                    "step": clock.current.value,
                    "classification": failure.classification.value,
                    "code": failure.code,
                    "cause": failure.cause,
                },
            )
            return ArchiveOutcome(
                OutcomeStatus.FAILED,
                clock.current.value,
                started=started,
                failure=failure,
                step_seconds=clock.seconds,
            )

    async def _snapshot(
        self,
        ticket_id: int,
        tags: list[str],
        archived_at: datetime,
        clock: _StepClock,
        ctx: dict[str, Any],
        spool: Path,
        attempt: Attempt = ONLY_ATTEMPT,
    ) -> TicketSnapshot:
        """Fetch everything the layout needs: ticket, articles, images and originals (the
        originals' bytes written into the new folder ``spool`` as they arrive).

        The ticket and its articles are asked for at once; for a merged ticket then its links,
        for the ticket it was merged into (:mod:`app.workflow.merged`); then the images and the originals
        are downloaded side by side, at most :data:`~app.workflow.ports.FETCH_CONCURRENCY`
        requests in flight (the originals' attachments wait for the images, whose bytes they
        reuse). Each step's time runs from the end of the one before, so the steps add up to
        the fetch's wall time, and a failure is named after the first step, in this order,
        that failed. Images and originals are those of the articles the PDF holds
        (``max_articles``); the snapshot has every article, for the renderer's count. An image
        whose or an original's download may heal fails the fetch unless the ``attempt`` gives up
        on it (:attr:`~app.workflow.originals.Attempt.gives_up`; :func:`app.workflow.images.fetch_images`,
        :func:`app.workflow.originals.collect_originals`).
        """
        ticket_task = asyncio.ensure_future(self.zammad.get_ticket_raw(ticket_id))
        articles_task = asyncio.ensure_future(self.zammad.list_articles_raw(ticket_id))
        async with reaped(ticket_task, articles_task):
            ticket, ticket_raw = await clock.time(Step.FETCH_TICKET, ticket_task)
            articles, articles_raw = await clock.time(Step.FETCH_ARTICLES, articles_task)
        merged_into = None
        if is_merged(ticket):  # only then: no other ticket's run asks for its links
            merged_into = await clock.time(
                Step.FETCH_LINKS, find_merge_target(self.zammad, ticket_id, redact=self._redact)
            )
            if not merged_into.known:
                log.warning(
                    "merged ticket: the ticket it was merged into is unknown",
                    extra={**ctx, "cause": merged_into.reason},
                )
        try:
            kept = kept_articles(articles, self.max_articles)
        except TypeError:  # not article objects: the renderer refuses them with its own error
            kept = articles
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)
        images_task = asyncio.ensure_future(self._images(ticket_id, kept, ctx, limit, attempt))
        embedded: tuple[EmbeddedFile, ...] = ()
        omitted: tuple[OmittedFile, ...] = ()
        if self.embed is None:
            layout = await clock.time(Step.FETCH_IMAGES, images_task)
        else:
            # The originals reuse the images' bytes: a task of its own, so that it is cancelled
            # (never left un-awaited) when the originals fail before they need it.
            reused = asyncio.ensure_future(_bytes_of(images_task))
            originals_task = asyncio.ensure_future(
                collect_originals(
                    self.zammad,
                    ticket_id,
                    ticket_raw=ticket_raw,
                    articles_raw=articles_raw,
                    articles=kept,
                    images=reused,
                    policy=self.embed,
                    redact=self._redact,
                    spool=spool if len(kept) >= self.spool_originals_from else None,
                    limit=limit,
                    attempt=attempt,
                )
            )
            async with reaped(images_task, reused, originals_task):
                layout = await clock.time(Step.FETCH_IMAGES, images_task)
                embedded, omitted = await clock.time(Step.FETCH_ORIGINALS, originals_task)
        return TicketSnapshot(
            ticket=ticket,
            articles=articles,
            tags=tags,
            archived_at=archived_at,
            images=layout.images,
            embedded=embedded,
            omitted=omitted,
            articles_raw=articles_raw,
            merged_into=merged_into,
            placeholders=layout.placeholders,
        )

    async def _images(
        self,
        ticket_id: int,
        articles: Sequence[dict[str, Any]],
        ctx: dict[str, Any],
        limit: asyncio.Semaphore | None = None,
        attempt: Attempt = ONLY_ATTEMPT,
    ) -> LayoutImages:
        """The layout's images (:func:`app.workflow.images.fetch_images`, within ``limit``);
        none without ``image_references``."""
        if self._image_references is None:
            return LayoutImages({})
        refs = self._image_references(ticket_id, articles)
        return await fetch_images(
            self.zammad, refs, log_context=ctx, redact=self._redact, limit=limit, attempt=attempt
        )

    async def _archive(
        self,
        ticket_id: int,
        tags: list[str],
        archived_at: datetime,
        clock: _StepClock,
        *,
        job_id: str,
        delivery_id: str | None,
        ctx: dict[str, Any],
        attempt: Attempt = ONLY_ATTEMPT,
    ) -> tuple[StoredArchive, RenderedPdf, SignedPdf, TicketSnapshot]:
        """Fetch, render, sign and store, through files in a fresh ``job-*`` folder of the
        spool that is removed (in a thread) whatever happens: the originals are written there
        as they are fetched, the snapshot is pickled to disk for the render process, the PDF
        written, signed and copied file to file. The last value is the snapshot without its
        articles, images and originals: the originals left out, the images shown as
        placeholders (those not downloaded, then those the render could not decode) and the
        merge target, for the note."""
        job = tempfile.TemporaryDirectory(prefix="job-", dir=self.spool_dir)
        try:
            folder = Path(job.name)
            (folder / "originals").mkdir()
            snapshot = await self._snapshot(
                ticket_id, tags, archived_at, clock, ctx, folder / "originals", attempt
            )
            # What the steps after the layout need of the snapshot; the articles, images and
            # originals are let go as soon as the renderer has them.
            light = TicketSnapshot(
                ticket=snapshot.ticket,
                articles=[],
                tags=tags,
                archived_at=archived_at,
                omitted=snapshot.omitted,
                merged_into=snapshot.merged_into,
                placeholders=snapshot.placeholders,
            )
            clock.current = Step.RENDER
            render = self.renderer.render_file(snapshot, folder / "rendered.pdf")
            del snapshot  # the render coroutine holds the full snapshot until it is on disk
            rendered = await clock.time(Step.RENDER, render)
            assert rendered.path is not None
            if rendered.undecodable:  # placeholders too: the note and the sidecar name them
                for image in rendered.undecodable:
                    log.warning(
                        "image not decodable",
                        extra={
                            **ctx,
                            "attachment_id": image.attachment_id,
                            "image": image.name,
                            "code": image.code,
                            "cause": image.cause,
                        },
                    )
                light = dataclasses.replace(light, placeholders=light.placeholders + rendered.undecodable)
            signed = await clock.time(Step.SIGN, self.signer.sign_file(rendered.path, folder / "signed.pdf"))
            assert signed.path is not None
            clock.current = Step.STORE
            sidecar = sidecar_fields(
                light, rendered, signed, job_id=job_id, delivery_id=delivery_id, template=self.template
            )
            stored = await clock.time(
                Step.STORE, self.storage.store_file(light, signed.path, sidecar=sidecar)
            )
        finally:
            # In a thread: removing files and folders waits for the file system's journal,
            # which the archives' fsyncs keep busy, and the event loop serves other jobs.
            await asyncio.to_thread(job.cleanup)
        return stored, rendered, signed, light

    async def _revert(self, ticket_id: int, ctx: dict[str, Any], guard: Guard | None) -> None:
        """Put the trigger tag back and take ``pdf:processing`` off (a run cut off by a
        shutdown), unless the guard says the job is no longer held here."""
        if guard is not None:
            try:
                await guard()
            except Exception as exc:  # noqa: BLE001 - not ours any more, or unknown: leave the tags alone
                log.warning(
                    "job interrupted; the tags are left as they are: the job is no longer held here",
                    extra={**ctx, "cause": f"{type(exc).__name__}: {exc}"},
                )
                return
        log.warning("job interrupted; putting the trigger tag back", extra=ctx)
        try:
            await apply_transition(
                self.zammad,
                ticket_id,
                revert_transition(self.trigger_tag),
                attempts=WRITE_ATTEMPTS,
                backoff_seconds=self._write_backoff,
            )
        except Exception:
            log.error("could not put the trigger tag back", exc_info=True, extra=ctx)

    # -- the report ----------------------------------------------------------------------------
    def report(
        self,
        outcome: ArchiveOutcome,
        *,
        job_id: str,
        delivery_id: str | None,
        attempts: int = 1,
        gave_up: bool = False,
    ) -> Report | None:
        """The final tags and note for ``outcome`` (:func:`app.workflow.report.final_report`
        with this workflow's trigger tag); ``None`` for a skipped run."""
        return final_report(
            outcome,
            trigger_tag=self.trigger_tag,
            job_id=job_id,
            delivery_id=delivery_id,
            attempts=attempts,
            gave_up=gave_up,
            language=self.language,
        )

    async def deliver(
        self, ticket_id: int, report: Report, *, job_id: str, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        """Write ``report`` to the ticket, idempotently: :func:`app.workflow.report.deliver`
        (same ``fresh``, ``guard`` and errors) with this workflow's backoff and redaction."""
        await deliver(
            self.zammad,
            ticket_id,
            report,
            job_id=job_id,
            fresh=fresh,
            guard=guard,
            backoff_seconds=self._write_backoff,
            redact=self._redact,
        )

    async def run(
        self, ticket_id: int, *, job_id: str, delivery_id: str | None = None, force: bool = False
    ) -> ArchiveOutcome:
        """Execute and report in one go, without retries (tools and tests)."""
        outcome = await self.execute(ticket_id, job_id=job_id, delivery_id=delivery_id, force=force)
        report = self.report(outcome, job_id=job_id, delivery_id=delivery_id)
        if report is not None:
            await self.deliver(ticket_id, report, job_id=job_id)
        return outcome
