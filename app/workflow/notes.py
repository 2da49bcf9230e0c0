"""What the archiver writes back into the ticket: the internal notes.

Notes are HTML (Zammad stores article bodies as HTML) and always internal ``note``
articles (``docs/reference/zammad.md`` §3.4: ``type: email`` would mail the customer). Every value is
HTML-escaped; every note carries the job id, so a person (and later the archiver itself)
can match a note to a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from app.workflow.classify import ClassifiedFailure
from app.workflow.ports import OmittedFile, RenderedPdf, SignedPdf, StoredArchive

SUCCESS_SUBJECT = "PDF archived"
FAILURE_SUBJECT = "PDF archiver error"


@dataclass(frozen=True, slots=True)
class Note:
    """An internal note: ``subject`` and an HTML ``body``."""

    subject: str
    body_html: str


def _items(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in rows)


MAX_OMISSIONS_LISTED = 10


def success_note(
    stored: StoredArchive,
    signed: SignedPdf,
    rendered: RenderedPdf,
    *,
    job_id: str,
    delivery_id: str | None,
    omitted: Sequence[OmittedFile] = (),
) -> Note:
    """The note after a successful archive.

    Starts with "PDF archived"; gives the path relative to the storage root, the SHA-256 of
    the stored file, its size, the signer (or that the file is unsigned), the articles
    included, the job id and the webhook delivery id.
    """
    if signed.signed:
        signature = f"PAdES {signed.pades_level} by {signed.signer_subject}"
        if signed.timestamp is not None:
            signature += f", timestamp {signed.timestamp.isoformat()}"
            if signed.timestamp_authority:
                signature += f" from {signed.timestamp_authority}"
    else:
        signature = "not signed (SIGNING_ENABLED=false)"
    rows = [
        ("Path", stored.relative_path),
        ("SHA-256", stored.sha256),
        ("Size", f"{stored.size} bytes, {rendered.page_count} pages"),
        ("Signature", signature),
        ("Articles", f"{rendered.articles_included} of {rendered.articles_total}"),
    ]
    if signed.signer_cert_sha256:
        rows.append(("Signer certificate SHA-256", signed.signer_cert_sha256))
    if rendered.articles_included < rendered.articles_total:
        rows.append(
            (
                "Warning",
                f"only {rendered.articles_included} of {rendered.articles_total} articles are in "
                "the PDF (PDF_MAX_ARTICLES with PDF_ARTICLE_LIMIT_MODE=cap_and_continue)",
            )
        )
    if rendered.missing_glyphs:
        scripts = f" ({', '.join(rendered.missing_scripts)})" if rendered.missing_scripts else ""
        rows.append(
            (
                "Warning",
                f"{rendered.missing_glyphs} characters{scripts} had no font and are shown as placeholders",
            )
        )
    if rendered.embedded:
        rows.append(("Originals embedded", f"{len(rendered.embedded)} files (PDF/A-3 associated files)"))
    if omitted:
        listed = "; ".join(f"{o.name} ({o.reason})" for o in omitted[:MAX_OMISSIONS_LISTED])
        more = (
            f"; and {len(omitted) - MAX_OMISSIONS_LISTED} more" if len(omitted) > MAX_OMISSIONS_LISTED else ""
        )
        rows.append(("Originals not embedded", f"{len(omitted)}: {listed}{more}"))
    rows.append(("Job", job_id))
    if delivery_id:
        rows.append(("Delivery", delivery_id))
    body = f"<p><b>{escape(SUCCESS_SUBJECT)}</b></p><ul>{_items(rows)}</ul>"
    return Note(SUCCESS_SUBJECT, body)


def failure_note(
    failure: ClassifiedFailure,
    *,
    job_id: str,
    delivery_id: str | None,
    step: str,
    attempts: int = 1,
    gave_up: bool = False,
) -> Note:
    """The note after a failed run.

    Starts with "PDF archiver error"; gives the classification (Transient: the trigger tag
    was kept and the ticket will be tried again; Permanent: it was removed), the failing
    step, the error code, the cause (already free of secrets), the attempts and the job id.
    ``gave_up``: the automatic retries of a Transient failure are used up.
    """
    if gave_up:
        hint = (
            f"Transient, gave up after {attempts} attempts: the trigger tag was kept; the ticket is "
            "archived when it is triggered again or retried (POST /retry/{ticket_id})."
        )
    elif failure.transient:
        hint = "Transient: the trigger tag was kept; the ticket is archived when it is triggered again."
    else:
        hint = "Permanent: the trigger tag was removed; fix the cause, then add the trigger tag again."
    rows = [
        ("Classification", failure.classification.value),
        ("Step", step),
        ("Code", failure.code),
        ("Cause", failure.cause),
        ("Attempts", str(attempts)),
        ("Job", job_id),
    ]
    if delivery_id:
        rows.append(("Delivery", delivery_id))
    body = f"<p><b>{escape(FAILURE_SUBJECT)}</b></p><p>{escape(hint)}</p><ul>{_items(rows)}</ul>"
    return Note(FAILURE_SUBJECT, body)
