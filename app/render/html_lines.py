"""Lines and columns of an HTML body, measured with cached word widths: pure, no PDF.

:func:`break_spans` breaks a paragraph of styled spans into lines (greedy, at spaces only,
like :func:`app.render.layout.wrap_paragraph` for plain text); :func:`column_widths` sizes
table columns from their content. Widths are plain numbers in the unit of the measures given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.render.html_blocks import Span
from app.render.layout import WordMeasure, split_word

#: One drawn piece of a line: the span whose look it has and its text.
Segment = tuple[Span, str]


def break_spans(
    spans: Sequence[Span], max_width: float, measure_of: Callable[[Span], WordMeasure]
) -> list[list[Segment]]:
    """Greedy line breaking over styled spans: words (which may cross spans, as ``H<sub>2</sub>O``)
    are measured with their spans' measures and fill each line; ``"\\n"`` ends a line.

    Breaks happen only at spaces (a no-break space is part of a word); a word wider than
    ``max_width`` is cut (:func:`app.render.layout.split_word`), never a word that fits a line.

    Args:
        spans: the paragraph's text, whitespace already collapsed.
        max_width: the line width, in the measures' unit (1/1000 em of the paragraph's size).
        measure_of: the measure of a span's look.

    Returns:
        The lines, each a list of ``(span, text)`` segments in order; adjacent segments of one
        span are joined; the space at a break is dropped.
    """
    lines: list[list[Segment]] = []
    line: list[Segment] = []
    line_width = 0.0
    pending: Span | None = None  # the span of the space before the next word, if any
    pending_width = 0.0
    word: list[Segment] = []

    def push(segment: Segment) -> None:
        if line and line[-1][0] is segment[0]:
            line[-1] = (segment[0], line[-1][1] + segment[1])
        else:
            line.append(segment)

    def end_line() -> None:
        nonlocal line, line_width, pending
        lines.append(line)
        line, line_width, pending = [], 0.0, None

    def place_word() -> None:
        nonlocal line_width, pending
        if not word:
            return
        widths = [measure_of(span).width(text) for span, text in word]
        total = sum(widths)
        if line and line_width + pending_width + total <= max_width:
            if pending is not None:
                push((pending, " "))
                line_width += pending_width
            pending = None
            for segment in word:
                push(segment)
            line_width += total
            word.clear()
            return
        if line:
            end_line()
        if total <= max_width:
            for segment in word:
                push(segment)
            line_width = total
            word.clear()
            return
        # wider than a line: piece by piece, each cut where it must be
        for (span, text), width in zip(word, widths, strict=True):
            if line_width + width <= max_width:
                push((span, text))
                line_width += width
                continue
            measure = measure_of(span)
            if line:  # the rest of this line takes what fits of the piece
                room = max_width - line_width
                head = split_word(text, room, measure)[0] if room > 0 else ""
                if head and measure.width(head) <= room:
                    push((span, head))
                    text = text[len(head) :]
                end_line()
            pieces = split_word(text, max_width, measure) if text else []
            for piece in pieces[:-1]:
                push((span, piece))
                end_line()
            if pieces:
                push((span, pieces[-1]))
                line_width = measure.width(pieces[-1])
        word.clear()

    broken = False  # the last thing was a "\n": the line after it exists, even empty
    for span in spans:
        for number, segment in enumerate(span.text.split("\n")):
            if number:
                place_word()
                end_line()
                broken = True
            for index, piece in enumerate(segment.split(" ")):
                if index:
                    place_word()
                    if line:
                        pending, pending_width = span, measure_of(span).space
                if piece:
                    word.append((span, piece))
                    broken = False
    place_word()
    if line or not lines or broken:
        lines.append(line)
    return lines


def column_widths(natural: list[float], minimum: list[float], room: float) -> list[float]:
    """Column widths from content, as a browser's automatic table layout does (CSS 2.1 §17.5.2.2):
    each column as wide as its longest cell line when all fit in ``room``; else every column
    its widest word and the rest of ``room`` shared by how much wider each would like to be;
    else the widest words scaled down to ``room`` (their words get cut).

    Args:
        natural: per column, the width of its widest cell on one line (points, padding included).
        minimum: per column, the width of its widest word (points, padding included).
        room: the width available.
    """
    if sum(natural) <= room:
        return natural
    least = sum(minimum)
    if least <= room:
        wish = [max(0.0, n - m) for n, m in zip(natural, minimum, strict=True)]
        total = sum(wish) or 1.0
        return [m + w * (room - least) / total for m, w in zip(minimum, wish, strict=True)]
    return [m * room / least for m in minimum]
