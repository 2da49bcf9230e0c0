"""Which characters our fonts can draw, how wide they are, and the visible placeholders for the rest.

The main font, Noto Sans in four styles, ships in ``app/render/fonts``. Other scripts come
from fallback fonts found by file name under the font directories (Debian's
``fonts-noto-core``, ``fonts-noto-cjk``, ``fonts-noto-color-emoji``, ``fonts-dejavu-core``
install them under ``/usr/share/fonts``). A fallback that is not installed is simply absent:
its characters become placeholders and :attr:`FontSet.absent` names it.

Font files are read once per process (fontTools) and their cmap and advance widths kept in
memory, so every document after the first measures text without touching the files again.
The fallback fonts are read only when a text first needs them (:meth:`FontSet.load_fallbacks`):
Noto Sans CJK alone costs a render process tens of MB.
Widths use fpdf2's own rounding (``round(1000 / unitsPerEm * w)``), so our line breaker and
fpdf2 agree on every line's width.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from app.render.layout import WordMeasure

FONT_DIR = Path(__file__).parent / "fonts"

#: Where fallback fonts are looked for (searched recursively, first file name match wins).
DEFAULT_FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts",)

#: fpdf2 family name of the main font.
MAIN_FAMILY = "NotoSans"

#: Font styles as fpdf2 names them: regular, bold, italic, bold italic.
STYLES = ("", "B", "I", "BI")

_MAIN_FILES = {
    "": "NotoSans-Regular.ttf",
    "B": "NotoSans-Bold.ttf",
    "I": "NotoSans-Italic.ttf",
    "BI": "NotoSans-BoldItalic.ttf",
}


@dataclass(frozen=True, slots=True)
class FontFace:
    """One font file as fpdf2 registers it.

    Attributes:
        family: fpdf2 family name.
        style: fpdf2 style it is registered under.
        path: the font file.
        index: face number inside a TrueType/OpenType collection (``.ttc``), else 0.
    """

    family: str
    style: str
    path: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class Fallback:
    """A fallback font: tried for characters the main font lacks, regular style only.

    Attributes:
        family: fpdf2 family name.
        files: candidate file names, the first one found is used.
        index: face number in a collection (Noto Sans CJK: 0 JP, 1 KR, 2 SC, 3 TC).
        script: what it covers, as named in notes when it is missing.
    """

    family: str
    files: tuple[str, ...]
    index: int
    script: str


#: Fallback fonts in the order they are tried.
FALLBACKS: tuple[Fallback, ...] = (
    Fallback("NotoSansArabic", ("NotoSansArabic-Regular.ttf", "NotoNaskhArabic-Regular.ttf"), 0, "Arabic"),
    Fallback("NotoSansHebrew", ("NotoSansHebrew-Regular.ttf",), 0, "Hebrew"),
    Fallback("NotoSansArmenian", ("NotoSansArmenian-Regular.ttf",), 0, "Armenian"),
    Fallback("NotoSansGeorgian", ("NotoSansGeorgian-Regular.ttf",), 0, "Georgian"),
    Fallback("NotoSansDevanagari", ("NotoSansDevanagari-Regular.ttf",), 0, "Devanagari"),
    Fallback("NotoSansThai", ("NotoSansThai-Regular.ttf",), 0, "Thai"),
    Fallback("NotoSansCJK", ("NotoSansCJK-Regular.ttc",), 2, "CJK"),
    Fallback("NotoColorEmoji", ("NotoColorEmoji.ttf",), 0, "Emoji"),
    Fallback("NotoSansSymbols2", ("NotoSansSymbols2-Regular.ttf",), 0, "Symbols"),
    Fallback("NotoSansSymbols", ("NotoSansSymbols-Regular.ttf",), 0, "Symbols"),
    Fallback("DejaVuSans", ("DejaVuSans.ttf",), 0, "Symbols"),
)

#: Fonts the HTML ``<pre>``/``<code>`` style may use (monospace), first found wins.
MONO_FILES = ("NotoSansMono-Regular.ttf", "DejaVuSansMono.ttf")
MONO_FAMILY = "Mono"

# Characters that are formatting, not text: removed before layout.
_INVISIBLE = {0x00AD: None}  # soft hyphen: a line-break hint, never drawn mid-word
# Line separators of every flavour become "\n"; tabs are expanded separately.
_NEWLINES = {0x0B: "\n", 0x0C: "\n", 0x85: "\n", 0x2028: "\n", 0x2029: "\n"}
#: Any character of either table: a search is much cheaper than a translate that changes nothing.
_TRANSLATED = re.compile("[" + "".join(re.escape(chr(cp)) for cp in (*_NEWLINES, *_INVISIBLE)) + "]")

MAX_ZERO_WIDTH_RUN = 30
"""Most characters without an advance of their own kept in a row: combining marks (Unicode
general category Mn, Me) and format characters (Cf); the rest of a longer run is dropped. No
language needs more than 30 (the limit of Unicode's Stream-Safe Text Format, UAX #15 §13);
thousands of them ("Zalgo" text) pile onto one glyph, and with a right-to-left mark in the
paragraph every one of them made fpdf2 re-shape the whole line: 8,000 marks took 15 s, 50,000
would take hours (the originals keep the text as it was)."""


@cache
def _zero_width() -> frozenset[str]:
    """Every Mn, Me and Cf character (built once per process from the planes that hold them:
    0, 1 and 14; ~40 ms)."""
    return frozenset(
        chr(code)
        for code in (*range(0x20000), *range(0xE0000, 0xE1000))
        if unicodedata.category(chr(code)) in ("Mn", "Me", "Cf")
    )


def _cut_zero_width_runs(text: str, marks: set[str]) -> str:
    """``text`` with every run of more than :data:`MAX_ZERO_WIDTH_RUN` characters of ``marks``
    (the Mn/Me/Cf characters it holds) cut to its first ones."""
    chars = "".join(re.escape(mark) for mark in sorted(marks))
    return re.sub(f"([{chars}]{{{MAX_ZERO_WIDTH_RUN}}})[{chars}]+", r"\1", text)


#: Text that needs shaping (joining, reordering) or right-to-left layout: Hebrew, Arabic,
#: Syriac, Thaana, NKo, Indic scripts, and the Arabic/Hebrew presentation forms.
COMPLEX = re.compile(
    "[\u0590-\u08ff\u0900-\u0dff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff"
    "\ufb1d-\ufdff\ufe70-\ufefe\u200c\u200d\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


@dataclass(frozen=True, slots=True)
class FontMetrics:
    """The cmap and advance widths of one font file.

    Attributes:
        path: the font file.
        advances: character → advance width in 1/1000 em (font size 1 pt → 0.001 pt).
    """

    path: Path
    advances: dict[str, int]


@cache
def load_metrics(path: str, index: int = 0) -> FontMetrics:
    """Read a font file (face ``index`` of a collection) once per process.

    Raises:
        OSError: the file is missing or unreadable.
    """
    from fontTools.ttLib import TTFont  # here, not at import: the service's main process never reads fonts

    font = TTFont(path, lazy=True, fontNumber=index)
    try:
        scale = 1000 / font["head"].unitsPerEm
        metrics = font["hmtx"].metrics
        advances: dict[str, int] = {}
        for codepoint, glyph in font.getBestCmap().items():
            char = chr(codepoint)
            if unicodedata.category(char) == "Cc":
                continue  # control characters are never drawn, even when the font maps them
            width = metrics[glyph][0]
            advances[char] = 0 if width == 65535 else round(scale * width + 0.001)
    finally:
        font.close()
    return FontMetrics(path=Path(path), advances=advances)


@lru_cache(maxsize=8)
def _font_files(font_dirs: tuple[str, ...]) -> dict[str, str]:
    """File name → path of every font file under ``font_dirs`` (first directory wins)."""
    found: dict[str, str] = {}
    for root in font_dirs:
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                found.setdefault(name, os.path.join(folder, name))
    return found


def find_font(names: tuple[str, ...], font_dirs: tuple[str, ...]) -> str | None:
    """The path of the first of ``names`` found under ``font_dirs``, or ``None``."""
    files = _font_files(font_dirs)
    return next((files[name] for name in names if name in files), None)


class FontChain:
    """The fonts one style is drawn with, first match wins.

    Only the main font (``faces[0]``) is read at first; the fallbacks' cmaps and widths
    (tens of MB for Noto Sans CJK) are merged in by :meth:`load_fallbacks`, which
    :meth:`FontSet.make_drawable` calls the first time a text needs a character the main
    fonts lack. A ticket in Latin, Greek or Cyrillic script never loads them.

    Attributes:
        style: fpdf2 style of the main font (``""``, ``"B"``, ``"I"``, ``"BI"``).
        faces: the fonts in chain order (fallbacks are registered in regular style only).
        advances: character → advance in 1/1000 em, taken from the first font that has it
            (of the fonts loaded so far).
        font_of: character → index into ``faces`` of the font that draws it (likewise).
    """

    def __init__(self, style: str, faces: tuple[FontFace, ...]) -> None:
        self.style = style
        self.faces = faces
        main = load_metrics(faces[0].path, faces[0].index).advances
        self.advances: dict[str, int] = dict(main)
        self.font_of: dict[str, int] = dict.fromkeys(main, 0)
        self.fallbacks_loaded = len(faces) == 1
        #: ``str.translate`` table deleting every character the first face draws.
        self._first_face = dict.fromkeys((ord(char) for char in main if len(char) == 1), None)

    def load_fallbacks(self) -> None:
        """Merge the fallback fonts into :attr:`advances` and :attr:`font_of` (once).

        The dicts are extended in place and the main font's entries never change, so a
        :class:`~app.render.layout.WordMeasure` over :attr:`advances` stays valid and a
        reader in another thread sees either the old or the new entries, never a gap.

        Raises:
            OSError: a fallback font file is missing or unreadable.
        """
        if self.fallbacks_loaded:
            return
        advances: dict[str, int] = {}
        font_of: dict[str, int] = {}
        for index in range(len(self.faces) - 1, 0, -1):  # later fonts first, earlier ones overwrite
            face_advances = load_metrics(self.faces[index].path, self.faces[index].index).advances
            advances.update(face_advances)
            font_of.update(dict.fromkeys(face_advances, index))
        for char in self.font_of:  # the main font's characters stay as they are
            advances.pop(char, None)
            font_of.pop(char, None)
        self.advances.update(advances)
        self.font_of.update(font_of)
        self.fallbacks_loaded = True

    def single_face(self, text: str) -> int | None:
        """The index of the one font that draws all of ``text`` as :meth:`runs` splits it
        (so every substring too), or ``None`` when it takes more than one."""
        if len(self.faces) == 1:
            return 0
        if text.isascii():
            return self.font_of.get("a", 0)
        if not text.translate(self._first_face):
            return 0
        runs = list(self.runs(text))
        return runs[0][0] if len(runs) == 1 else None

    def runs(self, line: str) -> Iterator[tuple[int, str]]:
        """Split ``line`` into maximal runs drawn by one font: ``(font index, text)``."""
        if len(self.faces) == 1:
            yield 0, line
            return
        font_of = self.font_of
        if line.isascii():
            yield font_of.get("a", 0), line
            return
        if not line.translate(self._first_face):  # the first face draws every character
            yield 0, line
            return
        start, current = 0, font_of.get(line[0], 0) if line else 0
        for i, char in enumerate(line):
            index = font_of.get(char, current)
            if index != current:
                yield current, line[start:i]
                start, current = i, index
        if start < len(line):
            yield current, line[start:]


class FontSet:
    """Every font a document may use, for one set of font directories.

    Attributes:
        main: the main font's face per style.
        fallbacks: fallback faces found, in chain order.
        absent: scripts whose fallback font was not found (e.g. ``("CJK", "Emoji")``).
        mono: a monospace face for ``<pre>``/``<code>``, or ``None``.
        chains: the :class:`FontChain` per style.
        covered: characters every style's chain can draw.
    """

    def __init__(self, font_dirs: tuple[str, ...]) -> None:
        self.main = {
            style: FontFace(MAIN_FAMILY, style, str(FONT_DIR / name)) for style, name in _MAIN_FILES.items()
        }
        fallbacks: list[FontFace] = []
        absent: list[str] = []
        for fallback in FALLBACKS:
            path = find_font(fallback.files, font_dirs)
            if path is None:
                if fallback.script not in absent:
                    absent.append(fallback.script)
            else:
                fallbacks.append(FontFace(fallback.family, "", path, fallback.index))
        found_scripts = {f.script for f in FALLBACKS if find_font(f.files, font_dirs)}
        self.absent = tuple(script for script in absent if script not in found_scripts)
        self.fallbacks = tuple(fallbacks)
        mono = find_font(MONO_FILES, font_dirs)
        self.mono = FontFace(MONO_FAMILY, "", mono) if mono else None
        self.chains = {style: FontChain(style, (self.main[style], *self.fallbacks)) for style in STYLES}
        self.covered = self._coverage()
        self.measures = {style: WordMeasure(self.chains[style].advances) for style in STYLES}
        self._load_lock = threading.Lock()

    @property
    def fallbacks_loaded(self) -> bool:
        """Whether the fallback fonts' metrics are loaded (:meth:`load_fallbacks`)."""
        return all(chain.fallbacks_loaded for chain in self.chains.values())

    def load_fallbacks(self) -> None:
        """Load the fallback fonts' cmaps and widths into every chain and widen :attr:`covered`.

        Called by :meth:`make_drawable` for the first text with a character the main fonts
        lack; call it directly to inspect the whole chain. Idempotent and thread-safe.

        Raises:
            OSError: a fallback font file is missing or unreadable.
        """
        with self._load_lock:
            if self.fallbacks_loaded:
                return
            for chain in self.chains.values():
                chain.load_fallbacks()
            self.covered = self._coverage()

    def _coverage(self) -> frozenset[str]:
        sets = [set(self.chains[style].advances) for style in STYLES]
        return frozenset(set.intersection(*sets))

    def make_drawable(self, text: str) -> tuple[str, Counter[str]]:
        """Prepare text for layout: normalise line ends, expand tabs, mark undrawable characters.

        The first text with a character the main fonts lack loads the fallback fonts
        (:meth:`load_fallbacks`), so every text drawn must pass through here first.

        Returns:
            ``(text, missing)``: the text with ``\\r\\n``/``\\r`` and other line separators
            as ``\\n``, tabs expanded to 4-column stops, soft hyphens removed, runs of
            combining marks and format characters cut to :data:`MAX_ZERO_WIDTH_RUN`, invisible
            format characters no font has (variation selectors, joiners, bidi marks)
            removed, and every other character no font can draw (including control
            characters and lone surrogates) replaced by :func:`placeholder`; ``missing``
            counts the replaced characters by script (:func:`script_name`).
        """
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if _TRANSLATED.search(text):
            text = text.translate(_NEWLINES).translate(_INVISIBLE)
        if "\t" in text:
            text = text.expandtabs(4)
        missing: Counter[str] = Counter()
        if text.isascii() and text.isprintable():
            return text, missing
        chars = set(text)
        if len(text) > MAX_ZERO_WIDTH_RUN and (marks := chars & _zero_width()):
            text = _cut_zero_width_runs(text, marks)  # keeps every character, so ``chars`` holds
        absent = chars - self.covered
        absent.discard("\n")
        if absent and not self.fallbacks_loaded:
            self.load_fallbacks()
            absent -= self.covered
        if not absent:
            return text, missing
        table: dict[int, str | None] = {}
        counts = Counter(text) if len(absent) > 16 else None
        for char in absent:
            if unicodedata.category(char) == "Cf" and not _is_surrogate(char):
                table[ord(char)] = None  # invisible formatting: nothing to draw, nothing lost
                continue
            table[ord(char)] = placeholder(char)
            missing[script_name(char)] += counts[char] if counts is not None else text.count(char)
        return text.translate(table), missing


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


@lru_cache(maxsize=4)
def font_set(font_dirs: tuple[str, ...] = DEFAULT_FONT_DIRS) -> FontSet:
    """The process-wide :class:`FontSet` for ``font_dirs``."""
    return FontSet(tuple(font_dirs))


def placeholder(char: str) -> str:
    """The visible stand-in for a character no font has, e.g. ``[U+10000]``."""
    return f"[U+{ord(char):04X}]"


_SCRIPT_RANGES = (
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x08FF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x1100, 0x11FF, "Hangul"),
    (0x2E80, 0x9FFF, "CJK"),
    (0xAC00, 0xD7AF, "Hangul"),
    (0xF900, 0xFAFF, "CJK"),
    (0xFB1D, 0xFB4F, "Hebrew"),
    (0xFB50, 0xFDFF, "Arabic"),
    (0xFE70, 0xFEFF, "Arabic"),
    (0xFF00, 0xFFEF, "CJK"),
    (0x1F000, 0x1FAFF, "Emoji"),
    (0x20000, 0x3FFFF, "CJK"),
)


def script_name(char: str) -> str:
    """A readable name of the script or kind of ``char``, for notes about missing glyphs.

    Common scripts by range (``"CJK"``, ``"Arabic"``, ``"Emoji"``, …); private-use,
    unassigned, control and surrogate code points by their kind; others by the first word
    of their Unicode name (``"Tifinagh"``, ``"Cuneiform"``).
    """
    code = ord(char)
    for low, high, name in _SCRIPT_RANGES:
        if low <= code <= high:
            return name
    category = unicodedata.category(char)
    kinds = {"Co": "Private use", "Cn": "Unassigned", "Cc": "Control", "Cs": "Surrogate"}
    if category in kinds:
        return kinds[category]
    if category == "So":
        return "Symbols"
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0].title() if name else "Other"
