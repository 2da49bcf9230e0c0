"""A normalised HTML body as a flat list of blocks of styled text: what the page layout draws.

Pure: no PDF, no fonts. :func:`body_blocks` walks the tree :func:`app.render.html.prepare_tree`
returns and gives :class:`Paragraph`, :class:`Table`, :class:`Image`, :class:`Rule` and
:class:`Gap` blocks in reading order, each with its left indent (points) and the quote bars
beside it; :mod:`app.render.html_layout` draws them.

Whitespace follows the HTML rendering rules (WHATWG HTML §15 "Rendering", CSS Text 3
``white-space: normal``): runs of ASCII whitespace collapse to one space, spaces at the
start and end of a line vanish, ``<br>`` ends a line, ``<pre>`` keeps its spaces and line
breaks. Every block boundary — a paragraph, a list item, a cell of a layout table — is a
line break, so the words of two cells never run together.

``<sup>``/``<sub>`` are drawn as normal text on the line (no raised or lowered baseline): the
normaliser has made their text superscript/subscript characters (``10⁶``, ``H₂O``) or marked
it ``^(…)``/``_(…)`` (:func:`app.render.html.convert_sup_sub`).

Over 450 lines: the block types are the walker's output format and stay beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from lxml import etree

#: Left indent per list or description level, in points.
LIST_INDENT = 14.0
#: Left indent per quote level (the bar sits at its start), in points.
QUOTE_INDENT = 10.0
#: Quote levels that still indent; deeper quotes draw at the deepest indent.
MAX_QUOTE_LEVELS = 8
#: List levels that still indent.
MAX_LIST_LEVELS = 8
#: Space after a paragraph-like block (``p``, list, quote, table, ``pre``), as a share of the line height.
BLOCK_GAP = 0.35
#: Size of headings ``h1``…``h6`` relative to the body text.
HEADING_SCALE = {1: 1.3, 2: 1.2, 3: 1.1, 4: 1.0, 5: 1.0, 6: 1.0}
#: The marker of an unordered list item.
BULLET = "•"

_HTML_SPACES = " \t\n\r\f"
_HTML_SPACE = re.compile(f"[{_HTML_SPACES}]+")
_NOT_HTML_SPACE = re.compile(r"[^ \t\n\r\f]")
_INLINE_STYLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "s": "strike",
    "del": "strike",
    "code": "mono",
}
_PARAGRAPHS = {"p", "div", "center", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "li"}
_GAP_AFTER = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "blockquote", "pre", "table"}


class Span(NamedTuple):
    """A piece of a paragraph's text in one look (a named tuple: immutable and cheap to make,
    one per piece of every paragraph).

    Attributes:
        text: the text (``"\\n"`` is a line break; already whitespace-collapsed unless in ``<pre>``).
        bold, italic, underline, strike: the font style and the lines drawn with the text.
        mono: drawn in the monospace face (``<code>``, ``<pre>``).
        link: the target of a link (``http(s):``/``mailto:``), drawn as a link annotation.
    """

    text: str
    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    mono: bool = False
    link: str | None = None

    @property
    def style(self) -> str:
        """The fpdf2 font style: ``""``, ``"B"``, ``"I"`` or ``"BI"``."""
        return ("B" if self.bold else "") + ("I" if self.italic else "")

    @property
    def plain(self) -> bool:
        """No lines, no link, no mono face: drawn exactly like plain text in its style."""
        return not (self.underline or self.strike or self.mono or self.link)


@dataclass(slots=True)
class Paragraph:
    """Lines of styled text.

    Attributes:
        spans: the text, in reading order (never empty).
        indent: left indent from the text area's edge, in points.
        bars: x offsets (points from the text area's edge) of the quote bars beside it.
        marker: the list marker (``•``, ``3.``) drawn in the indent before the first line.
        heading: 1–6 for ``<h1>``…``<h6>`` (drawn bold, larger), else 0.
        pre: preformatted: spaces and line breaks kept, drawn in the monospace face.
        quoted: inside a ``<blockquote>`` (drawn in the quote colour).
    """

    spans: list[Span]
    indent: float = 0.0
    bars: tuple[float, ...] = ()
    marker: str | None = None
    heading: int = 0
    pre: bool = False
    quoted: bool = False

    @property
    def text(self) -> str:
        """All the paragraph's text."""
        return "".join(span.text for span in self.spans)


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: one line of text (the normaliser flattened its markup), a header or data cell."""

    text: str
    header: bool = False
    colspan: int = 1


@dataclass(slots=True)
class Table:
    """A table of :class:`Cell` rows (``rowspan`` is not kept: each cell sits in its own row)."""

    rows: list[list[Cell]]
    indent: float = 0.0
    bars: tuple[float, ...] = ()
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Image:
    """An inline image on a line of its own: its key in ``TicketPdf.html_images`` and size in points."""

    key: str
    width: float
    height: float
    indent: float = 0.0
    bars: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal rule (``<hr>``) across the text width from ``indent``."""

    indent: float = 0.0
    bars: tuple[float, ...] = ()


@dataclass(slots=True)
class Gap:
    """Vertical space between blocks, as a share of the body's line height; the quote bars continue."""

    lines: float
    bars: tuple[float, ...] = ()


Block = Paragraph | Table | Image | Rule | Gap


class _Context:
    """Where the walk is: indent, quote bars, quote/list depth, heading, the inline look.

    Treated as immutable: :meth:`but` makes a changed copy (cheaper than ``dataclasses.replace``).
    """

    __slots__ = ("bars", "heading", "indent", "lists", "look", "quotes")

    def __init__(self) -> None:
        self.indent = 0.0
        self.bars: tuple[float, ...] = ()
        self.quotes = 0
        self.lists = 0
        self.heading = 0
        self.look = Span("")

    def but(
        self,
        *,
        look: Span | None = None,
        indent: float | None = None,
        bars: tuple[float, ...] | None = None,
        quotes: int | None = None,
        lists: int | None = None,
        heading: int | None = None,
    ) -> _Context:
        """A copy with the given fields changed."""
        copy = _Context.__new__(_Context)
        copy.indent = self.indent if indent is None else indent
        copy.bars = self.bars if bars is None else bars
        copy.quotes = self.quotes if quotes is None else quotes
        copy.lists = self.lists if lists is None else lists
        copy.heading = self.heading if heading is None else heading
        copy.look = self.look if look is None else look
        return copy

    def with_look(self, look: Span) -> _Context:
        """This context with another inline look."""
        return self.but(look=look)


class _Builder:
    """Collects blocks while :func:`body_blocks` walks the tree.

    The paragraph being collected is kept as parallel lists of looks (spans without text) and
    text pieces, joined into :class:`Span` objects when it ends.
    """

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.looks: list[Span] = []
        self.texts: list[list[str]] = []
        self.at_line_start = True  # a space here would start a line: collapse it away
        self.context = _Context()
        self.marker: str | None = None
        self.image_line = False  # an <img> was the last thing added: a <br> next ends its line

    def text(self, text: str | None, look: Span) -> None:
        """Add inline text in ``look``, collapsing whitespace."""
        if not text:
            return
        if self.at_line_start:  # leading whitespace vanishes (often all of it: markup between blocks)
            text = text.lstrip(_HTML_SPACES)
            if not text:
                return
        if "  " in text or not text.isprintable():  # else no space to collapse: at most single " "
            text = _HTML_SPACE.sub(" ", text)
        self.at_line_start = text[-1] == " "
        self.image_line = False
        self._add(look, text)

    def line_break(self, look: Span) -> None:
        """``<br>``: end the line (a trailing space before it vanishes); right after an image
        (inline in the mail, a block here) it ends the image's line and adds none."""
        if self.image_line:
            self.image_line = False
            return
        self._strip_trailing_space()
        self._add(look, "\n")
        self.at_line_start = True

    def _add(self, look: Span, text: str) -> None:
        looks = self.looks
        if looks and (looks[-1] is look or _same_look(looks[-1], look)):
            self.texts[-1].append(text)
            return
        looks.append(look)
        self.texts.append([text])

    def _strip_trailing_space(self) -> None:
        texts = self.texts
        while texts:
            pieces = texts[-1]
            while pieces and pieces[-1].endswith(" "):
                stripped = pieces[-1].rstrip(" ")
                if stripped:
                    pieces[-1] = stripped
                    return
                pieces.pop()
            if pieces:
                return
            texts.pop()
            self.looks.pop()

    def flush(self) -> None:
        """End the paragraph being collected (if it has anything to show)."""
        self.image_line = False
        texts = self.texts
        if not texts:
            self.at_line_start = True
            return
        if texts[-1][-1].endswith(" "):
            self._strip_trailing_space()
        looks = self.looks
        joined = [pieces[0] if len(pieces) == 1 else "".join(pieces) for pieces in texts]
        last = joined[-1] if joined else ""
        if last.endswith("\n"):  # a last <br> ends the line, it adds none
            if len(joined) > 1 and last == "\n":
                joined.pop()
                looks.pop()
            else:  # <div><br></div> alone: one empty line
                joined[-1] = last[:-1]
        if joined:
            context = self.context
            if len(joined) == 1:
                look = looks[0]
                spans = [_new_span(Span, (joined[0], *look[1:]))]
            else:
                spans = [_new_span(Span, (text, *look[1:])) for look, text in zip(looks, joined, strict=True)]
            self.blocks.append(
                Paragraph(
                    spans,
                    context.indent,
                    context.bars,
                    self.marker,
                    context.heading,
                    False,
                    context.quotes > 0,
                )
            )
            self.marker = None
        self.looks = []
        self.texts = []
        self.at_line_start = True

    def add(self, block: Block) -> None:
        """Add a block that is not a paragraph (ending the paragraph being collected first)."""
        self.flush()
        if isinstance(block, Gap):
            self.gap(block.bars, block.lines)
            return
        self.blocks.append(block)

    def gap(self, bars: tuple[float, ...], lines: float = BLOCK_GAP) -> None:
        """Add a :class:`Gap` after what came before (ending the paragraph being collected
        first): none before the first block, and gaps in a row merge into the largest."""
        if self.texts:
            self.flush()
        else:
            self.at_line_start = True
        blocks = self.blocks
        if not blocks:
            return  # no space before the first block
        last = blocks[-1]
        if type(last) is Gap:
            if lines > last.lines:
                last.lines = lines
            return
        blocks.append(Gap(lines, bars))


#: Makes a :class:`Span` from a tuple of its fields without the named tuple's Python ``__new__``.
_new_span = tuple.__new__


def _same_look(a: Span, b: Span) -> bool:
    return (
        a.bold == b.bold
        and a.italic == b.italic
        and a.underline == b.underline
        and a.strike == b.strike
        and a.mono == b.mono
        and a.link == b.link
    )


def body_blocks(root: etree._Element) -> list[Block]:
    """The blocks of a normalised body (:func:`app.render.html.normalise_tree`), in reading order.

    Raises:
        RecursionError: the tree is nested deeper than Python's recursion limit allows
        (the caller falls back to text).
    """
    builder = _Builder()
    _walk_children(root, builder)
    builder.flush()
    while builder.blocks and isinstance(builder.blocks[-1], Gap):
        builder.blocks.pop()
    return builder.blocks


def _walk_children(element: etree._Element, builder: _Builder) -> None:
    look = builder.context.look
    text = element.text
    if text:
        builder.text(text, look)
    for child in element:
        if isinstance(child.tag, str):  # comments and processing instructions are not text
            _walk(child, builder)
        tail = child.tail
        if tail:
            builder.text(tail, look)


def _walk(element: etree._Element, builder: _Builder) -> None:
    tag = element.tag
    context = builder.context
    if tag == "div" or tag == "p":  # most elements of an e-mail: a block in the same context
        if builder.texts:
            builder.flush()
        else:
            builder.at_line_start = True
        _walk_children(element, builder)
        builder.flush()
        if tag == "p":
            builder.gap(context.bars)
        return
    look = context.look
    style = _INLINE_STYLE.get(tag)
    if style is not None:
        builder.context = context.with_look(_styled(look, style))
        _walk_children(element, builder)
        builder.context = context
    elif tag == "a":
        href = element.get("href")
        builder.context = context.with_look(
            Span("", look.bold, look.italic, look.underline or bool(href), look.strike, look.mono, href)
        )
        _walk_children(element, builder)
        builder.context = context
    elif tag == "br":
        builder.line_break(look)
    elif tag in _PARAGRAPHS or tag in ("blockquote", "ul", "ol", "dl"):
        _walk_block(element, builder)
    elif tag == "pre":
        builder.flush()
        text = "".join(element.itertext())
        text = text[1:] if text.startswith("\n") else text  # HTML: a newline right after <pre> is not shown
        text = text.rstrip("\n")
        if text.strip():
            builder.blocks.append(
                Paragraph(
                    [Span(text, mono=True)],
                    indent=context.indent,
                    bars=context.bars,
                    marker=builder.marker,
                    pre=True,
                    quoted=context.quotes > 0,
                )
            )
            builder.marker = None
        builder.gap(context.bars)
    elif tag == "hr":
        builder.add(Rule(context.indent, context.bars))
    elif tag == "img":
        image = _image(element, context)
        if image is not None:
            builder.add(image)
            builder.image_line = True
    elif tag == "table":
        builder.add(_table(element, context))
        builder.gap(context.bars)
    else:  # sup, sub (text already converted) and anything unknown: inline, as normal text
        _walk_children(element, builder)


def _styled(look: Span, style: str) -> Span:
    """``look`` with one of its flags (``bold``, ``italic``, ``underline``, ``strike``, ``mono``) set."""
    return Span(
        "",
        bold=look.bold or style == "bold",
        italic=look.italic or style == "italic",
        underline=look.underline or style == "underline",
        strike=look.strike or style == "strike",
        mono=look.mono or style == "mono",
        link=look.link,
    )


def _walk_block(element: etree._Element, builder: _Builder) -> None:
    """A paragraph-like or container block: ends the line before and after it."""
    tag = element.tag
    context = builder.context
    builder.flush()
    inner = context
    if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
        builder.gap(context.bars)
        inner = context.but(heading=int(tag[1]), look=_styled(context.look, "bold"))
    elif tag == "dt":
        inner = context.but(look=_styled(context.look, "bold"))
    elif tag == "dd":
        inner = _deeper_list(context)
    elif tag == "blockquote":
        builder.gap(context.bars)
        if context.quotes < MAX_QUOTE_LEVELS:
            inner = context.but(
                indent=context.indent + QUOTE_INDENT,
                bars=(*context.bars, context.indent + 1.5),
                quotes=context.quotes + 1,
            )
        else:
            inner = context.but(quotes=context.quotes + 1)
    builder.context = inner
    if tag in ("ul", "ol"):
        _walk_list(element, builder)
    else:
        _walk_children(element, builder)
    builder.flush()
    builder.context = context
    if tag in _GAP_AFTER and not (tag in ("ul", "ol") and context.lists):  # nested lists: no gap
        builder.gap(context.bars)


def _deeper_list(context: _Context) -> _Context:
    if context.lists >= MAX_LIST_LEVELS:
        return context.but(lists=context.lists + 1)
    return context.but(indent=context.indent + LIST_INDENT, lists=context.lists + 1)


def list_marker(number: int, kind: str = "1") -> str:
    """The marker of item ``number`` of an ``<ol type=kind>`` (CSS Counter Styles 3 §6.1:
    ``decimal``, ``lower-alpha``/``upper-alpha`` for ``a``/``A``, ``lower-roman``/``upper-roman``
    for ``i``/``I``, decimal outside their ranges: alpha from 1, roman 1–3999), with its dot."""
    text = str(number)
    if kind in ("a", "A") and number >= 1:
        letters = ""
        while number:
            number, digit = divmod(number - 1, 26)
            letters = chr(ord("a") + digit) + letters
        text = letters
    elif kind in ("i", "I") and 1 <= number <= 3999:
        text = ""
        for value, numeral in _ROMAN:
            count, number = divmod(number, value)
            text += numeral * count
    return f"{text.upper() if kind in ('A', 'I') else text}."


_ROMAN = (
    (1000, "m"),
    (900, "cm"),
    (500, "d"),
    (400, "cd"),
    (100, "c"),
    (90, "xc"),
    (50, "l"),
    (40, "xl"),
    (10, "x"),
    (9, "ix"),
    (5, "v"),
    (4, "iv"),
    (1, "i"),
)


def _walk_list(element: etree._Element, builder: _Builder) -> None:
    """The items of ``<ul>``/``<ol>`` (the context is the list's own), each with its marker:
    an ``<ol>`` counts from ``start`` (else 1, or its number of items when ``reversed``) up
    (down when ``reversed``), an item's ``value`` resets the count (HTML §4.4.8, §4.4.10)."""
    context = builder.context
    ordered = element.tag == "ol"
    step = -1 if ordered and element.get("reversed") is not None else 1
    start = element.get("start")
    if start is not None:
        number = int(start)
    else:
        number = sum(1 for child in element if child.tag == "li") if step < 0 else 1
    kind = element.get("type") or "1"
    item_context = _deeper_list(context)
    builder.text(element.text, context.look)
    for child in element:
        if not isinstance(child.tag, str):
            builder.text(child.tail, context.look)
            continue
        if child.tag == "li":
            builder.flush()
            value = child.get("value")
            if value is not None:
                number = int(value)
            builder.marker = list_marker(number, kind) if ordered else BULLET
            number += step
            builder.context = item_context
            _walk_children(child, builder)
            builder.flush()
            builder.marker = None
            builder.context = context
        else:
            _walk(child, builder)
        builder.text(child.tail, context.look)


def _image(element: etree._Element, context: _Context) -> Image | None:
    try:
        width = float(element.get("width") or 0)
        height = float(element.get("height") or 0)
    except ValueError:
        return None
    key = element.get("src")
    if not key or width <= 0 or height <= 0:
        return None
    return Image(key, width, height, context.indent, context.bars)


def _table(element: etree._Element, context: _Context) -> Table:
    """A normalised table: rows of cells holding one line of text each."""
    rows = []
    for row in element.iter("tr"):
        cells = [
            Cell(
                _HTML_SPACE.sub(" ", "".join(cell.itertext())).strip(),
                header=cell.tag == "th",
                colspan=int(cell.get("colspan") or 1),
            )
            for cell in row
            if cell.tag in ("td", "th")
        ]
        if cells:
            rows.append(cells)
    return Table(rows, context.indent, context.bars, context.quotes > 0)


def has_text(text: str) -> bool:
    """Whether ``text`` has anything but HTML whitespace (a no-break space counts as text)."""
    return _NOT_HTML_SPACE.search(text) is not None
