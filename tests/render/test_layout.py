"""The line breaker as a pure function: width limits, word order, long words, spacing."""

from __future__ import annotations

import random

import pytest
from fpdf import FPDF

from app.render.glyphs import font_set
from app.render.layout import WordMeasure, split_word, wrap_paragraph, wrap_text

# Fixed, uneven advances make the arithmetic easy to follow and the checks strict.
ADVANCES = {" ": 3, **{c: 5 for c in "abcdefghijklmnopqrstuvwxyz"}, "W": 9, "i": 2, "ü": 5, "ß": 6, "-": 4}


def width(line: str) -> float:
    return sum(ADVANCES[c] for c in line)


def random_text(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzWiüß-"
    words = []
    for _ in range(rng.randint(0, 60)):
        length = rng.choice([1, 2, 3, 5, 8, 13, 40]) if rng.random() < 0.9 else rng.randint(50, 400)
        words.append("".join(rng.choice(alphabet) for _ in range(length)))
    separators = [" " * rng.choice([1, 1, 1, 2, 4]) for _ in words]
    return "".join(w + s for w, s in zip(words, separators, strict=True)).rstrip(" ")


def test_random_text_lines_fit_and_keep_every_character_in_order():
    rng = random.Random(20250307)
    for _ in range(400):
        text = random_text(rng)
        max_width = rng.choice([9, 20, 47, 100, 333])
        lines = wrap_paragraph(text, max_width, WordMeasure(ADVANCES))
        for line in lines:
            assert width(line) <= max_width or len(line) == 1, (line, max_width)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_words_that_fit_are_never_split_and_stay_in_order():
    rng = random.Random(7)
    for _ in range(300):
        words = [
            "".join(rng.choice("abcWiü") for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 80))
        ]
        lines = wrap_paragraph(" ".join(words), 100, WordMeasure(ADVANCES))  # every word is at most 81 wide
        assert [w for line in lines for w in line.split(" ")] == words
        assert all(width(line) <= 100 for line in lines)


def test_greedy_fills_each_line_before_breaking():
    lines = wrap_paragraph("aa bb cc dd", 23, WordMeasure(ADVANCES))  # "aa bb" = 23, "aa bb cc" = 36
    assert lines == ["aa bb", "cc dd"]


def test_fifty_thousand_character_word_is_cut_by_cumulative_widths():
    word = "ab" * 25_000
    pieces = split_word(word, 1000, WordMeasure(ADVANCES))
    assert "".join(pieces) == word
    assert all(width(p) <= 1000 for p in pieces)
    assert all(len(p) == 200 for p in pieces)  # 200 × 5 = 1000: each piece is filled exactly


def greedy_pieces(word: str, max_width: float) -> list[str]:
    """The pieces :func:`split_word` must give, one character at a time (the reference)."""
    pieces, piece, used = [], "", 0.0
    for char in word:
        if piece and used + ADVANCES.get(char, 0) > max_width:
            pieces.append(piece)
            piece, used = "", 0.0
        piece += char
        used += ADVANCES.get(char, 0)
    return [*pieces, piece] if piece else pieces


@pytest.mark.parametrize("max_width", [1, 7, 333, 1000, 9000])
def test_a_word_longer_than_the_measuring_window_is_cut_as_one_pass_would(max_width):
    rng = random.Random(max_width)
    word = "".join(rng.choice("abiW\u0301") for _ in range(30_000))  # ́ measures 0
    assert split_word(word, max_width, WordMeasure(ADVANCES)) == greedy_pieces(word, max_width)


def test_cutting_a_word_of_millions_of_characters_keeps_no_number_per_character():
    """A 5 MB word without spaces took ~200 MiB more in the render process than 5 MB of words:
    a width per character (floats and the list of them) for the whole word at once."""
    import tracemalloc

    word = "ab" * 1_000_000
    measure = WordMeasure(ADVANCES)
    tracemalloc.start()
    try:
        pieces = split_word(word, 1000, measure)
        assert measure.width(word) == 5 * len(word)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "".join(pieces) == word
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB while cutting a 2,000,000-character word"


def test_long_word_after_short_words_starts_a_new_line():
    lines = wrap_paragraph("ab " + "c" * 30, 50, WordMeasure(ADVANCES))
    assert lines == ["ab", "c" * 10, "c" * 10, "c" * 10]


def test_character_wider_than_line_gets_a_line_of_its_own():
    assert split_word("WWW", 5, WordMeasure(ADVANCES)) == ["W", "W", "W"]


def test_inner_spaces_and_first_line_indent_survive():
    assert wrap_paragraph("  ab    cd", 1000, WordMeasure(ADVANCES)) == ["  ab    cd"]


def test_no_leading_spaces_on_continuation_lines():
    lines = wrap_paragraph("aaaa    bbbb", 25, WordMeasure(ADVANCES))
    assert lines == ["aaaa", "bbbb"]


def test_newlines_end_lines_and_blank_lines_stay():
    assert wrap_text("ab\n\ncd", 1000, WordMeasure(ADVANCES)) == ["ab", "", "cd"]


@pytest.mark.parametrize("style", ["", "B", "I", "BI"])
def test_our_widths_match_fpdf2(style):
    pdf = FPDF(unit="pt")
    pdf.add_font("NotoSans", style, font_set().main[style].path)
    pdf.set_font("NotoSans", style, 9.5)
    measure = WordMeasure(font_set().chains[style].advances)
    for sample in ("Grüßen aus Mühlenbach", "Καλημέρα σας", "Здравствуйте", "WWW iii 0123456789 €"):
        assert measure.width(sample) * 9.5 / 1000 == pytest.approx(pdf.get_string_width(sample), abs=1e-9)
