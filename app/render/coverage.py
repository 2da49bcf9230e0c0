"""Which scripts the renderer's fonts can draw, checked once at start, and what to install for the rest.

:func:`check_fonts` looks a few representative characters per script (:data:`SCRIPTS`) up in
the cmap of every font the renderer would use for a set of font directories (the bundled Noto
Sans and the fallbacks :class:`app.render.glyphs.FontSet` finds, :data:`app.render.glyphs.FALLBACKS`),
with HarfBuzz, the shaper fpdf2 already uses. The service runs it in a render process at start
(:meth:`app.render.pool.ProcessPoolRenderer.font_coverage`), logs the uncovered scripts once and
reports them on ``/healthz?deep=true``; ``STRICT_FONTS=true`` makes a render that needed one
of them fail (:func:`strict_fonts_error`).

Script names are those :func:`app.render.glyphs.script_name` gives a missing character, so the
start check, the ``missing_glyphs_total{script}`` metric and the notes use one vocabulary.
Packages are Debian's (bookworm): ``fonts-noto-core``, ``fonts-noto-cjk``,
``fonts-noto-color-emoji`` (``docs/reference/rendering.md`` §1.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.render.glyphs import _MAIN_FILES, FALLBACKS, FONT_DIR, find_font


@dataclass(frozen=True, slots=True)
class ScriptSample:
    """A script as the start check tests it.

    Attributes:
        script: its name (as :func:`app.render.glyphs.script_name` names its characters).
        sample: representative characters; the script counts as covered when a font of the
            chain has every one of them.
        package: the Debian package that brings a font for it.
        font: the font file the renderer looks for under ``PDF_FONT_DIRS``.
    """

    script: str
    sample: str
    package: str
    font: str


#: The scripts checked at start, in report order.
SCRIPTS: tuple[ScriptSample, ...] = (
    ScriptSample("Latin", "AZaz09ÄÖÜäöüßÉéçñŁłŒœ€", "bundled", "NotoSans-Regular.ttf"),
    ScriptSample("Greek", "ΑΒΓΩαβγωάή", "bundled", "NotoSans-Regular.ttf"),
    ScriptSample("Cyrillic", "АБВЯабвяЁёЖж", "bundled", "NotoSans-Regular.ttf"),
    ScriptSample("Arabic", "ابتثجحخدذرزسشصضعغفقكلمنهوي", "fonts-noto-core", "NotoSansArabic-Regular.ttf"),
    ScriptSample("Hebrew", "אבגדהוזחטיכלמנסעפצקרשת", "fonts-noto-core", "NotoSansHebrew-Regular.ttf"),
    ScriptSample("Armenian", "ԱԲԳաբգ", "fonts-noto-core", "NotoSansArmenian-Regular.ttf"),
    ScriptSample("Georgian", "აბგდ", "fonts-noto-core", "NotoSansGeorgian-Regular.ttf"),
    ScriptSample("Devanagari", "अआकखगघनमहि", "fonts-noto-core", "NotoSansDevanagari-Regular.ttf"),
    ScriptSample("Thai", "กขคงจฉชซภาษาไทย", "fonts-noto-core", "NotoSansThai-Regular.ttf"),
    # Han (simplified and traditional), Hiragana, Katakana: one font, one package.
    ScriptSample("CJK", "中文字漢語日本国ひらがなカタカナ、。", "fonts-noto-cjk", "NotoSansCJK-Regular.ttc"),
    ScriptSample("Hangul", "한국어글", "fonts-noto-cjk", "NotoSansCJK-Regular.ttc"),
    ScriptSample("Emoji", "😀😊👍🎉🚀", "fonts-noto-color-emoji", "NotoColorEmoji.ttf"),
)

_BY_SCRIPT = {sample.script: sample for sample in SCRIPTS}

#: Kinds of characters no font package draws (``script_name`` of unassigned, private-use,
#: control and surrogate code points): placeholders even with ``STRICT_FONTS=true``.
NOT_A_FONT_MATTER = frozenset({"Private use", "Unassigned", "Control", "Surrogate"})


def package_for(script: str) -> str:
    """The Debian package whose fonts draw ``script`` (``fonts-noto-core`` for scripts not in
    :data:`SCRIPTS`: it holds Noto Sans for some 150 more, and Noto Sans Symbols)."""
    sample = _BY_SCRIPT.get(script)
    return sample.package if sample is not None else "fonts-noto-core"


def font_for(script: str) -> str:
    """The font file the renderer looks for to draw ``script`` (``""`` when it has none)."""
    sample = _BY_SCRIPT.get(script)
    if sample is not None:
        return sample.font
    return next((fallback.files[0] for fallback in FALLBACKS if fallback.script == script), "")


@dataclass(frozen=True, slots=True)
class FontCoverage:
    """The result of :func:`check_fonts`.

    Attributes:
        fonts: the font files checked, in chain order (the bundled main font first).
        covered: scripts every sample character of which a font has.
        missing: ``(script, package)`` of every other script, in :data:`SCRIPTS` order.
    """

    fonts: tuple[str, ...]
    covered: tuple[str, ...]
    missing: tuple[tuple[str, str], ...]

    @property
    def packages(self) -> tuple[str, ...]:
        """The Debian packages that would cover :attr:`missing`, each once, in order."""
        return tuple(dict.fromkeys(package for _, package in self.missing))

    def describe(self) -> list[dict[str, str]]:
        """:attr:`missing` as JSON-ready ``{"script", "package", "font"}`` entries."""
        return [{"script": s, "package": p, "font": font_for(s)} for s, p in self.missing]


def _has_glyphs(path: str, index: int, code_points: list[int]) -> set[int]:
    """The ``code_points`` the font's cmap maps to a glyph (an unreadable file maps none).

    HarfBuzz looks each one up in the memory-mapped cmap: nothing is decoded into Python
    objects (fontTools' ``getBestCmap`` of Noto Sans CJK would raise a render process's peak
    memory by some 40 MB, once, at start).
    """
    import uharfbuzz  # in the render process only; the text shaper fpdf2 uses

    try:
        blob = uharfbuzz.Blob.from_file_path(path)
    except (OSError, uharfbuzz.HarfBuzzError):  # unreadable (a file that is no font maps nothing)
        return set()
    font = uharfbuzz.Font(uharfbuzz.Face(blob, index))
    return {cp for cp in code_points if font.get_nominal_glyph(cp) is not None}


def check_fonts(font_dirs: tuple[str, ...]) -> FontCoverage:
    """Which :data:`SCRIPTS` the renderer's fonts for ``font_dirs`` cover.

    Looks the sample characters up in each font's cmap (a few ms in all) and keeps nothing,
    so a render process that runs this does not hold the fallbacks' tables.
    """
    files = [(str(FONT_DIR / _MAIN_FILES[""]), 0)]
    for fallback in FALLBACKS:
        path = find_font(fallback.files, font_dirs)
        if path is not None:
            files.append((path, fallback.index))
    wanted = sorted({ord(char) for sample in SCRIPTS for char in sample.sample})
    code_points: set[int] = set()
    for path, index in files:
        code_points |= _has_glyphs(path, index, [cp for cp in wanted if cp not in code_points])
    covered: list[str] = []
    missing: list[tuple[str, str]] = []
    for sample in SCRIPTS:
        if all(ord(char) in code_points for char in sample.sample):
            covered.append(sample.script)
        else:
            missing.append((sample.script, sample.package))
    return FontCoverage(tuple(path for path, _ in files), tuple(covered), tuple(missing))


def strict_fonts_error(missing: Mapping[str, int]) -> str | None:
    """The cause of a ``STRICT_FONTS=true`` failure for the characters drawn without a font
    (count by script), or ``None`` when all of them are of a kind no font package draws
    (:data:`NOT_A_FONT_MATTER`): e.g. ``"STRICT_FONTS: 12 characters in CJK have no font:
    install fonts-noto-cjk (NotoSansCJK-Regular.ttc) under PDF_FONT_DIRS"``."""
    scripts = {script: count for script, count in missing.items() if script not in NOT_A_FONT_MATTER}
    if not scripts:
        return None
    parts = []
    for script in sorted(scripts):
        font = font_for(script)
        parts.append(f"{script} ({package_for(script)}{': ' + font if font else ''})")
    count = sum(scripts.values())
    return (
        f"STRICT_FONTS: {count} character{'s' if count != 1 else ''} in "
        f"{', '.join(parts)} had no font; install the package(s) so that the font is under "
        "PDF_FONT_DIRS, or set STRICT_FONTS=false to archive with placeholders"
    )
