"""The sections of a ticket PDF: the ticket block, each article with its image previews, the originals.

Each function draws one section from ``pdf.y`` on, breaking pages as needed, and leaves
``pdf.y`` below it; :func:`app.render.pdf.render_ticket_pdf` calls them in order. Which
fields a section shows, and in which styles, comes from the document's template
(:mod:`app.render.templates`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from app.render.content import (
    body_text,
    custom_attributes,
    format_time,
    human_size,
    is_html,
    ticket_field,
    visible_attachments,
)
from app.render.document import TicketPdf
from app.render.html_body import PreparedBody, prepare_html_bodies, write_html_body
from app.render.images import PREVIEW_TYPES, ArticleImages, PreparedImage, content_type_of, image_sources
from app.render.originals import OriginalsIndex
from app.render.templates import TextStyle
from app.workflow.ports import MergedInto

INTERNAL_FILL = (253, 232, 214)
PUBLIC_FILL = (230, 236, 242)
PLACEHOLDER_FILL = (244, 244, 244)

#: How many articles' HTML bodies are prepared together before those articles are drawn
#: (:func:`draw_articles`); their blocks are held meanwhile.
PREPARE_AHEAD = 20

DOC_NUMBER = TextStyle("B", 16.0, 21.0)
DOC_TITLE = TextStyle("B", 12.5, 16.0)
LIMIT_WARNING = TextStyle("B", 9.5, 13.0, (176, 32, 32))


def draw_ticket_block(
    pdf: TicketPdf,
    ticket: dict[str, Any],
    tags: list[str],
    *,
    zone: ZoneInfo,
    number: str,
    title: str,
    archived: str,
    included: int,
    total: int,
    originals: OriginalsIndex,
    merged_into: MergedInto | None = None,
) -> None:
    """The first-page block: ticket number, title, the merge and article-limit notices and the
    ticket's fields. ``merged_into``: for a merged ticket, where its articles went (a notice
    under the title and a "Merged into" field)."""
    _ = pdf.tr.gettext
    pdf.draw_line(
        pdf.l_margin,
        pdf.y,
        pdf.fit(_("Ticket #{number}").format(number=number), DOC_NUMBER, pdf.epw),
        DOC_NUMBER,
    )
    pdf.y += DOC_NUMBER.leading
    pdf.write_lines(title, DOC_TITLE)
    pdf.y += 4
    merged = pdf.clean(merged_into.text(_)) if merged_into is not None else ""
    if merged_into is not None:
        notice = (
            _("This ticket was merged into {target}: Zammad moved its articles there.").format(target=merged)
            if merged_into.known
            else _(
                "This ticket was merged; target unknown: "
                "Zammad moved its articles to the ticket it was merged into."
            )
        )
        pdf.write_lines(notice, LIMIT_WARNING)
        pdf.y += 4
    if included < total:
        notice = _(
            "{included} of {total} articles included: this PDF holds the oldest {included} "
            "articles only (PDF_MAX_ARTICLES={included})."
        ).format(included=included, total=total)
        if originals.embedded:
            notice += " " + (
                _(
                    "The originals embedded are those of these {included} articles; "
                    "articles.json lists all {total}."
                )
                if originals.has_articles_json
                else _("The originals embedded are those of these {included} articles.")
            ).format(included=included, total=total)
        pdf.write_lines(notice, LIMIT_WARNING)
        pdf.y += 4

    def when(key: str) -> str:
        return pdf.clean(format_time(ticket.get(key), zone, pdf.language))

    articles = (
        f"{total}"
        if included == total
        else _("{included} of {total} included").format(included=included, total=total)
    )
    core = [
        (_("Ticket number"), number),
        (_("Title"), title),
        (_("State"), pdf.clean(ticket_field(ticket, "state"))),
        (_("Customer"), pdf.clean(ticket_field(ticket, "customer"))),
        (_("Group"), pdf.clean(ticket_field(ticket, "group"))),
        (_("Created"), when("created_at")),
    ]
    if pdf.template.ticket_fields == "full":
        fields = [
            *core[:3],
            (_("Priority"), pdf.clean(ticket_field(ticket, "priority"))),
            (_("Group"), pdf.clean(ticket_field(ticket, "group"))),
            (_("Owner"), pdf.clean(ticket_field(ticket, "owner"))),
            (_("Customer"), pdf.clean(ticket_field(ticket, "customer"))),
            (_("Organisation"), pdf.clean(ticket_field(ticket, "organization"))),
            (_("Created"), when("created_at")),
            (_("Updated"), when("updated_at")),
            (_("First response"), when("first_response_at") or "—"),
            (_("Closed"), when("close_at") or "—"),
        ]
        if ticket.get("pending_time"):
            fields.append((_("Pending until"), when("pending_time")))
        fields += [
            (pdf.clean(label), pdf.clean(value)) for label, value in custom_attributes(ticket, pdf.language)
        ]
    else:
        fields = core
    if merged_into is not None:
        fields.append((_("Merged into"), merged))
    fields += [
        (_("Tags"), pdf.clean(", ".join(str(tag) for tag in tags)) or "—"),
        (_("Articles"), articles),
        (_("Archived"), archived),
    ]
    if originals.active:
        fields.append((_("Originals"), originals.summary()))
    pdf.write_fields(fields)
    pdf.rule(6)


def _image_box(pdf: TicketPdf, image: PreparedImage) -> tuple[float, float]:
    """The size, in points, an image is drawn at: CSS pixels (96 dpi), shrunk to fit the text area."""
    max_height = pdf.max_image_height()
    width, height = image.width * 0.75, image.height * 0.75
    scale = min(1.0, pdf.epw / width if width else 1.0, max_height / height if height else 1.0)
    return max(1.0, width * scale), max(1.0, height * scale)


def _draw_image(pdf: TicketPdf, image: PreparedImage) -> None:
    """Place an image at the left margin below the current line, breaking the page if needed."""
    width, height = _image_box(pdf, image)
    pdf.ensure_space(height)
    pdf.image(io.BytesIO(image.data), x=pdf.l_margin, y=pdf.y, w=width, h=height)
    pdf.y += height + 2


def _draw_placeholder(pdf: TicketPdf, text: str, style: TextStyle) -> None:
    """A shaded one-line box saying what could not be shown (a missing image)."""
    line = pdf.fit(text, style, pdf.epw - 8)
    pdf.ensure_space(style.leading + 4)
    pdf.set_fill_color(*PLACEHOLDER_FILL)
    pdf.rect(pdf.l_margin, pdf.y, pdf.epw, style.leading + 4, style="F")
    pdf.draw_line(pdf.l_margin + 4, pdf.y + 2, line, style)
    pdf.y += style.leading + 6


def _article_images(
    pdf: TicketPdf, article: dict[str, Any], images: ArticleImages | None
) -> list[tuple[str, PreparedImage | None]]:
    """Image attachments to preview under the article (inline ones are already in the body)."""
    if not pdf.template.images:
        return []
    raw_id = article.get("id")
    article_id = raw_id if isinstance(raw_id, int) else 0
    inline: set[int] = set()
    body = article.get("body")
    if images is not None and isinstance(body, str) and is_html(article):
        for src in image_sources(body):
            found = images.attachment_id(article_id, src)
            if found is not None:
                inline.add(found)
    previews = []
    for attachment in article.get("attachments") or []:
        if not isinstance(attachment, dict) or not isinstance(attachment.get("id"), int):
            continue
        if attachment["id"] in inline or content_type_of(attachment) not in PREVIEW_TYPES:
            continue
        prepared = images.by_attachment(attachment["id"], article_id) if images is not None else None
        previews.append((pdf.clean(str(attachment.get("filename") or f"image-{attachment['id']}")), prepared))
    return previews


def draw_articles(
    pdf: TicketPdf,
    articles: Iterable[dict[str, Any]],
    total: int,
    zone: ZoneInfo,
    images: ArticleImages | None,
    originals: OriginalsIndex,
) -> None:
    """The articles in the order given, numbered from 1 of ``total`` (:func:`draw_article`).

    They are read in runs of :data:`PREPARE_AHEAD`: the HTML bodies of a run are prepared
    together (:func:`app.render.html_body.prepare_html_bodies`), then its articles drawn, and
    let go before the next run is read.
    """
    run: list[dict[str, Any]] = []
    position = 1
    for article in articles:
        run.append(article)
        if len(run) == PREPARE_AHEAD:
            _draw_run(pdf, run, position, total, zone, images, originals)
            position += len(run)
            run = []
    if run:
        _draw_run(pdf, run, position, total, zone, images, originals)


def _draw_run(
    pdf: TicketPdf,
    run: list[dict[str, Any]],
    first: int,
    total: int,
    zone: ZoneInfo,
    images: ArticleImages | None,
    originals: OriginalsIndex,
) -> None:
    """Prepare the HTML bodies of ``run``, then draw its articles (numbered from ``first``)."""
    html = [(index, _html_body(pdf, article)) for index, article in enumerate(run)]
    wanted = [(index, body) for index, body in html if body is not None]
    prepared: list[PreparedBody | None] = [None] * len(run)
    bodies = prepare_html_bodies(pdf, [(body, _article_id(run[index])) for index, body in wanted], images)
    for (index, _), body in zip(wanted, bodies, strict=True):
        prepared[index] = body
    for offset, article in enumerate(run):
        draw_article(pdf, article, first + offset, total, zone, images, originals, prepared[offset])


def _article_id(article: dict[str, Any]) -> int:
    raw_id = article.get("id")
    return raw_id if isinstance(raw_id, int) else 0


def _html_body(pdf: TicketPdf, article: dict[str, Any]) -> str | None:
    """The article's body when it is drawn through the HTML layout, else ``None``."""
    body = article.get("body")
    if isinstance(body, str) and body.strip() and is_html(article) and pdf.template.html:
        return body
    return None


def draw_article(
    pdf: TicketPdf,
    article: dict[str, Any],
    position: int,
    total: int,
    zone: ZoneInfo,
    images: ArticleImages | None,
    originals: OriginalsIndex,
    html_body: PreparedBody | None = None,
) -> None:
    """One article: bookmark, a shaded heading marked Internal/Public, its fields, attachments, body.

    ``html_body``: its HTML body from :func:`app.render.html_body.prepare_html_bodies`, if done already.
    """
    _ = pdf.tr.gettext
    template = pdf.template
    internal = bool(article.get("internal"))
    created = pdf.clean(format_time(article.get("created_at"), zone, pdf.language))
    sender = pdf.clean(article.get("sender") or "")
    kind = pdf.clean(article.get("type") or "")
    sender_line = pdf.clean(article.get("from") or "")
    heading_style = template.heading
    band = heading_style.leading + 6

    pdf.y += template.article_gap
    field_lines = {"table": 9, "inline": 3, "none": 0}[template.article_fields]
    pdf.ensure_space(band + field_lines * template.field_value.leading + 2 * template.body.leading)
    outline = " ".join(
        part for part in (f"#{position}", created, f"{sender} {kind}".strip() + ":", sender_line) if part
    )
    pdf.start_section(outline[:160], level=0)
    pdf.set_fill_color(*(INTERNAL_FILL if internal else PUBLIC_FILL))
    pdf.rect(pdf.l_margin, pdf.y, pdf.epw, band, style="F")
    mark, mark_style = (_("Internal"), template.internal_mark) if internal else (_("Public"), heading_style)
    mark_width = pdf.width(mark, mark_style)
    heading = _("Article {position} of {total}").format(position=position, total=total)
    heading += f" · {created}" if created else ""
    if template.article_fields == "none":
        heading += f" · {sender_line or sender}" if (sender_line or sender) else ""
    pdf.draw_line(
        pdf.l_margin + 4, pdf.y + 3, pdf.fit(heading, heading_style, pdf.epw - mark_width - 16), heading_style
    )
    pdf.draw_line(pdf.w - pdf.r_margin - 4 - mark_width, pdf.y + 3, mark, mark_style)
    pdf.y += band + 3

    to = pdf.clean(article.get("to") or "")
    cc = pdf.clean(article.get("cc") or "")
    subject = pdf.clean(article.get("subject") or "")
    visibility = _("Internal (not visible to the customer)") if internal else _("Public")
    fields: list[tuple[str, str]] = []
    if template.article_fields == "table":
        fields += [(_("From"), sender_line or "—"), (_("To"), to or "—")]
        fields += [(_("Cc"), cc)] if cc else []
        fields += [
            (_("Subject"), subject or "—"),
            (_("Time"), created),
            (_("Type"), kind),
            (_("Sender"), sender),
            (_("Visibility"), visibility),
        ]
    elif template.article_fields == "inline":
        parts = [f"{_('From')}: {sender_line or '—'}", f"{_('To')}: {to or '—'}"]
        parts += [f"{_('Cc')}: {cc}"] if cc else []
        parts += [f"{_('Subject')}: {subject or '—'}", f"{_('Type')}: {kind}", f"{_('Sender')}: {sender}"]
        parts.append(visibility)
        pdf.write_lines(" · ".join(parts), template.field_value)
    attachments = visible_attachments(article, pdf.language) if template.attachments else []
    if attachments:
        lines = []
        for attachment in attachments:
            line = f"{attachment.filename} — " + ", ".join(
                p for p in (attachment.content_type, attachment.size) if p
            )
            status = originals.attachment_status(attachment.attachment_id)  # "embedded in this PDF", …
            lines.append(pdf.clean(line + (f" — {status}" if status else "")))
        fields.append((_("Attachments"), "\n".join(lines)))
    pdf.write_fields(fields)
    pdf.rule(4 if template.article_fields != "none" else 2)

    html = _html_body(pdf, article)
    if html is not None:
        write_html_body(pdf, html, _article_id(article), images, html_body)
    else:
        text = pdf.clean(body_text(article))
        if text.strip():
            pdf.write_lines(text, template.body, quotes=not is_html(article))
        else:
            pdf.write_lines(_("(no text)"), template.note)
    for filename, prepared in _article_images(pdf, article, images):
        pdf.y += 4
        if prepared is None:
            _draw_placeholder(
                pdf, _("[image: {filename}] (not available)").format(filename=filename), template.note
            )
        else:
            pdf.write_lines(_("Preview: {filename}").format(filename=filename), template.note)
            _draw_image(pdf, prepared)
    pdf.y += 4


def draw_originals(pdf: TicketPdf, originals: OriginalsIndex, *, included: int, total: int) -> None:
    """The closing section: the originals left out (name, size, reason), then every embedded one
    (name, size, type, relationship, SHA-256). A size never counted is marked as Zammad's
    declared size (:attr:`app.workflow.ports.OmittedFile.size_declared`). With fewer articles
    ``included`` than the ticket's ``total`` (``PDF_MAX_ARTICLES``), it says whose originals
    these are."""
    _ = pdf.tr.gettext
    template = pdf.template
    pdf.y += template.article_gap
    pdf.ensure_space(DOC_TITLE.leading + 4 * template.body.leading)
    pdf.start_section(_("Originals"), level=0)
    pdf.draw_line(pdf.l_margin, pdf.y, _("Originals"), DOC_TITLE)
    pdf.y += DOC_TITLE.leading
    if originals.omitted:
        pdf.ensure_space(template.field_label.leading + 2 * template.note.leading)
        pdf.write_lines(
            _("Not embedded ({count})").format(count=len(originals.omitted)), template.field_label
        )
        for omitted in originals.omitted:
            if omitted.size is None:
                size = _("size unknown")
            elif omitted.size_declared:  # the same size the article's attachment list gives
                size = _("{size} as declared by Zammad").format(size=human_size(omitted.size, pdf.language))
            else:
                size = human_size(omitted.size, pdf.language)
            pdf.write_lines(
                pdf.clean(f"{omitted.name} — {size} — {omitted.reason}"), template.note, indent=12
            )
        pdf.y += 6
    if originals.embedded:
        pdf.ensure_space(template.field_label.leading + 4 * template.note.leading)
        pdf.write_lines(_("Embedded ({count})").format(count=len(originals.embedded)), template.field_label)
        pdf.write_lines(
            _(
                "PDF/A-3 associated files, byte for byte as fetched from Zammad; "
                "python -m app extract FILE.pdf -o DIR "
                "writes them out and checks them against the archive's sidecar."
            ),
            template.note,
        )
        if included < total:
            pdf.write_lines(
                (
                    _(
                        "Article originals of the {included} articles in this PDF only (the oldest; "
                        "PDF_MAX_ARTICLES={included}); articles.json is Zammad's answer for all {total}."
                    )
                    if originals.has_articles_json
                    else _(
                        "Article originals of the {included} articles in this PDF only (the oldest; "
                        "PDF_MAX_ARTICLES={included})."
                    )
                ).format(included=included, total=total),
                template.note,
            )
        pdf.y += 2
        for record in originals.embedded:
            pdf.ensure_space(
                template.field_label.leading + 2 * template.note.leading
            )  # keep an entry on one page
            pdf.write_lines(pdf.clean(record.name), template.field_label)
            pdf.write_lines(
                pdf.clean(
                    f"{human_size(record.size, pdf.language)} · {record.mime_type} · {record.relationship}"
                    + (f" · {record.description}" if record.description != record.name else "")
                ),
                template.note,
                indent=12,
            )
            pdf.write_lines(f"SHA-256 {record.sha256}", template.note, indent=12)
    pdf.y += 4
