"""Plain-text line breaking in linear time: words measured once, greedy fill, long words cut.

fpdf2's ``multi_cell`` re-measures the growing line for every character it adds; here every
distinct word is measured once (summing per-character advances) and cached, so a paragraph
costs one pass over its words. Widths are plain numbers in any unit, as long as the
advances and ``max_width`` agree (the renderer uses 1/1000 em, see :mod:`app.render.glyphs`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate, repeat

# Words longer than this are not cached (a 50,000-character token would only waste memory).
_CACHE_WORD_MAX = 64
# Characters measured at a time when a word is cut into pieces (split_word).
_SPLIT_WINDOW = 8192
# Cache entries kept per measure before it is emptied (bounds memory in long-lived workers).
_CACHE_SIZE_MAX = 200_000


class WordMeasure:
    """Measures words from per-character advances, caching each distinct word.

    Args:
        advances: character → advance width. Characters not in it measure ``default``.
        default: the width of unknown characters.
    """

    def __init__(self, advances: Mapping[str, float], default: float = 0) -> None:
        self._advances = advances
        self._default = default
        self._cache: dict[str, float] = {}
        self.space: float = advances.get(" ", default)

    def char_widths(self, word: str) -> list[float]:
        """Advance of each character of ``word``, in order."""
        get, default = self._advances.get, self._default
        return [get(char, default) for char in word]

    def width(self, word: str) -> float:
        """Width of ``word`` (no kerning; the sum of its characters' advances)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        value = sum(map(self._advances.get, word, repeat(self._default)))  # no list: words may be huge
        if len(word) <= _CACHE_WORD_MAX:
            if len(self._cache) >= _CACHE_SIZE_MAX:
                self._cache.clear()
            self._cache[word] = value
        return value


def split_word(word: str, max_width: float, measure: WordMeasure) -> list[str]:
    """Cut a word into pieces no wider than ``max_width`` (each piece holds at least one character).

    Linear in the word's length: cumulative widths of a window of :data:`_SPLIT_WINDOW`
    characters at a time, one binary search per piece, so a word of millions of characters
    never has a number per character in memory (a 5 MB word took ~200 MiB more that way). A
    piece of more than :data:`_SPLIT_WINDOW` characters (zero-width marks only) ends at the
    window's end.
    """
    pieces: list[str] = []
    start, length = 0, len(word)
    while start < length:
        window = word[start : start + _SPLIT_WINDOW]
        size = len(window)
        last = start + size >= length
        cumulative = list(accumulate(measure.char_widths(window)))
        offset, base = 0, 0.0
        while offset < size:
            end = bisect_right(cumulative, base + max_width, lo=offset)
            if end == offset:  # a single character wider than the line: it gets a line of its own
                end = offset + 1
            if end == size and not last and offset > 0:
                break  # this piece may go on past the window: measure it in the next one
            pieces.append(window[offset:end])
            base = cumulative[end - 1]
            offset = end
        start += offset
    return pieces


def wrap_paragraph(paragraph: str, max_width: float, measure: WordMeasure) -> list[str]:
    """Greedy-break one paragraph (no ``\\n``) into lines no wider than ``max_width``.

    Words are the runs between single spaces, so runs of spaces (indentation, aligned
    columns) survive inside a line; one space is consumed at each break and spaces that would
    start a continuation line are dropped. Words wider than a line are cut by
    :func:`split_word`. An empty paragraph gives one empty line.

    Returns:
        The lines, in order; joining them reproduces the paragraph's words in order.
    """
    if not paragraph:
        return [""]
    space = measure.space
    width_of = measure.width
    lines: list[str] = []
    current: list[str] = []
    current_width = 0.0
    for word in paragraph.split(" "):
        word_width = width_of(word)
        if current:
            candidate = current_width + space + word_width
            if candidate <= max_width:
                current.append(word)
                current_width = candidate
                continue
            flushed = " ".join(current).rstrip(" ")
            if flushed:  # a line of nothing but indentation is dropped with its spaces
                lines.append(flushed)
            current = []
            current_width = 0.0
            if not word:
                continue  # the space at a break is consumed
        elif not word and lines:
            continue  # no leading spaces on continuation lines
        if word_width <= max_width:
            current = [word]
            current_width = word_width
            continue
        pieces = split_word(word, max_width, measure)
        lines.extend(pieces[:-1])
        current = [pieces[-1]]
        current_width = width_of(pieces[-1])
    if current:
        lines.append(" ".join(current).rstrip(" ") if lines else " ".join(current))
    return lines


def wrap_text(text: str, max_width: float, measure: WordMeasure) -> list[str]:
    """Break text into lines: every ``\\n`` ends a line, then :func:`wrap_paragraph` per paragraph."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(wrap_paragraph(paragraph, max_width, measure))
    return lines
