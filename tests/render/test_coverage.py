"""The start check of which scripts the fonts cover, and STRICT_FONTS in the layout (real fonts,
real renders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import RenderError
from app.render.coverage import SCRIPTS, check_fonts, strict_fonts_error
from app.render.glyphs import DEFAULT_FONT_DIRS, find_font
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, pdftotext, write
from .test_scripts import SAMPLES, art, ticket

CJK_FILE = find_font(("NotoSansCJK-Regular.ttc",), DEFAULT_FONT_DIRS)


def test_without_fallback_fonts_only_the_bundled_scripts_are_covered(tmp_path: Path) -> None:
    coverage = check_fonts((str(tmp_path),))
    assert coverage.covered == ("Latin", "Greek", "Cyrillic")
    missing = dict(coverage.missing)
    assert missing["CJK"] == "fonts-noto-cjk" and missing["Hangul"] == "fonts-noto-cjk"
    assert missing["Emoji"] == "fonts-noto-color-emoji" and missing["Arabic"] == "fonts-noto-core"
    assert coverage.packages == ("fonts-noto-core", "fonts-noto-cjk", "fonts-noto-color-emoji")
    assert {"script": "CJK", "package": "fonts-noto-cjk", "font": "NotoSansCJK-Regular.ttc"} in (
        coverage.describe()
    )


def test_a_folder_with_the_cjk_font_covers_han_kana_and_hangul(tmp_path: Path) -> None:
    assert CJK_FILE is not None
    (tmp_path / "NotoSansCJK-Regular.ttc").symlink_to(CJK_FILE)
    coverage = check_fonts((str(tmp_path),))
    assert "CJK" in coverage.covered and "Hangul" in coverage.covered
    assert "CJK" not in dict(coverage.missing) and "Emoji" in dict(coverage.missing)


def test_a_file_by_the_right_name_without_the_glyphs_does_not_count(tmp_path: Path) -> None:
    # The check reads the cmap: DejaVu Sans under the CJK font's name draws no Han.
    dejavu = find_font(("DejaVuSans.ttf",), DEFAULT_FONT_DIRS)
    assert dejavu is not None, "fonts-dejavu-core is missing: scripts/dev/install-system-deps.sh installs it"
    (tmp_path / "NotoSansCJK-Regular.ttc").symlink_to(dejavu)
    (tmp_path / "NotoColorEmoji.ttf").write_bytes(b"not a font")
    coverage = check_fonts((str(tmp_path),))
    assert "CJK" in dict(coverage.missing) and "Emoji" in dict(coverage.missing)


def test_the_installed_fonts_cover_every_checked_script() -> None:
    missing = [
        s.package
        for s in SCRIPTS
        if s.package != "bundled" and find_font((s.font,), DEFAULT_FONT_DIRS) is None
    ]
    assert not missing, f"fonts missing: {missing} (scripts/dev/install-system-deps.sh installs them)"
    coverage = check_fonts(DEFAULT_FONT_DIRS)
    assert coverage.missing == () and coverage.covered == tuple(s.script for s in SCRIPTS)


def test_missing_glyphs_are_counted_by_script(tmp_path: Path) -> None:
    options = RenderOptions(font_dirs=(str(tmp_path),))
    rendered = render_ticket_pdf(
        ticket(), [art(1, f"{SAMPLES['Chinese']} 😊😊 한국")], [], archived_at=ARCHIVED_AT, options=options
    )
    counts = dict(rendered.missing_by_script)
    assert counts == {"CJK": len(SAMPLES["Chinese"]), "Emoji": 2, "Hangul": 2}
    assert sum(counts.values()) == rendered.missing_glyphs


def test_strict_fonts_fails_a_cjk_ticket_naming_script_package_and_font(tmp_path: Path) -> None:
    options = RenderOptions(font_dirs=(str(tmp_path),), strict_fonts=True)
    target = tmp_path / "out.pdf"
    with pytest.raises(RenderError) as caught:
        render_ticket_pdf(
            ticket(),
            [art(1, SAMPLES["Chinese"])],
            [],
            archived_at=ARCHIVED_AT,
            options=options,
            target=target,
        )
    assert caught.value.transient is False
    message = str(caught.value)
    assert "STRICT_FONTS" in message and "CJK" in message
    assert "fonts-noto-cjk" in message and "NotoSansCJK-Regular.ttc" in message
    assert not target.exists()


def test_strict_fonts_keeps_placeholders_for_what_no_font_package_draws(tmp_path: Path) -> None:
    # A private-use character and a control character: no package fixes them, so no failure.
    options = RenderOptions(font_dirs=(str(tmp_path),), strict_fonts=True)
    rendered = render_ticket_pdf(
        ticket(), [art(1, "Privat \ue000 und Glocke \x07 Ende")], [], archived_at=ARCHIVED_AT, options=options
    )
    assert dict(rendered.missing_by_script) == {"Private use": 1, "Control": 1}
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert "[U+E000]" in text


def test_strict_fonts_passes_when_the_font_is_there(tmp_path: Path) -> None:
    assert CJK_FILE is not None
    (tmp_path / "NotoSansCJK-Regular.ttc").symlink_to(CJK_FILE)
    options = RenderOptions(font_dirs=(str(tmp_path),), strict_fonts=True)
    rendered = render_ticket_pdf(
        ticket(), [art(1, SAMPLES["Chinese"])], [], archived_at=ARCHIVED_AT, options=options
    )
    assert rendered.missing_glyphs == 0


def test_strict_fonts_error_text() -> None:
    assert strict_fonts_error({"Control": 2, "Unassigned": 1}) is None
    message = strict_fonts_error({"Emoji": 1, "CJK": 3})
    assert message is not None
    assert message.startswith("STRICT_FONTS: 4 characters in CJK (fonts-noto-cjk: NotoSansCJK-Regular.ttc), ")
    assert "Emoji (fonts-noto-color-emoji: NotoColorEmoji.ttf)" in message
