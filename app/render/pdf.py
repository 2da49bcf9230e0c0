"""Render a Zammad ticket as an unsigned PDF: the entry point, :func:`render_ticket_pdf`.

It checks the input and options, builds the document (:class:`app.render.document.TicketPdf`:
page furniture and the text path), embeds the originals (:mod:`app.render.originals`), draws
the sections in order (:mod:`app.render.sections`: ticket block, articles with their image
previews, the closing "Originals" list) and writes the PDF as bytes or into a file.

By default the document is PDF/A-3B (``RenderOptions.pdfa``): fpdf2's compliance mode
(sRGB output intent, embedded fonts only, no encryption), our own XMP with fixed dates and a
document information dictionary equal to it (:mod:`app.render.metadata`), and
the originals the workflow collected embedded as associated files; every article's
attachment list and the closing section say what is embedded.

A process that renders calls :func:`app.render.patches.install` before its first document
(the render processes' initialiser does); the PDF bytes are the same without it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fpdf import FPDF_VERSION

from app import __version__
from app.errors import TRANSIENT_ERRNOS, RenderError
from app.i18n import LANGUAGE_TAGS
from app.memory import release_free_memory
from app.render.content import format_time, kept_positions, ticket_field
from app.render.coverage import strict_fonts_error
from app.render.document import PAGE_HEADER, TicketPdf
from app.render.fontoutput import ArchiveOutputProducer
from app.render.glyphs import font_set
from app.render.images import ArticleImages
from app.render.metadata import PDFA_LABEL, ArchiveInfoProducer, DocumentMetadata
from app.render.options import LIMIT_MODES, TEMPLATES, RenderOptions
from app.render.originals import OriginalsIndex, embed_originals
from app.render.sections import draw_articles, draw_originals, draw_ticket_block
from app.render.streams import ParkedPagesProducer, write_pdf
from app.render.templates import TEMPLATES as TEMPLATE_TABLE
from app.workflow.ports import EmbeddedFile, MergedInto, OmittedFile, RenderedPdf

TRIM_AFTER_ARTICLES = 500
"""From this many articles drawn on, free heap pages go back to the operating system
(:func:`app.memory.release_free_memory`, a few ms) after the originals are embedded and after
the articles are drawn: what the next phase allocates then does not stack on pages that only
freed objects held (CPython's small-object arenas do not reuse them)."""


class _OutputProducer(ParkedPagesProducer, ArchiveOutputProducer, ArchiveInfoProducer):
    """fpdf2's output with all of ours: parked pages put back one at a time
    (:mod:`app.render.streams`), cached font objects (:mod:`app.render.fontoutput`) and, in
    PDF/A mode, the document information dictionary (:mod:`app.render.metadata`)."""


def _check_input(ticket: Any, articles: Any, tags: Any) -> None:
    if not isinstance(ticket, dict):
        raise RenderError(f"ticket must be a JSON object, got {type(ticket).__name__}", transient=False)
    if not isinstance(articles, Sequence) or isinstance(articles, (str, bytes)):
        raise RenderError("articles must be a list of JSON objects", transient=False)
    if not isinstance(tags, (list, tuple)):
        raise RenderError(f"tags must be a list of strings, got {type(tags).__name__}", transient=False)


def _open_spool(target: str | os.PathLike[str] | None) -> BinaryIO | None:
    """The anonymous temporary file for the embedded files' streams, beside ``target``
    (``None`` without a target: they stay in memory).

    Raises:
        RenderError: it cannot be created (transient for a full disk).
    """
    if target is None:
        return None
    try:
        return tempfile.TemporaryFile(prefix="embedded-", dir=os.path.dirname(os.fspath(target)) or None)
    except OSError as exc:
        raise RenderError(
            f"cannot create the spool of embedded files: {exc.strerror or exc}",
            transient=exc.errno in TRANSIENT_ERRNOS,
        ) from None


def render_ticket_pdf(
    ticket: dict[str, Any],
    articles: Sequence[dict[str, Any]],
    tags: list[str],
    *,
    archived_at: datetime,
    options: RenderOptions,
    images: Mapping[int, bytes] | None = None,
    embedded: Sequence[EmbeddedFile] = (),
    omitted: Sequence[OmittedFile] = (),
    target: str | os.PathLike[str] | None = None,
    merged_into: MergedInto | None = None,
) -> RenderedPdf:
    """Render one ticket and its articles as an unsigned PDF (A4, Noto Sans and fallbacks).

    Pure and synchronous: plain data in, bytes out, no clock and no I/O besides reading
    fonts, so it runs in a ``ProcessPoolExecutor`` and the same input and ``archived_at``
    always give byte-identical output.

    Args:
        ticket: ``GET /api/v1/tickets/{id}?expand=true`` (field names as strings) or the
            webhook's ``ticket`` object (group/priority/organization/state as ``{"name"}``,
            users as ``{"login", "firstname", "lastname", "email"}``).
        articles: ``GET /api/v1/ticket_articles/by_ticket/{id}``, all of them; drawn oldest
            first, over ``options.max_articles`` in ``cap_and_continue`` mode only the oldest
            that many (:func:`app.render.content.kept_positions`). Any
            sequence: it is read in passes by position (ordered, images, drawn), each article
            let go once used (drawn: in runs of :data:`app.render.sections.PREPARE_AHEAD`), so
            one that parses an article when read (:class:`app.zammad.articles.LazyArticles`)
            never has them all in memory.
        tags: the ticket's tags, in Zammad's order.
        archived_at: the archive time; becomes the PDF creation date and is printed. A naive
            value is taken as UTC.
        options: template, time zone, language, service name, article limit, font directories.
        images: attachment id → bytes of the images listed by
            :func:`app.render.images.image_references`; an image not in it is drawn as a
            placeholder naming its file.
        embedded: originals to embed as associated files (``/AF``, ``/EmbeddedFiles``),
            dated ``archived_at``; attachments among them are marked "embedded in this PDF"
            and all are listed, with SHA-256, in a closing "Originals" section. Over the
            article limit, page 1 and that section say they are the drawn articles'
            originals only and that ``articles.json`` lists all of them: the workflow
            (:mod:`app.workflow.originals`) collects them so.
        omitted: originals the workflow left out, listed with size and reason there and
            beside their attachment.
        target: write the PDF into this new file instead of returning it (``data`` is then
            ``b""``): saves a copy of the whole PDF in memory. The embedded files' compressed
            streams then wait for the output in an anonymous temporary file in the same
            folder (:mod:`app.render.embedded`), gone when the call returns or raises.
        merged_into: for a ticket in state ``merged``, the ticket its articles went to: said
            under the title and in the ticket's fields on page 1, at the end of the
            document's subject (``dc:description``) and, when known, as ``dc:relation``.

    Returns:
        :class:`~app.workflow.ports.RenderedPdf` with ``page_count``, how many articles are
        included, ``missing_glyphs`` = characters drawn as ``[U+XXXX]`` placeholders,
        ``missing_scripts`` naming their scripts, ``embedded`` = ``(name, sha256, size)`` of
        each embedded file in the order given (names made unique) and ``pdfa`` = ``"3B"``
        with ``options.pdfa``, ``language`` = the language used (``options.language``, or the
        one ``options.language_by_group`` names for the ticket's group), ``undecodable`` = the
        fetched ``images`` drawn as placeholders because they cannot be decoded.

    Raises:
        RenderError: the input is not a ticket object with a list of article objects; the
            options name an unknown template or time zone; the ticket has more than
            ``options.max_articles`` articles in ``fail`` mode (permanent, the message says
            what to change); with ``options.strict_fonts``, a character had no font (permanent,
            :func:`app.render.coverage.strict_fonts_error` names script, package and font);
            an embedded file has an unknown relationship; or fpdf2 fails on the layout. Odd
            bodies never raise.
    """
    _check_input(ticket, articles, tags)
    if options.template not in TEMPLATES:
        raise RenderError(f"unknown template {options.template!r}", transient=False)
    if options.limit_mode not in LIMIT_MODES:
        raise RenderError(f"unknown article limit mode {options.limit_mode!r}", transient=False)
    try:
        zone = ZoneInfo(options.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RenderError(f"unknown time zone {options.timezone!r}", transient=False) from exc
    if archived_at.tzinfo is None:
        archived_at = archived_at.replace(tzinfo=UTC)

    total = len(articles)
    limit = options.max_articles
    if limit and total > limit and options.limit_mode == "fail":
        raise RenderError(
            f"ticket has {total} articles; PDF_MAX_ARTICLES={limit} allows at most {limit}: "
            "raise PDF_MAX_ARTICLES (0 = unlimited) or set PDF_ARTICLE_LIMIT_MODE=cap_and_continue",
            transient=False,
        )
    try:  # positions only: a sequence that parses each article when read keeps none here
        order = kept_positions(articles, limit)  # the oldest ``limit``: those the workflow fetched for
    except TypeError:
        raise RenderError("articles must be a list of JSON objects", transient=False) from None
    included = len(order)
    spool = _open_spool(target)
    try:
        language = options.language_of(ticket_field(ticket, "group"))
        pdf = TicketPdf(
            font_set(options.font_dirs),
            TEMPLATE_TABLE[options.template],
            pdfa=options.pdfa,
            language=language,
        )
        _ = pdf.tr.gettext
        originals = OriginalsIndex(
            embed_originals(pdf, embedded, modified=archived_at, spool=spool), omitted, language
        )
        big = included >= TRIM_AFTER_ARTICLES
        if big:  # the originals' (and the snapshot's) bytes are gone: hand their pages back
            release_free_memory()
        article_images = ArticleImages((articles[index] for index in order), images or {})
        number = pdf.clean(str(ticket.get("number") or ticket.get("id") or "?"))
        title = pdf.clean(ticket.get("title") or "")
        service = pdf.clean(options.service_name)
        archived = pdf.clean(format_time(archived_at, zone, language))
        pdf.header_text = pdf.fit(f"Ticket #{number} – {title}", PAGE_HEADER, pdf.epw)
        pdf.footer_text = _("Archived {archived} by {service}").format(archived=archived, service=service)

        merged = pdf.clean(merged_into.text(_)) if merged_into is not None else ""
        metadata = DocumentMetadata(
            title=f"Ticket #{number}: {title}",
            subject=_("Zammad ticket #{number} with {total} articles").format(number=number, total=total)
            + (_(" ({included} included)").format(included=included) if included < total else "")
            + _(", archived {archived}").format(archived=archived)
            + (_(", merged into {target}").format(target=merged) if merged_into is not None else ""),
            author=service,
            keywords=", ".join(pdf.clean(str(tag)) for tag in tags),
            creator=f"{service} {__version__}",
            producer=f"fpdf2 {FPDF_VERSION}",
            date=archived_at,
            language=LANGUAGE_TAGS[language],
            relation=(
                _("Zammad ticket {target}").format(target=merged)
                if merged_into is not None and merged_into.known
                else ""
            ),
        )
        pdf.set_archive_metadata(metadata)  # with PDF/A: XMP and an /Info equal to it
        pdf.set_lang(LANGUAGE_TAGS[language])  # the catalog's /Lang (ISO 32000-1 §14.9.2)

        pdf.add_page()
        draw_ticket_block(
            pdf,
            ticket,
            list(tags),
            zone=zone,
            number=number,
            title=title,
            archived=archived,
            included=included,
            total=total,
            originals=originals,
            merged_into=merged_into,
        )
        # a run of articles at a time, read when drawn
        draw_articles(pdf, (articles[index] for index in order), included, zone, article_images, originals)
        del articles, order  # laid out: a big ticket's articles need not outlive the output below
        if big:  # what the layout freed: the output's objects need not stack on its pages
            release_free_memory()
        if originals.active:
            draw_originals(pdf, originals, included=included, total=total)
        if options.strict_fonts and (cause := strict_fonts_error(pdf.missing)):
            raise RenderError(cause, transient=False)
        if target is None:
            data = bytes(pdf.output(output_producer_class=_OutputProducer))
        else:  # object by object into the file, never the whole PDF in memory (app.render.streams)
            try:
                with open(target, "xb") as out:
                    write_pdf(pdf, out, _OutputProducer)
            except OSError as exc:  # a full disk heals; the message names no path
                raise RenderError(
                    f"cannot write the PDF file: {exc.strerror or exc}",
                    transient=exc.errno in TRANSIENT_ERRNOS,
                ) from None
            data = b""
    except RenderError:
        raise
    except OSError as exc:  # reading or spooling embedded files (a full disk heals); names no path
        raise RenderError(
            f"cannot read or spool the embedded files: {exc.strerror or exc}",
            transient=exc.errno in TRANSIENT_ERRNOS,
        ) from None
    except Exception as exc:  # fpdf2 or font failures: the job ends with a render error, cause attached
        raise RenderError(
            f"ticket {ticket.get('number') or ticket.get('id')}: PDF layout failed: {exc}", transient=False
        ) from exc
    finally:
        if spool is not None:
            spool.close()
    return RenderedPdf(
        data=data,
        page_count=pdf.pages_count,
        articles_included=included,
        articles_total=total,
        missing_glyphs=sum(pdf.missing.values()),
        missing_scripts=tuple(sorted(pdf.missing)),
        missing_by_script=tuple(sorted(pdf.missing.items())),
        embedded=tuple(record.as_tuple() for record in originals.embedded),
        pdfa=PDFA_LABEL if options.pdfa else None,
        language=language,
        undecodable=tuple(article_images.undecodable.values()),
    )
