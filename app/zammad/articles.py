"""A ticket's articles parsed one at a time from Zammad's ``by_ticket`` answer, never all at once.

``GET /api/v1/ticket_articles/by_ticket/{id}`` answers with one JSON array of every article
(18 MB for a 5,000-article ticket of the Zammad mix). Parsed whole, its Python objects take
about twice that, on top of the bytes the archive embeds anyway, in the service's main
process, which only walks the articles a few times to choose images and originals.

:func:`split_articles` finds where each article of the array starts and ends and keeps only
those offsets; :class:`LazyArticles` is a sequence over the same bytes that parses an article
when it is read (``orjson``, from a zero-copy slice), so at most one article's objects exist
at a time unless the caller keeps them.

How an element's end is found: each ``}`` followed by ``,`` and ``{`` (or by ``]`` and the end
of the answer) is a candidate; the first candidate at which the slice from the element's
``{`` is a complete JSON document is the element's end (a ``}`` inside a string leaves the
string unterminated, one inside a nested object leaves braces open; JSON allows nothing
after a complete document). Answers this does not fit — not an array of objects, or one
that makes the search try too much (:data:`MAX_PARSE_FACTOR`) — are left to a whole parse.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

import orjson

LAZY_ARTICLES_FROM_BYTES = 1024 * 1024
"""A ``by_ticket`` answer of at least this many bytes is read one article at a time
(:func:`lazy_articles`); a smaller one is parsed whole, once: the service walks a ticket's
articles several times (the workflow five, the layout three), and an everyday ticket's few
hundred KB of objects are not worth a parse per article per walk."""

MAX_PARSE_FACTOR = 4
"""The search gives up (the caller parses the whole answer) once it has parsed this many
times the answer's size in candidate slices (bodies full of ``},{``)."""

_CANDIDATE = re.compile(rb"\}\s*(?:,\s*(?=\{)|\]\s*$)")
_START = re.compile(rb"\s*\[\s*")
_EMPTY = re.compile(rb"\s*\[\s*\]\s*")


class LazyArticles(Sequence[dict[str, Any]]):
    """The articles of one ``by_ticket`` answer, each parsed when read (a fresh ``dict``
    every time: changes to one are not kept).

    Args:
        raw: the answer's bytes (kept, not copied).
        bounds: ``start, end`` byte offsets of each article in ``raw``, flat.
    """

    def __init__(self, raw: bytes, bounds: array[int]) -> None:
        self._raw = memoryview(raw)
        self._bounds = bounds

    def __len__(self) -> int:
        return len(self._bounds) // 2

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("article index out of range")
        article: dict[str, Any] = orjson.loads(
            self._raw[self._bounds[2 * index] : self._bounds[2 * index + 1]]
        )
        return article

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(len(self)):
            yield self[index]

    def __reduce__(self) -> tuple[type[list[dict[str, Any]]], tuple[list[dict[str, Any]]]]:
        """Pickled as the plain list of its articles (a process pool's arguments)."""
        return list, (list(self),)


def lazy_articles(raw: bytes) -> LazyArticles | None:
    """The articles of a big ``by_ticket`` answer (:data:`LAZY_ARTICLES_FROM_BYTES` or more)
    as a :class:`LazyArticles`; ``None`` for a smaller one, or one :func:`split_articles`
    cannot split: the caller parses it whole then (and reports its error)."""
    return split_articles(raw) if len(raw) >= LAZY_ARTICLES_FROM_BYTES else None


def split_articles(raw: bytes) -> LazyArticles | None:
    """The articles of ``raw`` (a JSON array of objects) as a :class:`LazyArticles`, every
    one of them parsed once here to check it; ``None`` when ``raw`` is not such an array or
    the search gives up (see the module docstring): parse it whole then, for its error."""
    if _EMPTY.fullmatch(raw):
        return LazyArticles(raw, array("q"))
    start = _START.match(raw)
    if start is None or raw[start.end() : start.end() + 1] != b"{":
        return None
    view = memoryview(raw)
    bounds = array("q")
    position, budget = start.end(), MAX_PARSE_FACTOR * len(raw)
    for candidate in _CANDIDATE.finditer(raw, position):
        end = candidate.start() + 1
        budget -= end - position
        if budget < 0:
            return None
        try:
            orjson.loads(view[position:end])
        except orjson.JSONDecodeError:
            continue
        bounds.extend((position, end))
        position = candidate.end()
        if position == len(raw):
            return LazyArticles(raw, bounds)
    return None
