"""What the archiver writes back into the ticket: the internal notes.

Notes are HTML (Zammad stores article bodies as HTML) and always internal ``note``
articles (``docs/reference/zammad.md`` §3.4: ``type: email`` would mail the customer). Every value is
HTML-escaped; every note carries the job id, so a person (and later the archiver itself)
can match a note to a run.

Notes are written in the archive's language (:mod:`app.i18n`, ``PDF_LANGUAGE``): the
success note in the language its PDF was rendered in, a failure note in ``PDF_LANGUAGE``
(the ticket's group, which ``PDF_LANGUAGE_BY_GROUP`` looks at, may not be known yet).
:data:`SUCCESS_SUBJECT` and :data:`FAILURE_SUBJECT` are the English subjects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from app.i18n import translation
from app.workflow.classify import ClassifiedFailure
from app.workflow.ports import (
    ImagePlaceholder,
    MergedInto,
    OmittedFile,
    RenderedPdf,
    SignedPdf,
    StoredArchive,
)

SUCCESS_SUBJECT = "PDF archived"
FAILURE_SUBJECT = "PDF archiver error"


@dataclass(frozen=True, slots=True)
class Note:
    """An internal note: ``subject`` and an HTML ``body``."""

    subject: str
    body_html: str


def _utc_seconds(when: datetime) -> str:
    """``2025-03-06T13:20:11+00:00``: ISO 8601 in UTC, to the second, whatever the TSA's
    ``genTime`` carries (RFC 3161 allows fractions of a second; a note is read by people)."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


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
    merged_into: MergedInto | None = None,
    placeholders: Sequence[ImagePlaceholder] = (),
) -> Note:
    """The note after a successful archive, in ``rendered.language``.

    Starts with "PDF archived" ("PDF archiviert"); gives the path relative to the storage
    root, the SHA-256 of the stored file, its size, the signer (or that the file is
    unsigned), the articles included, for a merged ticket the ticket it was merged into
    (:meth:`~app.workflow.ports.MergedInto.text`), the job id and the webhook delivery id. The signature
    timestamp is given in UTC to the second (ISO 8601), the same at every PAdES level and for
    every TSA. The originals ``omitted`` and the layout images shown as ``placeholders`` are
    listed (at most :data:`MAX_OMISSIONS_LISTED` of each, by name, with the reason: for an
    image its classification and cause, which stay in English as in a failure note).
    """
    tr = translation(rendered.language)
    _ = tr.gettext
    if signed.signed:
        signature = _("PAdES {level} by {signer}").format(
            level=signed.pades_level, signer=signed.signer_subject
        )
        if signed.timestamp is not None:
            signature += _(", timestamp {time}").format(time=_utc_seconds(signed.timestamp))
            if signed.timestamp_authority:
                signature += _(" from {authority}").format(authority=signed.timestamp_authority)
    else:
        signature = _("not signed (SIGNING_ENABLED=false)")
    included, total = rendered.articles_included, rendered.articles_total
    rows = [
        (_("Path"), stored.relative_path),
        ("SHA-256", stored.sha256),
        (_("Size"), _("{size} bytes, {pages} pages").format(size=stored.size, pages=rendered.page_count)),
        (_("Signature"), signature),
        (_("Articles"), _("{included} of {total}").format(included=included, total=total)),
    ]
    if merged_into is not None:
        text = merged_into.text(_)
        if not merged_into.known and merged_into.reason:
            text += f" ({merged_into.reason})"
        rows.append((_("Merged into"), text))
    if signed.signer_cert_sha256:
        rows.append((_("Signer certificate SHA-256"), signed.signer_cert_sha256))
    if included < total:
        rows.append(
            (
                _("Warning"),
                _(
                    "only {included} of {total} articles are in "
                    "the PDF (PDF_MAX_ARTICLES with PDF_ARTICLE_LIMIT_MODE=cap_and_continue)"
                ).format(included=included, total=total),
            )
        )
    if rendered.missing_glyphs:
        scripts = f" ({', '.join(rendered.missing_scripts)})" if rendered.missing_scripts else ""
        rows.append(
            (
                _("Warning"),
                tr.ngettext(
                    "{count} character{scripts} had no font and is shown as a placeholder",
                    "{count} characters{scripts} had no font and are shown as placeholders",
                    rendered.missing_glyphs,
                ).format(count=rendered.missing_glyphs, scripts=scripts),
            )
        )
    if rendered.embedded:
        embedded = _("{count} files (PDF/A-3 associated files)").format(count=len(rendered.embedded))
        if included < total:
            embedded += (
                _(", of the {included} articles in the PDF; articles.json lists all {total}")
                if any(name == "articles.json" for name, _sha256, _size in rendered.embedded)
                else _(", of the {included} articles in the PDF")
            ).format(included=included, total=total)
        rows.append((_("Originals embedded"), embedded))
    if omitted:
        listed = "; ".join(f"{o.name} ({o.reason})" for o in omitted[:MAX_OMISSIONS_LISTED])
        more = (
            _("; and {count} more").format(count=len(omitted) - MAX_OMISSIONS_LISTED)
            if len(omitted) > MAX_OMISSIONS_LISTED
            else ""
        )
        rows.append((_("Originals not embedded"), f"{len(omitted)}: {listed}{more}"))
    if placeholders:
        listed = "; ".join(
            f"{p.name} ({p.classification}: {p.cause})" for p in placeholders[:MAX_OMISSIONS_LISTED]
        )
        more = (
            _("; and {count} more").format(count=len(placeholders) - MAX_OMISSIONS_LISTED)
            if len(placeholders) > MAX_OMISSIONS_LISTED
            else ""
        )
        rows.append((_("Images shown as placeholders"), f"{len(placeholders)}: {listed}{more}"))
    rows.append((_("Job"), job_id))
    if delivery_id:
        rows.append((_("Delivery"), delivery_id))
    subject = _("PDF archived")  # SUCCESS_SUBJECT
    body = f"<p><b>{escape(subject)}</b></p><ul>{_items(rows)}</ul>"
    return Note(subject, body)


def failure_note(
    failure: ClassifiedFailure,
    *,
    job_id: str,
    delivery_id: str | None,
    step: str,
    attempts: int = 1,
    gave_up: bool = False,
    language: str = "en",
    tags_changed: bool = True,
) -> Note:
    """The note after a failed run, in ``language`` (:data:`app.i18n.LANGUAGES`).

    Starts with "PDF archiver error"; gives the classification and what happened to the
    ticket's tags (Transient: the trigger tag was kept and the ticket will be tried again;
    Permanent: it was removed), the failing step, the error code, the cause (already free of
    secrets), the attempts and the job id. ``gave_up``: the automatic retries of a Transient
    failure are used up. ``tags_changed=False``: the run failed before its start step changed
    any tag (e.g. Zammad answered 401 to reading the tags), so the report adds ``pdf:error``
    only and the trigger tag is still there if the ticket had it: the note says so instead.
    The classification value, step name, error code and cause stay as they are (they are what
    logs, metrics and the runbook name).
    """
    _ = translation(language).gettext
    if not tags_changed:
        if gave_up:
            hint = _(
                "Transient, gave up after {attempts} attempts before the run changed any tag: the tags "
                "were left as they were, so the trigger tag is still there if the ticket had it; the "
                "ticket is archived when it is triggered again or retried (POST /retry/{{ticket_id}})."
            ).format(attempts=attempts)
        elif failure.transient:
            hint = _(
                "Transient, before the run changed any tag: the tags were left as they were, so the "
                "trigger tag is still there if the ticket had it; the ticket is archived when it is "
                "triggered again."
            )
        else:
            hint = _(
                "Permanent, before the run changed any tag: the tags were left as they were, so the "
                "trigger tag is still there if the ticket had it; fix the cause, then trigger the "
                "ticket again or retry it (POST /retry/{{ticket_id}})."
            ).format()
    elif gave_up:
        hint = _(
            "Transient, gave up after {attempts} attempts: the trigger tag was kept; the ticket is "
            "archived when it is triggered again or retried (POST /retry/{{ticket_id}})."
        ).format(attempts=attempts)
    elif failure.transient:
        hint = _("Transient: the trigger tag was kept; the ticket is archived when it is triggered again.")
    else:
        hint = _("Permanent: the trigger tag was removed; fix the cause, then add the trigger tag again.")
    rows = [
        (_("Classification"), failure.classification.value),
        (_("Step"), step),
        (_("Code"), failure.code),
        (_("Cause"), failure.cause),
        (_("Attempts"), str(attempts)),
        (_("Job"), job_id),
    ]
    if delivery_id:
        rows.append((_("Delivery"), delivery_id))
    subject = _("PDF archiver error")  # FAILURE_SUBJECT
    body = f"<p><b>{escape(subject)}</b></p><p>{escape(hint)}</p><ul>{_items(rows)}</ul>"
    return Note(subject, body)
