"""What the ticket is told at the end of a job, and how that is written there exactly once.

A run's end state reaches the ticket as a :class:`Report`: the final tag transition and the
internal note, plain data that a durable job store keeps until it was delivered (an
outbox). :func:`deliver` writes it idempotently: Zammad's tag calls are idempotent, and a
note is not posted twice for one job (each note carries the job id, and the ticket's
articles are checked for it before a post that may not be the first: a redelivery, or a
retry after a post whose answer was lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.errors import ArchiverError, ZammadApiError
from app.jobs.records import OutcomeStatus
from app.workflow.classify import classify
from app.workflow.notes import failure_note
from app.workflow.ports import Guard, ZammadPort
from app.workflow.tags import TAG_ERROR, TagTransition, failure_transition, success_transition
from app.workflow.writes import WRITE_ATTEMPTS, apply_transition, retry

if TYPE_CHECKING:
    from app.workflow.archive import ArchiveOutcome

log = logging.getLogger("app.workflow")

UNDELIVERABLE_STATUSES = frozenset({404, 422})
"""Zammad answers after which a report is given up: the ticket is gone, or the write is refused."""


class UndeliverableReport(ArchiverError):
    """A report cannot be written to the ticket, now or later (Zammad 404 or 422)."""

    code = "report_undeliverable"
    transient = False


@dataclass(frozen=True, slots=True)
class Report:
    """What to write to the ticket at the end of a job: tags, then an internal note.

    Plain data (see :meth:`as_dict`/:meth:`from_dict`) so a job store can keep it until it
    was delivered.

    Attributes:
        add, remove: the final tag transition (added first, then removed).
        subject, body_html: the internal note (:mod:`app.workflow.notes`).
    """

    add: tuple[str, ...]
    remove: tuple[str, ...]
    subject: str
    body_html: str

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (lists for the tags)."""
        return {
            "add": list(self.add),
            "remove": list(self.remove),
            "subject": self.subject,
            "body_html": self.body_html,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report :meth:`as_dict` gave; raises ``KeyError`` for a missing field."""
        return cls(tuple(data["add"]), tuple(data["remove"]), data["subject"], data["body_html"])


def final_report(
    outcome: ArchiveOutcome,
    *,
    trigger_tag: str,
    job_id: str,
    delivery_id: str | None,
    attempts: int = 1,
    gave_up: bool = False,
    language: str = "en",
) -> Report | None:
    """The final tags and note for ``outcome``; ``None`` when there is nothing to report
    (a skipped run leaves the ticket as it is).

    Args:
        trigger_tag: the tag that requests archiving (kept on a Transient failure).
        attempts: how many runs the job took (named in the note of a failure).
        gave_up: a Transient failure that used up its attempts (the job is dead): the
            note says so; the trigger tag is kept, as for every Transient failure.
        language: the language of a failure note (``PDF_LANGUAGE``); a success note was
            written in its archive's language already.
    """
    if outcome.status == OutcomeStatus.ARCHIVED:
        assert outcome.note is not None
        t = success_transition(trigger_tag)
        return Report(t.add, t.remove, outcome.note.subject, outcome.note.body_html)
    if outcome.status != OutcomeStatus.FAILED:
        return None
    failure = outcome.failure
    assert failure is not None
    if outcome.started:
        t = failure_transition(trigger_tag, transient=failure.transient)
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
        language=language,
        tags_changed=outcome.started,
    )
    return Report(t.add, t.remove, note.subject, note.body_html)


async def deliver(
    zammad: ZammadPort,
    ticket_id: int,
    report: Report,
    *,
    job_id: str,
    fresh: bool = False,
    guard: Guard | None = None,
    backoff_seconds: float = 0.5,
    redact: Callable[[str], str] = lambda s: s,
) -> None:
    """Write ``report`` to the ticket: tags first (added before removed), then the note —
    unless the ticket already has this job's note (a delivery that was interrupted after
    posting, or a post whose answer was lost: checked again before each retry).

    Each tag write and the note's post are tried :data:`~app.workflow.writes.WRITE_ATTEMPTS`
    times while they fail Transient, ``backoff_seconds`` apart (doubling).

    Args:
        fresh: this is the report's first delivery, by the process that ran the job, so
            no note of this job can be on the ticket yet: the first check is skipped
            (one ``GET`` of the ticket's articles fewer per job).
        guard: awaited before the tags are written and before each post of the note (see
            :data:`~app.workflow.ports.Guard`): a delivery that stalled while another replica took the report
            over stops there instead of posting the note a second time.
        redact: applied to Zammad's error text in :class:`UndeliverableReport`.

    Raises:
        UndeliverableReport: Zammad answered 404 (the ticket is gone) or 422 (it refuses
            the write): retrying cannot help.
        Exception: the guard's exception, unchanged; or the last error when Zammad keeps
            failing otherwise (the caller retries).
    """
    try:
        await _deliver(
            zammad,
            ticket_id,
            report,
            job_id=job_id,
            fresh=fresh,
            guard=guard,
            backoff_seconds=backoff_seconds,
        )
    except ZammadApiError as exc:
        if exc.status in UNDELIVERABLE_STATUSES:
            raise UndeliverableReport(redact(str(exc))) from exc
        raise


async def _deliver(
    zammad: ZammadPort,
    ticket_id: int,
    report: Report,
    *,
    job_id: str,
    fresh: bool,
    guard: Guard | None,
    backoff_seconds: float,
) -> None:
    if guard is not None:
        await guard()
    await apply_transition(
        zammad,
        ticket_id,
        TagTransition(report.add, report.remove),
        attempts=WRITE_ATTEMPTS,
        backoff_seconds=backoff_seconds,
    )
    marker = f"Job: {job_id}"

    async def posted() -> bool:
        # Only articles mentioning the marker can be this job's note: a big ticket's
        # articles are not parsed when none does.
        articles = await retry(
            lambda: zammad.list_articles(ticket_id, containing=marker),
            attempts=WRITE_ATTEMPTS,
            backoff_seconds=backoff_seconds,
        )
        if any(a.get("subject") == report.subject and marker in (a.get("body") or "") for a in articles):
            log.info("note already on the ticket", extra={"ticket_id": ticket_id, "job_id": job_id})
            return True
        return False

    if not fresh and await posted():
        return
    delay = backoff_seconds
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        if guard is not None:
            await guard()
        try:
            await zammad.create_internal_note(ticket_id, subject=report.subject, body_html=report.body_html)
            return
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or not classify(exc).transient:
                raise
        await asyncio.sleep(delay)
        delay *= 2
        if await posted():  # the failed post may have reached Zammad (its answer was lost)
            return
