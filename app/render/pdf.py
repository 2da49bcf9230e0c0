"""Lay a Zammad ticket out as an unsigned PDF with fpdf2, using our own linear-time line breaker.

fpdf2 stays the PDF writer (fonts, subsetting, outline, metadata); text is broken into lines
by :mod:`app.render.layout` and each line is drawn with ``FPDF.text()``, the cheapest
primitive, so page breaks are ours too. Every line selects its own font before it is drawn,
and every page starts with main-font text in :meth:`_TicketPdf.header` (the workaround for
fpdf2 2.8.9's fallback-only-first-run defect, ``rendering.md`` §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fpdf import FPDF

from app import __version__
from app.errors import RenderError
from app.render.content import (
    body_text,
    display_name,
    format_time,
    ordered_articles,
    ticket_field,
    visible_attachments,
)
from app.render.glyphs import MAIN_FAMILY, STYLES, FontChain, font_chain, make_drawable
from app.render.layout import WordMeasure, wrap_text
from app.render.options import TEMPLATES, RenderOptions
from app.workflow.ports import RenderedPdf

# Page geometry, in points (A4: 595.28 × 841.89).
MARGIN = 42.0
HEADER_BASELINE = 28.0
BODY_TOP = 50.0
BOTTOM_MARGIN = 46.0
FOOTER_BASELINE_FROM_BOTTOM = 24.0
LABEL_WIDTH = 78.0

BLACK = (0, 0, 0)
GREY = (96, 96, 96)
RULE_GREY = (170, 170, 170)
INTERNAL_RED = (176, 32, 32)
INTERNAL_FILL = (253, 232, 214)
PUBLIC_FILL = (230, 236, 242)


@dataclass(frozen=True, slots=True)
class TextStyle:
    """A font style, size (pt), colour and line advance (pt) for one kind of text."""

    style: str
    size: float
    leading: float
    color: tuple[int, int, int] = BLACK


PAGE_HEADER = TextStyle("B", 8.5, 11.0, GREY)
PAGE_FOOTER = TextStyle("", 7.5, 10.0, GREY)
DOC_NUMBER = TextStyle("B", 16.0, 21.0)
DOC_TITLE = TextStyle("B", 12.5, 16.0)
FIELD_LABEL = TextStyle("B", 8.5, 11.5, GREY)
FIELD_VALUE = TextStyle("", 8.5, 11.5)
ARTICLE_HEADING = TextStyle("B", 10.0, 13.0)
INTERNAL_MARK = TextStyle("B", 10.0, 13.0, INTERNAL_RED)
BODY = TextStyle("", 9.5, 12.6)
NOTE = TextStyle("I", 9.0, 12.0, GREY)


@lru_cache(maxsize=None)
def _measure(style: str) -> WordMeasure:
    """The process-wide word measure of a style, in 1/1000 em (so it serves every font size)."""
    return WordMeasure(font_chain(style).advances)


class _TicketPdf(FPDF):
    """An FPDF document with our page header/footer and line drawing.

    All text handed to the drawing methods must have gone through :meth:`clean`.
    """

    def __init__(self) -> None:
        super().__init__(orientation="P", unit="pt", format="A4")
        registered: set[tuple[str, str]] = set()
        for style in STYLES:
            chain = font_chain(style)
            for family, path in zip(chain.families, chain.paths, strict=True):
                if (family, style) not in registered:
                    self.add_font(family, style, str(path))
                    registered.add((family, style))
        self.set_margins(MARGIN, BODY_TOP, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM_MARGIN)
        self.missing_glyphs = 0
        self.header_text = ""
        self.footer_text = ""
        self._drawn_color: tuple[int, int, int] | None = None
        self._drawn_color_object: Any = None

    # -- text preparation and measuring -------------------------------------------------

    def clean(self, value: Any) -> str:
        """``value`` as drawable text (see :func:`make_drawable`), counting missing glyphs."""
        text, missing = make_drawable(value if isinstance(value, str) else display_name(value))
        self.missing_glyphs += missing
        return text

    @staticmethod
    def width(text: str, style: TextStyle) -> float:
        """Width of a line of ``text`` in ``style``, in points."""
        return _measure(style.style).width(text) * style.size / 1000

    @staticmethod
    def wrap(text: str, style: TextStyle, width: float) -> list[str]:
        """``text`` broken into lines at most ``width`` points wide."""
        return wrap_text(text, width * 1000 / style.size, _measure(style.style))

    def fit(self, text: str, style: TextStyle, width: float) -> str:
        """The first line of ``text``, shortened with ``…`` to fit ``width`` points."""
        first = text.split("\n", 1)[0]
        if self.width(first, style) <= width:
            return first
        return self.wrap(first, style, width - self.width("…", style))[0].rstrip() + "…"

    # -- drawing ------------------------------------------------------------------------

    def draw_line(self, x: float, top: float, line: str, style: TextStyle) -> None:
        """Draw one line whose box starts at ``top`` (pt from the page top), font run by run."""
        if not line:
            return
        if self._drawn_color != style.color or self.text_color is not self._drawn_color_object:
            self.set_text_color(*style.color)
            self._drawn_color = style.color
            self._drawn_color_object = self.text_color
        baseline = top + 0.5 * style.leading + 0.3 * style.size
        chain: FontChain = font_chain(style.style)
        for index, run in chain.runs(line):
            family = chain.families[index]
            if self.font_family != family.lower() or self.font_style != style.style or self.font_size_pt != style.size:
                self.set_font(family, style.style, style.size)
            self.text(x, baseline, run)
            if len(chain.families) > 1:
                x += _measure(style.style).width(run) * style.size / 1000

    def ensure_space(self, height: float) -> None:
        """Start a new page unless ``height`` points still fit above the bottom margin."""
        if self.y + height > self.page_break_trigger and self.y > self.t_margin:
            self.add_page()

    def write_lines(self, text: str, style: TextStyle, *, indent: float = 0.0) -> None:
        """Wrap ``text`` to the text width (minus ``indent``) and draw it, breaking pages as needed.

        A paragraph's leading spaces become a hanging indent (quotes, lists), up to half the width.
        """
        space = self.width(" ", style)
        for paragraph in text.split("\n"):
            stripped = paragraph.lstrip(" ")
            offset = indent + space * (len(paragraph) - len(stripped))
            if offset > self.epw / 2:
                stripped, offset = paragraph, indent
            x = self.l_margin + offset
            for line in self.wrap(stripped, style, self.epw - offset):
                self.ensure_space(style.leading)
                self.draw_line(x, self.y, line, style)
                self.y += style.leading

    def write_field(self, label: str, value: str, *, label_style: TextStyle = FIELD_LABEL) -> None:
        """A ``label`` in the left column and ``value`` wrapped in the right one."""
        lines = self.wrap(value, FIELD_VALUE, self.epw - LABEL_WIDTH) or [""]
        for number, line in enumerate(lines):
            self.ensure_space(FIELD_VALUE.leading)
            if number == 0:
                self.draw_line(self.l_margin, self.y, label, label_style)
            self.draw_line(self.l_margin + LABEL_WIDTH, self.y, line, FIELD_VALUE)
            self.y += FIELD_VALUE.leading

    def rule(self, gap: float = 4.0) -> None:
        """A thin horizontal line across the text width, with ``gap`` points above and below."""
        self.y += gap
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
        self.y += gap

    # -- page furniture -----------------------------------------------------------------

    def header(self) -> None:
        """Ticket number and title on every page, drawn first in the main font (§3.1)."""
        top = HEADER_BASELINE - 0.5 * PAGE_HEADER.leading - 0.3 * PAGE_HEADER.size
        self.draw_line(self.l_margin, top, self.header_text, PAGE_HEADER)
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, HEADER_BASELINE + 5, self.w - self.r_margin, HEADER_BASELINE + 5)
        self.y = self.t_margin

    def footer(self) -> None:
        """Archive note on the left, ``Page X of Y`` on the right."""
        baseline = self.h - FOOTER_BASELINE_FROM_BOTTOM
        top = baseline - 0.5 * PAGE_FOOTER.leading - 0.3 * PAGE_FOOTER.size
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, baseline - 10, self.w - self.r_margin, baseline - 10)
        page_width = self.width(f"Page {self.page_no()} of {self.page_no()}", PAGE_FOOTER)
        left = self.fit(self.footer_text, PAGE_FOOTER, self.epw - page_width - 12)
        self.draw_line(self.l_margin, top, left, PAGE_FOOTER)
        # cell(), not text(): fpdf2 substitutes the {nb} alias only in cell/multi_cell output.
        self.set_font(MAIN_FAMILY, PAGE_FOOTER.style, PAGE_FOOTER.size)
        self.set_xy(self.l_margin, top)
        self.cell(self.epw, PAGE_FOOTER.leading, f"Page {self.page_no()} of {{nb}}", align="R")


def _check_input(ticket: Any, articles: Any, tags: Any) -> None:
    if not isinstance(ticket, dict):
        raise RenderError(f"ticket must be a JSON object, got {type(ticket).__name__}", transient=False)
    if not isinstance(articles, list) or not all(isinstance(a, dict) for a in articles):
        raise RenderError("articles must be a list of JSON objects", transient=False)
    if not isinstance(tags, (list, tuple)):
        raise RenderError(f"tags must be a list of strings, got {type(tags).__name__}", transient=False)


def _draw_ticket_block(
    pdf: _TicketPdf,
    ticket: dict[str, Any],
    tags: list[str],
    *,
    zone: ZoneInfo,
    number: str,
    title: str,
    archived: str,
    article_count: int,
) -> None:
    """The first-page block: ticket number, title and the ticket's fields."""
    pdf.draw_line(pdf.l_margin, pdf.y, pdf.fit(f"Ticket #{number}", DOC_NUMBER, pdf.epw), DOC_NUMBER)
    pdf.y += DOC_NUMBER.leading
    pdf.write_lines(title, DOC_TITLE)
    pdf.y += 4
    fields = (
        ("Ticket number", number),
        ("Title", title),
        ("Customer", pdf.clean(ticket_field(ticket, "customer"))),
        ("Organisation", pdf.clean(ticket_field(ticket, "organization"))),
        ("Group", pdf.clean(ticket_field(ticket, "group"))),
        ("Owner", pdf.clean(ticket_field(ticket, "owner"))),
        ("State", pdf.clean(ticket_field(ticket, "state"))),
        ("Priority", pdf.clean(ticket_field(ticket, "priority"))),
        ("Created", pdf.clean(format_time(ticket.get("created_at"), zone))),
        ("Updated", pdf.clean(format_time(ticket.get("updated_at"), zone))),
        ("Tags", pdf.clean(", ".join(str(tag) for tag in tags)) or "—"),
        ("Articles", str(article_count)),
        ("Archived", archived),
    )
    for label, value in fields:
        pdf.write_field(label, value)
    pdf.rule(6)


def _draw_article(pdf: _TicketPdf, article: dict[str, Any], position: int, total: int, zone: ZoneInfo) -> None:
    """One article: bookmark, a shaded heading marked Internal/Public, its fields, attachments, body."""
    internal = bool(article.get("internal"))
    created = pdf.clean(format_time(article.get("created_at"), zone))
    sender = pdf.clean(article.get("sender") or "")
    kind = pdf.clean(article.get("type") or "")
    sender_line = pdf.clean(article.get("from") or "")
    band = ARTICLE_HEADING.leading + 6

    pdf.y += 6
    pdf.ensure_space(band + 10 * FIELD_VALUE.leading + 2 * BODY.leading)  # keep heading, fields and first lines together
    outline = " ".join(part for part in (f"#{position}", created, f"{sender} {kind}".strip() + ":", sender_line) if part)
    pdf.start_section(outline[:160], level=0)
    pdf.set_fill_color(*(INTERNAL_FILL if internal else PUBLIC_FILL))
    pdf.rect(pdf.l_margin, pdf.y, pdf.epw, band, style="F")
    mark, mark_style = ("Internal", INTERNAL_MARK) if internal else ("Public", ARTICLE_HEADING)
    mark_width = pdf.width(mark, mark_style)
    heading = f"Article {position} of {total}" + (f" · {created}" if created else "")
    pdf.draw_line(pdf.l_margin + 4, pdf.y + 3, pdf.fit(heading, ARTICLE_HEADING, pdf.epw - mark_width - 16), ARTICLE_HEADING)
    pdf.draw_line(pdf.w - pdf.r_margin - 4 - mark_width, pdf.y + 3, mark, mark_style)
    pdf.y += band + 3

    pdf.write_field("From", sender_line or "—")
    pdf.write_field("To", pdf.clean(article.get("to") or "") or "—")
    cc = pdf.clean(article.get("cc") or "")
    if cc:
        pdf.write_field("Cc", cc)
    pdf.write_field("Subject", pdf.clean(article.get("subject") or "") or "—")
    pdf.write_field("Time", created)
    pdf.write_field("Type", kind)
    pdf.write_field("Sender", sender)
    pdf.write_field("Visibility", "Internal (not visible to the customer)" if internal else "Public")
    attachments = visible_attachments(article)
    if attachments:
        listing = "\n".join(
            pdf.clean(f"{a.filename} — " + ", ".join(p for p in (a.content_type, a.size) if p)) for a in attachments
        )
        pdf.write_field("Attachments", listing)
    pdf.rule(4)
    text = pdf.clean(body_text(article))
    if text.strip():
        pdf.write_lines(text, BODY)
    else:
        pdf.write_lines("(no text)", NOTE)
    pdf.y += 4


def render_ticket_pdf(
    ticket: dict[str, Any],
    articles: list[dict[str, Any]],
    tags: list[str],
    *,
    archived_at: datetime,
    options: RenderOptions,
) -> RenderedPdf:
    """Render one ticket and its articles as an unsigned PDF (A4, Noto Sans, our own layout).

    Pure and synchronous: plain data in, bytes out, no clock and no I/O besides reading the
    vendored fonts, so it runs in a ``ProcessPoolExecutor`` and the same input and
    ``archived_at`` always give byte-identical output.

    Args:
        ticket: ``GET /api/v1/tickets/{id}?expand=true`` (field names as strings) or the
            webhook's ``ticket`` object (group/priority/organization/state as ``{"name"}``,
            users as ``{"login", "firstname", "lastname", "email"}``).
        articles: ``GET /api/v1/ticket_articles/by_ticket/{id}``; drawn oldest first.
        tags: the ticket's tags, in Zammad's order.
        archived_at: the archive time; becomes the PDF creation date and is printed. A naive
            value is taken as UTC.
        options: template, time zone and service name.

    Returns:
        :class:`~app.workflow.ports.RenderedPdf` with ``page_count``, all articles included,
        and ``missing_glyphs`` = characters drawn as ``[U+XXXX]`` placeholders.

    Raises:
        RenderError: the input is not a ticket object with a list of article objects, the
            options name an unknown template or time zone, or fpdf2 fails on the layout.
            Odd bodies never raise: HTML that cannot be converted is shown as source text.
    """
    _check_input(ticket, articles, tags)
    if options.template not in TEMPLATES:
        raise RenderError(f"unknown template {options.template!r}", transient=False)
    try:
        zone = ZoneInfo(options.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RenderError(f"unknown time zone {options.timezone!r}", transient=False) from exc
    if archived_at.tzinfo is None:
        archived_at = archived_at.replace(tzinfo=timezone.utc)

    ordered = ordered_articles(articles)
    try:
        pdf = _TicketPdf()
        number = pdf.clean(str(ticket.get("number") or ticket.get("id") or "?"))
        title = pdf.clean(ticket.get("title") or "")
        service = pdf.clean(options.service_name)
        archived = pdf.clean(format_time(archived_at, zone))
        pdf.header_text = pdf.fit(f"Ticket #{number} – {title}", PAGE_HEADER, pdf.epw)
        pdf.footer_text = f"Archived {archived} by {service}"

        pdf.set_title(f"Ticket #{number}: {title}")
        pdf.set_subject(f"Zammad ticket #{number} with {len(ordered)} articles, archived {archived}")
        pdf.set_author(service)
        pdf.set_keywords(", ".join(pdf.clean(str(tag)) for tag in tags))
        pdf.set_creator(f"{service} {__version__}")
        pdf.set_creation_date(archived_at)

        pdf.add_page()
        _draw_ticket_block(
            pdf, ticket, list(tags), zone=zone, number=number, title=title, archived=archived, article_count=len(ordered)
        )
        for position, article in enumerate(ordered, start=1):
            _draw_article(pdf, article, position, len(ordered), zone)
        data = bytes(pdf.output())
    except RenderError:
        raise
    except Exception as exc:  # fpdf2 or font failures: the job ends with a render error, cause attached
        raise RenderError(f"ticket {ticket.get('number') or ticket.get('id')}: PDF layout failed: {exc}", transient=False) from exc
    return RenderedPdf(
        data=data,
        page_count=pdf.pages_count,
        articles_included=len(ordered),
        articles_total=len(articles),
        missing_glyphs=pdf.missing_glyphs,
    )
