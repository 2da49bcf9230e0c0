"""HTML body blocks (:mod:`app.render.html_blocks`) on the page, through our word-cached text path.

Every paragraph is broken into lines with the cached word widths of
:class:`app.render.layout.WordMeasure` — one measure per font style, the widths of a
paragraph's spans in 1/1000 em of its size — and drawn with :class:`TicketPdf`'s own text
primitives (text collected in reading order and written per page: what the main font draws
alone with :meth:`TicketPdf.draw_styled_lines_at`, the rest with ``draw_line`` per font run).
fpdf2's ``write_html`` is not used: its line breaking re-measures the line for every
character (``make bench`` render row
"Zammad mix, 20 articles: HTML / plain twin, render CPU"). Line breaking over styled spans
and column sizing are :mod:`app.render.html_lines`.

Where this differs from a browser:

- paragraphs that need shaping or run right to left (:data:`app.render.glyphs.COMPLEX`) go
  to fpdf2's ``multi_cell`` (:meth:`TicketPdf.write_complex`) as one string: their inline
  styles (bold, links, underline) are not drawn, their words all are;
- ``<sup>``/``<sub>`` are normal text on the line, as superscript/subscript characters
  (``10⁶``, ``H₂O``) or marked ``^(…)``/``_(…)`` when a character has no such form;
- table cells hold one line of text in one style (the normaliser flattened their markup); a
  table with text that needs shaping is drawn cell by cell as paragraphs;
- the monospace face has one style: ``<b>`` inside ``<code>`` is not bold.

Over 450 lines: the painter's page writing (text batched in reading order, quote bars and
table rules collected per page) belongs to the blocks it draws and shares their page breaks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from app.render.document import RULE_GREY, TicketPdf
from app.render.glyphs import COMPLEX, FontFace, FontSet, load_metrics
from app.render.html import first_strong_is_rtl
from app.render.html_blocks import (
    HEADING_SCALE,
    Block,
    Gap,
    Image,
    Paragraph,
    Rule,
    Span,
    Table,
)
from app.render.html_lines import Segment, break_spans, column_widths
from app.render.layout import WordMeasure, wrap_paragraph
from app.render.templates import TextStyle

#: Colour of link text and its underline (RGB).
CELL_SEPARATOR = " | "
"""Between the cells of a row of a table too wide to draw as a grid."""

MAX_LINK_CHARS = 4000
"""Longest link target that becomes a link annotation (``/URI``); a longer one stays visible
as text beside the link's words only: as a PDF string it could pass the 32,767 bytes PDF/A
allows (ISO 19005-3 §6.1.13)."""

LINK_COLOR = (26, 79, 139)
#: Colour and width (pt) of quote bars.
BAR_COLOR = (190, 190, 190)
BAR_WIDTH = 1.5
#: Colour and width (pt) of table rules.
GRID_COLOR = (200, 200, 200)
GRID_WIDTH = 0.5
#: Space between a cell's border and its text, in points (left/right, top/bottom).
CELL_PAD_X = 3.0
CELL_PAD_Y = 1.5

#: ``(id of the FontSet, whether its fallbacks were loaded) -> measure`` (:func:`mono_measure`).
_mono_measures: dict[tuple[int, bool], WordMeasure] = {}


def draw_blocks(pdf: TicketPdf, blocks: Sequence[Block]) -> None:
    """Draw ``blocks`` from ``pdf.y`` down, breaking pages as needed; ``pdf.y`` ends below them.

    The text must have gone through :meth:`TicketPdf.clean` (:func:`app.render.html.prepare_tree`
    does). Images are looked up in ``pdf.html_images`` by key.

    Raises:
        KeyError: an image key is not in ``pdf.html_images``.
        Exception: whatever fpdf2 raises; the caller rolls the body back and draws it as text.
    """
    painter = _Painter(pdf)
    for block in blocks:
        if isinstance(block, Paragraph):
            painter.paragraph(block)
        elif isinstance(block, Gap):
            painter.gap(block)
        elif isinstance(block, Table):
            painter.flush()
            painter.table(block)
        elif isinstance(block, Image):
            painter.flush()
            painter.image(block)
        elif isinstance(block, Rule):
            painter.flush()
            painter.rule(block)
    painter.flush()
    pdf.set_x(pdf.l_margin)


def mono_measure(fonts: FontSet) -> WordMeasure | None:
    """Widths in the monospace face, characters it lacks in the regular chain's (``None``: no mono face)."""
    mono = fonts.mono
    if mono is None:
        return None
    key = (id(fonts), fonts.fallbacks_loaded)  # the regular chain grows when the fallbacks load
    measure = _mono_measures.get(key)
    if measure is None:
        # one dict, not a ChainMap: a <pre> line is measured character by character
        advances = {**fonts.chains[""].advances, **load_metrics(mono.path, mono.index).advances}
        measure = _mono_measures[key] = WordMeasure(advances)
    return measure


class _Painter:
    """Draws blocks on one document. Text is not written piece by piece but collected in
    reading order (:meth:`text`) and written per page in one go (:meth:`flush`:
    :meth:`TicketPdf.draw_styled_lines_at` for what the main font draws alone, ``draw_line``
    for the rest); quote bars that continue one another are drawn as one line per page
    (:meth:`bars`), table rules in one write (:meth:`row`). :meth:`flush` writes all three;
    it runs before anything that may start a page."""

    def __init__(self, pdf: TicketPdf) -> None:
        self.pdf = pdf
        self.fonts = pdf.glyph_fonts
        self.body = pdf.template.body
        self.quote_color = pdf.template.quote.color
        self.styles: dict[tuple[str, float, float, tuple[int, int, int]], TextStyle] = {}
        self.batched: list[tuple[float, float, str, TextStyle]] = []  # main font only: drawn in one go
        self.batched_by: list[FontFace | bool | None] = []  # per batched piece: what draws it (batch)
        self.open_bars: dict[float, list[float]] = {}  # x (pt) → [top, bottom] not drawn yet
        self.grid: list[tuple[float, float, float, float]] = []  # table rules not drawn yet
        self.grid_bottom: tuple[float, float, float] | None = None  # the last row's (bottom, left, right)
        mono = self.fonts.mono
        self.mono_advances = load_metrics(mono.path, mono.index).advances if mono is not None else {}

    # -- shared pieces ---------------------------------------------------------------------

    def style(self, style: str, size: float, leading: float, color: tuple[int, int, int]) -> TextStyle:
        """One :class:`TextStyle` object per look (:meth:`TicketPdf.draw_styled_lines_at`
        compares styles by identity)."""
        key = (style, size, leading, color)
        found = self.styles.get(key)
        if found is None:
            found = self.styles[key] = TextStyle(style, size, leading, color)
        return found

    def batch(
        self, x: float, top: float, line: str, style: TextStyle, by: FontFace | bool | None = None
    ) -> None:
        """Draw ``line`` with the next :meth:`flush`, ``by`` the style's main font (``None``), its
        font chain run by run (``False``) or one face (the monospace face)."""
        self.batched.append((x, top, line, style))
        self.batched_by.append(by)

    def flush(self, bars: bool = True) -> None:
        """Write the collected text (in the order it came), quote bars (unless not ``bars``:
        they may still grow) and table rules to the current page."""
        if self.batched:
            self.pdf.draw_pieces(self.batched, self.batched_by)
            self.batched = []
            self.batched_by = []
        if bars and self.open_bars:
            self.draw_bars()
        if self.grid:
            self.draw_lines(self.grid, GRID_COLOR, GRID_WIDTH)
            self.grid = []
            self.grid_bottom = None

    def text(self, x: float, top: float, text: str, style: TextStyle) -> None:
        """One piece of text, drawn with the next :meth:`flush`."""
        self.batch(
            x, top, text, style, None if self.fonts.chains[style.style].single_face(text) == 0 else False
        )

    def ensure_space(self, height: float) -> None:
        """:meth:`TicketPdf.ensure_space`, writing the collected lines first when a page starts."""
        pdf = self.pdf
        if pdf.y + height > pdf.page_break_trigger and pdf.y > pdf.t_margin:
            self.flush()
            pdf.add_page()

    def page_lines(self, count: int, start: int, leading: float) -> tuple[int, float]:
        """Start a page if the next line does not fit; then how many of the ``count - start`` lines
        left fit on this page (at least one) and where the last one ends: ``draw_paragraph``'s rule."""
        pdf = self.pdf
        self.ensure_space(leading)
        y = pdf.y + leading
        end = start + 1
        trigger, top_margin = pdf.page_break_trigger, pdf.t_margin
        while end < count and not (y + leading > trigger and y > top_margin):
            y += leading
            end += 1
        return end, y

    def bars(self, bars: tuple[float, ...], top: float, bottom: float) -> None:
        """The quote bars beside the band from ``top`` to ``bottom`` (points from the page top),
        drawn with the next :meth:`flush`: a bar that continues one not drawn yet extends it."""
        if not bars or bottom <= top:
            return
        left, pending = self.pdf.l_margin, self.open_bars
        for offset in bars:
            x = left + offset
            band = pending.get(x)
            if band is not None and band[0] <= top <= band[1] + 0.01:
                if bottom > band[1]:
                    band[1] = bottom
                continue
            if band is not None:
                self.draw_bar(x, band)
            pending[x] = [top, bottom]

    def draw_bars(self) -> None:
        """Draw the quote bars :meth:`bars` collected."""
        self.draw_lines(
            [(x, band[0], x, band[1]) for x, band in self.open_bars.items()], BAR_COLOR, BAR_WIDTH
        )
        self.open_bars = {}

    def draw_bar(self, x: float, band: list[float]) -> None:
        """One quote bar at ``x`` from ``band[0]`` to ``band[1]`` (points from the page top)."""
        self.draw_lines([(x, band[0], x, band[1])], BAR_COLOR, BAR_WIDTH)

    def draw_lines(
        self, segments: list[tuple[float, float, float, float]], color: tuple[int, int, int], width: float
    ) -> None:
        """Straight lines ``(x1, y1, x2, y2)`` (points) in one colour and width."""
        pdf = self.pdf
        pdf.set_draw_color(*color)
        pdf.set_line_width(width)
        pdf.draw_segments(segments)

    def measure(self, span: Span) -> WordMeasure:
        """The word measure of a span's look (1/1000 em)."""
        if span.mono:
            measure = mono_measure(self.fonts)
            if measure is not None:
                return measure
        return self.fonts.measures[span.style]

    def marker(self, x: float, top: float, marker: str, style: TextStyle) -> None:
        """A list marker in the indent before a first line that starts at ``x``, in the
        paragraph's regular style (one style: it joins the paragraph's batch)."""
        style = self.style("", style.size, style.leading, style.color)
        self.text(x - self.pdf.width(marker, style) - 4, top, marker, style)

    # -- paragraphs ------------------------------------------------------------------------

    def paragraph(self, paragraph: Paragraph) -> None:
        """A paragraph: one look → like plain text; mixed looks → segment by segment; shaped → fpdf2."""
        pdf, body = self.pdf, self.body
        scale = HEADING_SCALE.get(paragraph.heading, 1.0)
        size, leading = body.size * scale, body.leading * scale
        if paragraph.pre:
            size, leading = size - 1, leading * (size - 1) / size
        color = self.quote_color if paragraph.quoted else body.color
        width = pdf.epw - paragraph.indent
        x = pdf.l_margin + paragraph.indent
        spans = paragraph.spans
        text = paragraph.text if len(spans) > 1 else spans[0].text
        if not text.isascii() and COMPLEX.search(text):
            self.complex(paragraph, text, size, leading, color)
            return
        first = spans[0]
        if (
            not paragraph.pre
            and first.plain
            and (len(spans) == 1 or all(span.plain and span.style == first.style for span in spans))
        ):
            style = self.style(first.style, size, leading, color)
            self.plain(paragraph, x, text, pdf.wrap(text, style, width), style)
            return
        if paragraph.pre:
            measure = self.measure(first)
            limit = width * 1000 / size
            lines: list[list[Segment]] = [
                [(first, line)]
                for source in text.split("\n")
                for line in wrap_paragraph(source, limit, measure)
            ]
        else:
            lines = break_spans(spans, width * 1000 / size, self.measure)
        self.styled(paragraph, x, lines, size, leading, color)

    def complex(
        self, paragraph: Paragraph, text: str, size: float, leading: float, color: tuple[int, int, int]
    ) -> None:
        """A paragraph that needs shaping or runs right to left: fpdf2's multi_cell
        (:meth:`TicketPdf.write_complex`), one string in one style. A left-to-right list item's
        marker goes in the indent as for any item; a right-to-left one's leads its text (bidi
        order puts it at the right). The quote bars run beside its lines on every page."""
        pdf = self.pdf
        self.ensure_space(leading)
        top = pdf.y
        bold = all(span.bold for span in paragraph.spans)
        style = TextStyle("B" if bold else "", size, leading, color)
        marker = paragraph.marker
        if marker and not first_strong_is_rtl(text):
            self.marker(pdf.l_margin + paragraph.indent, top, marker, style)
        elif marker:
            text = f"{marker} {text}"
        self.flush(bars=False)  # text before it in reading order; bars above it may go on beside it

        def page_ends() -> None:  # multi_cell is about to start a page: the bars beside this one
            nonlocal top
            self.bars(paragraph.bars, top, pdf.y)
            self.flush()
            top = pdf.t_margin

        pdf.write_complex(text, style, paragraph.indent, before_page_break=page_ends)
        self.bars(paragraph.bars, top, pdf.y)

    def plain(self, paragraph: Paragraph, x: float, text: str, lines: list[str], style: TextStyle) -> None:
        """A paragraph in one look (``text``, broken into ``lines``), line under line."""
        pdf = self.pdf
        by = None if self.fonts.chains[style.style].single_face(text) == 0 else False
        leading = style.leading
        count, start = len(lines), 0
        while start < count:
            end, bottom = self.page_lines(count, start, leading)
            top = pdf.y
            if start == 0 and paragraph.marker:
                self.marker(x, top, paragraph.marker, style)
            for line in lines[start:end]:
                self.batch(x, top, line, style, by)
                top += leading
            self.bars(paragraph.bars, pdf.y, bottom)
            pdf.y = bottom
            start = end

    def styled(
        self,
        paragraph: Paragraph,
        x: float,
        lines: list[list[Segment]],
        size: float,
        leading: float,
        color: tuple[int, int, int],
    ) -> None:
        """Lines of segments in mixed looks, segment by segment at their x offsets."""
        pdf = self.pdf
        count, start = len(lines), 0
        while start < count:
            end, bottom = self.page_lines(count, start, leading)
            page_top = top = pdf.y
            if start == 0 and paragraph.marker:
                self.marker(x, page_top, paragraph.marker, self.style("", size, leading, color))
            for line in lines[start:end]:
                left = x
                baseline = top + 0.5 * leading + 0.3 * size
                for span, text in line:
                    span_color = LINK_COLOR if span.link else color
                    style = self.style(span.style, size, leading, span_color)
                    advance = self.measure(span).width(text) * size / 1000
                    if span.mono and self.mono_advances:
                        self.mono(left, top, text, style)
                    else:
                        self.text(left, top, text, style)
                    if span.underline or span.strike:
                        pdf.set_draw_color(*span_color)
                        pdf.set_line_width(max(0.4, size / 20))
                        rise = -0.12 * size if span.underline else 0.28 * size
                        pdf.line(left, baseline - rise, left + advance, baseline - rise)
                    if span.link and len(span.link) <= MAX_LINK_CHARS:
                        pdf.link(left, top, advance, leading, span.link)
                    left += advance
                top += leading
            self.bars(paragraph.bars, page_top, bottom)
            pdf.y = bottom
            start = end

    def mono(self, x: float, top: float, text: str, style: TextStyle) -> None:
        """``text`` in the monospace face; characters it lacks in the regular chain (CJK, emoji …)."""
        pdf, mono = self.pdf, self.mono_advances
        face = self.fonts.mono
        assert face is not None
        if mono.keys() >= set(text):  # the monospace face draws all of it (typical): one piece
            self.batch(x, top, text, style, face)
            return
        regular = self.style("", style.size, style.leading, style.color)
        start, length = 0, len(text)
        while start < length:
            inside = text[start] in mono
            end = start + 1
            while end < length and (text[end] in mono) == inside:
                end += 1
            part = text[start:end]
            if inside:
                self.batch(x, top, part, style, face)
                x += sum(mono.get(char, 0) for char in part) * style.size / 1000
            else:
                self.text(x, top, part, regular)
                x += pdf.width(part, regular)
            start = end

    # -- other blocks ----------------------------------------------------------------------

    def gap(self, gap: Gap) -> None:
        """Space between blocks; at a page's end it is dropped with the page break."""
        pdf = self.pdf
        height = gap.lines * self.body.leading
        if pdf.y + height <= pdf.page_break_trigger:
            self.bars(gap.bars, pdf.y, pdf.y + height)
        pdf.y += height

    def rule(self, rule: Rule) -> None:
        """``<hr>``: a thin grey line with space above and below."""
        pdf = self.pdf
        pdf.ensure_space(8)
        self.bars(rule.bars, pdf.y, pdf.y + 8)
        pdf.set_draw_color(*RULE_GREY)
        pdf.set_line_width(0.5)
        pdf.line(pdf.l_margin + rule.indent, pdf.y + 4, pdf.w - pdf.r_margin, pdf.y + 4)
        pdf.y += 8

    def image(self, block: Image) -> None:
        """An image at the indent, shrunk to the width left there."""
        pdf = self.pdf
        room = pdf.epw - block.indent
        scale = min(1.0, room / block.width)
        width, height = block.width * scale, block.height * scale
        image = pdf.html_images[block.key]
        pdf.ensure_space(height)
        top = pdf.y
        pdf.image(io.BytesIO(image.data), x=pdf.l_margin + block.indent, y=top, w=width, h=height)
        self.bars(block.bars, top, top + height + 2)
        pdf.y = top + height + 2

    def table(self, table: Table) -> None:
        """A table: columns sized from their content, cell text wrapped in its column, a thin grid."""
        rows = table.rows
        if not rows:
            return
        pdf, body = self.pdf, self.body
        color = self.quote_color if table.quoted else body.color
        if any(not cell.text.isascii() and COMPLEX.search(cell.text) for row in rows for cell in row):
            # Shaped text cannot be put into a column by write_complex: every cell its own paragraph.
            for row in rows:
                for cell in row:
                    if cell.text:
                        self.paragraph(
                            Paragraph(
                                [Span(cell.text, bold=cell.header)],
                                table.indent,
                                table.bars,
                                quoted=table.quoted,
                            )
                        )
            self.flush()
            return
        regular = self.style("", body.size, body.leading, color)
        bold = self.style("B", body.size, body.leading, color)
        columns = max(sum(cell.colspan for cell in row) for row in rows)
        room = pdf.epw - table.indent
        floor = 2 * CELL_PAD_X + 2 * body.size
        natural = [floor] * columns
        minimum = [floor] * columns
        for row in rows:
            column = 0
            for cell in row:
                if cell.colspan == 1 and cell.text:
                    style = bold if cell.header else regular
                    measure = self.fonts.measures[style.style]
                    words = max((measure.width(word) for word in cell.text.split(" ")), default=0.0)
                    line = min(room, pdf.width(cell.text, style) + 0.01) + 2 * CELL_PAD_X
                    natural[column] = max(natural[column], line)
                    word = min(room, words * style.size / 1000 + 0.01) + 2 * CELL_PAD_X
                    minimum[column] = max(minimum[column], word)
                column += cell.colspan
        widths = column_widths(natural, minimum, room)
        if min(widths) - 2 * CELL_PAD_X < body.size:
            # Too many columns for the page (a column narrower than one character: the cells'
            # characters would be drawn over each other): every row one paragraph, cells apart.
            self.rows_as_paragraphs(table)
            return
        edges = [pdf.l_margin + table.indent]
        for width in widths:
            edges.append(edges[-1] + width)
        for row in rows:
            placed: list[tuple[float, list[str], TextStyle]] = []
            column = 0
            for cell in row:
                left, right = edges[column], edges[min(column + cell.colspan, columns)]
                style = bold if cell.header else regular
                lines = pdf.wrap(cell.text, style, right - left - 2 * CELL_PAD_X) if cell.text else []
                placed.append((left, lines, style))
                column += cell.colspan
            self.row(table, placed, edges[0], edges[-1])

    def rows_as_paragraphs(self, table: Table) -> None:
        """A table too wide for the page: each row one paragraph of its cells' texts, separated
        by :data:`CELL_SEPARATOR` (header cells bold)."""
        for row in table.rows:
            spans: list[Span] = []
            for cell in row:
                if cell.text:
                    if spans:
                        spans.append(Span(CELL_SEPARATOR))
                    spans.append(Span(cell.text, bold=cell.header))
            if spans:
                self.paragraph(Paragraph(spans, table.indent, table.bars, quoted=table.quoted))
        self.flush()

    def row(
        self, table: Table, cells: list[tuple[float, list[str], TextStyle]], left: float, right: float
    ) -> None:
        """One table row; a row taller than the room left on a page continues on the next one."""
        pdf = self.pdf
        leading = self.body.leading
        tallest = max(len(lines) for _, lines, _ in cells)
        done = 0
        while True:
            rest = max(1, tallest - done)
            height = rest * leading + 2 * CELL_PAD_Y
            room = pdf.page_break_trigger - pdf.y
            fresh = pdf.page_break_trigger - pdf.t_margin
            if height > room and done == 0 and pdf.y > pdf.t_margin and height <= fresh:
                self.flush()
                pdf.add_page()  # the whole row fits on a fresh page: keep it together
                continue
            fit = rest if height <= room else int((room - 2 * CELL_PAD_Y) // leading)
            if fit < 1:
                self.flush()
                pdf.add_page()
                continue
            height = fit * leading + 2 * CELL_PAD_Y
            top = pdf.y
            self.bars(table.bars, top, top + height)
            for cell_left, lines, style in cells:
                y = top + CELL_PAD_Y
                for line in lines[done : done + fit]:
                    self.text(cell_left + CELL_PAD_X, y, line, style)
                    y += leading
            bottom = top + height
            grid = self.grid
            if self.grid_bottom != (top, left, right):  # else the row above drew this line
                grid.append((left, top, right, top))
            grid.append((left, bottom, right, bottom))
            for cell_left, _, _ in cells:
                grid.append((cell_left, top, cell_left, bottom))
            grid.append((right, top, right, bottom))
            self.grid_bottom = (bottom, left, right)
            pdf.y = top + height
            done += fit
            if done >= tallest:
                return
            self.flush()
            pdf.add_page()
