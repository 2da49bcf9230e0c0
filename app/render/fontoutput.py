"""Font objects written from bytes computed once per process, for fonts with fixed glyph codes.

In ``output()`` fpdf2 subsets each font with fontTools to the glyphs a document used and
writes the subset (``/FontFile2``), the widths (``/W``), ``/ToUnicode`` and ``/CIDToGIDMap``:
the largest single cost of a small ticket's render. All of it depends only on the font file and
the exact glyph → code map. The main fonts' codes are fixed per tier
(:mod:`app.render.fontsubset`), so most documents share one map per face, and
:class:`ArchiveOutputProducer` writes their font objects from :func:`font_output`, an LRU of
:data:`CACHE_SIZE` entries keyed by that map: no subsetting, no compression, no widths or
CMap building. A map not seen yet (a glyph outside the tiers) is computed as fpdf2 would
and cached too.

The objects written are exactly fpdf2 2.8.9's for the same subset map (same order, same
dictionaries, same compressed bytes): a document is byte-identical to one written by
fpdf2's own ``OutputProducer`` from the same ``SubsetMap``. Fonts without fixed codes (the
fallbacks), and all fonts of a PDF/A-1 document (which wants a ``/CIDSet`` of the glyphs
used), go through fpdf2's own code.

Which fonts are written at all: only those a page draws with (:func:`drop_undrawn_fonts`,
run by :meth:`app.render.document.TicketPdf.output` before either producer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import fpdf.syntax
from fontTools import subset as ftsubset
from fpdf import FPDF
from fpdf.enums import PDFResourceType
from fpdf.fonts import TTFFont
from fpdf.output import (  # the last two are private helpers of fpdf2 2.8's output
    CIDSystemInfo,
    OutputProducer,
    PDFFont,
    PDFFontStream,
    _build_cmap_blocks,
    _tt_font_widths,
)
from fpdf.syntax import Name, PDFArray, PDFContentStream

from app.render.fontsubset import TieredTTFFont

#: Font outputs kept per process (each a few tens of KB: the compressed subset and maps).
CACHE_SIZE = 32

#: Compression level fpdf2 uses for streams (``PDFContentStream._COMPRESSION_LEVEL``); they are
#: compressed as fpdf2's are, by its ``fpdf.syntax.zlib`` (ISA-L's with app.render.patches).
_LEVEL = PDFContentStream._COMPRESSION_LEVEL


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
        font_file=fpdf.syntax.zlib.compress(font_file, level=_LEVEL),
        font_file_length=len(font_file),
        widths=_tt_font_widths(font),
        to_unicode=to_unicode,
        cid_to_gid=fpdf.syntax.zlib.compress(bytes(cid_to_gid), level=_LEVEL),
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
    """Forget every cached font output and reset the counters (tests)."""
    with _lock:
        _cache.clear()
        _stats.update(hits=0, misses=0)


def drop_undrawn_fonts(pdf: FPDF) -> None:
    """Forget every font of ``pdf`` that no page puts in its resources (no ``/F<i> … Tf``), so
    ``output()`` writes only fonts drawn with. Call it once the last page is finished.

    A face is registered by ``set_font`` even when nothing is drawn with it (an empty
    ``<b></b>`` through fpdf2's ``set_font``, a paragraph all in fallback fonts); fpdf2 would write and
    subset it all the same. Nothing is dropped from a document with form XObjects or soft
    masks, whose resource dictionaries may name fonts no page does.
    """
    catalog = pdf._resource_catalog
    if catalog.form_xobjects or catalog.soft_mask_xobjects:
        return
    drawn = {  # font numbers: ints, or strings where fpdf2 found them by scanning a stream
        str(index)
        for (_, kind), indexes in catalog.resources_per_page.items()
        if kind == PDFResourceType.FONT
        for index in indexes
    }
    catalog.font_registry = {key: font for key, font in catalog.font_registry.items() if str(font.i) in drawn}


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
    if isinstance(stream, PDFFontStream) and font_file_length is not None:
        stream.length1 = font_file_length
    return stream


# Kept for `make bench` render: "fpdf2's subsets / ours, CPU" (with app.render.fontsubset).
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
        if part_1 or not any(isinstance(font, TieredTTFFont) for font in fonts.values()):
            return super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
        objects: dict[int, Any] = {}
        catalog = self.fpdf._resource_catalog  # FPDF.fonts is its font_registry
        try:
            for fontkey, font in sorted(fonts.items(), key=lambda item: item[1].i):
                if isinstance(font, TieredTTFFont):
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

    def _add_tiered_font(self, font: TieredTTFFont) -> PDFFont:
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
        descriptor.font_file2 = font_file  # type: ignore[attr-defined]  # undeclared; fpdf2 sets it so too
        font.subset.pick.cache_clear()
        font.subset.get_glyph.cache_clear()
        font.close()
        return composite
