"""What the archive's JSON sidecar (``<file>.pdf.json``) records about the run that made it.

The storage writes the sidecar after the PDF as its completion marker and adds the file's own
facts (path, SHA-256, size); everything else comes from here: the ticket, the layout, the
signature, the originals left out, the images shown as placeholders, the service and the job.
"""

from __future__ import annotations

from typing import Any

from app import SERVICE_NAME, __version__
from app.workflow.ports import RenderedPdf, SignedPdf, TicketSnapshot


def sidecar_fields(
    snapshot: TicketSnapshot,
    rendered: RenderedPdf,
    signed: SignedPdf,
    *,
    job_id: str,
    delivery_id: str | None,
    template: str = "default",
) -> dict[str, Any]:
    """The run's facts for the archive's JSON sidecar (the storage adds path, SHA-256 and size).

    Args:
        snapshot: the ticket, its omitted originals and its images shown as placeholders (the
            articles are not needed).
        rendered, signed: the layout's and the signature's facts.
        job_id, delivery_id: the job and the webhook delivery (``X-Zammad-Delivery``) behind it.
        template: the layout template's name.

    Returns:
        A JSON-ready dict; times are ISO 8601 strings in UTC. Each of ``omitted_files`` has
        ``name``, ``size`` (bytes, ``None`` when unknown), ``reason``, ``article_id``,
        ``attachment_id`` and ``size_declared``: ``size`` is Zammad's declared size, not
        bytes counted (see :class:`~app.workflow.ports.OmittedFile`). ``merged_into`` is
        ``None`` for a ticket that is not merged, else the ticket it was merged into:
        ``{"ticket_id", "ticket_number"}``, both ``None`` and a ``reason`` when unknown
        (:meth:`~app.workflow.ports.MergedInto.as_json`). Each of ``placeholder_images``
        (layout images the PDF shows as a placeholder: not downloaded, then downloaded but
        undecodable, code ``image_undecodable``) has ``name``, ``article_id``,
        ``attachment_id``, ``classification``, ``code`` and ``cause`` (see
        :class:`~app.workflow.ports.ImagePlaceholder`).
    """
    ticket = snapshot.ticket
    return {
        "ticket_id": ticket.get("id"),
        "ticket_number": ticket.get("number"),
        "title": ticket.get("title"),
        "merged_into": snapshot.merged_into.as_json() if snapshot.merged_into is not None else None,
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
                "size_declared": o.size_declared,
            }
            for o in snapshot.omitted
        ],
        "placeholder_images": [
            {
                "name": p.name,
                "article_id": p.article_id,
                "attachment_id": p.attachment_id,
                "classification": p.classification,
                "code": p.code,
                "cause": p.cause,
            }
            for p in snapshot.placeholders
        ],
        "signed": signed.signed,
        "pades_level": signed.pades_level,
        "signer_subject": signed.signer_subject,
        "signer_cert_sha256": signed.signer_cert_sha256,
        # The TSA's genTime as its token has it (fractions of a second included, when it gives
        # them): read by programs, which may compare it with the token; the note cuts it to the second.
        "timestamp": signed.timestamp.isoformat() if signed.timestamp else None,
        "timestamp_authority": signed.timestamp_authority,
        "service": SERVICE_NAME,
        "service_version": __version__,
        "job_id": job_id,
        "delivery_id": delivery_id,
    }
