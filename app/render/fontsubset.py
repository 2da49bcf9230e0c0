"""Font subsets computed once per process: fixed glyph codes for common text, cached font output.

fpdf2 gives every glyph a document draws a 16-bit code in order of first use (``SubsetMap``) and,
in ``output()``, subsets each font with fontTools to the glyphs used, then writes the
subset (``/FontFile2``), the widths (``/W``), ``/ToUnicode`` and ``/CIDToGIDMap``. All of
that depends on the exact glyphs *and* their codes, so it differs between any two
documents, and subsetting is the largest single cost of a render (~40 %).

Here the main text fonts get codes that do not depend on the document
(:class:`TieredSubsetMap`): the first glyph a document draws in such a font assigns fixed
codes to a whole tier of characters at once, in a fixed order —

* tier 1, :data:`TIER_1`: printable ASCII and the punctuation our own layout writes
  (``–``, ``—``, ``…``, ``·``, ``“”``…);
* tier 2, :data:`TIER_2`, taken on the first character outside tier 1: Latin-1,
  Latin Extended-A, general punctuation, ``€``, ``™``, ``−``;

and any other glyph gets the next free code after them. A document that draws only
characters of the tiers thus has one of two subset maps per font, the same in every
document, and :class:`ArchiveOutputProducer` writes the font objects from bytes computed
once per process (:func:`font_output`, an LRU of :data:`CACHE_SIZE` entries keyed by the
exact glyph → code map): no subsetting, no compression, no widths or CMap building. A
document with other glyphs gets a subset of the tiers plus those glyphs, computed as
fpdf2 would (and cached too). Unused fonts stay as small as before (no tier is taken).

The objects written are exactly fpdf2 2.8.9's for the same subset map (same order, same
dictionaries, same compressed bytes), so a document rendered with the cache is
byte-identical to one rendered by fpdf2's own ``OutputProducer`` from the same
``SubsetMap``. The cost of fixed tiers is size: a used font embeds its whole tier
(Noto Sans: ~11 KB compressed for tier 1, ~23 KB with tier 2, instead of ~5–10 KB for
the glyphs actually drawn).

Two smaller per-document costs go too: the codes of a tier are copied from the state the
first document of the process computed (:meth:`TieredSubsetMap._take_tier`), and text is
encoded with one ``str.translate`` per line instead of fpdf2's loop per character (same
bytes).

:mod:`app.render.pdf` uses this for the main family (Noto Sans, four faces); fallback
fonts keep fpdf2's per-document subsets. Only TrueType (``glyf``) fonts that are neither
symbol, colour nor CFF take part; others (and PDF/A-1, which wants a ``/CIDSet`` of the
glyphs used) go through fpdf2's own code.
"""

from __future__ import annotations

import codecs
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fontTools import subset as ftsubset
from fpdf.fonts import Glyph, SubsetMap, TTFFont
from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, PDFFontStream
from fpdf.syntax import Name, PDFArray, PDFContentStream
from fpdf.util import escape_parens

try:  # private helpers of fpdf2's output; without them the cache is off (fpdf2's own path)
    from fpdf.output import _build_cmap_blocks, _tt_font_widths
except ImportError:  # pragma: no cover - pinned fpdf2 2.8.x has them
    _build_cmap_blocks = _tt_font_widths = None  # type: ignore[assignment]


def _chars(*ranges: tuple[int, int]) -> tuple[int, ...]:
    return tuple(cp for first, last in ranges for cp in range(first, last + 1))


#: Tier 1: printable ASCII after the space (fpdf2 reserves code 0x20 for it) and the
#: punctuation the layout itself writes (headers, fields, the Originals section).
TIER_1: tuple[int, ...] = _chars((0x21, 0x7E)) + (
    0x00B7,
    0x2013,
    0x2014,
    0x2018,
    0x2019,
    0x201C,
    0x201D,
    0x2022,
    0x2026,
)

#: Tier 2: Latin-1 Supplement, Latin Extended-A, general punctuation, euro, trade mark,
#: minus — what European text beyond ASCII mostly uses. Taken whole on the first
#: character outside tier 1.
TIER_2: tuple[int, ...] = tuple(
    cp
    for cp in _chars((0x00A0, 0x017F), (0x2010, 0x2027), (0x2030, 0x203A)) + (0x20AC, 0x2122, 0x2212)
    if cp not in TIER_1
)

TIERS: tuple[tuple[int, ...], ...] = (TIER_1, TIER_2)

#: Font outputs kept per process (each a few tens of KB: the compressed subset and maps).
CACHE_SIZE = 32

#: Compression level fpdf2 uses for streams (``PDFContentStream._COMPRESSION_LEVEL``).
_LEVEL = PDFContentStream._COMPRESSION_LEVEL

_ENABLED = _build_cmap_blocks is not None and _tt_font_widths is not None


class _CodeTable(dict):  # type: ignore[type-arg]
    """``ord(char) -> chr(code)`` for ``str.translate``; a miss asks the subset map (which
    records missing glyphs) and remembers the answer; ``None`` drops the character, as
    fpdf2's ``encode_text`` does for a glyph the font lacks."""

    __slots__ = ("subset",)

    def __init__(self, subset: SubsetMap) -> None:
        super().__init__()
        self.subset = subset

    def __missing__(self, cp: int) -> str | None:
        code = self.subset.pick(cp)
        value = chr(code) if code is not None else None
        self[cp] = value
        return value


def _in_string(code: str) -> str:
    """A glyph code (one character) as it stands in a PDF string of fpdf2's: its two UTF-16BE
    bytes as latin-1 characters, escaped by ``escape_parens``."""
    return escape_parens(code.encode("utf-16-be").decode("latin-1"))


class _EscapedCodeTable(dict):  # type: ignore[type-arg]
    """``ord(char) -> `` the char's code as it stands in a PDF string: two bytes (UTF-16BE,
    as latin-1 characters), ``\\``, ``(``, ``)`` and CR escaped as fpdf2's ``escape_parens``
    does; ``None`` for a glyph the font lacks. Built on a :class:`_CodeTable` (one miss each)."""

    __slots__ = ("codes", "fresh")

    def __init__(self, codes: _CodeTable) -> None:
        super().__init__()
        self.codes = codes
        self.fresh: list[tuple[int, int]] = []  # (code point, code) added since TieredSubsetMap.byte_codes

    def __missing__(self, cp: int) -> str | None:
        code = self.codes[cp]
        value = _in_string(code) if code is not None else None
        self[cp] = value
        if code is not None:
            self.fresh.append((cp, ord(code)))
        return value


class TieredSubsetMap(SubsetMap):
    """fpdf2's ``SubsetMap`` that hands out the codes of a whole tier at once.

    Before the first glyph outside the tiers taken so far gets a code, the next tier is
    taken: each of its characters the font has gets the next code, in tier order. Codes
    are therefore the same in every document that draws only tier characters. Glyphs of
    shaped text (``pick_glyph`` with a cluster) are not tier glyphs and come after.

    Args:
        font: the document's ``TTFFont`` (fpdf2's ``SubsetMap`` argument).
        tiers: code points per tier, in code order (only those the font maps are used).
    """

    def __init__(self, font: TTFFont, tiers: tuple[tuple[int, ...], ...] = TIERS) -> None:
        super().__init__(font)
        key = (str(font.ttffile), font.collection_font_number, tiers)
        self.tiers = _FONT_TIERS.get(key)
        if self.tiers is None:
            self.tiers = _FONT_TIERS[key] = tuple(
                tuple(cp for cp in tier if cp in font.glyph_ids) for tier in tiers
            )
        self.taken = 0
        self.codes = _CodeTable(self)
        self.escaped = _EscapedCodeTable(self.codes)
        self._byte_table = ["\ufffe"] * 256  # code -> character ("\ufffe": none)
        self._byte_codes: Any = codecs.charmap_build("".join(self._byte_table))

    def byte_codes(self) -> Any:
        """A ``codecs`` charmap (``codecs.charmap_build``) from each character whose code
        :attr:`escaped` knows and is below 256 to that code: those characters encode in C,
        one byte each. Updated when :attr:`escaped` has learnt new characters."""
        fresh = self.escaped.fresh
        if fresh:
            table = self._byte_table
            for cp, code in fresh:
                if code < 256 and table[code] == "\ufffe":
                    table[code] = chr(cp)
            fresh.clear()
            self._byte_codes = codecs.charmap_build("".join(table))
        return self._byte_codes

    def pick_glyph(self, glyph: Glyph | None) -> int | None:
        """The glyph's code, taking tiers first while the glyph has none (see the class)."""
        while glyph is not None and self.taken < len(self.tiers) and glyph not in self._char_id_per_glyph:
            self._take_tier()
        return SubsetMap.pick_glyph(self, glyph)

    def _take_tier(self) -> None:
        """Give the next tier's characters their codes.

        The map's state before a tier is always the same (the codes of the tiers before it),
        so the state after it is too: it is computed once per font file and tier and copied
        into later documents (after checking the state before matches).
        """
        number = self.taken
        self.taken += 1
        key = (str(self.font.ttffile), self.font.collection_font_number, number)
        known = _TIER_STATES.get(key)
        if known is not None and known.before == self._char_id_per_glyph:
            self._char_id_per_glyph = dict(known.after)
            self._next = known.next_code
            self._reserved = list(known.reserved)
        else:
            before = dict(self._char_id_per_glyph)
            for cp in self.tiers[number]:
                SubsetMap.pick_glyph(self, self.get_glyph(unicode=cp))
            known = _TIER_STATES[key] = _TierState(
                before, dict(self._char_id_per_glyph), self._next, tuple(self._reserved)
            )
        self._learn_tier(number, known)

    def _learn_tier(self, number: int, state: _TierState) -> None:
        """Put the codes of tier ``number``'s characters into :attr:`codes` and :attr:`escaped`
        at once (what their first lookups would find), from tables built once per process."""
        key = (str(self.font.ttffile), self.font.collection_font_number, number)
        known = _TIER_TABLES.get(key)
        if known is None or known[0] is not state:
            codes: dict[int, str] = {}
            for cp in self.tiers[number]:
                code = self._char_id_per_glyph.get(self.get_glyph(unicode=cp))
                if code is not None:
                    codes[cp] = chr(code)
            escaped = {cp: _in_string(ch) for cp, ch in codes.items()}
            known = _TIER_TABLES[key] = (
                state,
                codes,
                escaped,
                tuple((cp, ord(ch)) for cp, ch in codes.items()),
            )
        _, codes, escaped, fresh = known
        for cp in codes.keys() & self.codes.keys():  # looked up already: must agree
            if self.codes[cp] != codes[cp]:
                return
        self.codes.update(codes)
        self.escaped.update(escaped)
        self.escaped.fresh.extend(fresh)


@dataclass(frozen=True, slots=True)
class _TierState:
    """A ``SubsetMap``'s glyph codes before and after taking one tier (shared, never changed)."""

    before: dict[Glyph | None, int]
    after: dict[Glyph | None, int]
    next_code: int
    reserved: tuple[int, ...]


#: ``(font file, face index, tier number) -> _TierState``, filled by the first document per process.
_TIER_STATES: dict[tuple[str, int, int], _TierState] = {}
#: ``(font file, face index, tier number) -> (the _TierState they belong to, code point -> code
#: character, code point -> escaped code, (code point, code) pairs)``: a tier's characters as
#: :class:`_CodeTable`, :class:`_EscapedCodeTable` and the byte charmap learn them.
_TIER_TABLES: dict[
    tuple[str, int, int], tuple[_TierState, dict[int, str], dict[int, str], tuple[tuple[int, int], ...]]
] = {}
#: ``(font file, face index, tiers) -> the tiers' code points the font maps``.
_FONT_TIERS: dict[tuple[str, int, tuple[tuple[int, ...], ...]], tuple[tuple[int, ...], ...]] = {}


class _TieredTTFFont(TTFFont):
    """``TTFFont`` whose ``encode_text`` maps text with one ``str.translate`` (same output)."""

    __slots__ = ()

    def encode_text(self, text: str) -> str:
        """``(<UTF-16BE codes>) Tj`` for ``text``, as fpdf2's ``TTFFont.encode_text``."""
        subset = self.subset
        try:  # every character has a code below 256: one byte each in C, then widened
            narrow = codecs.charmap_encode(text, "strict", subset.byte_codes())[0]  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            # Escaping each two-byte code on its own gives the same string as escaping them
            # all at once: every escape replaces one character.
            return f"({text.translate(subset.escaped)}) Tj"  # type: ignore[attr-defined]
        wide = narrow.decode("latin-1").encode("utf-16-be")  # code c -> 00 c
        wide = wide.replace(b"\\", b"\\\\").replace(b")", b"\\)").replace(b"(", b"\\(").replace(b"\r", b"\\r")
        return f"({wide.decode('latin-1')}) Tj"


def use_tiered_codes(font: Any) -> bool:
    """Give ``font`` (an fpdf2 font just added to a document) a :class:`TieredSubsetMap`.

    Returns whether it did: only for TrueType (``glyf``) fonts that are neither symbol
    nor colour fonts and have drawn nothing yet; other fonts are left as they are.
    """
    if not _ENABLED or type(font) is not TTFFont or font.color_font or font.is_symbol or font.is_cff:
        return False
    if len(font.subset) > 2 or font.subset._next:  # something drawn already (only .notdef/space are preset)
        return False
    if font.ttfont is None or "glyf" not in font.ttfont:
        return False
    font.subset = TieredSubsetMap(font)
    font.__class__ = _TieredTTFFont
    return True


@dataclass(frozen=True, slots=True)
class FontOutput:
    """What fpdf2's ``output()`` derives from one font and one subset map, ready to write.

    Attributes:
        font_file: the fontTools subset, zlib-compressed (``/FontFile2`` stream data).
        font_file_length: its uncompressed length in bytes (``/Length1``).
        widths: the ``/W`` array of the CIDFont, as fpdf2 writes it.
        to_unicode: the ``/ToUnicode`` CMap (written uncompressed, as fpdf2 does).
        cid_to_gid: the ``/CIDToGIDMap`` stream data, zlib-compressed.
    """

    font_file: bytes
    font_file_length: int
    widths: str
    to_unicode: bytes
    cid_to_gid: bytes


def _format_code(unicode: int) -> str:
    if unicode > 0xFFFF:
        high = 0xD800 | (unicode - 0x10000) >> 10
        low = 0xDC00 | (unicode & 0x3FF)
        return f"{high:04X}{low:04X}"
    return f"{unicode:04X}"


def _build(font: TTFFont) -> FontOutput:
    """fpdf2 2.8.9's ``_add_fonts`` steps for a TrueType font (subset, widths, maps), as bytes."""
    options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += [
        "FFTM",
        "GDEF",
        "GPOS",
        "GSUB",
        "MATH",
        "hdmx",
        "meta",
        "sbix",
        "CBDT",
        "CBLC",
        "EBDT",
        "EBLC",
        "EBSC",
        "SVG ",
        "CPAL",
        "COLR",
    ]
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(glyphs=font.subset.get_all_glyph_names())
    subsetter.subset(font.ttfont)
    code_to_glyph = {
        code: font.ttfont.getGlyphID(glyph.glyph_name)
        for glyph, code in font.subset.items()
        if glyph is not None
    }
    buffer = BytesIO()
    font.ttfont.save(buffer)
    font_file = buffer.getvalue()

    bf_char = [
        f"<{code:04X}> <{''.join(_format_code(u) for u in glyph.unicode)}>\n"
        for glyph, code in font.subset.items()
        if glyph is not None and isinstance(glyph.unicode, tuple) and glyph.unicode
    ]
    to_unicode = (
        "/CIDInit /ProcSet findresource begin\n"
        "12 dict begin\n"
        "begincmap\n"
        "/CIDSystemInfo\n"
        "<</Registry (Adobe)\n"
        "/Ordering (UCS)\n"
        "/Supplement 0\n"
        ">> def\n"
        "/CMapName /Adobe-Identity-UCS def\n"
        "/CMapType 2 def\n"
        "1 begincodespacerange\n"
        "<0000> <FFFF>\n"
        "endcodespacerange\n"
        f"{_build_cmap_blocks(bf_char, 'bfchar')}"
        "endcmap\n"
        "CMapName currentdict /CMap defineresource pop\n"
        "end\n"
        "end"
    ).encode("latin-1")

    cid_to_gid = bytearray(256 * 256 * 2)
    for code, glyph_id in code_to_glyph.items():
        cid_to_gid[code * 2] = glyph_id >> 8
        cid_to_gid[code * 2 + 1] = glyph_id & 0xFF
    return FontOutput(
        font_file=zlib.compress(font_file, level=_LEVEL),
        font_file_length=len(font_file),
        widths=_tt_font_widths(font),
        to_unicode=to_unicode,
        cid_to_gid=zlib.compress(bytes(cid_to_gid), level=_LEVEL),
    )


_cache: OrderedDict[tuple[Any, ...], FontOutput] = OrderedDict()
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def _key(font: TTFFont) -> tuple[Any, ...]:
    glyphs = tuple(
        (code, glyph.glyph_id, glyph.unicode, glyph.glyph_name, glyph.glyph_width)
        for glyph, code in font.subset.items()
        if glyph is not None
    )
    return str(font.ttffile), font.collection_font_number, glyphs


def font_output(font: TTFFont) -> FontOutput:
    """The :class:`FontOutput` of ``font`` with its current subset map, from the process cache.

    On a miss the font's per-document fontTools ``TTFont`` is subset in place (as fpdf2's
    ``output()`` does); the result is cached under the font file and the exact
    glyph → code map, so equal maps give the same bytes in every document.
    """
    key = _key(font)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            _stats["hits"] += 1
            return found
    built = _build(font)
    with _lock:
        _stats["misses"] += 1
        _cache[key] = built
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return built


def cache_info() -> dict[str, int]:
    """``{"hits", "misses", "size"}`` of the font output cache of this process (tests, benchmarks)."""
    with _lock:
        return {**_stats, "size": len(_cache)}


def cache_clear() -> None:
    """Forget every cached font output and tier state and reset the counters (tests)."""
    with _lock:
        _cache.clear()
        _stats.update(hits=0, misses=0)
        _TIER_STATES.clear()
        _TIER_TABLES.clear()
        _FONT_TIERS.clear()


def _stream(data: bytes, *, compressed: bool, font_file_length: int | None = None) -> PDFContentStream:
    """A stream object with ``data`` as is: attributes in the order fpdf2's constructors set them."""
    stream: PDFContentStream
    if font_file_length is None:
        stream = PDFContentStream(b"")
    else:
        stream = PDFFontStream.__new__(PDFFontStream)
        PDFContentStream.__init__(stream, b"")
    stream._contents = data
    stream.filter = Name("FlateDecode") if compressed else None
    stream.length = len(data)
    if font_file_length is not None:
        stream.length1 = font_file_length  # type: ignore[attr-defined]
    return stream


class ArchiveOutputProducer(OutputProducer):
    """fpdf2's ``OutputProducer`` writing :class:`TieredSubsetMap` fonts from :func:`font_output`.

    Pass it as ``FPDF.output(output_producer_class=ArchiveOutputProducer)``. Other fonts,
    and all fonts of a PDF/A-1 document, go through fpdf2's own ``_add_fonts``, one font
    at a time in the same order, so object numbers follow fpdf2's.
    """

    def _add_fonts(
        self, image_objects_per_index: Any, gfxstate_objs_per_name: Any, pattern_objs_per_name: Any
    ) -> dict[int, Any]:
        fonts = self.fpdf.fonts
        compliance = self.fpdf._compliance
        part_1 = bool(compliance and compliance.profile == "PDFA" and compliance.part == 1)
        if part_1 or not any(isinstance(font, _TieredTTFFont) for font in fonts.values()):
            return super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
        objects: dict[int, Any] = {}
        catalog = self.fpdf._resource_catalog  # FPDF.fonts is its font_registry
        try:
            for fontkey, font in sorted(fonts.items(), key=lambda item: item[1].i):
                if isinstance(font, _TieredTTFFont):
                    objects[font.i] = self._add_tiered_font(font)
                else:  # fpdf2's own code sees this one font only
                    catalog.font_registry = {fontkey: font}
                    objects.update(
                        super()._add_fonts(
                            image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name
                        )
                    )
                    catalog.font_registry = fonts
        finally:
            catalog.font_registry = fonts
        return objects

    def _add_tiered_font(self, font: _TieredTTFFont) -> PDFFont:
        """fpdf2's objects for one TrueType font (Type0 → CIDFontType2), from the cache."""
        built = font_output(font)
        fontname = f"MPDFAA+{font.name}"
        composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
        self._add_pdf_obj(composite, "fonts")
        cid_font = PDFFont(
            subtype="CIDFontType2", base_font=fontname, d_w=font.desc.missing_width, w=built.widths
        )
        self._add_pdf_obj(cid_font, "fonts")
        composite.descendant_fonts = PDFArray([cid_font])
        to_unicode = _stream(built.to_unicode, compressed=False)
        self._add_pdf_obj(to_unicode, "fonts")
        composite.to_unicode = to_unicode
        system_info = CIDSystemInfo()
        self._add_pdf_obj(system_info, "fonts")
        cid_font.c_i_d_system_info = system_info
        descriptor = font.desc
        descriptor.font_name = Name(fontname)
        self._add_pdf_obj(descriptor, "fonts")
        cid_font.font_descriptor = descriptor
        cid_to_gid = _stream(built.cid_to_gid, compressed=True)
        self._add_pdf_obj(cid_to_gid, "fonts")
        cid_font.c_i_d_to_g_i_d_map = cid_to_gid
        font_file = _stream(built.font_file, compressed=True, font_file_length=built.font_file_length)
        self._add_pdf_obj(font_file, "fonts")
        descriptor.font_file2 = font_file  # type: ignore[attr-defined]
        font.subset.pick.cache_clear()
        font.subset.get_glyph.cache_clear()
        font.close()
        return composite
