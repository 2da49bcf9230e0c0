"""Which characters our fonts can draw, how wide they are, and the visible placeholders for the rest.

Font files are read once per process (fontTools) and their cmap and advance widths kept in
memory, so every document and every worker task after the first measures text without
touching the files again. Widths use fpdf2's own rounding (``round(1000 / unitsPerEm * w)``),
so our line breaker and fpdf2 agree on every line's width.

A style is drawn with a :class:`FontChain`: an ordered list of fonts where the first one that
has a character draws it. Today each chain holds Noto Sans only; fallback fonts (CJK,
Arabic, …) are added by appending to :data:`CHAIN_FILES` and registering them in the document
(see :func:`app.render.pdf.render_ticket_pdf`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont

FONT_DIR = Path(__file__).parent / "fonts"

#: fpdf2 family name of the main font.
MAIN_FAMILY = "NotoSans"

#: Font styles as fpdf2 names them: regular, bold, italic, bold italic.
STYLES = ("", "B", "I", "BI")

#: For each style, the (fpdf2 family, file name) pairs tried in order for a character.
CHAIN_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "": ((MAIN_FAMILY, "NotoSans-Regular.ttf"),),
    "B": ((MAIN_FAMILY, "NotoSans-Bold.ttf"),),
    "I": ((MAIN_FAMILY, "NotoSans-Italic.ttf"),),
    "BI": ((MAIN_FAMILY, "NotoSans-BoldItalic.ttf"),),
}

# Characters that are formatting, not text: removed before layout.
_INVISIBLE = {0x00AD: None}  # soft hyphen: a line-break hint, never drawn mid-word
# Line separators of every flavour become "\n"; tabs are expanded separately.
_NEWLINES = {0x0B: "\n", 0x0C: "\n", 0x85: "\n", 0x2028: "\n", 0x2029: "\n"}


@dataclass(frozen=True, slots=True)
class FontMetrics:
    """The cmap and advance widths of one font file.

    Attributes:
        path: the font file.
        advances: character → advance width in 1/1000 em (font size 1 pt → 0.001 pt).
    """

    path: Path
    advances: dict[str, int]


@lru_cache(maxsize=None)
def load_metrics(file_name: str) -> FontMetrics:
    """Read a font from :data:`FONT_DIR` once per process.

    Raises:
        OSError: the file is missing or unreadable.
    """
    path = FONT_DIR / file_name
    font = TTFont(str(path), lazy=True)
    try:
        scale = 1000 / font["head"].unitsPerEm
        metrics = font["hmtx"].metrics
        advances: dict[str, int] = {}
        for codepoint, glyph in font.getBestCmap().items():
            if unicodedata.category(chr(codepoint)) == "Cc":
                continue  # control characters are never drawn, even when the font maps them
            width = metrics[glyph][0]
            advances[chr(codepoint)] = 0 if width == 65535 else round(scale * width + 0.001)
    finally:
        font.close()
    return FontMetrics(path=path, advances=advances)


class FontChain:
    """The fonts one style is drawn with, first match wins.

    Attributes:
        style: fpdf2 style (``""``, ``"B"``, ``"I"``, ``"BI"``).
        families: fpdf2 family names, in chain order.
        advances: character → advance in 1/1000 em, taken from the first font that has it.
        font_of: character → index into ``families`` of the font that draws it.
    """

    def __init__(self, style: str, fonts: tuple[tuple[str, FontMetrics], ...]) -> None:
        self.style = style
        self.families = tuple(family for family, _ in fonts)
        self.paths = tuple(metrics.path for _, metrics in fonts)
        self.advances: dict[str, int] = {}
        self.font_of: dict[str, int] = {}
        for index, (_, metrics) in enumerate(fonts):
            for char, width in metrics.advances.items():
                if char not in self.advances:
                    self.advances[char] = width
                    self.font_of[char] = index

    def runs(self, line: str) -> Iterator[tuple[int, str]]:
        """Split ``line`` into maximal runs drawn by one font: ``(font index, text)``."""
        if len(self.families) == 1:
            yield 0, line
            return
        font_of = self.font_of
        start, current = 0, font_of.get(line[0], 0) if line else 0
        for i, char in enumerate(line):
            index = font_of.get(char, current)
            if index != current:
                yield current, line[start:i]
                start, current = i, index
        if start < len(line):
            yield current, line[start:]


@lru_cache(maxsize=None)
def font_chain(style: str) -> FontChain:
    """The process-wide :class:`FontChain` of a style (``""``, ``"B"``, ``"I"``, ``"BI"``)."""
    return FontChain(style, tuple((family, load_metrics(name)) for family, name in CHAIN_FILES[style]))


@lru_cache(maxsize=1)
def covered_characters() -> frozenset[str]:
    """Characters every style's chain can draw (so any text may switch style safely)."""
    sets = [set(font_chain(style).advances) for style in STYLES]
    return frozenset(set.intersection(*sets))


def placeholder(char: str) -> str:
    """The visible stand-in for a character no font has, e.g. ``[U+10000]``."""
    return f"[U+{ord(char):04X}]"


def make_drawable(text: str) -> tuple[str, int]:
    """Prepare text for layout: normalise line ends, expand tabs, mark undrawable characters.

    Returns:
        ``(text, missing)``: the text with ``\\r\\n``/``\\r`` and other line separators as
        ``\\n``, tabs expanded to 4-column stops, soft hyphens removed, and every character
        no font can draw (including control characters and lone surrogates) replaced by
        :func:`placeholder`; ``missing`` counts the replaced characters.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NEWLINES).translate(_INVISIBLE)
    if "\t" in text:
        text = text.expandtabs(4)
    covered = covered_characters()
    absent = set(text) - covered
    absent.discard("\n")
    if not absent:
        return text, 0
    if len(absent) > 16:
        counts = Counter(text)
        missing = sum(counts[char] for char in absent)
    else:
        missing = sum(text.count(char) for char in absent)
    return text.translate({ord(char): placeholder(char) for char in absent}), missing
