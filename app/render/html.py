"""E-mail HTML made safe and simple for our layout: quotes marked, sanitised, normalised.

The pipeline (``docs/reference/rendering.md`` §4.3):

1. nh3 keeps only the tags the layout knows, drops ``<script>``/``<style>``/``<head>`` with
   their content and every attribute but a few (``class``/``id`` for step 2), and repairs the tree;
2. lxml parses it once and quotes are marked (:func:`mark_quotes`: Gmail ``gmail_quote``,
   Outlook ``divRplyFwdMsg``/``appendonsend``, "-----Original Message-----" → ``<blockquote>``);
3. it is normalised (:func:`normalise_tree`): ``<sup>``/``<sub>`` text becomes superscript or
   subscript characters, or is marked ``^(…)``/``_(…)`` (:func:`convert_sup_sub`), layout tables
   become blocks, real tables one line of text per cell, links show their target, images
   become sized ``<img>`` (resolved) or a visible ``[image: name]`` (not).

:func:`html_to_text` (inscriptis) is the text the renderer falls back to when the layout fails.
Over 450 lines: the tag and attribute allow-lists, one entry a line, are most of the excess;
the rest is the pipeline run step by step over several bodies (:func:`prepare_trees`), which
belongs beside its steps.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from html import unescape
from typing import Any

import nh3
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_engine import Inscriptis
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement
from lxml import etree
from lxml.html import document_fromstring

#: Tags the layout draws (:mod:`app.render.html_blocks`); nh3 unwraps the others (``span``,
#: ``font``), keeping their text.
ALLOWED_TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "div",
    "br",
    "hr",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "del",
    "center",
    "a",
    "pre",
    "code",
    "img",
    "ol",
    "ul",
    "li",
    "dl",
    "dt",
    "dd",
    "sup",
    "sub",
    "blockquote",
    "span",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "th",
    "td",
}
_ATTRIBUTES = {
    "div": {"class", "id"},  # read by mark_quotes, ignored by the layout
    "p": {"class", "id"},
    "span": {"class", "id"},
    "blockquote": {"class", "id"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "style"},  # style: only width/height kept (below)
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
}
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "head",
    "title",
    "noscript",
    "template",
    "iframe",
    "object",
    "svg",
    "math",
}
_BLOCKS = {
    "p",
    "div",
    "table",
    "ul",
    "ol",
    "dl",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "center",
}
#: The ``<ol type>`` values (HTML §4.4.8): decimal, lower/upper alpha, lower/upper roman.
LIST_TYPES = ("1", "a", "A", "i", "I")
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_SPACES = re.compile(r"\s+")
_BLANK_RUNS = re.compile(r"\n{4,}")

_QUOTE_CLASSES = re.compile(
    r"\b(gmail_quote|yahoo_quoted|moz-cite-prefix|OutlookMessageHeader)\b", re.IGNORECASE
)
_QUOTE_IDS = {"divrplyfwdmsg", "appendonsend"}
#: Signs of a quote :func:`mark_quotes` knows, lower case (a cheap test before walking the tree:
#: substring search beats a case-insensitive alternation by far).
_QUOTE_SIGNS = (
    "gmail_quote",
    "yahoo_quoted",
    "moz-cite",
    "divrplyfwdmsg",
    "appendonsend",
    "outlookmessageheader",
    "original message",
    "ursprüngliche",
    "originalnachricht",
)
#: The words :data:`_ORIGINAL_MESSAGE` looks for, lower case.
_HEADER_SIGNS = ("original message", "ursprüngliche nachricht", "originalnachricht")
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Originalnachricht)", re.IGNORECASE
)

# inscriptis' "strict" profile (no padding around every <div>), with quoted mail indented.
_CSS = {**CSS_PROFILES["strict"], "blockquote": HtmlElement(display=Display.block, padding_inline=4)}

#: ``resolve(src) -> (key, width_px, height_px) | None``: an image source to an image_map key.
ImageResolver = Callable[[str], "tuple[str, int, int] | None"]
#: ``label(src) -> str``: the name shown for an image that cannot be drawn.
ImageLabeler = Callable[[str], str]


#: Characters with a superscript form (their Unicode ``<super>`` compatibility mappings;
#: ``-`` too, as ``−``); each one is in all four Noto Sans faces (``tests/render/test_sup_sub.py``).
#: No q, C, F, Q, S, X, Y, Z: their forms are missing from Noto Sans or from Unicode.
SUPERSCRIPTS = dict(
    zip(
        "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVW",
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂ",
        strict=True,
    )
)
#: Characters with a subscript form (Unicode ``<sub>`` mappings; ``-`` as ``−``), all in Noto Sans.
SUBSCRIPTS = dict(zip("0123456789+-−=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", strict=True))
#: Characters a ``<sup>``/``<sub>`` may hold besides those above and still be converted; they
#: stay as they are: whitespace, marks drawn raised anyway, the raised and lowered forms (nested).
_SCRIPT_KEEP = frozenset(" \t\n\r\f\xa0*†‡°′″®©™") | set(SUPERSCRIPTS.values()) | set(SUBSCRIPTS.values())
_SCRIPTS = {
    "sup": ({ord(k): v for k, v in SUPERSCRIPTS.items()}, _SCRIPT_KEEP | set(SUPERSCRIPTS), "^("),
    "sub": ({ord(k): v for k, v in SUBSCRIPTS.items()}, _SCRIPT_KEEP | set(SUBSCRIPTS), "_("),
}
_SCRIPT_TAG = re.compile(r"<su[bp]\b", re.IGNORECASE)


IMAGE_TEXT = "[image: {name}]"
"""The placeholder of an image that is not drawn (English; the archive's language is passed in)."""


def html_to_text(html: str) -> str:
    """HTML as plain text (inscriptis): links as ``[text](url)``, images as ``[alt]``, quotes
    indented, ``<sup>``/``<sub>`` as :func:`convert_sup_sub` makes them.

    On inscriptis failure, and when its parser dropped text nested deeper than libxml2's
    limit (:func:`_parse`), the tags of the sanitised body are stripped instead.
    """
    config = ParserConfig(css=_CSS, display_links=True, display_images=True)
    try:
        tree = None
        if _SCRIPT_TAG.search(html):  # parsed here as get_text would, to convert <sup>/<sub>
            try:
                tree = document_fromstring(html.strip())
            except Exception:  # noqa: BLE001 - no tree: get_text's own handling below
                tree = None
        if tree is None:
            text = get_text(html, config)
        else:
            convert_sup_sub(tree)
            text = Inscriptis(tree, config).get_text()
    except Exception:  # noqa: BLE001 - inscriptis on hostile input: strip tags, never fail the job
        text = _strip_tags(sanitise(html))
    if html.count("<") > 512:  # deep enough to hit the limit: check that no words were lost
        stripped = _strip_tags(sanitise(html))
        if len(text.split()) < len(stripped.split()):
            text = stripped
    return _BLANK_RUNS.sub("\n\n\n", text).strip("\n")


def _text(element: etree._Element) -> str:
    """All text inside ``element``."""
    return "".join(element.itertext())


_parsers = threading.local()


def _parser() -> etree.HTMLParser:
    """This thread's HTML parser (lxml parsers may not be shared between threads; one kept
    per thread saves setting one up for every body, and its error log is the last parse's)."""
    parser: etree.HTMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.HTMLParser()
    return parser


def _parse(html: str) -> etree._Element:
    """A ``<div>`` wrapping the parsed fragment.

    Plain ``etree`` elements, not ``lxml.html``'s: their class lookup costs a Python call for
    every element touched, and the walk touches them all. libxml2 drops whatever is nested
    deeper than 256 elements (its ``XML_PARSE_HUGE`` limit, reported as ``ERR_RESOURCE_LIMIT``);
    such a body becomes one paragraph of its words (:func:`_strip_tags`) rather than losing them.
    """
    parser = _parser()
    document = etree.fromstring(f"<div>{html}</div>", parser)
    if any(entry.type_name == "ERR_RESOURCE_LIMIT" for entry in parser.error_log):
        root = etree.Element("div")
        etree.SubElement(root, "p").text = _strip_tags(html)
        return root
    body = document.find("body") if document is not None else None
    if body is None:
        return etree.Element("div")
    if (
        len(body) == 1
        and body[0].tag == "div"
        and not (body.text or "").strip()
        and not (body[0].tail or "").strip()
    ):
        return body[0]
    root = etree.Element("div")  # markup that closed the wrapper early: keep everything in order
    root.text = body.text
    root.extend(body)
    return root


def _unwrap(element: etree._Element) -> None:
    """Replace ``element`` by its content (text, children, tail kept in order): ``drop_tag``."""
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    children = list(element)
    before = element.text or ""
    tail = element.tail or ""
    if children:
        last = children[-1]
        last.tail = (last.tail or "") + tail
    else:
        before += tail
    if previous is not None:
        previous.tail = (previous.tail or "") + before
    else:
        parent.text = (parent.text or "") + before
    index = parent.index(element)
    parent[index : index + 1] = children


def _strip_tags(html: str) -> str:
    """The text of (sanitised) HTML with every tag a space and character references decoded."""
    return unescape(re.sub(r"<[^>]*>", " ", html))


def _wrap_rest_in_quote(element: etree._Element) -> None:
    """Move ``element`` and its following siblings into a new ``<blockquote>`` in its place."""
    parent = element.getparent()
    if parent is None:
        return
    quote = etree.Element("blockquote")
    index = parent.index(element)
    for sibling in list(parent)[index:]:
        quote.append(sibling)  # moves, tail included
    parent.insert(index, quote)


def _leading_text(element: etree._Element, length: int) -> str:
    """The first ``length`` or so characters of ``element``'s text (stops reading early)."""
    parts: list[str] = []
    size = 0
    for text in element.itertext():
        parts.append(text)
        size += len(text)
        if size >= length:
            break
    return "".join(parts)[:length]


def mark_quotes(root: etree._Element, *, headers: bool = True) -> None:
    """Turn the reply-quote markup of Gmail, Outlook, Yahoo and Thunderbird into ``<blockquote>``
    in place: elements with their quote classes, Outlook's ``divRplyFwdMsg``/``appendonsend``
    and a "-----Original Message-----" paragraph with everything after it. Run on
    :func:`sanitise`'s output, which keeps ``class`` and ``id`` on ``div``/``p``/``span``/``blockquote``
    for this. ``headers=False`` skips the "Original Message" text test (the body has no such words)."""
    for element in list(root.iter("div", "p", "span")):
        if element.getparent() is None:
            continue
        if _QUOTE_CLASSES.search(element.get("class") or ""):
            element.tag = "blockquote"
        elif (
            (element.get("id") or "").lower() in _QUOTE_IDS
            or headers
            and element.tag in ("div", "p")
            and _ORIGINAL_MESSAGE.match(_leading_text(element, 80))
        ):
            _wrap_rest_in_quote(element)


#: nh3's sanitiser, built once: :func:`nh3.clean` rebuilds it from the lists on every call.
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ATTRIBUTES,
    url_schemes={"http", "https", "mailto", "cid", "data"},
    link_rel=None,
    strip_comments=True,
    filter_style_properties={"width", "height"},  # an <img>'s displayed size (Zammad's editor sets it)
)


def sanitise(html: str) -> str:
    """nh3 with the layout's tag set (:data:`ALLOWED_TAGS`); scripts, styles and heads removed
    with their content; only ``http``/``https``/``mailto``/``cid``/``data`` URLs kept."""
    return _CLEANER.clean(html)


def _positive_int(value: str | None, high: int) -> str | None:
    if value is None:
        return None
    match = re.match(r"^\s*(\d{1,7})(?!\d)", value)
    if not match:
        return None
    number = int(match.group(1))
    return str(number) if 1 <= number <= high else None


def _replace_with_text(element: etree._Element, text: str) -> None:
    """Put ``text`` where ``element`` was (its tail kept)."""
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    joined = text + (element.tail or "")
    if previous is not None:
        previous.tail = (previous.tail or "") + joined
    else:
        parent.text = (parent.text or "") + joined
    parent.remove(element)


#: Elements whose start and end are a word boundary in a cell's text (a browser lays them
#: out as boxes of their own: their words never run into their neighbours').
_BOUNDARY_TAGS = _BLOCKS | {
    "td",
    "th",
    "tr",
    "li",
    "dt",
    "dd",
    "br",
    "img",
    "thead",
    "tbody",
    "tfoot",
    "blockquote",
}


def _boundary_text(element: etree._Element) -> str:
    """All text inside ``element``, with a space wherever a block, cell or line break starts or
    ends: ``<td><p>Block</p><p>zwei</p></td>`` gives ``" Block  zwei "``, never ``"Blockzwei"``.

    Marks the boundaries in the tree itself (a space before the text and before the tail of
    each such descendant): the caller replaces the element's content with the result."""
    for node in element.iterdescendants():
        if node.tag in _BOUNDARY_TAGS:
            node.text = " " + (node.text or "")
            node.tail = " " + (node.tail or "")
    return " " + "".join(element.itertext()) + " "


def _cell_text(cell: etree._Element, label: ImageLabeler, image_text: str) -> str:
    """A cell's text on one line: images named, every block and nested cell a word of its own."""
    if not len(cell):  # text alone
        return _SPACES.sub(" ", cell.text or "").strip()
    for image in list(cell.iter("img")):
        _replace_with_text(image, " " + image_text.format(name=label(image.get("src") or "")) + " ")
    return _SPACES.sub(" ", _boundary_text(cell)).strip()


def convert_sup_sub(root: etree._Element) -> None:
    """Make the text of every ``<sup>``/``<sub>`` under ``root`` say it is raised or lowered, in
    place, since the layout draws them on the baseline (``10<sup>6</sup>`` must not read "106"):

    - when every character has a form (:data:`SUPERSCRIPTS`, :data:`SUBSCRIPTS`; whitespace,
      ``* † ‡ ° ′ ″ ® © ™`` and characters already raised or lowered are kept as they are), each
      character becomes it: ``10⁶``, ``m²``, ``H₂O``, ``xⁿ⁺¹``, ``1ˢᵗ``;
    - else the whole text is marked, ``^(…)`` for ``<sup>`` and ``_(…)`` for ``<sub>``:
      ``Q^(Qualität)``, ``log_(base)``, ``Fußnote^(a, b)``.

    Child elements (links, bold …) keep their place and their text is converted with the rest;
    a nested ``<sup>``/``<sub>`` is converted first, then counts as part of its parent. The
    elements stay (drawn as inline text). Only ``<sup>``/``<sub>`` text is looked at.
    """
    for element in reversed(list(root.iter("sup", "sub"))):  # innermost first
        table, allowed, mark = _SCRIPTS[element.tag]
        text = "".join(element.itertext())
        if not text.strip():
            continue
        if allowed.issuperset(text):
            if element.text:
                element.text = element.text.translate(table)
            for node in element.iterdescendants():
                if node.text:
                    node.text = node.text.translate(table)
                if node.tail:
                    node.tail = node.tail.translate(table)
        else:
            element.text = mark + (element.text or "")
            if len(element):
                element[-1].tail = (element[-1].tail or "") + ")"
            else:
                element.text += ")"


def _normalise_tables(root: etree._Element, label: ImageLabeler, image_text: str) -> None:
    """Layout tables (one column, or no text) become their cells as ``<div>`` blocks in order;
    the other tables keep rows of ``<td>``/``<th>`` holding one line of text each."""
    # innermost tables first, so a layout table around content tables unwraps cleanly
    tables = sorted(root.iter("table"), key=lambda t: -sum(1 for _ in t.iterancestors()))
    for table in tables:
        rows = [row for row in table.iter("tr") if next(row.iterancestors("table"), None) is table]
        cells = [[cell for cell in row if cell.tag in ("td", "th")] for row in rows]
        widest = max((len(row) for row in cells), default=0)
        parent = table.getparent()
        if parent is None:
            continue
        if widest <= 1 or not any(_text(c).strip() for row in cells for c in row):
            # layout table (or empty): its cells become plain blocks in order
            replacement = etree.Element("div")
            for row in cells:
                for cell in row:
                    cell.tag = "div"
                    for attribute in list(cell.attrib):
                        del cell.attrib[attribute]
                    replacement.append(cell)
            replacement.tail = table.tail
            parent.replace(table, replacement)
            continue
        for row in cells:
            for cell in row:
                for attribute in ("colspan", "rowspan"):
                    value = _positive_int(cell.get(attribute), 50)
                    if value is None:
                        cell.attrib.pop(attribute, None)
                    else:
                        cell.set(attribute, value)
                text = _cell_text(cell, label, image_text)
                for child in list(cell):
                    cell.remove(child)
                cell.text = text
        replacement = etree.Element("table")
        for row in cells:
            tr = etree.SubElement(replacement, "tr")
            for cell in row:
                cell.tail = None
                tr.append(cell)
        replacement.tail = table.tail
        parent.replace(table, replacement)


def normalise_tree(
    root: etree._Element,
    *,
    resolve: ImageResolver,
    label: ImageLabeler,
    max_width: float,
    max_height: float,
    image_text: str = IMAGE_TEXT,
    no_source: str = "no source",
) -> etree._Element:
    """Rewrite a parsed, sanitised body in place into what :mod:`app.render.html_blocks` lays out.

    - ``<sup>``/``<sub>``: their text becomes superscript/subscript characters, or is marked
      ``^(…)``/``_(…)`` (:func:`convert_sup_sub`);
    - tables: layout tables (one column, or without text) become their cells as ``<div>``
      blocks; other tables become ``<table>`` of ``<tr>`` of ``<td>``/``<th>`` with one line of
      text each (nested tables, markup and images in a cell become words of that text, each
      block or cell a word of its own), ``colspan``/``rowspan`` checked (1–50) or dropped;
    - links keep only ``http(s):``/``mailto:`` targets (others become plain text) and show
      their target after the text when the text does not already say it;
    - ``<ol start>`` and ``<li value>`` are checked (1–100000) or dropped, ``<ol type>`` kept
      when one of :data:`LIST_TYPES`, ``<ol reversed>`` kept; ``<li>`` outside a list becomes ``<p>``;
      ``<center>`` becomes ``<div>``;
    - images: those ``resolve`` finds become ``<img src=key width height>`` (points, shrunk to
      ``max_width`` × ``max_height``); the others become the visible text ``image_text``.

    Args:
        root: the body as parsed by :func:`_parse` from :func:`sanitise`'s output.
        resolve: image source → ``(image key, width px, height px)``, or ``None`` when the
            image cannot be drawn (it becomes ``[image: label]``).
        label: image source → name for the placeholder.
        max_width, max_height: the largest image box, in document units (points).

    Returns:
        ``root``.
    """
    convert_sup_sub(root)  # first: cells and link texts read the converted text
    for center in list(root.iter("center")):
        center.tag = "div"
    for link in list(root.iter("a")):
        href = (link.get("href") or "").strip()
        if not href.lower().startswith(_LINK_SCHEMES) or link.getparent() is None:
            _unwrap(link)
            continue
        text = _SPACES.sub(" ", _text(link)).strip()
        shown = href[7:] if href.lower().startswith("mailto:") else href
        if shown and shown not in text and text not in (href, shown):
            tail = link.tail or ""
            glued = tail[:1] and not tail[0].isspace() and tail[0] not in ".,;:!?)]»\"'"
            link.tail = f" ({shown})" + (" " if glued else "") + tail
    _normalise_tables(root, label, image_text)  # after the links: a cell's text keeps their targets
    for ordered in root.iter("ol"):
        start = _positive_int(ordered.get("start"), 100000)
        kind = (ordered.get("type") or "").strip()
        reversed_ = ordered.get("reversed") is not None
        ordered.attrib.clear()
        if start is not None:
            ordered.set("start", start)
        if kind in LIST_TYPES:
            ordered.set("type", kind)
        if reversed_:
            ordered.set("reversed", "reversed")
    for item in root.iter("li"):
        value = _positive_int(item.get("value"), 100000)
        item.attrib.clear()
        if value is not None:
            item.set("value", value)
    for item in list(root.iter("li")):  # a list item outside a list: a paragraph
        if item.getparent() is not None and item.getparent().tag not in ("ul", "ol"):
            item.tag = "p"
    for image in list(root.iter("img")):
        if image.getparent() is None:
            continue
        src = (image.get("src") or "").strip()
        found = resolve(src) if src else None
        if found is None:
            name = label(src) if src else image.get("alt") or no_source
            _replace_with_text(image, " " + image_text.format(name=name) + " ")
            continue
        key, width_px, height_px = found
        style = image.get("style") or ""
        shown_width, shown_height = declared_size(
            _css_pixels(style, "width") or image.get("width"),
            _css_pixels(style, "height") or image.get("height"),
            width_px,
            height_px,
        )
        width, height = shown_width * 0.75, shown_height * 0.75  # CSS pixels at 96 dpi → points
        scale = min(1.0, max_width / width if width else 1.0, max_height / height if height else 1.0)
        image.attrib.clear()
        image.set("src", key)
        image.set("width", f"{max(1.0, width * scale):.2f}")
        image.set("height", f"{max(1.0, height * scale):.2f}")
    return root


_PIXELS = re.compile(r"\s*(\d{1,5})(?:\.\d*)?\s*(?:px)?\s*", re.IGNORECASE)


def _pixels(value: str | None) -> int | None:
    """``"640"``, ``"640px"``, ``"639.5"`` → pixels (1–10,000); anything else → ``None``."""
    match = _PIXELS.fullmatch(value) if value else None
    number = int(match.group(1)) if match else 0
    return number if 1 <= number <= 10000 else None


def _css_pixels(style: str, name: str) -> str | None:
    """The ``name`` property of an inline ``style`` when given in pixels (``"640px"``), else ``None``."""
    match = re.search(rf"(?:^|;)\s*{name}\s*:\s*([\d.]+)\s*px\b", style, re.IGNORECASE)
    return match.group(1) if match else None


def declared_size(
    width: str | None, height: str | None, natural_width: int, natural_height: int
) -> tuple[float, float]:
    """An ``<img>``'s size in CSS pixels as a browser lays it out: its ``width``/``height``
    (the caller passes an inline style's pixel value before the attribute's; the other side
    from the image's aspect ratio when only one is given),
    else the image's own size (HTML Living Standard §4.8.4.3.21, "dimension attributes";
    a value that is not a number of pixels from 1 to 10,000, e.g. ``"100%"``, is ignored).

    Mail clients scale images this way: a signature logo stored at twice its shown size
    carries the size it is shown at.
    """
    declared_w, declared_h = _pixels(width), _pixels(height)
    if declared_w is None and declared_h is None:
        return float(natural_width), float(natural_height)
    ratio = natural_height / natural_width if natural_width and natural_height else 1.0
    w = float(declared_w) if declared_w is not None else (declared_h or 0) / ratio
    h = float(declared_h) if declared_h is not None else (declared_w or 0) * ratio
    return w, h


def first_strong_is_rtl(text: str) -> bool:
    """Whether the first strongly directional character of ``text`` is right-to-left (bidi
    class R or AL; the paragraph direction rule of Unicode UAX #9, P2–P3)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return True
        if kind == "L":
            return False
    return False


def prepare_tree(
    body: str,
    *,
    resolve: ImageResolver,
    label: ImageLabeler,
    max_width: float,
    max_height: float,
    image_text: str = IMAGE_TEXT,
    no_source: str = "no source",
    clean: Callable[[str], str] = str,
) -> etree._Element:
    """The whole pipeline: :func:`sanitise`, ``clean``, parse, :func:`mark_quotes`, :func:`normalise_tree`.

    ``clean`` makes the sanitised markup's text drawable (the renderer passes
    :meth:`app.render.document.TicketPdf.clean`; character references are already decoded
    by then, and the markup itself is ASCII). ``image_text`` (a ``str.format`` pattern with
    ``{name}``) and ``no_source`` are the placeholder words of an image that is not drawn,
    in the archive's language.

    Returns:
        A ``<div>`` element holding the body.

    Raises:
        Exception: whatever a step raised on this body.
    """
    (tree,) = prepare_trees(
        [(body, resolve, label)],
        max_width=max_width,
        max_height=max_height,
        image_text=image_text,
        no_source=no_source,
        clean=clean,
    )
    if isinstance(tree, Exception):
        raise tree
    return tree


def prepare_trees(
    bodies: Sequence[tuple[str, ImageResolver, ImageLabeler]],
    *,
    max_width: float,
    max_height: float,
    image_text: str = IMAGE_TEXT,
    no_source: str = "no source",
    clean: Callable[[str], str] = str,
) -> list[etree._Element | Exception]:
    """:func:`prepare_tree` for several bodies, each ``(body, resolve, label)``, step by step:
    every body is sanitised, then every body parsed, and so on, so each step's code and
    tables (nh3's, libxml2's, ours) stay in the CPU caches from one body to the next
    (``make bench`` render row "Zammad mix, 20 articles: HTML / plain twin, render CPU").

    Returns:
        Per body, in order, its ``<div>`` element, or the exception a step raised on it (the
        other bodies go on).
    """
    results: list[Any] = [body for body, _, _ in bodies]
    placeholder = clean(no_source)

    def step(work: Callable[[int, Any], Any]) -> None:
        for index, value in enumerate(results):
            if not isinstance(value, Exception):
                try:
                    results[index] = work(index, value)
                except Exception as exc:  # noqa: BLE001 - one odd body fails alone, the caller draws it as text
                    results[index] = exc

    def quotes(index: int, root: etree._Element) -> etree._Element:
        lowered = bodies[index][0].lower()
        if any(sign in lowered for sign in _QUOTE_SIGNS):
            mark_quotes(root, headers=any(sign in lowered for sign in _HEADER_SIGNS))
        return root

    def normalise(index: int, root: etree._Element) -> etree._Element:
        label = bodies[index][2]
        return normalise_tree(
            root,
            resolve=bodies[index][1],
            label=lambda src: clean(label(src)),
            max_width=max_width,
            max_height=max_height,
            image_text=image_text,
            no_source=placeholder,
        )

    step(lambda _, body: sanitise(body))
    step(lambda _, markup: _parse(clean(markup)))
    step(quotes)
    step(normalise)
    return results
