"""Font coverage, fallback fonts and the placeholders for characters no font has."""

from __future__ import annotations

from app.render.glyphs import DEFAULT_FONT_DIRS, FontSet, font_set, placeholder, script_name


def drawable(text: str) -> tuple[str, int]:
    out, missing = font_set().make_drawable(text)
    return out, sum(missing.values())


def test_german_greek_cyrillic_are_in_the_main_font():
    main = font_set().chains[""]
    for char in "äöüÄÖÜß€·–—…αβγΩЖжЁё":
        assert main.font_of[char] == 0, char
        assert char in font_set().covered


def test_fallback_fonts_cover_arabic_hebrew_cjk_emoji():
    fonts = font_set()
    assert fonts.absent == ()  # make test installs fonts-noto-core, -cjk, -color-emoji, dejavu
    families = {face.family for face in fonts.fallbacks}
    assert {"NotoSansArabic", "NotoSansHebrew", "NotoSansCJK", "NotoColorEmoji", "DejaVuSans"} <= families
    chain = fonts.chains[""]
    for char, family in (("ش", "NotoSansArabic"), ("ש", "NotoSansHebrew"), ("中", "NotoSansCJK"),
                         ("の", "NotoSansCJK"), ("😊", "NotoColorEmoji")):
        assert chain.faces[chain.font_of[char]].family == family, char
    assert all(char in fonts.covered for char in "ش ש 中 の 😊")


def test_without_fallback_fonts_the_scripts_are_named_as_absent(tmp_path):
    fonts = FontSet((str(tmp_path),))
    assert {"Arabic", "Hebrew", "CJK", "Emoji"} <= set(fonts.absent)
    text, missing = fonts.make_drawable("中文 😊 ok")
    assert text == "[U+4E2D][U+6587] [U+1F60A] ok"
    assert missing == {"CJK": 2, "Emoji": 1}


def test_uncovered_characters_become_counted_placeholders():
    text, missing = drawable("a\U00010000b\ue000c\U00010000")
    assert text == "a[U+10000]b[U+E000]c[U+10000]"
    assert missing == 3
    assert dict(font_set().make_drawable("\ue000")[1]) == {"Private use": 1}


def test_many_distinct_missing_characters_are_all_counted():
    private = "".join(chr(0xE000 + i) for i in range(40)) * 2
    text, missing = drawable(private)
    assert missing == 80 and text.count("[U+E0") == 80


def test_line_ends_tabs_and_soft_hyphens_are_normalised_without_counting():
    text, missing = drawable("a\r\nb\rc\x0cd\u2028e\tf\u00adg")
    assert text == "a\nb\nc\nd\ne   fg"
    assert missing == 0


def test_control_characters_and_lone_surrogates_are_shown():
    text, missing = drawable("x\x00y\x1bz\ud800")
    assert text == f"x{placeholder(chr(0))}y[U+001B]z[U+D800]"
    assert missing == 3


def test_runs_split_by_font():
    chain = font_set().chains[""]
    assert list(chain.runs("Grüße")) == [(0, "Grüße")]
    runs = [(chain.faces[i].family, run) for i, run in chain.runs("ab中文cd")]
    assert runs == [("NotoSans", "ab"), ("NotoSansCJK", "中文"), ("NotoSans", "cd")]


def test_script_names():
    assert [script_name(c) for c in "中ش😊\ue000"] == ["CJK", "Arabic", "Emoji", "Private use"]
    assert DEFAULT_FONT_DIRS == ("/usr/share/fonts",)
