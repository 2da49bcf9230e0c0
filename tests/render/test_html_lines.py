"""Line breaking over styled spans and table column widths (app.render.html_lines): no PDF involved."""

from __future__ import annotations

import pytest

from app.render.glyphs import font_set
from app.render.html_blocks import Span
from app.render.html_lines import break_spans, column_widths


def measure_of(span: Span):
    return font_set().measures[span.style]


def joined(lines) -> list[str]:
    return ["".join(text for _, text in line) for line in lines]


def test_break_spans_fills_lines_across_looks_and_keeps_words_whole():
    plain, bold = Span("eins zwei drei "), Span("vier", bold=True)
    tail = Span(" fünf sechs")
    width = measure_of(plain).width("eins zwei drei ") + measure_of(bold).width("vier")
    lines = break_spans([plain, bold, tail], width + 1, measure_of)
    assert joined(lines) == ["eins zwei drei vier", "fünf sechs"]
    assert lines[0][-1] == (bold, "vier")  # drawn in its own look


def test_a_word_across_spans_is_not_broken_where_the_look_changes():
    spans = [Span("aaaa H"), Span("2", bold=True), Span("O bbbb")]
    width = measure_of(spans[0]).width("aaaa H2O")
    assert joined(break_spans(spans, width - 1, measure_of)) == ["aaaa", "H2O", "bbbb"]


def test_only_a_word_wider_than_the_line_is_cut():
    word = "Donaudampfschifffahrt"
    width = measure_of(Span(word)).width(word)
    assert joined(break_spans([Span(f"a {word} b")], width, measure_of)) == ["a", word, "b"]
    cut = joined(break_spans([Span(word * 3)], width, measure_of))
    assert "".join(cut) == word * 3 and len(cut) == 3


def test_line_breaks_and_empty_lines_are_kept():
    assert joined(break_spans([Span("a\n\nb\n")], 10_000, measure_of)) == ["a", "", "b", ""]


def test_column_widths_follow_the_content():
    assert column_widths([50, 80], [20, 30], 200) == [50, 80]  # all fits: natural widths
    wide = column_widths([300, 100], [50, 50], 200)
    assert sum(wide) == pytest.approx(200) and wide[0] > wide[1] >= 50  # the rest shared by wish
    assert column_widths([300, 300], [150, 250], 200) == pytest.approx([75, 125])  # words cut
