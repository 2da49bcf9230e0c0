"""One archive run for one ticket: gate, tags, fetch, render, sign, store — then the report.

:class:`ArchiveWorkflow` is the only place that knows the order of steps. It talks to
Zammad, the renderer, the signer and the storage through the protocols in
:mod:`app.workflow.ports`, so its decisions are the same whatever adapters run below it.

A run has two halves, so that a durable job store can sit between them (an outbox):

1. :meth:`ArchiveWorkflow.execute` does the work and returns an :class:`ArchiveOutcome`
   without telling Zammad how it ended;
2. :meth:`ArchiveWorkflow.report` turns a final outcome into a :class:`Report` (the tag
   transition and the internal note, plain data that can be stored), and
   :meth:`ArchiveWorkflow.deliver` writes it to the ticket, idempotently: tags are
   idempotent in Zammad, and a note is not posted twice for one job (each note carries the
   job id, and the ticket's articles are checked for it before a post that may not be the
   first: a redelivery, or a retry after a post whose answer was lost).

With several replicas, the caller passes a :data:`Guard` (a lease check) that is awaited
before the run's and the delivery's writes to the ticket: a replica that lost the job to
another one writes nothing there.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from app import SERVICE_NAME, __version__
from app.errors import ArchiverError, ZammadApiError
from app.jobs.records import OutcomeStatus
from app.workflow.classify import ClassifiedFailure, classify
from app.workflow.gate import should_process
from app.workflow.notes import Note, failure_note, success_note
from app.workflow.ports import (
    EmbeddedFile,
    FileRendererPort,
    FileSignerPort,
    FileStoragePort,
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

HANDED_OVER = "handed over to another replica"
"""The message of a cancellation whose job another replica now runs (its lease was taken over):
the run stops without touching the ticket's tags, which belong to the new run."""

WRITE_ATTEMPTS = 3
"""How often one tag or note write is tried inside one :meth:`ArchiveWorkflow.deliver` call."""

IMAGE_FETCH_CONCURRENCY = 4
IMAGE_MAX_BYTES = 10 * 1024 * 1024
"""Largest image downloaded for the layout, in bytes."""
IMAGES_TOTAL_MAX_BYTES = 50 * 1024 * 1024
"""Most image bytes one ticket's layout downloads."""

UNDELIVERABLE_STATUSES = frozenset({404, 422})
"""Zammad answers after which a report is given up: the ticket is gone, or the write is refused."""


def _safe_name(filename: str) -> str:
    """A file name usable inside the PDF and when extracted: no path parts or control characters."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in filename).strip(" .")
    return cleaned[:120] or "file"


async def _fetch_all(
    calls: list[Callable[[], Awaitable[bytes]]], concurrency: int
) -> list[bytes | Exception]:
    """Run ``calls`` at most ``concurrency`` at a time, started in order; their results in
    order, an exception in place of a failed call's result.

    A few worker tasks take the calls one after the other, so a ticket with thousands of
    e-mail articles does not hold thousands of pending tasks (and their frames) at once.
    """
    results: list[bytes | Exception] = [b""] * len(calls)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(calls):
            index = position
            position += 1
            try:
                results[index] = await calls[index]()
            except Exception as exc:  # noqa: BLE001 - becomes an omission with its cause
                results[index] = exc

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(calls)))))
    return results


Guard = Callable[[], Awaitable[None]]
"""A check awaited right before a write to the ticket that only the holder of the job may
make: it returns when this process may write, and raises when it may not — with several
replicas on one job store, when another replica has taken the job over (its lease ran out:
``app.jobs.records.LeaseLost``) or when that cannot be confirmed (the database unreachable).
The workflow then writes nothing more for the job; the exception reaches the caller."""


class UndeliverableReport(ArchiverError):
    """A report cannot be written to the ticket, now or later (Zammad 404 or 422)."""

    code = "report_undeliverable"
    transient = False


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """How :meth:`ArchiveWorkflow.execute` ended.

    Attributes:
        status: ``"archived"``, ``"skipped"`` or ``"failed"``.
        reason: for ``skipped`` the gate's reason; for ``failed`` the failing step.
        started: whether the processing tags were set (the run got past the gate).
        stored: where the archive landed (``archived`` only).
        failure: the classified failure (``failed`` only).
        note: the success note (``archived`` only).
        step_seconds: wall time per step, seconds.
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


@dataclass(frozen=True, slots=True)
class EmbedPolicy:
    """Which originals go into the PDF (``PDF_EMBED_*``).

    Attributes:
        max_bytes: largest attachment embedded (``PDF_EMBED_MAX_BYTES``).
        total_max_bytes: most attachment bytes per ticket (``PDF_EMBED_TOTAL_MAX_BYTES``).
    """

    max_bytes: int = 10 * 1024 * 1024
    total_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Report:
    """What to write to the ticket at the end of a job: tags, then an internal note.

    Plain data (see :meth:`as_dict`/:meth:`from_dict`) so a job store can keep it until it
    was delivered.
    """

    add: tuple[str, ...]
    remove: tuple[str, ...]
    subject: str
    body_html: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "add": list(self.add),
            "remove": list(self.remove),
            "subject": self.subject,
            "body_html": self.body_html,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(tuple(data["add"]), tuple(data["remove"]), data["subject"], data["body_html"])


def sidecar_fields(
    snapshot: TicketSnapshot,
    rendered: RenderedPdf,
    signed: SignedPdf,
    *,
    job_id: str,
    delivery_id: str | None,
    template: str = "default",
) -> dict[str, Any]:
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
        "template": template,
        "missing_glyphs": rendered.missing_glyphs,
        "missing_scripts": list(rendered.missing_scripts),
        "pdfa": rendered.pdfa,
        "embedded_files": [{"name": n, "sha256": h, "size": z} for n, h, z in rendered.embedded],
        "omitted_files": [
            {
                "name": o.name,
                "size": o.size,
                "reason": o.reason,
                "article_id": o.article_id,
                "attachment_id": o.attachment_id,
            }
            for o in snapshot.omitted
        ],
        "signed": signed.signed,
        "pades_level": signed.pades_level,
        "signer_subject": signed.signer_subject,
        "signer_cert_sha256": signed.signer_cert_sha256,
        "timestamp": signed.timestamp.isoformat() if signed.timestamp else None,
        "timestamp_authority": signed.timestamp_authority,
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
        write_backoff_seconds: first pause between attempts of a tag or note write.
        image_references: ``(ticket_id, articles) -> [ImageRef]``, the images the layout
            shows (inline images, image attachments); they are downloaded before rendering.
            ``None`` downloads none.
        template: the layout template's name, recorded in the sidecar.
        embed: which originals to embed as PDF/A-3 associated files (``None``: none).
        spool_dir: a folder (on disk, writable by the render processes) for per-job working
            files. When given and the renderer, signer and storage can work with files
            (:class:`~app.workflow.ports.FileRendererPort`, ``FileSignerPort``,
            ``FileStoragePort``), the snapshot and the PDF travel through files in a
            ``job-*`` folder below it, removed when the step ends: a big ticket's PDF is
            never held whole in this process's memory. Otherwise bytes are passed.
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
        write_backoff_seconds: float = 0.5,
        image_references: Callable[[int, list[dict[str, Any]]], list[ImageRefLike]] | None = None,
        template: str = "default",
        embed: EmbedPolicy | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.zammad = zammad
        self.renderer = renderer
        self.signer = signer
        self.storage = storage
        self.trigger_tag = trigger_tag
        self.require_tag = require_tag
        self._redact = redact
        self._write_backoff = write_backoff_seconds
        self._image_references = image_references
        self.template = template
        self.embed = embed
        files = (
            hasattr(renderer, "render_file")
            and hasattr(signer, "sign_file")
            and hasattr(storage, "store_file")
        )
        self.spool_dir = spool_dir if files else None

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
                replicas: another one took the job over). See :data:`Guard`.

        Never raises for a failure of the run itself: it ends as ``status="failed"``. The
        guard's exception before the start transition is raised unchanged (nothing was
        written). ``asyncio.CancelledError`` (shutdown) is re-raised after the ticket's tags
        were put back (trigger tag restored, ``pdf:processing`` removed) — unless the guard
        refuses: then the tags are left to the replica that holds the job now.
        """
        ctx = {"ticket_id": ticket_id, "job_id": job_id, "delivery_id": delivery_id}
        timings: dict[str, float] = {}
        step = "fetch tags"
        started = False
        refused: BaseException | None = None
        try:
            # Tags are read right before the processing transition (no stale decision).
            tags = await self._timed(timings, "fetch_tags", self.zammad.get_tags(ticket_id))
            decision = should_process(
                tags, trigger_tag=self.trigger_tag, require_tag=self.require_tag, force=force, resume=resume
            )
            if not decision.process:
                log.info("job skipped", extra={**ctx, "reason": decision.reason})
                return ArchiveOutcome(OutcomeStatus.SKIPPED, decision.reason, step_seconds=timings)

            step = "tag processing"
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
            await self._apply(ticket_id, needed, attempts=1)

            step = "fetch ticket"
            ticket, ticket_raw = await self._timed(
                timings, "fetch_ticket", self.zammad.get_ticket_raw(ticket_id)
            )
            step = "fetch articles"
            articles, articles_raw = await self._timed(
                timings, "fetch_articles", self.zammad.list_articles_raw(ticket_id)
            )
            step = "fetch images"
            images = await self._timed(timings, "fetch_images", self._fetch_images(ticket_id, articles, ctx))
            embedded: tuple[EmbeddedFile, ...] = ()
            omitted: tuple[OmittedFile, ...] = ()
            if self.embed is not None:
                step = "fetch originals"
                embedded, omitted = await self._timed(
                    timings,
                    "fetch_originals",
                    self._collect_originals(ticket_id, ticket_raw, articles_raw, articles, images),
                )
            shown_tags = [t for t in tags if t not in STATE_TAGS and t != self.trigger_tag]
            snapshot = TicketSnapshot(
                ticket=ticket,
                articles=articles,
                tags=shown_tags,
                archived_at=archived_at or datetime.now(UTC),
                images=images,
                embedded=embedded,
                omitted=omitted,
                articles_raw=articles_raw,
            )

            # What the steps after the layout need of the snapshot; the articles, images and
            # originals are let go as soon as the renderer has them.
            light = TicketSnapshot(
                ticket=ticket, articles=[], tags=shown_tags, archived_at=snapshot.archived_at, omitted=omitted
            )
            del articles, articles_raw, ticket_raw, images, embedded
            if self.spool_dir is not None:
                # Through files in a fresh job-* folder of the spool, removed whatever happens:
                # the snapshot is pickled to disk for the render process, the PDF written,
                # signed and copied file to file.
                renderer = cast(FileRendererPort, self.renderer)
                signer = cast(FileSignerPort, self.signer)
                storage = cast(FileStoragePort, self.storage)
                step = "render"
                with tempfile.TemporaryDirectory(prefix="job-", dir=self.spool_dir) as work:
                    folder = Path(work)
                    render = renderer.render_file(snapshot, folder / "rendered.pdf")
                    snapshot = light  # the render coroutine holds the full one until it is on disk
                    rendered = await self._timed(timings, "render", render)
                    assert rendered.path is not None
                    step = "sign"
                    signed = await self._timed(
                        timings, "sign", signer.sign_file(rendered.path, folder / "signed.pdf")
                    )
                    assert signed.path is not None
                    step = "store"
                    sidecar = sidecar_fields(
                        light,
                        rendered,
                        signed,
                        job_id=job_id,
                        delivery_id=delivery_id,
                        template=self.template,
                    )
                    stored = await self._timed(
                        timings, "store", storage.store_file(light, signed.path, sidecar=sidecar)
                    )
            else:
                step = "render"
                rendered = await self._timed(timings, "render", self.renderer.render(snapshot))
                step = "sign"
                signed = await self._timed(timings, "sign", self.signer.sign(rendered.data))
                step = "store"
                sidecar = sidecar_fields(
                    light, rendered, signed, job_id=job_id, delivery_id=delivery_id, template=self.template
                )
                stored = await self._timed(
                    timings, "store", self.storage.store(light, signed.data, sidecar=sidecar)
                )
            snapshot = light
            log.info(
                "archive stored",
                extra={
                    **ctx,
                    "path": stored.relative_path,
                    "sha256": stored.sha256,
                    "size": stored.size,
                    "pages": rendered.page_count,
                    "seconds": timings,
                },
            )
            note = success_note(
                stored, signed, rendered, job_id=job_id, delivery_id=delivery_id, omitted=snapshot.omitted
            )
            return ArchiveOutcome(
                OutcomeStatus.ARCHIVED, started=True, stored=stored, note=note, step_seconds=timings
            )
        except asyncio.CancelledError as cancel:
            if started and HANDED_OVER not in cancel.args:
                await asyncio.shield(self._revert(ticket_id, {**ctx, "step": step}, guard))
            raise
        except Exception as exc:
            if exc is refused:
                raise
            failure = classify(exc)
            failure = ClassifiedFailure(failure.classification, failure.code, self._redact(failure.cause))
            log.error(
                "job step failed",
                exc_info=True,
                extra={
                    **ctx,
                    "step": step,
                    "classification": failure.classification.value,
                    "code": failure.code,
                    "cause": failure.cause,
                },
            )
            return ArchiveOutcome(
                OutcomeStatus.FAILED, step, started=started, failure=failure, step_seconds=timings
            )

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
        """The final tags and note for ``outcome``; ``None`` when there is nothing to report
        (a skipped run leaves the ticket as it is).

        Args:
            attempts: how many runs the job took (named in the note of a failure).
            gave_up: a Transient failure that used up its attempts (the job is dead): the
                note says so; the trigger tag is kept, as for every Transient failure.
        """
        if outcome.status == OutcomeStatus.ARCHIVED:
            assert outcome.note is not None
            t = success_transition(self.trigger_tag)
            return Report(t.add, t.remove, outcome.note.subject, outcome.note.body_html)
        if outcome.status != OutcomeStatus.FAILED:
            return None
        failure = outcome.failure
        assert failure is not None
        if outcome.started:
            t = failure_transition(self.trigger_tag, transient=failure.transient)
        else:
            # The tags were never changed, so the trigger tag was not touched: leave it as it is.
            t = TagTransition(add=(TAG_ERROR,))
        note = failure_note(
            failure,
            job_id=job_id,
            delivery_id=delivery_id,
            step=outcome.reason,
            attempts=attempts,
            gave_up=gave_up,
        )
        return Report(t.add, t.remove, note.subject, note.body_html)

    async def deliver(
        self, ticket_id: int, report: Report, *, job_id: str, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        """Write ``report`` to the ticket: tags first (added before removed), then the note —
        unless the ticket already has this job's note (a delivery that was interrupted after
        posting, or a post whose answer was lost: checked again before each retry).

        Args:
            fresh: this is the report's first delivery, by the process that ran the job, so
                no note of this job can be on the ticket yet: the first check is skipped
                (one ``GET`` of the ticket's articles fewer per job).
            guard: awaited before the tags are written and before each post of the note (see
                :data:`Guard`): a delivery that stalled while another replica took the report
                over stops there instead of posting the note a second time.

        Raises:
            UndeliverableReport: Zammad answered 404 (the ticket is gone) or 422 (it refuses
                the write): retrying cannot help.
            Exception: the guard's exception, unchanged; or the last error when Zammad keeps
                failing otherwise (the caller retries).
        """
        try:
            await self._deliver(ticket_id, report, job_id=job_id, fresh=fresh, guard=guard)
        except ZammadApiError as exc:
            if exc.status in UNDELIVERABLE_STATUSES:
                raise UndeliverableReport(self._redact(str(exc))) from exc
            raise

    async def _deliver(
        self, ticket_id: int, report: Report, *, job_id: str, fresh: bool, guard: Guard | None
    ) -> None:
        if guard is not None:
            await guard()
        await self._apply(ticket_id, TagTransition(report.add, report.remove), attempts=WRITE_ATTEMPTS)
        marker = f"Job: {job_id}"

        async def posted() -> bool:
            # Only articles mentioning the marker can be this job's note: a big ticket's
            # articles are not parsed when none does.
            articles = await self._retry(
                lambda: self.zammad.list_articles(ticket_id, containing=marker), attempts=WRITE_ATTEMPTS
            )
            if any(a.get("subject") == report.subject and marker in (a.get("body") or "") for a in articles):
                log.info("note already on the ticket", extra={"ticket_id": ticket_id, "job_id": job_id})
                return True
            return False

        if not fresh and await posted():
            return
        delay = self._write_backoff
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            if guard is not None:
                await guard()
            try:
                await self.zammad.create_internal_note(
                    ticket_id, subject=report.subject, body_html=report.body_html
                )
                return
            except Exception as exc:
                if attempt == WRITE_ATTEMPTS or not classify(exc).transient:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
            if await posted():  # the failed post may have reached Zammad (its answer was lost)
                return

    async def run(
        self, ticket_id: int, *, job_id: str, delivery_id: str | None = None, force: bool = False
    ) -> ArchiveOutcome:
        """Execute and report in one go, without retries (tools and tests)."""
        outcome = await self.execute(ticket_id, job_id=job_id, delivery_id=delivery_id, force=force)
        report = self.report(outcome, job_id=job_id, delivery_id=delivery_id)
        if report is not None:
            await self.deliver(ticket_id, report, job_id=job_id)
        return outcome

    # -- helpers ---------------------------------------------------------------------------------
    async def _collect_originals(
        self,
        ticket_id: int,
        ticket_raw: bytes,
        articles_raw: bytes,
        articles: list[dict[str, Any]],
        images: Mapping[int, bytes],
    ) -> tuple[tuple[EmbeddedFile, ...], tuple[OmittedFile, ...]]:
        """The originals for the PDF/A-3 associated files, and those left out.

        ``ticket.json`` and ``articles.json`` (the API responses byte for byte) and each
        article's body are ``Source``; each e-mail article's raw message
        (``GET /api/v1/ticket_article_plain/{id}``) is ``Source``; attachments are ``Data``,
        within the :class:`EmbedPolicy` caps (in article order; a file that does not fit is
        listed as omitted with the reason). A download that fails is omitted, never fatal.
        """
        assert self.embed is not None
        policy = self.embed
        files: list[EmbeddedFile] = [
            EmbeddedFile(
                "ticket.json",
                ticket_raw,
                "application/json",
                "Source",
                f"GET /api/v1/tickets/{ticket_id}?expand=true as answered by Zammad",
            ),
            EmbeddedFile(
                "articles.json",
                articles_raw,
                "application/json",
                "Source",
                f"GET /api/v1/ticket_articles/by_ticket/{ticket_id} as answered by Zammad",
            ),
        ]
        omitted: list[OmittedFile] = []
        for article in articles:
            aid = article.get("id")
            body = article.get("body")
            if isinstance(aid, int) and isinstance(body, str) and body:
                html = article.get("content_type") == "text/html"
                files.append(
                    EmbeddedFile(
                        f"article-{aid}-body.{'html' if html else 'txt'}",
                        body.encode("utf-8"),
                        "text/html" if html else "text/plain",
                        "Source",
                        f"Body of article {aid} as stored by Zammad",
                        article_id=aid,
                    )
                )

        emails = [a for a in articles if a.get("type") == "email" and isinstance(a.get("id"), int)]
        plain = await _fetch_all(
            [lambda a=a: self.zammad.get_article_plain(a["id"]) for a in emails], IMAGE_FETCH_CONCURRENCY
        )
        for article, result in zip(emails, plain, strict=True):
            name = f"article-{article['id']}.eml"
            if isinstance(result, Exception):
                omitted.append(
                    OmittedFile(
                        name, None, f"download failed: {self._redact(str(result))}", article_id=article["id"]
                    )
                )
            elif not result:
                omitted.append(
                    OmittedFile(
                        name, 0, "Zammad holds no raw e-mail for this article", article_id=article["id"]
                    )
                )
            else:
                files.append(
                    EmbeddedFile(
                        name,
                        result,
                        "message/rfc822",
                        "Source",
                        f"Raw e-mail of article {article['id']}",
                        article_id=article["id"],
                    )
                )

        wanted: list[tuple[dict[str, Any], dict[str, Any], str]] = []
        seen: set[int] = set()
        total = 0
        for article in articles:
            for att in article.get("attachments") or []:
                att_id = att.get("id")
                if not isinstance(att_id, int) or att_id in seen:
                    continue
                seen.add(att_id)
                filename = str(att.get("filename") or f"attachment-{att_id}")
                name = f"article-{article.get('id')}-{att_id}-{_safe_name(filename)}"
                try:
                    size = int(att.get("size"))
                except (TypeError, ValueError):
                    size = None
                if size is not None and size > policy.max_bytes:
                    omitted.append(
                        OmittedFile(
                            name,
                            size,
                            f"larger than PDF_EMBED_MAX_BYTES ({policy.max_bytes})",
                            article.get("id"),
                            att_id,
                        )
                    )
                elif size is not None and total + size > policy.total_max_bytes:
                    omitted.append(
                        OmittedFile(
                            name,
                            size,
                            f"over PDF_EMBED_TOTAL_MAX_BYTES ({policy.total_max_bytes}) for the ticket",
                            article.get("id"),
                            att_id,
                        )
                    )
                else:
                    total += size or 0
                    wanted.append((article, att, name))

        async def download(article: dict[str, Any], att: dict[str, Any]) -> bytes:
            if att["id"] in images:
                return images[att["id"]]
            return await self.zammad.get_attachment(ticket_id, article["id"], att["id"])

        data = await _fetch_all(
            [lambda a=a, t=t: download(a, t) for a, t, _ in wanted], IMAGE_FETCH_CONCURRENCY
        )
        for (article, att, name), result in zip(wanted, data, strict=True):
            if isinstance(result, Exception):
                omitted.append(
                    OmittedFile(
                        name,
                        None,
                        f"download failed: {self._redact(str(result))}",
                        article.get("id"),
                        att["id"],
                    )
                )
                continue
            if len(result) > policy.max_bytes:  # the declared size was wrong
                omitted.append(
                    OmittedFile(
                        name,
                        len(result),
                        f"larger than PDF_EMBED_MAX_BYTES ({policy.max_bytes})",
                        article.get("id"),
                        att["id"],
                    )
                )
                continue
            prefs = att.get("preferences") or {}
            mime = str(prefs.get("Mime-Type") or prefs.get("Content-Type") or "application/octet-stream")
            files.append(
                EmbeddedFile(
                    name,
                    result,
                    mime.split(";")[0].strip() or "application/octet-stream",
                    "Data",
                    f"Attachment {att.get('filename')!s} of article {article.get('id')}",
                    article_id=article.get("id"),
                    attachment_id=att["id"],
                )
            )
        return tuple(files), tuple(omitted)

    async def _fetch_images(
        self, ticket_id: int, articles: list[dict[str, Any]], ctx: dict[str, Any]
    ) -> dict[int, bytes]:
        """Download the layout's images, at most :data:`IMAGE_FETCH_CONCURRENCY` at a time.

        An image that fails to download or is larger than :data:`IMAGE_MAX_BYTES` (or would
        pass :data:`IMAGES_TOTAL_MAX_BYTES`) is left out: the layout draws a placeholder with
        its file name. Never fails the job.
        """
        if self._image_references is None:
            return {}
        refs = self._image_references(ticket_id, articles)
        if not refs:
            return {}
        semaphore = asyncio.Semaphore(IMAGE_FETCH_CONCURRENCY)
        images: dict[int, bytes] = {}
        total = 0

        async def fetch(ref: ImageRefLike) -> None:
            nonlocal total
            async with semaphore:
                try:
                    data = await self.zammad.get_attachment(ref.ticket_id, ref.article_id, ref.attachment_id)
                except Exception as exc:  # noqa: BLE001 - a missing image is a placeholder, not a failure
                    log.warning(
                        "image not fetched",
                        extra={
                            **ctx,
                            "attachment_id": ref.attachment_id,
                            "image": ref.filename,
                            "cause": self._redact(str(exc)),
                        },
                    )
                    return
            if len(data) > IMAGE_MAX_BYTES or total + len(data) > IMAGES_TOTAL_MAX_BYTES:
                log.warning(
                    "image too large to embed",
                    extra={
                        **ctx,
                        "attachment_id": ref.attachment_id,
                        "image": ref.filename,
                        "size": len(data),
                    },
                )
                return
            total += len(data)
            images[ref.attachment_id] = data

        await asyncio.gather(*(fetch(ref) for ref in refs))
        return images

    async def _revert(self, ticket_id: int, ctx: dict[str, Any], guard: Guard | None) -> None:
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
            await self._apply(ticket_id, revert_transition(self.trigger_tag), attempts=WRITE_ATTEMPTS)
        except Exception:
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
