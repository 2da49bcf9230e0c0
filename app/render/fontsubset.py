"""Fixed glyph codes for common text in the main fonts, the same in every document.

fpdf2 gives every glyph a document draws a 16-bit code in order of first use (``SubsetMap``),
and everything ``output()`` derives from a font (the subset, ``/W``, ``/ToUnicode``,
``/CIDToGIDMap``) depends on those codes, so it differs between any two documents.

Here the main text fonts get codes that do not depend on the document
(:class:`TieredSubsetMap`): the first glyph a document draws in such a font assigns fixed
codes to a whole tier of characters at once, in a fixed order —

* tier 1, :data:`TIER_1`: printable ASCII and the punctuation our own layout writes
  (``–``, ``—``, ``…``, ``·``, ``“”``…);
* tier 2, :data:`TIER_2`, taken on the first character outside tier 1: Latin-1,
  Latin Extended-A, general punctuation, ``€``, ``™``, ``−``;

and any other glyph gets the next free code after them. A document that draws only
characters of the tiers thus has one of two subset maps per font, the same in every
document, which lets :mod:`app.render.fontoutput` write its font objects from bytes
computed once per process. A font registered but never drawn takes no tier (and
:class:`app.render.document.TicketPdf` does not write it at all). The cost of fixed tiers
is size: a used font embeds its whole tier (Noto Sans: ~11 KB compressed for tier 1, ~23 KB
with tier 2, instead of ~5–10 KB for the glyphs drawn).

Two smaller per-document costs go too: the codes of a tier are copied from the state the
first document of the process computed (:meth:`TieredSubsetMap._take_tier`), and text is
encoded in C through a ``codecs`` charmap, or one ``str.translate``, per line instead of
fpdf2's loop per character (:class:`TieredTTFFont`, same bytes).

:class:`app.render.document.TicketPdf` uses this for the main family (Noto Sans, four
faces) and the mono face of ``<pre>``/``<code>``; fallback fonts keep fpdf2's per-document
codes (their glyphs are mostly outside the tiers, so fixed codes would only add size).
Only TrueType (``glyf``) fonts that are neither symbol, colour nor CFF take part.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from fpdf.fonts import Glyph, SubsetMap, TTFFont
from fpdf.util import escape_parens

from app.render.fontcache import DocumentTTFFont


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


class _CodeTable(dict[int, str | None]):
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


class _EscapedCodeTable(dict[int, str | None]):
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
        mapped = _FONT_TIERS.get(key)
        if mapped is None:
            mapped = _FONT_TIERS[key] = tuple(
                tuple(cp for cp in tier if cp in font.glyph_ids) for tier in tiers
            )
        self.tiers = mapped
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


class TieredTTFFont(TTFFont):
    """``TTFFont`` with a :class:`TieredSubsetMap`, encoding text in C: one ``codecs`` charmap
    call for a line whose characters all have codes below 256, else one ``str.translate``
    (the bytes of fpdf2's ``encode_text``)."""

    __slots__ = ()
    subset: TieredSubsetMap  # use_tiered_codes gives every such font one

    def encode_text(self, text: str) -> str:
        """``(<UTF-16BE codes>) Tj`` for ``text``, as fpdf2's ``TTFFont.encode_text``."""
        subset = self.subset
        try:  # every character has a code below 256: one byte each in C, then widened
            narrow = codecs.charmap_encode(text, "strict", subset.byte_codes())[0]
        except UnicodeEncodeError:
            # Escaping each two-byte code on its own gives the same string as escaping them
            # all at once: every escape replaces one character.
            return f"({text.translate(subset.escaped)}) Tj"
        wide = narrow.decode("latin-1").encode("utf-16-be")  # code c -> 00 c
        wide = wide.replace(b"\\", b"\\\\").replace(b")", b"\\)").replace(b"(", b"\\(").replace(b"\r", b"\\r")
        return f"({wide.decode('latin-1')}) Tj"


class _TieredDocumentTTFFont(DocumentTTFFont, TieredTTFFont):
    """A :class:`TieredTTFFont` from :func:`app.render.fontcache.add_cached_font`: its
    fontTools ``TTFont`` is still opened only when read (:class:`DocumentTTFFont`)."""

    __slots__ = ()


#: The class :func:`use_tiered_codes` gives a font of each class it takes (same slots).
_TIERED_CLASSES: dict[type, type[TieredTTFFont]] = {
    TTFFont: TieredTTFFont,
    DocumentTTFFont: _TieredDocumentTTFFont,
}


# Kept for `make bench` render: "fpdf2's subsets / ours, CPU" (with app.render.fontoutput).
def use_tiered_codes(font: Any) -> bool:
    """Give ``font`` (an fpdf2 font just added to a document) a :class:`TieredSubsetMap`.

    Returns whether it did: only for TrueType (``glyf``) fonts that are neither symbol
    nor colour fonts and have drawn nothing yet; other fonts are left as they are.
    """
    tiered = _TIERED_CLASSES.get(type(font))
    if tiered is None or font.color_font or font.is_symbol or font.is_cff:
        return False
    if len(font.subset) > 2 or font.subset._next:  # something drawn already (only .notdef/space are preset)
        return False
    if isinstance(font, DocumentTTFFont):
        if not font.has_table("glyf"):  # asked without opening its TTFont
            return False
    elif font.ttfont is None or "glyf" not in font.ttfont:
        return False
    font.subset = TieredSubsetMap(font)
    font.__class__ = tiered
    return True


def cache_clear() -> None:
    """Forget the tier states and tables of this process (tests)."""
    _TIER_STATES.clear()
    _TIER_TABLES.clear()
    _FONT_TIERS.clear()
