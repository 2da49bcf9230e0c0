"""Font coverage and the placeholders for characters no font has."""

from __future__ import annotations

from app.render.glyphs import covered_characters, font_chain, make_drawable, placeholder


def test_german_greek_cyrillic_are_covered():
    covered = covered_characters()
    for char in "äöüÄÖÜß€·–—…αβγΩЖжЁё":
        assert char in covered, char


def test_uncovered_characters_become_counted_placeholders():
    text, missing = make_drawable("a\U00010000b\ue000c\U00010000")
    assert text == "a[U+10000]b[U+E000]c[U+10000]"
    assert missing == 3


def test_many_distinct_missing_characters_are_all_counted():
    private = "".join(chr(0xE000 + i) for i in range(40)) * 2
    text, missing = make_drawable(private)
    assert missing == 80 and text.count("[U+E0") == 80


def test_line_ends_tabs_and_soft_hyphens_are_normalised_without_counting():
    text, missing = make_drawable("a\r\nb\rc\x0cd\u2028e\tf\u00adg")
    assert text == "a\nb\nc\nd\ne   fg"
    assert missing == 0


def test_control_characters_and_lone_surrogates_are_shown():
    text, missing = make_drawable("x\x00y\x1bz\ud800")
    assert text == f"x{placeholder(chr(0))}y[U+001B]z[U+D800]"
    assert missing == 3


def test_runs_with_a_single_font_is_the_whole_line():
    assert list(font_chain("").runs("Grüße")) == [(0, "Grüße")]
