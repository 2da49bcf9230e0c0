"""fpdf2 fonts parsed once per process, handed to every document as a cheap per-document copy.

``FPDF.add_font`` builds a ``TTFFont`` for every document: fontTools opens the file and
decodes ``cmap``, ``hmtx``, ``post`` (glyph names), ``glyf``, ``name``, ``OS/2`` to derive the
cmap, the glyph widths and ids and the PDF font descriptor. None of that depends on the
document, so :func:`add_cached_font` derives it once per font file and process
(:func:`_prototype`) and gives each document a :class:`DocumentTTFFont` that *shares* the
read-only parts (``cmap``, ``glyph_ids``, names and metrics, and ``cw``, the widths, whose
lookups of unknown characters give the missing width without inserting anything) and owns
the per-document ones:

* ``desc``, the font descriptor: a PDF object ``output()`` numbers and fills in (a copy of
  the prototype's, which is never output);
* ``subset`` (a fresh ``SubsetMap``: which glyphs this document used, their codes),
  ``missing_glyphs``, ``biggest_size_pt``, the font number ``i``;
* ``ttfont``: a fresh lazy fontTools ``TTFont`` of the file, with the glyph order and
  shallow copies of the decoded ``cmap``/``hmtx``/``post`` of the prototype. fpdf2's
  ``output()`` subsets it *in place*, so it can never be shared between documents.

What is built when: ``add_cached_font`` builds the ``TTFFont`` object, its ``desc`` copy and
its ``SubsetMap``; the fontTools ``TTFont`` only when something first reads ``ttfont``:
subsetting on output (fpdf2's ``output()`` for fallback fonts, a miss of
:func:`app.render.fontoutput.font_output` for fonts with fixed codes), text shaping (glyph
names and widths of HarfBuzz's glyphs). A font with fixed glyph codes whose output comes
from the per-process cache, the common case, never opens it. Opening it lazily reads only
the table directory; the subsetter decodes the tables it keeps.

``output()`` subsets with fontTools and drops ``GDEF``/``GSUB``/``GPOS`` (fpdf2's
``drop_tables``), but fontTools' ``Subsetter.subset`` decodes those three tables in full
before dropping them (``_compact_layout_tables`` inspects their lookup formats), a large part
of subsetting a Noto Sans face. We delete them from the per-document ``TTFont`` up front. The
embedded subset is byte-identical: the subsetter deletes them before its glyph closure, and
nothing else reads them (text shaping uses HarfBuzz on the file). A font with a legacy
``kern`` table keeps them, since fontTools keeps or drops ``kern`` depending on whether
``GPOS`` is present.

Fonts this does not cover go through plain ``add_font``: colour fonts (fpdf2 builds a
per-document Type 3 font from their tables), fonts fpdf2 patches while loading (no
``.notdef``), compressed (WOFF) or variable instances. The cache holds a few hundred KB per
Noto Sans face (the dicts above), no font tables.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fontTools import ttLib
from fpdf import FPDF
from fpdf.enums import TextEmphasis
from fpdf.fonts import SubsetMap, TTFFont

#: Tables fpdf2's ``output()`` drops (its subsetter ``drop_tables``) that fontTools would
#: otherwise decode in full first; removed from each per-document font up front.
PRE_DROPPED_TABLES = ("GDEF", "GSUB", "GPOS")

#: Tables that make fpdf2 treat a font as a colour font (Type 3 glyphs built per document).
_COLOR_TABLES = ("CBDT", "EBDT", "sbix", "COLR", "SVG ")

_FPDF_DROPS = {"GDEF", "GSUB", "GPOS"}  # checked against fpdf2's own list below


class _Stub:
    """What ``TTFFont.__init__`` reads of its ``FPDF`` while building the prototype."""

    fonts: dict[str, Any] = {}
    render_color_fonts = False


#: Fonts with more glyphs than this (Noto Sans CJK: 65,535) do not keep decoded tables:
#: their ``cmap``/``hmtx`` would cost each render process tens of MB.
MAX_SHARED_GLYPHS = 8192


@dataclass(frozen=True, slots=True)
class _Prototype:
    """One font file's document-independent ``TTFFont`` state, or ``font=None``: not cacheable.

    Attributes:
        font: fpdf2's ``TTFFont`` as ``add_font`` builds it, its ``ttfont`` closed and dropped,
            its ``cw`` a :class:`_Widths`.
        pre_drop: tables to delete from each document's ``TTFont`` before ``output()``.
        tags: the tables of the font file (``pre_drop`` included).
        glyph_order: the font's glyph names (from ``post``), or ``()`` if not shared.
        tables: decoded ``cmap``, ``hmtx`` and ``post`` tables each document gets a shallow
            copy of (see :func:`_clone_table`), or empty if not shared.
    """

    font: TTFFont | None
    pre_drop: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    glyph_order: tuple[str, ...] = ()
    tables: tuple[tuple[str, Any], ...] = ()


class _Widths(dict[int, float]):
    """``TTFFont.cw`` shared by every document of a font: character -> width (1/1000 em).

    fpdf2's is a ``defaultdict`` giving ``missing`` (the descriptor's ``MissingWidth``) for a
    character the font lacks, and inserting it; this one gives it without inserting, so
    documents can share it (fpdf2 reads ``cw`` only by ``cw[char]``, and never writes it
    after ``TTFFont.__init__``).
    """

    __slots__ = ("missing",)

    def __init__(self, widths: dict[int, float], missing: float) -> None:
        super().__init__(widths)
        self.missing = missing

    def __missing__(self, char: int) -> float:
        return self.missing


#: fpdf2's ``TTFFont.ttfont`` slot; a :class:`DocumentTTFFont` keeps its :class:`_Prototype`
#: there until the fontTools ``TTFont`` is opened.
_TTFONT_SLOT: Any = TTFFont.__dict__["ttfont"]


class DocumentTTFFont(TTFFont):
    """fpdf2's ``TTFFont`` as :func:`add_cached_font` gives it to a document: its fontTools
    ``TTFont`` (:func:`_open_ttfont`) is opened when ``ttfont`` is first read, not before.

    :func:`app.render.fontsubset.use_tiered_codes` turns it into a subclass that keeps this
    behaviour (same slots: ``__class__`` can be swapped).
    """

    __slots__ = ()

    @property
    def ttfont(self) -> ttLib.TTFont:
        """The document's own fontTools ``TTFont`` of the font file, opened on first read."""
        value = _TTFONT_SLOT.__get__(self, TTFFont)
        if isinstance(value, _Prototype):
            value = _open_ttfont(value, self.collection_font_number)
            _TTFONT_SLOT.__set__(self, value)
        return value

    @ttfont.setter
    def ttfont(self, value: ttLib.TTFont) -> None:
        _TTFONT_SLOT.__set__(self, value)

    def has_table(self, tag: str) -> bool:
        """Whether ``ttfont`` has (or will have, once opened) table ``tag``; does not open it."""
        value = _TTFONT_SLOT.__get__(self, TTFFont)
        if isinstance(value, _Prototype):
            return tag in value.tags and tag not in value.pre_drop
        return tag in value

    def close(self) -> None:
        """fpdf2's ``close()`` (close the ``TTFont``, drop the HarfBuzz font), opening nothing."""
        value = _TTFONT_SLOT.__get__(self, TTFFont)
        if not isinstance(value, _Prototype):
            value.close()
        self._hbfont = None


def _clone_table(tag: str, table: Any) -> Any:
    """A copy of a decoded table that fontTools' subsetter may change without touching ``table``.

    The subsetter only *rebinds* attributes of these tables (``cmap``: ``tables`` and each
    subtable's ``cmap``/``uvsDict``; ``hmtx``: ``metrics``; ``post``: ``formatType``,
    ``extraNames``); it never mutates the containers in place. A new object per table (and
    per cmap subtable) with the same attribute values is therefore enough. ``__dict__`` is
    copied directly: fontTools' lazy tables define ``__getattr__``.
    """
    clone = object.__new__(type(table))
    clone.__dict__.update(table.__dict__)
    if tag == "cmap":
        subtables = []
        for sub in table.tables:
            copy_ = object.__new__(type(sub))
            copy_.__dict__.update(sub.__dict__)
            subtables.append(copy_)
        clone.tables = subtables
    return clone


def _decoded_tables(path: str, index: int) -> tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]:
    """Glyph order and decoded ``cmap``/``hmtx``/``post`` of a TrueType font, or ``((), ())``."""
    font = ttLib.TTFont(path, recalcTimestamp=False, fontNumber=index, lazy=True)
    try:
        if "glyf" not in font or "post" not in font or font["maxp"].numGlyphs > MAX_SHARED_GLYPHS:
            return (), ()
        order = tuple(font.getGlyphOrder())  # decodes post
        cmap = font["cmap"]
        for sub in cmap.tables:
            sub.ensureDecompiled()
        tables = (("cmap", cmap), ("hmtx", font["hmtx"]), ("post", font["post"]))
    finally:
        font.close()
    return order, tables


_lock = threading.Lock()


@cache
def _fpdf_drops_layout_tables() -> bool:
    """Whether this fpdf2's ``output()`` drops GDEF/GSUB/GPOS, which the pre-drop relies on.

    Read once, at the first font: if an fpdf2 upgrade stops dropping them, the per-document
    fonts keep them (slower subsetting, never different bytes).
    """
    import inspect

    from fpdf import output

    try:
        source = inspect.getsource(output.OutputProducer._add_fonts)
    except (OSError, TypeError, AttributeError):
        return False
    return all(f'"{tag}",' in source for tag in _FPDF_DROPS)


@cache
def _prototype(path: str, index: int) -> _Prototype:
    """Parse ``path`` (face ``index``) once with fpdf2's own ``TTFFont`` and keep its derived data."""
    probe = ttLib.TTFont(path, lazy=True, fontNumber=index)
    try:
        tags = set(probe.keys())
        cacheable = (
            not any(tag in tags for tag in _COLOR_TABLES)
            and not str(path).lower().endswith((".woff", ".woff2"))
            and ("glyf" not in tags or ".notdef" in probe["glyf"])  # fpdf2 would patch in a .notdef
        )
    finally:
        probe.close()
    if not cacheable:
        return _Prototype(None)
    font = TTFFont(_Stub(), Path(path), "prototype", "", None, None, None, index)  # type: ignore[arg-type]  # _Stub: what TTFFont reads of an FPDF
    font.close()
    font.ttfont = None  # no tables kept: each document opens its own
    font.cw = _Widths(font.cw, font.cw.default_factory())  # type: ignore[attr-defined]  # fpdf2's defaultdict
    font.subset = None  # type: ignore[assignment]  # the prototype draws nothing: documents get their own
    pre_drop = (
        ()
        if "kern" in tags or not _fpdf_drops_layout_tables()
        else tuple(tag for tag in PRE_DROPPED_TABLES if tag in tags)
    )
    order, tables = _decoded_tables(path, index)
    return _Prototype(font, pre_drop, frozenset(tags), order, tables)


def _open_ttfont(proto: _Prototype, index: int) -> ttLib.TTFont:
    """A document's own lazy fontTools ``TTFont`` of ``proto``'s file (face ``index``): the
    ``pre_drop`` tables deleted, the prototype's glyph order and decoded tables (copies) in."""
    assert proto.font is not None
    ttfont = ttLib.TTFont(proto.font.ttffile, recalcTimestamp=False, fontNumber=index, lazy=True)
    for tag in proto.pre_drop:  # kept for `make bench` render: "fpdf2's layout tables / ours, CPU"
        del ttfont[tag]
    if proto.glyph_order:
        ttfont.setGlyphOrder(list(proto.glyph_order))
        for tag, table in proto.tables:
            ttfont.tables[tag] = _clone_table(tag, table)
    return ttfont


def _document_font(pdf: FPDF, proto: _Prototype, fontkey: str, style: str, index: int) -> DocumentTTFFont:
    """A font for one document: shared read-only data, fresh per-document state, its
    fontTools ``TTFont`` opened on first use (:class:`DocumentTTFFont`)."""
    base = proto.font
    assert base is not None
    font = DocumentTTFFont.__new__(DocumentTTFFont)
    font.i = len(pdf.fonts) + 1
    font.type = "TTF"
    font.ttffile = base.ttffile
    font.is_compressed = False
    font._hbfont = None
    font.fontkey = fontkey
    font.biggest_size_pt = 0
    font.collection_font_number = index
    _TTFONT_SLOT.__set__(font, proto)  # opened by DocumentTTFFont.ttfont
    font.is_cff = base.is_cff
    font.is_cid_keyed = base.is_cid_keyed
    font.is_symbol = base.is_symbol
    font.cff_ros = base.cff_ros
    font.scale = base.scale
    font.desc = copy.copy(base.desc)  # a PDF object: output() gives it an id, name and font file
    font.cw = base.cw  # a _Widths: lookups insert nothing
    font.cmap = base.cmap
    font.glyph_ids = base.glyph_ids
    font.missing_glyphs = []
    font.name = base.name
    font.up, font.ut, font.sp, font.ss = base.up, base.ut, base.sp, base.ss
    font.emphasis = TextEmphasis.coerce(style)
    font.palette_index = 0
    font.color_font = None
    font.subset = SubsetMap(font)
    return font


# Kept for `make bench` render: "fpdf2's add_font / ours, CPU".
def add_cached_font(pdf: FPDF, family: str, style: str, path: str, index: int = 0) -> None:
    """``pdf.add_font(family, style, path, collection_font_number=index)`` from the process cache.

    Same fonts, same output bytes as ``add_font``; falls back to it for fonts the cache does
    not cover (see the module docstring) and for a font already added.
    """
    style = "".join(sorted(style.upper()))
    fontkey = f"{family.lower()}{style}"
    with _lock:
        proto = _prototype(str(path), index)
    if proto.font is None or fontkey in pdf.fonts or not Path(path).is_absolute():
        pdf.add_font(family, style, path, collection_font_number=index)
        return
    font = _document_font(pdf, proto, fontkey, style, index)
    pdf.fonts[fontkey] = font
    if font.is_cff and font.is_cid_keyed:
        pdf._set_min_pdf_version("1.6")


def cache_clear() -> None:
    """Forget every parsed font (tests)."""
    _prototype.cache_clear()
