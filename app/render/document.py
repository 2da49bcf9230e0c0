"""The ticket PDF: fpdf2's ``FPDF`` with our page furniture and our own text path.

fpdf2 stays the PDF writer (fonts, subsetting, images, outline, metadata). Plain text is
broken into lines by :mod:`app.render.layout` and each line drawn font run by font run with
the content-stream bytes ``FPDF.text()`` would write (:meth:`TicketPdf.draw_text`), so page
breaks are ours too. Paragraphs that need shaping or right-to-left order (Arabic, Hebrew,
Indic) take fpdf2's ``multi_cell`` with text shaping switched on for that paragraph only
(:meth:`TicketPdf.write_complex`); HTML bodies are laid out on the same path
(:mod:`app.render.html_layout`).

A face is registered when first drawn or selected (:meth:`TicketPdf.use_face`, and
:meth:`TicketPdf.set_font` for fpdf2's own text paths), from the per-process font cache
(:mod:`app.render.fontcache`); the main and mono families get fixed glyph codes
(:mod:`app.render.fontsubset`), so their font objects come from the per-process output cache
(:mod:`app.render.fontoutput`). A face selected but never drawn with is left out of the file
(:meth:`TicketPdf.output`). Finished pages of a long document are parked
(:class:`app.render.streams.ParkedPages`).

Every page starts with main-font text in :meth:`TicketPdf.header`, and after every fpdf2
call that may select a fallback font the next line re-selects its own font: together they
avoid fpdf2 2.8.9's fallback-only-first-run defect (``docs/reference/rendering.md`` §3.1).

Over 450 lines: every method here reads or sets fpdf2's per-document drawing state (current
font and colour, the page's font resources, page breaks), which the plain-text and HTML
layouts share; split off, that state would be reached into from outside the class.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fpdf.drawing_primitives import convert_to_device_color
from fpdf.enums import PDFResourceType, ResourceAccessPolicy, TextEmphasis, TextMode, XPos, YPos
from fpdf.fonts import TTFFont
from fpdf.output import OutputProducer

from app.i18n import translation
from app.render.content import display_name, quote_depth
from app.render.fontcache import add_cached_font
from app.render.fontoutput import drop_undrawn_fonts
from app.render.fontsubset import use_tiered_codes
from app.render.glyphs import COMPLEX, MAIN_FAMILY, MONO_FAMILY, FontFace, FontSet
from app.render.html import first_strong_is_rtl
from app.render.layout import wrap_text
from app.render.metadata import PDFA_PROFILE, DocumentMetadata
from app.render.png_passthrough import preload_png
from app.render.streams import ParkedPages, ParkedPagesProducer
from app.render.templates import GREY, Template, TextStyle

# Page geometry, in points (A4: 595.28 × 841.89).
MARGIN = 42.0
HEADER_BASELINE = 28.0
BODY_TOP = 50.0
BOTTOM_MARGIN = 46.0
FOOTER_BASELINE_FROM_BOTTOM = 24.0

RULE_GREY = (170, 170, 170)

PAGE_HEADER = TextStyle("B", 8.5, 11.0, GREY)
PAGE_FOOTER = TextStyle("", 7.5, 10.0, GREY)

#: Largest image height as a share of the text area's height.
IMAGE_MAX_HEIGHT_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class _Look:
    """What :meth:`TicketPdf.draw_styled_lines_at` writes for one style on one page: its main
    ``face``, the ``selection`` :meth:`TicketPdf.select_face` compares (font key, family, style
    letters, size in pt), the ``font`` and its operator, the text ``color`` object and the
    ``wrapping`` around ``BT … ET`` (``opening``, ``closing``), the line box's top to the
    baseline (``half_leading + rise``, points, added in :meth:`TicketPdf.draw_line`'s order)."""

    face: FontFace
    selection: tuple[str, str, str, float]
    font: TTFFont
    font_operator: str
    color: Any
    wrapping: tuple[str, str]
    opening: str
    closing: str
    half_leading: float
    rise: float


class TicketPdf(ParkedPages):
    """An FPDF document (A4, points) with our page header/footer and line drawing.

    All text handed to the drawing methods must have gone through :meth:`clean`.

    Args:
        fonts: the font chains and metrics (:func:`app.render.glyphs.font_set`).
        template: what the sections show and in which styles.
        pdfa: fpdf2's PDF/A-3B compliance mode (:data:`app.render.metadata.PDFA_PROFILE`).
        language: the language of every label (:data:`app.i18n.LANGUAGES`); its catalogue
            is :attr:`tr` (``gettext``/``ngettext``).
    """

    def __init__(
        self, fonts: FontSet, template: Template, *, pdfa: bool = False, language: str = "en"
    ) -> None:
        super().__init__(
            orientation="P", unit="pt", format="A4", enforce_compliance=PDFA_PROFILE if pdfa else None
        )
        self.glyph_fonts = fonts
        self.template = template
        self.language = language
        self.tr = translation(language)
        self._registered: set[tuple[str, str]] = set()  # no face yet: each comes with its first use
        self.resource_access_policy = ResourceAccessPolicy.NONE
        # No page-count alias: the footers know the count (draw_footers), and with fpdf2's
        # "{nb}" on, its own text paths (multi_cell for shaped text) replaced that text in a body.
        self.alias_nb_pages(None)  # type: ignore[arg-type]  # fpdf2 documents None as "off"
        self.oversized_images = None
        self.set_margins(MARGIN, BODY_TOP, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM_MARGIN)
        self.missing: Counter[str] = Counter()
        self.header_text = ""
        self.footer_text = ""
        self._drawn_color: tuple[int, int, int] | None = None
        self._drawn_color_object: Any = None
        self._wrapped_fill: Any = None  # the colour objects _text_wrapping last saw
        self._wrapped_text: Any = None
        self._wrapping = ("BT", "ET")
        self._wrappings: dict[tuple[Any, Any], tuple[str, str]] = {}  # by (fill, text) colour value
        self._device_colors: dict[tuple[int, int, int], Any] = {}  # _select_color's colour objects
        self.html_images: dict[str, Any] = {}  # an HTML body's images by key (app.render.html_body)
        self.archive_metadata: DocumentMetadata | None = None
        self._before_page_break: Callable[[], None] | None = None  # write_complex's, while it runs

    def set_archive_metadata(self, metadata: DocumentMetadata) -> None:
        """Title, subject, author, keywords, creator and creation date for fpdf2's own ``/Info``
        (without PDF/A); with PDF/A, :meth:`DocumentMetadata.xmp` as the XMP packet and
        :attr:`archive_metadata` for the equal ``/Info``
        (:class:`app.render.metadata.ArchiveInfoProducer`)."""
        self.set_title(metadata.title)
        self.set_subject(metadata.subject)
        self.set_author(metadata.author)
        self.set_keywords(metadata.keywords)
        self.set_creator(metadata.creator)
        self.set_creation_date(metadata.date)
        if self._compliance:  # fpdf2's own PDF/A XMP dates itself "now" (docs/reference/rendering.md §5.4)
            self.set_xmp_metadata(metadata.xmp(pdfa=True))
            self.archive_metadata = metadata

    # -- fonts and text preparation -------------------------------------------------------

    def use_face(self, face: FontFace) -> None:
        """Register a font with fpdf2 on first use (fallbacks are registered only when needed).

        The main and mono families get fixed glyph codes (:func:`use_tiered_codes`): their
        font objects are written from the per-process cache of :mod:`app.render.fontoutput`.
        """
        if (face.family, face.style) not in self._registered:
            add_cached_font(self, face.family, face.style, face.path, face.index)
            self._registered.add((face.family, face.style))
            if face.family in (MAIN_FAMILY, MONO_FAMILY):  # fixed glyph codes: output cached per process
                use_tiered_codes(
                    self.fonts.get(f"{face.family.lower()}{''.join(sorted(face.style.upper()))}")
                )

    def set_font(self, family: str | None = None, style: str | TextEmphasis = "", size: float = 0) -> None:
        """fpdf2's ``set_font``, registering a face of the main or mono family on first use
        (:meth:`use_face`): fpdf2's own text paths (``cell``, ``multi_cell``)
        select faces by name. Other families must be registered already, as in fpdf2."""
        name = (family or self.font_family or "").lower()
        letters = style.style if isinstance(style, TextEmphasis) else style
        face_style = "".join(sorted(letters.upper().replace("U", "").replace("S", "")))
        if name == MAIN_FAMILY.lower() and face_style in self.glyph_fonts.main:
            self.use_face(self.glyph_fonts.main[face_style])
        elif name == MONO_FAMILY.lower() and self.glyph_fonts.mono is not None:
            mono = self.glyph_fonts.mono  # one file serves every style
            self.use_face(FontFace(mono.family, face_style, mono.path, mono.index))
        super().set_font(family, style, size)

    def image(self, name: Any, *args: Any, **kwargs: Any) -> Any:
        """fpdf2's ``image()``; a PNG given as ``io.BytesIO`` that qualifies goes in undecoded
        (:func:`app.render.png_passthrough.preload_png`)."""
        if isinstance(name, io.BytesIO):
            preload_png(self.image_cache, name.getvalue())
        return super().image(name, *args, **kwargs)

    def output(self, *args: Any, **kwargs: Any) -> Any:
        """fpdf2's ``output()`` without the fonts no page draws with (:func:`drop_undrawn_fonts`:
        a ``set_font`` that drew nothing, e.g. an empty ``<b></b>``, registered a face)."""
        producer = kwargs.pop("output_producer_class", ParkedPagesProducer)

        def without_undrawn_fonts(fpdf: Any) -> OutputProducer:  # after the last footer, before writing
            drop_undrawn_fonts(fpdf)
            return producer(fpdf)

        if not self.buffer:  # fpdf2 writes the document once
            self.draw_footers()
        return super().output(*args, output_producer_class=without_undrawn_fonts, **kwargs)

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

    def use_fallbacks(self, text: str) -> list[str]:
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

    def after_fpdf_text(self) -> None:
        """Forget fpdf2's font and colour state after its own text paths (the §3.1 workaround)."""
        self.current_font_is_set_on_page = False
        self._drawn_color = None
        if self.text_shaping:
            self.set_text_shaping(False)

    # -- drawing ------------------------------------------------------------------------

    def _select_color(self, color: tuple[int, int, int]) -> None:
        """``set_text_color(*color)``, with one colour object per colour for the document
        (fpdf2's are immutable; it makes a new one on every call)."""
        if self._drawn_color != color or self.text_color is not self._drawn_color_object:
            device = self._device_colors.get(color)
            if device is None:
                device = self._device_colors[color] = convert_to_device_color(*color)
            self.text_color = device
            self._drawn_color = color
            self._drawn_color_object = device

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

    def draw_in_face(self, x: float, top: float, text: str, face: FontFace, style: TextStyle) -> None:
        """Draw ``text`` whose box starts at ``top`` in ``face`` itself, not the style's font chain
        (the monospace face of HTML ``<code>``/``<pre>``), in ``style``'s size and colour. The
        face is registered here, on its first drawn glyph; every character must be in it."""
        if not text:
            return
        self.use_face(face)
        self._select_color(style.color)
        self.select_face(face, style.size)
        self.draw_text(x, top + 0.5 * style.leading + 0.3 * style.size, text)

    # Kept, with select_face and _draw_plain_lines, for `make bench` render: "fpdf2's text() / ours, CPU".
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
            wrapping = self._wrappings.get((fill, text))
            if wrapping is None:
                assert text is not None  # fpdf2 starts every document with a text colour
                wrapping = (f"q {text.serialize().lower()} BT", "ET Q") if fill != text else ("BT", "ET")
                self._wrappings[(fill, text)] = wrapping
            self._wrapping = wrapping
        return self._wrapping

    def max_image_height(self) -> float:
        """The largest height an image is drawn at, in points (a share of the text area's)."""
        return (self.page_break_trigger - self.t_margin) * IMAGE_MAX_HEIGHT_SHARE

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

    def draw_styled_lines_at(self, placed: list[tuple[float, float, str, TextStyle]]) -> None:
        """Draw pieces of lines, each ``(x, top, text, style)`` (points; ``top`` the line box's
        top from the page top) and each in its style's main font, on the current page in the
        order given (the content stream keeps the reading order): the bytes :meth:`draw_line`
        would write for each, in one write. The caller checks that the main font draws every
        character (:meth:`FontChain.single_face` ``== 0``).

        A change of style costs a look-up (:meth:`_look`): the font operator is written when
        the face or size changes, as :meth:`select_face` and :meth:`_plain_text_font` would;
        the text colour, face and wrapping are left as :meth:`draw_line` leaves them. When
        :meth:`draw_text` would not take its own path, the pieces go to :meth:`draw_line`.
        """
        if (
            not self.page
            or self.text_mode != TextMode.FILL
            or self.underline
            or self.strikethrough
            or self._record_text_quad_points
        ):
            for x, top, text, style in placed:
                self.draw_line(x, top, text, style)
            return
        k, h, page = self.k, self.h, self.page
        add_resource, font_resource = self._resource_catalog.add, PDFResourceType.FONT
        current_font = self.current_font
        selected: tuple[str, str, str, float] | None = (
            None
            if current_font is None
            else (current_font.fontkey, self.font_family, self.font_style, self.font_size_pt)
        )
        on_page = self.current_font_is_set_on_page
        looks: dict[int, _Look | None] = {}
        drawn: list[str] = []
        look: _Look | None = None
        look_style: TextStyle | None = None
        operator, opening, closing, half_leading, rise, font_number = "", "", "", 0.0, 0.0, 0
        encode: Callable[[str], str] = str
        for index, (x, top, text, style) in enumerate(placed):
            if not text:
                continue
            if style is not look_style:
                key = id(style)
                found = looks[key] if key in looks else looks.setdefault(key, self._look(style))
                if found is None:  # not a TrueType face: fpdf2's own text() draws the rest
                    if drawn:
                        self._out("\n".join(drawn))
                    if look is not None and look_style is not None:
                        self._leave_look(look, look_style)
                    for x, top, text, style in placed[index:]:
                        self.draw_line(x, top, text, style)
                    return
                look, look_style = found, style
                if found.selection != selected:
                    selected, on_page = found.selection, False
                operator, opening, closing = found.font_operator, found.opening, found.closing
                half_leading, rise, font_number = found.half_leading, found.rise, found.font.i
                encode = found.font.encode_text
            if not on_page:
                drawn.append(operator)
                add_resource(font_resource, font_number, page)
                on_page = True
            baseline = top + half_leading + rise  # draw_line's sum, in its order
            drawn.append(f"{opening} {x * k:.2f} {(h - baseline) * k:.2f} Td {encode(text)} {closing}")
        if look is None or look_style is None:
            return
        self._out("\n".join(drawn))
        self._leave_look(look, look_style)

    def _look(self, style: TextStyle) -> _Look | None:
        """What :meth:`draw_styled_lines_at` writes for ``style`` on this page (its main face
        registered, as :meth:`draw_line` does on first use); ``None`` for a face that is not
        TrueType."""
        face = self.glyph_fonts.chains[style.style].faces[0]
        if (face.family, face.style) not in self._registered:
            self.use_face(face)
        family = face.family.lower()
        font = self.fonts[family + face.style]
        if not isinstance(font, TTFFont):
            return None
        color = self._device_colors.get(style.color)
        if color is None:
            color = self._device_colors[style.color] = convert_to_device_color(*style.color)
        fill = self.fill_color
        wrapping = self._wrappings.get((fill, color))
        if wrapping is None:
            wrapping = (f"q {color.serialize().lower()} BT", "ET Q") if fill != color else ("BT", "ET")
            self._wrappings[(fill, color)] = wrapping
        return _Look(
            face=face,
            selection=(family + face.style, family, face.style, style.size),
            font=font,
            font_operator=f"BT /F{font.i} {style.size:.2f} Tf ET",  # FPDF._set_font_for_page
            color=color,
            wrapping=wrapping,
            opening=wrapping[0],
            closing=wrapping[1],
            half_leading=0.5 * style.leading,
            rise=0.3 * style.size,
        )

    def _leave_look(self, look: _Look, style: TextStyle) -> None:
        """The state :meth:`draw_line` leaves after drawing in ``style``: text colour, face
        and size (put on the page), the text wrapping."""
        self.text_color = look.color
        self._drawn_color = style.color
        self._drawn_color_object = look.color
        self.select_face(look.face, style.size)
        self.current_font_is_set_on_page = True
        self._wrapped_fill, self._wrapped_text, self._wrapping = self.fill_color, look.color, look.wrapping

    def draw_segments(self, segments: list[tuple[float, float, float, float]]) -> None:
        """Stroke straight lines ``(x1, y1, x2, y2)`` (points from the page's top left) in the
        current draw colour and line width: the bytes of ``line()`` for each, in one write."""
        k, h = self.k, self.h
        if segments:
            self._out(
                "\n".join(
                    f"{x1 * k:.2f} {(h - y1) * k:.2f} m {x2 * k:.2f} {(h - y2) * k:.2f} l S"
                    for x1, y1, x2, y2 in segments
                )
            )

    @contextlib.contextmanager
    def _shaping(self, text: str, style: TextStyle, x: float, y: float) -> Iterator[str]:
        """fpdf2's own text path set up for ``text`` in ``style`` at ``(x, y)`` with shaping
        (joining, bidi order by Unicode UAX #9; the fallback fonts it needs registered) and no
        cell margin (the text starts at ``x`` and ends at the right margin, as our own text
        does); yields the alignment, ``"R"`` when its first strong character is right to left,
        else ``"L"``. fpdf2's font and colour state is forgotten afterwards (:meth:`after_fpdf_text`)."""
        self.use_face(self.glyph_fonts.chains[style.style].faces[0])
        self.use_fallbacks(text)
        self.set_text_shaping(True)
        self.set_font(MAIN_FAMILY, style.style, style.size)
        self.set_text_color(*style.color)
        self.set_xy(x, y)
        cell_margin, self.c_margin = self.c_margin, 0.0  # flush with our own text, as drawn at x
        try:
            yield "R" if first_strong_is_rtl(text) else "L"
        finally:
            self.c_margin = cell_margin
            self.after_fpdf_text()

    def draw_shaped_line(self, x: float, top: float, text: str, style: TextStyle, width: float) -> None:
        """One line whose box starts at ``top`` (pt from the page top) through fpdf2's ``cell``
        with shaping (:meth:`_shaping`), right-aligned in ``width`` points when it runs right
        to left. ``self.y`` is left as it was."""
        y = self.y
        try:
            with self._shaping(text, style, x, top) as align:
                self.cell(width, style.leading, text, align=align)
        finally:
            self.y = y

    def write_complex(
        self,
        paragraph: str,
        style: TextStyle,
        offset: float = 0.0,
        before_page_break: Callable[[], None] | None = None,
    ) -> None:
        """One paragraph through ``multi_cell`` with shaping (:meth:`_shaping`): bidi order,
        joining, right alignment for RTL. ``before_page_break`` runs when ``multi_cell`` is
        about to start a page, ``self.y`` below the page's last line (the quote bars beside
        them are drawn then: :mod:`app.render.html_layout`)."""
        self.ensure_space(style.leading)
        self._before_page_break = before_page_break
        try:
            with self._shaping(paragraph, style, self.l_margin + offset, self.y) as align:
                self.multi_cell(
                    self.epw - offset,
                    style.leading,
                    paragraph,
                    align=align,
                    new_x=XPos.LMARGIN,
                    new_y=YPos.NEXT,
                )
        finally:
            self._before_page_break = None

    def _perform_page_break(self) -> None:
        """fpdf2's page break inside its own text paths (``multi_cell``), after
        :meth:`write_complex`'s ``before_page_break``."""
        if self._before_page_break is not None:
            self._before_page_break()
        super()._perform_page_break()

    def write_fields(self, fields: Iterable[tuple[str, str]]) -> None:
        """A table of fields, each ``(label, value)``: the label in the left column, the value
        wrapped in the right one, from ``self.y`` down, breaking pages as :meth:`ensure_space`
        does before each line of a value; ``self.y`` ends below the last line.

        The pieces of one page go to the content stream in reading order (each label, then
        its value's lines) through :meth:`draw_styled_lines_at` when the main font draws
        them, else through :meth:`draw_line`: the bytes :meth:`draw_line` alone would write.
        A value that needs shaping or runs right to left goes to :meth:`write_complex`.
        """
        template = self.template
        label_style, value_style = template.field_label, template.field_value
        label_chain = self.glyph_fonts.chains[label_style.style]
        value_chain = self.glyph_fonts.chains[value_style.style]
        leading = value_style.leading
        label_x = self.l_margin
        value_x = label_x + template.label_width
        value_width = self.epw - template.label_width
        placed: list[tuple[float, float, str, TextStyle]] = []
        drawn_by: list[FontFace | bool | None] = []  # per piece: None when the main font draws it
        for label, value in fields:
            if not value.isascii() and COMPLEX.search(value):
                self.draw_pieces(placed, drawn_by)
                placed, drawn_by = [], []
                self.ensure_space(leading)
                self.draw_line(label_x, self.y, label, label_style)
                self.write_complex(value, value_style, template.label_width)
                continue
            lines = self.wrap(value, value_style, value_width) or [""]
            for number, line in enumerate(lines):
                if self.y + leading > self.page_break_trigger and self.y > self.t_margin:  # ensure_space
                    self.draw_pieces(placed, drawn_by)
                    placed, drawn_by = [], []
                    self.add_page()
                top = self.y
                if number == 0 and label:
                    placed.append((label_x, top, label, label_style))
                    drawn_by.append(None if label_chain.single_face(label) == 0 else False)
                if line:
                    placed.append((value_x, top, line, value_style))
                    drawn_by.append(None if value_chain.single_face(line) == 0 else False)
                self.y = top + leading
        self.draw_pieces(placed, drawn_by)

    def draw_pieces(
        self, placed: list[tuple[float, float, str, TextStyle]], drawn_by: list[FontFace | bool | None]
    ) -> None:
        """Draw pieces of lines ``(x, top, text, style)`` in the order given, each as ``drawn_by``
        says: ``None``, its style's main font draws all of it (runs of such pieces go to
        :meth:`draw_styled_lines_at` in one write); ``False``, its style's font chain, run by
        run (:meth:`draw_line`); a :class:`FontFace`, that face itself (:meth:`draw_in_face`,
        the monospace face)."""
        count = len(placed)
        start = 0
        while start < count:
            end = start
            while end < count and drawn_by[end] is None:
                end += 1
            if end > start:
                self.draw_styled_lines_at(placed[start:end] if start or end < count else placed)
            if end < count:
                x, top, text, style = placed[end]
                by = drawn_by[end]
                if by is False:
                    self.draw_line(x, top, text, style)
                else:
                    assert isinstance(by, FontFace)
                    self.draw_in_face(x, top, text, by, style)
                end += 1
            start = end

    def rule(self, gap: float = 4.0) -> None:
        """A thin horizontal line across the text width, with ``gap`` points above and below."""
        self.y += gap
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
        self.y += gap

    # -- page furniture -----------------------------------------------------------------

    def header(self) -> None:
        """Ticket number and title on every page, drawn first in the main font (§3.1); a title
        that needs shaping or runs right to left through fpdf2's shaping (:meth:`draw_shaped_line`)."""
        top = HEADER_BASELINE - 0.5 * PAGE_HEADER.leading - 0.3 * PAGE_HEADER.size
        self.current_font_is_set_on_page = False
        text = self.header_text
        if not text.isascii() and COMPLEX.search(text):
            self.draw_shaped_line(self.l_margin, top, text, PAGE_HEADER, self.epw)
        else:
            self.draw_line(self.l_margin, top, text, PAGE_HEADER)
        self.set_draw_color(*RULE_GREY)
        self.set_line_width(0.5)
        self.line(self.l_margin, HEADER_BASELINE + 5, self.w - self.r_margin, HEADER_BASELINE + 5)
        self.y = self.t_margin

    def footer(self) -> None:
        """Nothing while a page ends: every page's footer is drawn by :meth:`draw_footers`
        once the page count is known (at :meth:`output`)."""

    def draw_footers(self) -> None:
        """On every page, the archive note on the left and ``Page X of Y`` (in the document's
        language) on the right, above a thin rule.

        Drawn at the end of each page's content once the page count is known, instead of
        fpdf2's ``{nb}`` alias that only ``cell()`` substitutes: each footer sets every
        graphics state it uses inside ``q … Q`` (the text colour as the fill colour), since
        the state fpdf2 tracks is that of the document's last page by now.
        """
        pages = len(self.pages)
        if not pages:
            return
        page_label = self.tr.gettext("Page {page} of {pages}")
        baseline = self.h - FOOTER_BASELINE_FROM_BOTTOM
        top = baseline - 0.5 * PAGE_FOOTER.leading - 0.3 * PAGE_FOOTER.size
        # The rule's stroke colour and width, and the text colour as the fill colour (fpdf2's serialisation).
        state = (
            f"q {convert_to_device_color(*RULE_GREY).serialize().upper()} {0.5 * self.k:.2f} w "
            f"{convert_to_device_color(*PAGE_FOOTER.color).serialize().lower()}"
        )
        rule = [(self.l_margin, baseline - 10, self.w - self.r_margin, baseline - 10)]
        widest = self.width(page_label.format(page=pages, pages=pages), PAGE_FOOTER)
        left = self.fit(self.footer_text, PAGE_FOOTER, self.epw - widest - 12)
        current = self.page
        try:
            for number in range(1, pages + 1):
                self.page = number
                self._out(state)
                self.draw_segments(rule)
                self._drawn_color = None
                self.current_font_is_set_on_page = False
                self.draw_line(self.l_margin, top, left, PAGE_FOOTER)
                label = page_label.format(page=number, pages=pages)
                self.draw_line(
                    self.w - self.r_margin - self.width(label, PAGE_FOOTER), top, label, PAGE_FOOTER
                )
                self._out("Q")
        finally:
            self.page = current
            self.current_font_is_set_on_page = False
            self._drawn_color = None
