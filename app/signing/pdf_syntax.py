"""A strict reader of the little PDF syntax the direct signature revision writer needs.

ISO 32000-1 §7.2–7.5: tokens and direct objects (read as byte spans, never as Python objects),
dictionaries, and a single revision's classic cross-reference table with its trailer
(:class:`PdfSource`). It reads what :mod:`app.signing.incremental` copies or checks, and raises
:class:`UnsupportedLayout` for anything it does not read to the end or would read differently
from pyHanko's strict reader, so that file is signed by pyHanko instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "MAX_NESTING",
    "MAX_OBJECT_NUMBER",
    "REF",
    "PdfDict",
    "PdfSource",
    "UnsupportedLayout",
    "dict_entries",
    "indirect_ref",
    "skip_ws",
    "value_end",
]

MAX_OBJECT_NUMBER = 8_388_607
"""The largest object number a PDF 1.x reader must support (ISO 32000-1 Annex C.2)."""
MAX_NESTING = 32
"""Arrays and dictionaries nested deeper than this in an object it reads: left to pyHanko."""

_TAIL = 4096
_MAX_OBJECT = 1024 * 1024
_WS = rb"[\x00\t\n\x0c\r ]"
_END = rb"(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])"
"""Lookahead: the token ends here (whitespace, a delimiter or the end follows)."""
_NAME_CHARS = rb"[\x21-\x24\x26\x27\x2a-\x2e\x30-\x3b\x3d\x3f-\x5a\x5c\x5e-\x7a\x7c\x7e]"
"""Printable ASCII except delimiters: what a name or keyword is made of here (ISO 32000-1 §7.3.5
asks for ``#`` escapes for anything else; strict readers refuse it)."""
_NAME_RUN = re.compile(_NAME_CHARS + rb"*")
_NUMBER = rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_BARE = re.compile(_NUMBER + rb"|true|false|null")
"""The direct objects written without delimiters: numbers, booleans, null (§7.3.2–7.3.4, §7.3.9)."""
_WS_RUN = re.compile(rb"(?:[\x00\t\n\x0c\r ]+|%[^\r\n]*)*")
REF = re.compile(rb"(\d+)" + _WS + rb"+(\d+)" + _WS + rb"+R" + _END)
_STRING_TOKENS = re.compile(rb"[()\\]")
_FLAT_STRING = re.compile(rb"\((?:[^()\\]|\\.)*\)", re.S)
"""A literal string without unescaped parentheses inside (the common case, one regex match)."""
_HEX_STRING = re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>")
_FLAT_ARRAY = re.compile(
    rb"\[(?:" + _WS + rb"|\d+" + _WS + rb"+\d+" + _WS + rb"+R" + _END + rb"|" + _NUMBER + _END
    + rb"|/" + _NAME_CHARS + rb"*|(?:true|false|null)" + _END + rb")*+\]"
)  # fmt: skip
"""An array of numbers, references, names and keywords only (no strings, arrays, dicts, comments),
each alternative unambiguous so a mismatch fails fast. The repetitions here and in the
cross-reference patterns are possessive (``*+``): giving back an item can never let the rest
match, and a greedy ``*`` would keep backtracking state for every item (MBs for an array or
table of tens of thousands)."""
_STARTXREF = re.compile(rb"startxref[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+%%EOF[\x00\t\n\x0c\r ]*$")
_SUBSECTION = re.compile(rb"(\d+) (\d+)[ \t]*(?:\r\n|\r|\n)")
_ENTRIES = re.compile(rb"(?:\d{10} (?:00000 n|\d{5} f)(?: \r| \n|\r\n))*+")
"""Cross-reference entries (ISO 32000-1 §7.5.4), 20 bytes each; in use only at generation 0."""
_ANY_ENTRIES = re.compile(rb"(?:\d{10} \d{5} [nf](?: \r| \n|\r\n))*+")
_OBJ_HEADER = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj")
_STREAM_KEYWORD = re.compile(rb"[\x00\t\n\x0c\r ]*stream(?:\r\n|\n)")
_STREAM_END = re.compile(rb"[\x00\t\n\x0c\r ]*endstream[\x00\t\n\x0c\r ]+endobj")
_HEADER = re.compile(rb"%PDF-(\d)\.(\d)")


class UnsupportedLayout(Exception):
    """The file is not one this module writes an update for; sign it with pyHanko instead."""


def skip_ws(data: bytes, pos: int) -> int:
    """Offset of the first byte at or after ``pos`` that is not whitespace or a comment."""
    match = _WS_RUN.match(data, pos)
    return match.end() if match else pos


def _name_end(data: bytes, pos: int) -> int:
    """End offset of the run of name characters (a name's or keyword's) starting at ``pos``."""
    match = _NAME_RUN.match(data, pos)
    return match.end() if match else pos


def value_end(data: bytes, pos: int, depth: int = 0) -> int:
    """End offset of the direct object starting at ``pos`` (whitespace already skipped)."""
    if pos >= len(data):
        raise UnsupportedLayout("object truncated")
    if depth > MAX_NESTING:
        raise UnsupportedLayout(f"arrays or dictionaries nested deeper than {MAX_NESTING}")
    c = data[pos]
    if c == 0x2F:  # /Name
        return _name_end(data, pos + 1)
    if c == 0x28:  # (literal string)
        simple = _FLAT_STRING.match(data, pos)
        if simple:
            return simple.end()
        nesting = 0
        for match in _STRING_TOKENS.finditer(data, pos):
            token = match[0]
            if token == b"\\":
                continue  # handled by the lookbehind below
            if match.start() > 0 and _escaped(data, match.start()):
                continue
            nesting += 1 if token == b"(" else -1
            if nesting == 0:
                return match.end()
        raise UnsupportedLayout("unterminated string")
    if c == 0x3C:  # <<dict>> or <hex>
        if data.startswith(b"<<", pos):
            return dict_entries(data, pos, depth + 1)[1]
        hex_string = _HEX_STRING.match(data, pos)
        if hex_string is None:
            raise UnsupportedLayout("malformed hex string")
        return hex_string.end()
    if c == 0x5B:  # [array]
        flat = _FLAT_ARRAY.match(data, pos)
        if flat:
            return flat.end()
        pos = skip_ws(data, pos + 1)
        while not data.startswith(b"]", pos):
            pos = skip_ws(data, value_end(data, pos, depth + 1))
        return pos + 1
    ref = REF.match(data, pos)
    if ref:
        return ref.end()
    end = _name_end(data, pos)
    if not _BARE.fullmatch(data, pos, end):
        raise UnsupportedLayout(f"unexpected {data[pos : max(end, pos + 1)][:20]!r}")
    return end


def _escaped(data: bytes, pos: int) -> bool:
    """Whether the byte at ``pos`` is escaped by an odd number of backslashes before it."""
    n = 0
    while pos - n - 1 >= 0 and data[pos - n - 1] == 0x5C:
        n += 1
    return n % 2 == 1


def dict_entries(data: bytes, pos: int, depth: int = 0) -> tuple[dict[bytes, tuple[int, int]], int]:
    """Keys of the dictionary at ``pos`` (``<<``) and each value's span; and the end offset.

    Raises:
        UnsupportedLayout: malformed, a key twice, or nested too deep.
    """
    entries: dict[bytes, tuple[int, int]] = {}
    pos = skip_ws(data, pos + 2)
    while not data.startswith(b">>", pos):
        if pos >= len(data) or data[pos] != 0x2F:
            raise UnsupportedLayout("malformed dictionary")
        key_end = _name_end(data, pos + 1)
        start = skip_ws(data, key_end)
        end = value_end(data, start, depth)
        key = data[pos:key_end]
        if key in entries:
            raise UnsupportedLayout(f"dictionary has {key.decode('latin-1')} twice")
        entries[key] = (start, end)
        pos = skip_ws(data, end)
    return entries, pos + 2


def indirect_ref(data: bytes, span: tuple[int, int] | None) -> tuple[int, int]:
    if span is None:
        raise UnsupportedLayout("missing reference")
    match = REF.fullmatch(data, *span)
    if not match:
        raise UnsupportedLayout("expected an indirect reference")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class PdfDict:
    """An indirect dictionary object as read: its number, generation, bytes and entries."""

    num: int
    gen: int
    data: bytes
    entries: dict[bytes, tuple[int, int]]

    def raw(self, key: bytes) -> bytes | None:
        span = self.entries.get(key)
        return None if span is None else self.data[span[0] : span[1]]

    def with_entries(self, replace: dict[bytes, bytes]) -> bytes:
        """The dictionary's bytes with values replaced or keys appended (``key → value bytes``)."""
        out, last = [], 0
        for key, value in replace.items():
            span = self.entries.get(key)
            if span is not None:
                out += [self.data[last : span[0]], value]
                last = span[1]
        kept = self.data[last:-2]
        out.append(kept)
        sep = b"" if kept.endswith((b"\n", b"\r")) else b"\n"
        for key, value in replace.items():
            if key not in self.entries:
                out += [sep, key, b" ", value]
                sep = b"\n"
        out.append(sep + b">>")
        return b"".join(out)


class PdfSource:
    """Random access to the input: the classic cross-reference table of its only revision."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.size = stream.seek(0, os.SEEK_END)
        stream.seek(0)
        head = stream.read(1024)
        header = _HEADER.match(head)
        if not header:
            raise UnsupportedLayout("no %PDF- header at offset 0")
        self.version = (int(header[1]), int(header[2]))
        stream.seek(max(0, self.size - _TAIL))
        tail = stream.read()
        self.ends_with_eol = tail[-1:] in (b"\n", b"\r")
        match = _STARTXREF.search(tail)
        if not match:
            raise UnsupportedLayout("no startxref at the end")
        self.startxref = int(match[1])
        if self.startxref >= self.size:
            raise UnsupportedLayout("startxref beyond the end of the file")
        stream.seek(self.startxref)
        table = stream.read(self.size - self.startxref)
        if not table.startswith(b"xref"):
            raise UnsupportedLayout("cross-reference stream, not table")
        self._table = table
        self._sections: list[tuple[int, int, int]] = []  # first object, count, offset of entries
        pos = skip_ws(table, 4)
        while True:
            sub = _SUBSECTION.match(table, pos)
            if not sub:
                break
            first, count = int(sub[1]), int(sub[2])
            listed = _ENTRIES.match(table, sub.end())
            if listed is None or listed.end() - sub.end() < 20 * count:
                listed = _ANY_ENTRIES.match(table, sub.end())
                if listed is not None and listed.end() - sub.end() >= 20 * count:
                    raise UnsupportedLayout("an object in use at a generation above 0")
                raise UnsupportedLayout("cross-reference entries malformed")
            self._sections.append((first, count, sub.end()))
            pos = skip_ws(table, sub.end() + 20 * count)
        if not table.startswith(b"trailer", pos):
            raise UnsupportedLayout("no trailer after the cross-reference table")
        ranges = sorted((first, first + count) for first, count, _ in self._sections)
        if any(end > start for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False)):
            raise UnsupportedLayout("overlapping cross-reference subsections")
        trailer_at = skip_ws(table, pos + 7)
        entries, _ = dict_entries(table, trailer_at)
        self.trailer = PdfDict(0, 0, table, entries)
        for key in (b"/Prev", b"/XRefStm", b"/Encrypt"):
            if key in entries:
                raise UnsupportedLayout(f"trailer has {key.decode()}")
        size = self.trailer.raw(b"/Size")
        if size is None or not size.isdigit():
            raise UnsupportedLayout("trailer has no /Size")
        self.next_number = int(size)
        if self.next_number + 3 > MAX_OBJECT_NUMBER + 1:
            raise UnsupportedLayout(f"trailer /Size leaves no room below object number {MAX_OBJECT_NUMBER}")
        if any(end > self.next_number for _, end in ranges):
            # New objects numbered from /Size would overwrite listed ones (a broken file).
            raise UnsupportedLayout("the cross-reference table lists objects beyond /Size")

    def offset(self, num: int, gen: int) -> int:
        for first, count, at in self._sections:
            if first <= num < first + count:
                entry = self._table[at + 20 * (num - first) : at + 20 * (num - first) + 18]
                if len(entry) != 18 or entry[17:18] != b"n" or int(entry[11:16]) != gen:
                    raise UnsupportedLayout(f"object {num} {gen} is not in use")
                return int(entry[:10])
        raise UnsupportedLayout(f"object {num} is not in the cross-reference table")

    def _read_object(self, num: int, gen: int) -> tuple[bytes, int, dict[bytes, tuple[int, int]], int]:
        """The bytes read from the object's offset, where its dictionary starts and ends, and
        its entries (spans relative to ``data``)."""
        at = self.offset(num, gen)
        want = 4096
        while True:
            self._stream.seek(at)
            data = self._stream.read(want)
            header = _OBJ_HEADER.match(data)
            if not header or (int(header[1]), int(header[2])) != (num, gen):
                raise UnsupportedLayout(f"object {num} {gen} not found at its offset")
            start = skip_ws(data, header.end())
            if not data.startswith(b"<<", start):
                raise UnsupportedLayout(f"object {num} {gen} is not a dictionary")
            try:
                entries, end = dict_entries(data, start)
            except UnsupportedLayout:
                if len(data) < want or want >= _MAX_OBJECT:
                    raise
                want *= 4
                continue
            return data, start, entries, end

    def read_dict(self, num: int, gen: int) -> PdfDict:
        """The dictionary object ``num gen``; not a stream."""
        data, start, entries, end = self._read_object(num, gen)
        if not data.startswith(b"endobj", skip_ws(data, end)):
            raise UnsupportedLayout(f"object {num} {gen} is not a plain dictionary")
        return PdfDict(
            num, gen, data[start:end], {key: (a - start, b - start) for key, (a, b) in entries.items()}
        )

    def check_stream(self, num: int, gen: int) -> None:
        """That object ``num gen`` is a stream with a direct ``/Length`` followed by
        ``endstream`` and ``endobj`` (ISO 32000-1 §7.3.8), as a strict reader needs it."""
        data, _, entries, end = self._read_object(num, gen)
        span = entries.get(b"/Length")
        length = data[span[0] : span[1]] if span else b""
        keyword = _STREAM_KEYWORD.match(data, end)
        if not length.isdigit() or keyword is None:
            raise UnsupportedLayout(f"object {num} {gen} is not a stream with a direct /Length")
        at = self.offset(num, gen) + keyword.end() + int(length)
        self._stream.seek(at)
        if not _STREAM_END.match(self._stream.read(64)):
            raise UnsupportedLayout(f"stream {num} {gen} does not end where its /Length says")
