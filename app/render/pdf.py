"""Lay a Zammad ticket out as an unsigned PDF with fpdf2, using our own linear-time line breaker.

fpdf2 stays the PDF writer (fonts, subsetting, images, outline, metadata). Plain text is
broken into lines by :mod:`app.render.layout` and each line drawn with ``FPDF.text()``, font
run by font run, so page breaks are ours too. Three kinds of text take fpdf2's own paths:

* paragraphs that need shaping or right-to-left order (Arabic, Hebrew, Indic) go through
  ``multi_cell`` with text shaping switched on for that paragraph only;
* ``text/html`` bodies go through :mod:`app.render.html` and ``write_html`` with resource
  access switched off; if fpdf2 raises half-way, the partial output is rolled back and the
  body is drawn as clean text instead;
* images are placed with ``image()`` after :mod:`app.render.images` normalised them to sRGB.

By default the document is PDF/A-3B (``RenderOptions.pdfa``): fpdf2's compliance mode
(sRGB output intent, embedded fonts only, no encryption), our own XMP with fixed dates, and
the originals the workflow collected embedded as associated files (:mod:`app.render.originals`);
every article's attachment list and a closing "Originals" section say what is embedded.

Every page starts with main-font text in :meth:`_TicketPdf.header`, and after every fpdf2
call that may select a fallback font the next line re-selects its own font: together they
avoid fpdf2 2.8.9's fallback-only-first-run defect (``docs/reference/rendering.md`` §3.1).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fpdf import FPDF, FPDF_VERSION
from fpdf.enums import TextMode, XPos, YPos
from fpdf.fonts import FontFace as FpdfFontFace
from fpdf.fonts import TextStyle as FpdfTextStyle
from fpdf.fonts import TTFFont

from app import __version__
from app.errors import TRANSIENT_ERRNOS, RenderError
from app.render.content import (
    body_text,
    custom_attributes,
    display_name,
    format_time,
    human_size,
    is_html,
    ordered_articles,
    quote_depth,
    ticket_field,
    visible_attachments,
)
from app.render.fontcache import add_cached_font
from app.render.fontsubset import ArchiveOutputProducer, use_tiered_codes
from app.render.glyphs import COMPLEX, MAIN_FAMILY, STYLES, FontFace, FontSet, font_set
from app.render.html import first_strong_is_rtl, html_to_text, prepare_html
from app.render.images import PREVIEW_TYPES, ArticleImages, PreparedImage, content_type_of
from app.render.layout import wrap_text
from app.render.options import LIMIT_MODES, TEMPLATES, RenderOptions
from app.render.originals import PDFA_LABEL, PDFA_PROFILE, OriginalsIndex, embed_originals, xmp_metadata
from app.render.streams import ParkedPages, ParkedPagesProducer, install_fast_object_dicts, write_pdf
from app.render.templates import GREY, Template, TextStyle
from app.render.templates import TEMPLATES as TEMPLATE_TABLE
from app.workflow.ports import EmbeddedFile, OmittedFile, RenderedPdf

try:  # the resource access policy arrived in fpdf2 2.8.8
    from fpdf.enums import ResourceAccessPolicy
except ImportError:  # pragma: no cover - pinned fpdf2 has it
    ResourceAccessPolicy = None  # type: ignore[assignment,misc]

# Page geometry, in points (A4: 595.28 × 841.89).
MARGIN = 42.0
HEADER_BASELINE = 28.0
BODY_TOP = 50.0
BOTTOM_MARGIN = 46.0
FOOTER_BASELINE_FROM_BOTTOM = 24.0

RULE_GREY = (170, 170, 170)
INTERNAL_FILL = (253, 232, 214)
PUBLIC_FILL = (230, 236, 242)
PLACEHOLDER_FILL = (244, 244, 244)

PAGE_HEADER = TextStyle("B", 8.5, 11.0, GREY)
PAGE_FOOTER = TextStyle("", 7.5, 10.0, GREY)
DOC_NUMBER = TextStyle("B", 16.0, 21.0)
DOC_TITLE = TextStyle("B", 12.5, 16.0)
LIMIT_WARNING = TextStyle("B", 9.5, 13.0, (176, 32, 32))

#: Largest image height as a share of the text area's height.
IMAGE_MAX_HEIGHT_SHARE = 0.6

install_fast_object_dicts()  # the same PDF bytes, serialised faster (app.render.streams)


class _Rollback:
    """What is needed to undo a half-rendered ``write_html``: page, content length, state."""

    def __init__(self, pdf: _TicketPdf) -> None:
        self.page = pdf.page
        self.length = len(pdf.pages[pdf.page].contents)
        annots = pdf.pages[pdf.page].annots
        self.annots = len(annots) if annots is not None else 0
        self.y = pdf.y
        self.margins = (pdf.l_margin, pdf.r_margin)
        self.outline = len(pdf._outline) if hasattr(pdf, "_outline") else None
        pdf.hold_pages()  # pages finished from here on may be cut back: keep them unparked

    def restore(self, pdf: _TicketPdf) -> None:
        for number in [n for n in pdf.pages if n > self.page]:
            del pdf.pages[number]
        pdf.page = self.page
        del pdf.pages[self.page].contents[self.length :]
        annots = pdf.pages[self.page].annots
        if annots is not None:
            del annots[self.annots :]
        if self.outline is not None:
            del pdf._outline[self.outline :]
        pdf.l_margin, pdf.r_margin = self.margins
        pdf.set_xy(pdf.l_margin, self.y)
        pdf.in_footer = False


class _OutputProducer(ParkedPagesProducer, ArchiveOutputProducer):
    """fpdf2's output with both of ours: parked pages put back one at a time
    (:mod:`app.render.streams`) and cached font objects (:mod:`app.render.fontsubset`)."""


class _TicketPdf(ParkedPages, FPDF):
    """An FPDF document with our page header/footer, line drawing and body paths.

    All text handed to the drawing methods must have gone through :meth:`clean`.
    """

    def __init__(self, fonts: FontSet, template: Template, *, pdfa: bool = False) -> None:
        super().__init__(
            orientation="P", unit="pt", format="A4", enforce_compliance=PDFA_PROFILE if pdfa else None
        )
        self.glyph_fonts = fonts
        self.template = template
        self._registered: set[tuple[str, str]] = set()
        for style in STYLES:
            self.use_face(fonts.main[style])
        if ResourceAccessPolicy is not None:
            self.resource_access_policy = ResourceAccessPolicy.NONE
        self.oversized_images = None
        self.set_margins(MARGIN, BODY_TOP, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM_MARGIN)
        self.missing: Counter[str] = Counter()
        self.html_fallbacks = 0
        self.header_text = ""
        self.footer_text = ""
        self._drawn_color: tuple[int, int, int] | None = None
        self._drawn_color_object: Any = None
        self._wrapped_fill: Any = None  # the colour objects _text_wrapping last saw
        self._wrapped_text: Any = None
        self._wrapping = ("BT", "ET")
        self._html_images: dict[str, PreparedImage] = {}

    # -- fonts and text preparation -------------------------------------------------------

    def use_face(self, face: FontFace) -> None:
        """Register a font with fpdf2 on first use (fallbacks are registered only when needed)."""
        if (face.family, face.style) not in self._registered:
            add_cached_font(self, face.family, face.style, face.path, face.index)
            self._registered.add((face.family, face.style))
            if face.family == MAIN_FAMILY:  # fixed glyph codes: font output cached per process
                use_tiered_codes(
                    self.fonts.get(f"{face.family.lower()}{''.join(sorted(face.style.upper()))}")
                )

    def clean(self, value: Any) -> str:
        """``value`` as drawable text (:meth:`FontSet.make_drawable`), counting missing glyphs."""
        text, missing = self.glyph_fonts.make_drawable(
            value if isinstance(value, str) else display_name(value)
        )
        if missing:
            self.missing.update(missing)
        return text

    def width(self, text: str, style: TextStyle) -> float:
        """Width of a line of ``text`` in ``style``, in points."""
        return self.glyph_fonts.measures[style.style].width(text) * style.size / 1000

    def wrap(self, text: str, style: TextStyle, width: float) -> list[str]:
        """``text`` broken into lines at most ``width`` points wide."""
        return wrap_text(text, width * 1000 / style.size, self.glyph_fonts.measures[style.style])

    def fit(self, text: str, style: TextStyle, width: float) -> str:
        """The first line of ``text``, shortened with ``…`` to fit ``width`` points."""
        first = text.split("\n", 1)[0]
        if self.width(first, style) <= width:
            return first
        return self.wrap(first, style, width - self.width("…", style))[0].rstrip() + "…"

    def _fallbacks_for(self, text: str) -> list[str]:
        """Register the fallback fonts ``text`` needs and make them fpdf2's fallback list."""
        chain = self.glyph_fonts.chains[""]
        used = sorted({chain.font_of.get(char, 0) for char in set(text)} - {0})
        families = []
        for index in used:
            face = chain.faces[index]
            self.use_face(face)
            families.append(face.family)
        self.set_fallback_fonts(families, exact_match=False)
        return families

    def _after_fpdf_text(self) -> None:
        """Forget fpdf2's font and colour state after its own text paths (the §3.1 workaround)."""
        self.current_font_is_set_on_page = False
        self._drawn_color = None
        if self.text_shaping:
            self.set_text_shaping(False)

    # -- drawing ------------------------------------------------------------------------

    def _select_color(self, color: tuple[int, int, int]) -> None:
        if self._drawn_color != color or self.text_color is not self._drawn_color_object:
            self.set_text_color(*color)
            self._drawn_color = color
            self._drawn_color_object = self.text_color

    def select_face(self, face: FontFace, size: float) -> None:
        """``set_font(face.family, face.style, size)`` for a registered face (``face.style``
        one of ``""``, ``"B"``, ``"I"``, ``"BI"``): the same state, without fpdf2's checks of
        style letters, aliases and core fonts."""
        family = face.family.lower()
        key = family + face.style
        current = self.current_font
        if (
            current is not None
            and current.fontkey == key
            and self.font_family == family
            and self.font_style == face.style
            and self.font_size_pt == size
        ):
            return  # selected; draw_text puts it on a new page when needed
        self.font_family = family
        self.font_style = face.style
        self.font_size_pt = size
        self.current_font = self.fonts[key]
        self.current_font_is_set_on_page = False
        self.underline = False
        self.strikethrough = False

    def draw_line(self, x: float, top: float, line: str, style: TextStyle) -> None:
        """Draw one line whose box starts at ``top`` (pt from the page top), font run by font run."""
        if not line:
            return
        self._select_color(style.color)
        baseline = top + 0.5 * style.leading + 0.3 * style.size
        chain = self.glyph_fonts.chains[style.style]
        runs = list(chain.runs(line))
        for index, run in runs:
            face = chain.faces[index]
            if (face.family, face.style) not in self._registered:
                self.use_face(face)
            self.select_face(face, style.size)
            self.draw_text(x, baseline, run)
            if len(runs) > 1:
                x += self.glyph_fonts.measures[style.style].width(run) * style.size / 1000

    def draw_text(self, x: float, y: float, text: str) -> None:
        """``FPDF.text(x, y, text)``: the same content-stream bytes, without its generic checks.

        Our lines are drawn in a TrueType font in fill mode without underline, strike-through
        or quad points; for anything else fpdf2's own ``text()`` runs.
        """
        font = self._plain_text_font()
        if font is None:
            self.text(x, y, text)
            return
        opening, closing = self._text_wrapping()
        self._out(
            f"{opening} {x * self.k:.2f} {(self.h - y) * self.k:.2f} Td {font.encode_text(text)} {closing}"
        )

    def _plain_text_font(self) -> TTFFont | None:
        """The current font when our own text path can draw (a page is open, a TrueType font
        in fill mode, no underline, strike-through or quad points), put on the page if it is
        not yet; ``None`` when fpdf2's ``text()`` must draw instead."""
        font = self.current_font
        if (
            not self.page
            or not isinstance(font, TTFFont)
            or self.text_mode != TextMode.FILL
            or self.underline
            or self.strikethrough
            or self._record_text_quad_points
        ):
            return None
        if not self.current_font_is_set_on_page:
            self._out(self._set_font_for_page(font, self.font_size_pt))
        return font

    def _text_wrapping(self) -> tuple[str, str]:
        """What ``FPDF.text()`` puts around ``BT … ET``: ``q <text colour> … Q`` when the text
        colour is not the fill colour. Remembered for the colour objects last seen (fpdf2
        makes a new one on every colour change)."""
        fill, text = self.fill_color, self.text_color
        if fill is not self._wrapped_fill or text is not self._wrapped_text:
            self._wrapped_fill, self._wrapped_text = fill, text
            self._wrapping = (f"q {text.serialize().lower()} BT", "ET Q") if fill != text else ("BT", "ET")
        return self._wrapping

    def ensure_space(self, height: float) -> None:
        """Start a new page unless ``height`` points still fit above the bottom margin."""
        if self.y + height > self.page_break_trigger and self.y > self.t_margin:
            self.add_page()

    def write_lines(self, text: str, style: TextStyle, *, indent: float = 0.0, quotes: bool = False) -> None:
        """Wrap ``text`` to the text width (minus ``indent``) and draw it, breaking pages as needed.

        A paragraph's leading spaces become a hanging indent (quotes, lists), up to half the
        width. With ``quotes``, lines starting with ``>`` are drawn in the template's quote
        style, indented by depth, their ``>`` kept. Paragraphs that need shaping or run
        right to left go to :meth:`write_complex`.
        """
        space = self.width(" ", style)
        for paragraph in text.split("\n"):
            paragraph_style = style
            depth = quote_depth(paragraph) if quotes and paragraph[:1] in (">", " ") else 0
            if depth:
                paragraph_style = self.template.quote
            stripped = paragraph.lstrip(" ")
            offset = indent + space * (len(paragraph) - len(stripped)) + 6 * min(depth, 8)
            if offset > self.epw / 2:
                stripped, offset = paragraph, indent
            if not stripped.isascii() and COMPLEX.search(stripped):
                self.write_complex(stripped, paragraph_style, offset)
                continue
            self.draw_paragraph(
                self.l_margin + offset,
                self.wrap(stripped, paragraph_style, self.epw - offset),
                paragraph_style,
                single=self.glyph_fonts.chains[paragraph_style.style].single_face(stripped) == 0,
            )

    def draw_paragraph(self, x: float, lines: list[str], style: TextStyle, *, single: bool = False) -> None:
        """Draw ``lines`` one under the other from ``self.y``, breaking pages as
        :meth:`ensure_space` does before each line; ``self.y`` ends below the last one.

        With ``single`` (the main font draws every character of every line), the lines of
        one page go to the content stream in one write (:meth:`_draw_plain_lines`).
        """
        leading = style.leading
        count = len(lines)
        start = 0
        while start < count:
            self.ensure_space(leading)
            # The lines that fit on this page: ensure_space's rule, with the same additions.
            y = self.y
            trigger, top_margin = self.page_break_trigger, self.t_margin
            tops = [y]
            y += leading
            end = start + 1
            while end < count and not (y + leading > trigger and y > top_margin):
                tops.append(y)
                y += leading
                end += 1
            if not (single and end - start > 1 and self._draw_plain_lines(x, tops, lines[start:end], style)):
                for top, line in zip(tops, lines[start:end], strict=True):
                    self.draw_line(x, top, line, style)
            self.y = y
            start = end

    def _draw_plain_lines(self, x: float, tops: list[float], lines: list[str], style: TextStyle) -> bool:
        """:meth:`draw_line` for each of ``lines`` (at ``tops``), all in the style's main
        font: the same content-stream bytes, written at once. ``False`` (nothing drawn) when
        :meth:`draw_text` would not take its own path."""
        face = self.glyph_fonts.chains[style.style].faces[0]
        if (face.family, face.style) not in self._registered:
            self.use_face(face)
        self._select_color(style.color)
        self.select_face(face, style.size)
        font = self._plain_text_font()
        if font is None:
            return False
        k, h, encode = self.k, self.h, font.encode_text
        half_leading, rise = 0.5 * style.leading, 0.3 * style.size  # box top to baseline, as in draw_line
        opening, closing = self._text_wrapping()
        drawn = [
            f"{opening} {x * k:.2f} {(h - (top + half_leading + rise)) * k:.2f} Td {encode(line)} {closing}"
            for top, line in zip(tops, lines, strict=True)
            if line
        ]
        if drawn:
            self._out("\n".join(drawn))
        return True

    def write_complex(self, paragraph: str, style: TextStyle, offset: float = 0.0) -> None:
        """One paragraph through ``multi_cell`` with shaping: bidi order, joining, right alignment for RTL."""
        self.ensure_space(style.leading)
        self._fallbacks_for(paragraph)
        self.set_text_shaping(True)
        self.set_font(MAIN_FAMILY, style.style, style.size)
        self.set_text_color(*style.color)
        self.set_xy(self.l_margin + offset, self.y)
        rtl = first_strong_is_rtl(paragraph)
        try:
            self.multi_cell(
                self.epw - offset,
                style.leading,
                paragraph,
                align="R" if rtl else "L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
        finally:
            self._after_fpdf_text()

    def write_field(self, label: str, value: str) -> None:
        """A ``label`` in the left column and ``value`` wrapped in the right one."""
        template = self.template
        value_style = template.field_value
        if not value.isascii() and COMPLEX.search(value):
            self.ensure_space(value_style.leading)
            self.draw_line(self.l_margin, self.y, label, template.field_label)
            self.write_complex(value, value_style, template.label_width)
            return
        lines = self.wrap(value, value_style, self.epw - template.label_width) or [""]
        for number, line in enumerate(lines):
            self.ensure_space(value_style.leading)
            if number == 0:
                self.draw_line(self.l_margin, self.y, label, template.field_label)
            self.draw_line(self.l_margin + template.label_width, self.y, line, value_style)
            self.y += value_style.leading

    def rule(self, gap: float = 4.0) -> None:
        """A thin horizontal line across the text width, with ``gap`` points above and below."""
        self.y += gap
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
        self.y += gap

    def image_box(self, image: PreparedImage, max_height: float | None = None) -> tuple[float, float]:
        """The size, in points, an image is drawn at: CSS pixels (96 dpi), shrunk to fit the text area."""
        max_height = max_height or (self.page_break_trigger - self.t_margin) * IMAGE_MAX_HEIGHT_SHARE
        width, height = image.width * 0.75, image.height * 0.75
        scale = min(1.0, self.epw / width if width else 1.0, max_height / height if height else 1.0)
        return max(1.0, width * scale), max(1.0, height * scale)

    def draw_image(self, image: PreparedImage) -> None:
        """Place an image at the left margin below the current line, breaking the page if needed."""
        width, height = self.image_box(image)
        self.ensure_space(height)
        self.image(io.BytesIO(image.data), x=self.l_margin, y=self.y, w=width, h=height)
        self.y += height + 2

    def draw_placeholder(self, text: str, style: TextStyle) -> None:
        """A shaded one-line box saying what could not be shown (a missing image)."""
        line = self.fit(text, style, self.epw - 8)
        self.ensure_space(style.leading + 4)
        self.set_fill_color(*PLACEHOLDER_FILL)
        self.rect(self.l_margin, self.y, self.epw, style.leading + 4, style="F")
        self.draw_line(self.l_margin + 4, self.y + 2, line, style)
        self.y += style.leading + 6

    # -- HTML bodies ----------------------------------------------------------------------

    def _tag_styles(self) -> dict[str, Any]:
        body = self.template.body
        mono = self.glyph_fonts.mono
        if mono is not None:
            for style in STYLES:  # one file serves every style: <pre><b> must not raise
                self.use_face(FontFace(mono.family, style, mono.path, mono.index))
        mono_family = mono.family if mono is not None else MAIN_FAMILY
        return {
            "a": FpdfFontFace(color="#1a4f8b", emphasis="UNDERLINE"),
            "blockquote": FpdfTextStyle(color="#5a5a5a", l_margin=10, t_margin=2, b_margin=2),
            "pre": FpdfTextStyle(font_family=mono_family, font_size_pt=body.size - 1, t_margin=2, b_margin=2),
            "code": FpdfFontFace(family=mono_family),
            "p": FpdfTextStyle(t_margin=0, b_margin=2),
            "li": FpdfTextStyle(l_margin=8, t_margin=1),
            "dt": FpdfTextStyle(font_style="B", t_margin=2),
        }

    def _image_map(self, key: str) -> io.BytesIO:
        image = self._html_images.get(key)
        if image is None:  # the normaliser only lets resolved keys through
            raise FileNotFoundError(key)
        return io.BytesIO(image.data)

    def write_html_body(self, html: str, article_id: int, images: ArticleImages | None) -> None:
        """An HTML body through the sanitising pipeline and ``write_html``; on failure, as text.

        The partial output of a failed ``write_html`` is rolled back first, so nothing is
        drawn twice; the body then appears as inscriptis text through :meth:`write_lines`.
        """
        body = self.template.body
        max_height = (self.page_break_trigger - self.t_margin) * IMAGE_MAX_HEIGHT_SHARE

        def resolve(src: str) -> tuple[str, int, int] | None:
            if images is None or not self.template.images:
                return None
            found = images.resolve(article_id, src)
            if found is None:
                return None
            key, image = found
            self._html_images[key] = image
            return key, image.width, image.height

        def label(src: str) -> str:
            return images.label(article_id, src) if images is not None else (src[:80] or "image")

        rollback: _Rollback | None = None
        try:
            prepared = self.clean(
                prepare_html(html, resolve=resolve, label=label, max_width=self.epw, max_height=max_height)
            )
            self.set_x(self.l_margin)
            rollback = _Rollback(self)
            self._fallbacks_for(prepared)
            self.set_text_shaping(bool(COMPLEX.search(prepared)))
            self.set_font(MAIN_FAMILY, "", body.size)
            self.set_text_color(*body.color)
            self.write_html(
                prepared,
                font_family=MAIN_FAMILY,
                tag_styles=self._tag_styles(),
                image_map=self._image_map,
                ul_bullet_char="•",
                li_prefix_color=(64, 64, 64),
                warn_on_tags_not_matching=False,
            )
            self.set_x(self.l_margin)
        except Exception:  # write_html is not a browser: any failure → clean text, never a failed job
            self.html_fallbacks += 1
            if rollback is not None:
                rollback.restore(self)
            self._after_fpdf_text()
            self.write_lines(self.clean(html_to_text(html)), body)
        finally:
            self._after_fpdf_text()
            if rollback is not None:
                self.release_pages()

    # -- page furniture -----------------------------------------------------------------

    def header(self) -> None:
        """Ticket number and title on every page, drawn first in the main font (§3.1)."""
        top = HEADER_BASELINE - 0.5 * PAGE_HEADER.leading - 0.3 * PAGE_HEADER.size
        self.current_font_is_set_on_page = False
        self.draw_line(self.l_margin, top, self.header_text, PAGE_HEADER)
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, HEADER_BASELINE + 5, self.w - self.r_margin, HEADER_BASELINE + 5)
        self.y = self.t_margin

    def footer(self) -> None:
        """Archive note on the left, ``Page X of Y`` on the right."""
        shaping = self.text_shaping
        if shaping:
            self.set_text_shaping(False)
        baseline = self.h - FOOTER_BASELINE_FROM_BOTTOM
        top = baseline - 0.5 * PAGE_FOOTER.leading - 0.3 * PAGE_FOOTER.size
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, baseline - 10, self.w - self.r_margin, baseline - 10)
        page_width = self.width(f"Page {self.page_no()} of {self.page_no()}", PAGE_FOOTER)
        left = self.fit(self.footer_text, PAGE_FOOTER, self.epw - page_width - 12)
        self.current_font_is_set_on_page = False
        self.draw_line(self.l_margin, top, left, PAGE_FOOTER)
        # cell(), not text(): fpdf2 substitutes the {nb} alias only in cell/multi_cell output.
        self.set_font(MAIN_FAMILY, PAGE_FOOTER.style, PAGE_FOOTER.size)
        self.set_text_color(*PAGE_FOOTER.color)
        self.set_xy(self.l_margin, top)
        self.cell(self.epw, PAGE_FOOTER.leading, f"Page {self.page_no()} of {{nb}}", align="R")
        self.current_font_is_set_on_page = False
        self._drawn_color = None
        if shaping:
            self.set_text_shaping(True)


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
    included: int,
    total: int,
    originals: OriginalsIndex,
) -> None:
    """The first-page block: ticket number, title, the article-limit notice and the ticket's fields."""
    pdf.draw_line(pdf.l_margin, pdf.y, pdf.fit(f"Ticket #{number}", DOC_NUMBER, pdf.epw), DOC_NUMBER)
    pdf.y += DOC_NUMBER.leading
    pdf.write_lines(title, DOC_TITLE)
    pdf.y += 4
    if included < total:
        pdf.write_lines(
            f"{included} of {total} articles included: this PDF holds the first {included} "
            f"articles only (PDF_MAX_ARTICLES={included}).",
            LIMIT_WARNING,
        )
        pdf.y += 4

    def when(key: str) -> str:
        return pdf.clean(format_time(ticket.get(key), zone))

    articles = f"{total}" if included == total else f"{included} of {total} included"
    core = [
        ("Ticket number", number),
        ("Title", title),
        ("State", pdf.clean(ticket_field(ticket, "state"))),
        ("Customer", pdf.clean(ticket_field(ticket, "customer"))),
        ("Group", pdf.clean(ticket_field(ticket, "group"))),
        ("Created", when("created_at")),
    ]
    if pdf.template.ticket_fields == "full":
        fields = [
            *core[:3],
            ("Priority", pdf.clean(ticket_field(ticket, "priority"))),
            ("Group", pdf.clean(ticket_field(ticket, "group"))),
            ("Owner", pdf.clean(ticket_field(ticket, "owner"))),
            ("Customer", pdf.clean(ticket_field(ticket, "customer"))),
            ("Organisation", pdf.clean(ticket_field(ticket, "organization"))),
            ("Created", when("created_at")),
            ("Updated", when("updated_at")),
            ("First response", when("first_response_at") or "—"),
            ("Closed", when("close_at") or "—"),
        ]
        if ticket.get("pending_time"):
            fields.append(("Pending until", when("pending_time")))
        fields += [(pdf.clean(label), pdf.clean(value)) for label, value in custom_attributes(ticket)]
    else:
        fields = core
    fields += [
        ("Tags", pdf.clean(", ".join(str(tag) for tag in tags)) or "—"),
        ("Articles", articles),
        ("Archived", archived),
    ]
    if originals.active:
        fields.append(("Originals", originals.summary()))
    for label, value in fields:
        pdf.write_field(label, value)
    pdf.rule(6)


def _article_images(
    pdf: _TicketPdf, article: dict[str, Any], images: ArticleImages | None
) -> list[tuple[str, PreparedImage | None]]:
    """Image attachments to preview under the article (inline ones are already in the body)."""
    if not pdf.template.images:
        return []
    article_id = article.get("id") if isinstance(article.get("id"), int) else 0
    inline: set[int] = set()
    body = article.get("body")
    if images is not None and isinstance(body, str) and is_html(article):
        from app.render.images import image_sources

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
        prepared = images.by_attachment(attachment["id"]) if images is not None else None
        previews.append((pdf.clean(str(attachment.get("filename") or f"image-{attachment['id']}")), prepared))
    return previews


def _draw_article(
    pdf: _TicketPdf,
    article: dict[str, Any],
    position: int,
    total: int,
    zone: ZoneInfo,
    images: ArticleImages | None,
    originals: OriginalsIndex,
) -> None:
    """One article: bookmark, a shaded heading marked Internal/Public, its fields, attachments, body."""
    template = pdf.template
    internal = bool(article.get("internal"))
    created = pdf.clean(format_time(article.get("created_at"), zone))
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
    mark, mark_style = ("Internal", template.internal_mark) if internal else ("Public", heading_style)
    mark_width = pdf.width(mark, mark_style)
    heading = f"Article {position} of {total}" + (f" · {created}" if created else "")
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
    visibility = "Internal (not visible to the customer)" if internal else "Public"
    if template.article_fields == "table":
        pdf.write_field("From", sender_line or "—")
        pdf.write_field("To", to or "—")
        if cc:
            pdf.write_field("Cc", cc)
        pdf.write_field("Subject", subject or "—")
        pdf.write_field("Time", created)
        pdf.write_field("Type", kind)
        pdf.write_field("Sender", sender)
        pdf.write_field("Visibility", visibility)
    elif template.article_fields == "inline":
        parts = [f"From: {sender_line or '—'}", f"To: {to or '—'}"] + ([f"Cc: {cc}"] if cc else [])
        parts += [f"Subject: {subject or '—'}", f"Type: {kind}", f"Sender: {sender}", visibility]
        pdf.write_lines(" · ".join(parts), template.field_value)
    attachments = visible_attachments(article) if template.attachments else []
    if attachments:
        lines = []
        for attachment in attachments:
            line = f"{attachment.filename} — " + ", ".join(
                p for p in (attachment.content_type, attachment.size) if p
            )
            status = originals.attachment_status(attachment.attachment_id)  # "embedded in this PDF", …
            lines.append(pdf.clean(line + (f" — {status}" if status else "")))
        listing = "\n".join(lines)
        pdf.write_field("Attachments", listing)
    pdf.rule(4 if template.article_fields != "none" else 2)

    article_id = article.get("id") if isinstance(article.get("id"), int) else 0
    body = article.get("body")
    if isinstance(body, str) and body.strip() and is_html(article) and template.html:
        pdf.write_html_body(body, article_id, images)
    else:
        text = pdf.clean(body_text(article))
        if text.strip():
            pdf.write_lines(text, template.body, quotes=not is_html(article))
        else:
            pdf.write_lines("(no text)", template.note)
    for filename, prepared in _article_images(pdf, article, images):
        pdf.y += 4
        if prepared is None:
            pdf.draw_placeholder(f"[image: {filename}] (not available)", template.note)
        else:
            pdf.write_lines(f"Preview: {filename}", template.note)
            pdf.draw_image(prepared)
    pdf.y += 4


def _draw_originals(pdf: _TicketPdf, originals: OriginalsIndex) -> None:
    """The closing section: the originals left out (name, size, reason), then every embedded one
    (name, size, type, relationship, SHA-256)."""
    template = pdf.template
    pdf.y += template.article_gap
    pdf.ensure_space(DOC_TITLE.leading + 4 * template.body.leading)
    pdf.start_section("Originals", level=0)
    pdf.draw_line(pdf.l_margin, pdf.y, "Originals", DOC_TITLE)
    pdf.y += DOC_TITLE.leading
    if originals.omitted:
        pdf.ensure_space(template.field_label.leading + 2 * template.note.leading)
        pdf.write_lines(f"Not embedded ({len(originals.omitted)})", template.field_label)
        for omitted in originals.omitted:
            size = human_size(omitted.size) if omitted.size is not None else "size unknown"
            pdf.write_lines(
                pdf.clean(f"{omitted.name} — {size} — {omitted.reason}"), template.note, indent=12
            )
        pdf.y += 6
    if originals.embedded:
        pdf.ensure_space(template.field_label.leading + 4 * template.note.leading)
        pdf.write_lines(f"Embedded ({len(originals.embedded)})", template.field_label)
        pdf.write_lines(
            "PDF/A-3 associated files, byte for byte as fetched from Zammad; python -m app extract FILE.pdf -o DIR "
            "writes them out and checks them against the archive's sidecar.",
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
                    f"{human_size(record.size)} · {record.mime_type} · {record.relationship}"
                    + (f" · {record.description}" if record.description != record.name else "")
                ),
                template.note,
                indent=12,
            )
            pdf.write_lines(f"SHA-256 {record.sha256}", template.note, indent=12)
    pdf.y += 4


def render_ticket_pdf(
    ticket: dict[str, Any],
    articles: list[dict[str, Any]],
    tags: list[str],
    *,
    archived_at: datetime,
    options: RenderOptions,
    images: Mapping[int, bytes] | None = None,
    embedded: Sequence[EmbeddedFile] = (),
    omitted: Sequence[OmittedFile] = (),
    target: str | os.PathLike[str] | None = None,
) -> RenderedPdf:
    """Render one ticket and its articles as an unsigned PDF (A4, Noto Sans and fallbacks).

    Pure and synchronous: plain data in, bytes out, no clock and no I/O besides reading
    fonts, so it runs in a ``ProcessPoolExecutor`` and the same input and ``archived_at``
    always give byte-identical output.

    Args:
        ticket: ``GET /api/v1/tickets/{id}?expand=true`` (field names as strings) or the
            webhook's ``ticket`` object (group/priority/organization/state as ``{"name"}``,
            users as ``{"login", "firstname", "lastname", "email"}``).
        articles: ``GET /api/v1/ticket_articles/by_ticket/{id}``; drawn oldest first.
        tags: the ticket's tags, in Zammad's order.
        archived_at: the archive time; becomes the PDF creation date and is printed. A naive
            value is taken as UTC.
        options: template, time zone, service name, article limit, font directories.
        images: attachment id → bytes of the images listed by
            :func:`app.render.images.image_references`; an image not in it is drawn as a
            placeholder naming its file.
        embedded: originals to embed as associated files (``/AF``, ``/EmbeddedFiles``),
            dated ``archived_at``; attachments among them are marked "embedded in this PDF"
            and all are listed, with SHA-256, in a closing "Originals" section.
        omitted: originals the workflow left out, listed with size and reason there and
            beside their attachment.
        target: write the PDF into this new file instead of returning it (``data`` is then
            ``b""``): saves a copy of the whole PDF in memory.

    Returns:
        :class:`~app.workflow.ports.RenderedPdf` with ``page_count``, how many articles are
        included, ``missing_glyphs`` = characters drawn as ``[U+XXXX]`` placeholders,
        ``missing_scripts`` naming their scripts, ``embedded`` = ``(name, sha256, size)`` of
        each embedded file in the order given (names made unique) and ``pdfa`` = ``"3B"``
        with ``options.pdfa``.

    Raises:
        RenderError: the input is not a ticket object with a list of article objects; the
            options name an unknown template or time zone; the ticket has more than
            ``options.max_articles`` articles in ``fail`` mode (permanent, the message says
            what to change); an embedded file has an unknown relationship; or fpdf2 fails on
            the layout. Odd bodies never raise.
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
    ordered = ordered_articles(articles)
    if limit and total > limit:
        ordered = ordered[:limit]
    try:
        pdf = _TicketPdf(font_set(options.font_dirs), TEMPLATE_TABLE[options.template], pdfa=options.pdfa)
        originals = OriginalsIndex(embed_originals(pdf, embedded, modified=archived_at), omitted)
        article_images = ArticleImages(ordered, images or {})
        number = pdf.clean(str(ticket.get("number") or ticket.get("id") or "?"))
        title = pdf.clean(ticket.get("title") or "")
        service = pdf.clean(options.service_name)
        archived = pdf.clean(format_time(archived_at, zone))
        pdf.header_text = pdf.fit(f"Ticket #{number} – {title}", PAGE_HEADER, pdf.epw)
        pdf.footer_text = f"Archived {archived} by {service}"

        pdf.set_title(f"Ticket #{number}: {title}")
        pdf.set_subject(
            f"Zammad ticket #{number} with {total} articles"
            + (f" ({len(ordered)} included)" if len(ordered) < total else "")
            + f", archived {archived}"
        )
        pdf.set_author(service)
        pdf.set_keywords(", ".join(pdf.clean(str(tag)) for tag in tags))
        pdf.set_creator(f"{service} {__version__}")
        pdf.set_creation_date(archived_at)
        if options.pdfa:  # fpdf2's own PDF/A XMP dates itself "now" (docs/reference/rendering.md §5.4)
            pdf.set_xmp_metadata(
                xmp_metadata(
                    title=pdf.title,
                    subject=pdf.subject,
                    author=pdf.author,
                    keywords=pdf.keywords,
                    creator=pdf.creator,
                    producer=f"fpdf2 {FPDF_VERSION}",
                    date=archived_at,
                    pdfa=True,
                )
            )

        pdf.add_page()
        _draw_ticket_block(
            pdf,
            ticket,
            list(tags),
            zone=zone,
            number=number,
            title=title,
            archived=archived,
            included=len(ordered),
            total=total,
            originals=originals,
        )
        for position, article in enumerate(ordered, start=1):
            _draw_article(pdf, article, position, len(ordered), zone, article_images, originals)
        included = len(ordered)
        del articles, ordered  # laid out: a big ticket's articles need not outlive the output below
        if originals.active:
            _draw_originals(pdf, originals)
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
    except Exception as exc:  # fpdf2 or font failures: the job ends with a render error, cause attached
        raise RenderError(
            f"ticket {ticket.get('number') or ticket.get('id')}: PDF layout failed: {exc}", transient=False
        ) from exc
    return RenderedPdf(
        data=data,
        page_count=pdf.pages_count,
        articles_included=included,
        articles_total=total,
        missing_glyphs=sum(pdf.missing.values()),
        missing_scripts=tuple(sorted(pdf.missing)),
        embedded=tuple(record.as_tuple() for record in originals.embedded),
        pdfa=PDFA_LABEL if options.pdfa else None,
    )
