"""The signature revision of a PDF, written directly: one incremental update (ISO 32000-1 §7.5.6)
with an invisible signature field and a reserved ``/Contents``, for the plain files fpdf2 writes.

pyHanko's ``PdfSigner`` parses every object it touches into Python objects and serialises them
again; for an archive PDF whose catalog lists dozens of embedded files that is most of the cost
of a signature. This module reads only what the update needs (trailer, cross-reference table,
catalog, first page), copies the catalog and page dictionaries byte for byte with the new entries
added, and leaves the CMS to pyHanko (``Signer.async_sign``). Its output has the structure
pyHanko's own signing produces (same field, widget, ``/AcroForm``, ``/ESIC`` extension and
signature dictionary) — except that the XMP metadata stream is left as it was.

Kept for `make bench` sign: "incremental writer: pyHanko's writer / ours (CPU, 11 pages, 42
embedded files)". ``tests/signing/test_incremental_fuzz.py`` checks it against pyHanko's writer
on a few hundred generated and broken files.

**What it writes an update for** (:meth:`IncrementalSignature.prepare` is the predicate; any
other file raises :class:`UnsupportedLayout`, and the caller signs it with pyHanko instead):

- a ``%PDF-1.x`` header at offset 0 (PDF 2.0 neither in the header nor in the catalog);
- one revision: ``startxref`` at the end points to a classic cross-reference table of
  well-formed 20-byte entries in non-overlapping subsections, every object in use at
  generation 0 (pyHanko's strict reader refuses higher generations without a preceding free
  entry), none at or beyond the trailer's ``/Size``, and ``/Size`` leaving room for three
  new objects below 8,388,607 (ISO 32000-1 Annex C.2);
- a trailer without ``/Prev``, ``/XRefStm`` or ``/Encrypt``, with an indirect ``/Root``, an
  ``/ID`` (if any) of two direct strings, an ``/Info`` (if any) that is a readable dictionary;
- a catalog that is a plain dictionary without ``/AcroForm``, ``/Extensions`` or ``/Perms``,
  whose ``/Metadata`` (if any) is a well-framed stream with a direct ``/Length``; a page tree
  of plain dictionaries down to the first page, whose ``/Annots`` is absent or a direct array;
- in every dictionary it reads: no duplicate keys, no key written with ``#`` escapes, nesting
  no deeper than :data:`MAX_NESTING`, and syntax it reads to the end.

Those are the objects pyHanko's own writer reads for a signature (so a file one takes, the
other takes too), except the XMP packet's content, which pyHanko parses and updates and this
module leaves as is.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

__all__ = ["MAX_NESTING", "MAX_OBJECT_NUMBER", "IncrementalSignature", "UnsupportedLayout"]

MAX_OBJECT_NUMBER = 8_388_607
"""The largest object number a PDF 1.x reader must support (ISO 32000-1 Annex C.2)."""
MAX_NESTING = 32
"""Arrays and dictionaries nested deeper than this in an object it reads: left to pyHanko."""
DIGESTS = frozenset({"sha256", "sha384", "sha512"})
"""Document digests it computes itself (``hashlib``, fixed length)."""

_CHUNK = 256 * 1024
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
_REF = re.compile(rb"(\d+)" + _WS + rb"+(\d+)" + _WS + rb"+R" + _END)
_STRING_TOKENS = re.compile(rb"[()\\]")
_FLAT_STRING = re.compile(rb"\((?:[^()\\]|\\.)*\)", re.S)
"""A literal string without unescaped parentheses inside (the common case, one regex match)."""
_HEX_STRING = re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>")
_FLAT_ARRAY = re.compile(
    rb"\[(?:" + _WS + rb"|\d+" + _WS + rb"+\d+" + _WS + rb"+R" + _END + rb"|" + _NUMBER + _END
    + rb"|/" + _NAME_CHARS + rb"*|(?:true|false|null)" + _END + rb")*\]"
)  # fmt: skip
"""An array of numbers, references, names and keywords only (no strings, arrays, dicts, comments),
each alternative unambiguous so a mismatch fails fast."""
_STARTXREF = re.compile(rb"startxref[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+%%EOF[\x00\t\n\x0c\r ]*$")
_SUBSECTION = re.compile(rb"(\d+) (\d+)[ \t]*(?:\r\n|\r|\n)")
_ENTRIES = re.compile(rb"(?:\d{10} (?:00000 n|\d{5} f)(?: \r| \n|\r\n))*")
"""Cross-reference entries (ISO 32000-1 §7.5.4), 20 bytes each; in use only at generation 0."""
_ANY_ENTRIES = re.compile(rb"(?:\d{10} \d{5} [nf](?: \r| \n|\r\n))*")
_OBJ_HEADER = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj")
_STREAM_KEYWORD = re.compile(rb"[\x00\t\n\x0c\r ]*stream(?:\r\n|\n)")
_STREAM_END = re.compile(rb"[\x00\t\n\x0c\r ]*endstream[\x00\t\n\x0c\r ]+endobj")
_HEADER = re.compile(rb"%PDF-(\d)\.(\d)")
_BYTE_RANGE_WIDTH = 60
"""Characters reserved for the ``/ByteRange`` array (four numbers, padded with spaces)."""


class UnsupportedLayout(Exception):
    """The file is not one this module writes an update for; sign it with pyHanko instead."""


# --- a minimal reader of PDF syntax (ISO 32000-1 §7.2, §7.3) --------------------------------


def _skip_ws(data: bytes, pos: int) -> int:
    """Offset of the first byte at or after ``pos`` that is not whitespace or a comment."""
    match = _WS_RUN.match(data, pos)
    return match.end() if match else pos


def _name_end(data: bytes, pos: int) -> int:
    """End offset of the run of name characters (a name's or keyword's) starting at ``pos``."""
    match = _NAME_RUN.match(data, pos)
    return match.end() if match else pos


def _value_end(data: bytes, pos: int, depth: int = 0) -> int:
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
            return _dict_entries(data, pos, depth + 1)[1]
        hex_string = _HEX_STRING.match(data, pos)
        if hex_string is None:
            raise UnsupportedLayout("malformed hex string")
        return hex_string.end()
    if c == 0x5B:  # [array]
        flat = _FLAT_ARRAY.match(data, pos)
        if flat:
            return flat.end()
        pos = _skip_ws(data, pos + 1)
        while not data.startswith(b"]", pos):
            pos = _skip_ws(data, _value_end(data, pos, depth + 1))
        return pos + 1
    ref = _REF.match(data, pos)
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


def _dict_entries(data: bytes, pos: int, depth: int = 0) -> tuple[dict[bytes, tuple[int, int]], int]:
    """Keys of the dictionary at ``pos`` (``<<``) and each value's span; and the end offset.

    Raises:
        UnsupportedLayout: malformed, a key twice, or nested too deep.
    """
    entries: dict[bytes, tuple[int, int]] = {}
    pos = _skip_ws(data, pos + 2)
    while not data.startswith(b">>", pos):
        if pos >= len(data) or data[pos] != 0x2F:
            raise UnsupportedLayout("malformed dictionary")
        key_end = _name_end(data, pos + 1)
        start = _skip_ws(data, key_end)
        end = _value_end(data, start, depth)
        key = data[pos:key_end]
        if key in entries:
            raise UnsupportedLayout(f"dictionary has {key.decode('latin-1')} twice")
        entries[key] = (start, end)
        pos = _skip_ws(data, end)
    return entries, pos + 2


def _ref(data: bytes, span: tuple[int, int] | None) -> tuple[int, int]:
    if span is None:
        raise UnsupportedLayout("missing reference")
    match = _REF.fullmatch(data, *span)
    if not match:
        raise UnsupportedLayout("expected an indirect reference")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class _Dict:
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


class _Source:
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
        pos = _skip_ws(table, 4)
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
            pos = _skip_ws(table, sub.end() + 20 * count)
        if not table.startswith(b"trailer", pos):
            raise UnsupportedLayout("no trailer after the cross-reference table")
        ranges = sorted((first, first + count) for first, count, _ in self._sections)
        if any(end > start for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False)):
            raise UnsupportedLayout("overlapping cross-reference subsections")
        trailer_at = _skip_ws(table, pos + 7)
        entries, _ = _dict_entries(table, trailer_at)
        self.trailer = _Dict(0, 0, table, entries)
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
            start = _skip_ws(data, header.end())
            if not data.startswith(b"<<", start):
                raise UnsupportedLayout(f"object {num} {gen} is not a dictionary")
            try:
                entries, end = _dict_entries(data, start)
            except UnsupportedLayout:
                if len(data) < want or want >= _MAX_OBJECT:
                    raise
                want *= 4
                continue
            return data, start, entries, end

    def read_dict(self, num: int, gen: int) -> _Dict:
        """The dictionary object ``num gen``; not a stream."""
        data, start, entries, end = self._read_object(num, gen)
        if not data.startswith(b"endobj", _skip_ws(data, end)):
            raise UnsupportedLayout(f"object {num} {gen} is not a plain dictionary")
        return _Dict(
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


# --- the update --------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    """A PDF text string (ISO 32000-1 §7.9.2.2): printable ASCII as a literal string, anything
    else as UTF-16BE with BOM in a hex string."""
    if text.isascii() and text.isprintable():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<feff" + text.encode("utf-16-be").hex().encode() + b">"


def _pdf_date(when: datetime) -> bytes:
    """``(D:YYYYMMDDHHmmSSZ)`` or with ``+HH'mm`` (ISO 32000-1 §7.9.4), as pyHanko writes ``/M``."""
    offset = when.utcoffset()
    stamp = when.strftime("D:%Y%m%d%H%M%S")
    if offset is None:
        return f"({stamp})".encode()
    seconds = int(offset.total_seconds())
    if seconds == 0:
        return f"({stamp}Z)".encode()
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"({stamp}{sign}{hours:02d}'{minutes:02d}')".encode()


class IncrementalSignature:
    """One signature revision for a PDF, prepared before the CMS exists.

    Use: :meth:`prepare` (reads the input's structure; :class:`UnsupportedLayout` when the
    file is not one this writes), :meth:`digest` (streams the input to the output while hashing
    it and the update around ``/Contents``, ISO 32000-1 §12.8.1), then :meth:`finish` with the
    DER of the CMS signature, which returns the update's bytes to append.

    The update holds, as ISO 32000-1 §12.7 and ETSI EN 319 142-1 §5.3 ask: the catalog with
    ``/AcroForm`` (``/SigFlags 3``) and the ``/ESIC`` developer extension (``/Version /1.7``
    for an older file); the first page with the widget in ``/Annots``; an invisible merged
    field/widget (``/Rect [0 0 0 0]``, flags Print+Locked); the signature dictionary
    (``/Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached``, ``/M``, optional
    ``/Reason /Location /ContactInfo``); and a cross-reference section with ``/Prev`` and a new
    second ``/ID`` element.
    """

    def __init__(self, base_size: int, before: bytes, after: bytes, reserved: int, md_algorithm: str) -> None:
        self._base_size = base_size
        self._before = before
        self._after = after
        self._reserved = reserved
        self._md_algorithm = md_algorithm

    @classmethod
    def prepare(
        cls,
        source: BinaryIO,
        *,
        field_name: str,
        signing_time: datetime,
        bytes_reserved: int,
        md_algorithm: str = "sha256",
        reason: str | None = None,
        location: str | None = None,
        contact: str | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> IncrementalSignature:
        """Read what the update needs from ``source`` (readable, seekable; not modified).

        Args:
            field_name: the new signature field's ``/T``.
            signing_time: the ``/M`` entry (aware datetime).
            bytes_reserved: hex characters reserved for the CMS in ``/Contents``.
            md_algorithm: the document digest (a ``hashlib`` name, e.g. ``"sha256"``).
            reason, location, contact: optional ``/Reason``, ``/Location``, ``/ContactInfo``.

        Raises:
            UnsupportedLayout: the file is not one listed in the module's docstring (also for
                anything it cannot read), or ``md_algorithm`` is not in :data:`DIGESTS`.
            OSError: reading ``source`` failed.
        """
        if md_algorithm not in DIGESTS:
            raise UnsupportedLayout(f"digest {md_algorithm!r} is left to pyHanko")
        try:
            return cls._prepare(
                source, field_name=field_name, signing_time=signing_time, bytes_reserved=bytes_reserved,
                md_algorithm=md_algorithm, reason=reason, location=location, contact=contact,
                random_bytes=random_bytes,
            )  # fmt: skip
        except (ValueError, IndexError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            raise UnsupportedLayout(f"unreadable ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def _prepare(
        cls,
        source: BinaryIO,
        *,
        field_name: str,
        signing_time: datetime,
        bytes_reserved: int,
        md_algorithm: str,
        reason: str | None,
        location: str | None,
        contact: str | None,
        random_bytes: Callable[[int], bytes],
    ) -> IncrementalSignature:
        src = _Source(source)
        root = _ref(src.trailer.data, src.trailer.entries.get(b"/Root"))
        catalog = src.read_dict(*root)
        if catalog.raw(b"/Type") not in (None, b"/Catalog"):
            raise UnsupportedLayout("/Root is not a catalog")
        for key in (b"/AcroForm", b"/Extensions", b"/Perms"):
            if key in catalog.entries:
                raise UnsupportedLayout(f"catalog has {key.decode()}")
        # pyHanko's writer reads (and updates) these two; a file it cannot read is left to it.
        if b"/Info" in src.trailer.entries:
            src.read_dict(*_ref(src.trailer.data, src.trailer.entries[b"/Info"]))
        if b"/Metadata" in catalog.entries:
            src.check_stream(*_ref(catalog.data, catalog.entries[b"/Metadata"]))
        version = src.version
        declared = catalog.raw(b"/Version")
        if declared is not None:
            match = re.fullmatch(rb"/(\d)\.(\d)", declared)
            if not match:
                raise UnsupportedLayout("unreadable catalog /Version")
            version = max(version, (int(match[1]), int(match[2])))
        if version >= (2, 0):
            raise UnsupportedLayout("PDF 2.0")
        page = cls._first_page(src, _ref(catalog.data, catalog.entries.get(b"/Pages")))
        for where, entries in (
            ("trailer", src.trailer.entries),
            ("catalog", catalog.entries),
            ("first page", page.entries),
        ):
            if any(b"#" in key for key in entries):  # /Acro#46orm is /AcroForm (§7.3.5)
                raise UnsupportedLayout(f"the {where} has a key written with # escapes")

        acroform, field, sig = src.next_number, src.next_number + 1, src.next_number + 2
        catalog_entries = {
            b"/AcroForm": b"%d 0 R" % acroform,
            b"/Extensions": b"<< /ESIC << /Type /DeveloperExtensions /BaseVersion /1.7 "
            b"/ExtensionLevel 1 >> >>",
        }
        if version < (1, 7):
            catalog_entries[b"/Version"] = b"/1.7"
        annots = page.raw(b"/Annots")
        if annots is None:
            new_annots = b"[%d 0 R]" % field
        elif annots.startswith(b"["):
            new_annots = annots[:-1] + b" %d 0 R]" % field  # not stripped: a comment may end there
        else:
            raise UnsupportedLayout("the first page's /Annots is not a direct array")

        objects = {
            catalog.num: (catalog.gen, catalog.with_entries(catalog_entries)),
            page.num: (page.gen, page.with_entries({b"/Annots": new_annots})),
            acroform: (0, b"<<\n/Fields [%d 0 R]\n/SigFlags 3\n>>" % field),
            field: (
                0,
                b"<<\n/FT /Sig\n/T %s\n/Type /Annot\n/Subtype /Widget\n/F 132\n/Rect [0 0 0 0]\n"
                b"/P %d %d R\n/V %d 0 R\n>>" % (_pdf_string(field_name), page.num, page.gen, sig),
            ),
        }
        sig_head = [
            b"<<\n/Type /Sig\n/Filter /Adobe.PPKLite\n/SubFilter /ETSI.CAdES.detached\n/M ",
            _pdf_date(signing_time),
            b"\n",
        ]
        for key, text in ((b"/Reason", reason), (b"/Location", location), (b"/ContactInfo", contact)):
            if text:
                sig_head += [key, b" ", _pdf_string(text), b"\n"]
        sig_head.append(b"/Contents ")

        base = src.size
        parts: list[bytes] = [] if src.ends_with_eol else [b"\n"]
        pos = base + len(parts[0]) if parts else base
        offsets: dict[int, tuple[int, int]] = {}
        for num in sorted(objects):
            gen, body = objects[num]
            offsets[num] = (pos, gen)
            chunk = b"%d %d obj\n%s\nendobj\n" % (num, gen, body)
            parts.append(chunk)
            pos += len(chunk)
        offsets[sig] = (pos, 0)
        sig_start = b"%d 0 obj\n" % sig + b"".join(sig_head)
        parts.append(sig_start)
        pos += len(sig_start)
        contents_start = pos
        contents_end = contents_start + bytes_reserved + 2
        before = b"".join(parts)

        # after /Contents: the byte range (fixed width), the end of the dictionary, xref, trailer
        tail_after_range = b"\n>>\nendobj\n"
        xref_at = contents_end + len(b"\n/ByteRange ") + _BYTE_RANGE_WIDTH + len(tail_after_range)
        xref = [b"xref\n0 1\n0000000000 65535 f \n"]
        numbers = sorted(offsets)
        run: list[int] = []
        for num in numbers + [-1]:
            if run and num != run[-1] + 1:
                xref.append(b"%d %d\n" % (run[0], len(run)))
                xref += [b"%010d %05d n \n" % offsets[n] for n in run]
                run = []
            if num >= 0:
                run.append(num)
        trailer = [b"trailer\n<<\n/Size %d\n/Root %d %d R\n" % (sig + 1, catalog.num, catalog.gen)]
        info = src.trailer.raw(b"/Info")
        if info is not None:
            trailer.append(b"/Info " + info + b"\n")
        trailer.append(
            b"/ID ["
            + cls._first_id(src.trailer, random_bytes)
            + b" <"
            + random_bytes(16).hex().encode()
            + b">]\n"
        )
        trailer.append(b"/Prev %d\n>>\nstartxref\n%d\n%%%%EOF\n" % (src.startxref, xref_at))
        rest = b"".join(xref + trailer)
        total = xref_at + len(rest)
        byte_range = b"[0 %d %d %d]" % (contents_start, contents_end, total - contents_end)
        if len(byte_range) > _BYTE_RANGE_WIDTH:
            raise UnsupportedLayout("file too large for the /ByteRange field")
        after = b"\n/ByteRange " + byte_range.ljust(_BYTE_RANGE_WIDTH) + tail_after_range + rest
        return cls(base, before, after, bytes_reserved, md_algorithm)

    @staticmethod
    def _first_page(src: _Source, ref: tuple[int, int]) -> _Dict:
        for _ in range(64):
            node = src.read_dict(*ref)
            kind = node.raw(b"/Type")
            if kind == b"/Page":
                return node
            if kind != b"/Pages":
                raise UnsupportedLayout("page tree node without /Type")
            kids = node.raw(b"/Kids")
            if kids is None or not kids.startswith(b"["):
                raise UnsupportedLayout("page tree /Kids is not a direct array")
            first = _REF.match(kids, _skip_ws(kids, 1))
            if not first:
                raise UnsupportedLayout("empty page tree")
            ref = (int(first[1]), int(first[2]))
        raise UnsupportedLayout("page tree too deep")

    @staticmethod
    def _first_id(trailer: _Dict, random_bytes: Callable[[int], bytes]) -> bytes:
        """The first ``/ID`` element, kept (ISO 32000-1 §14.4), or a new one when there is none.

        Raises:
            UnsupportedLayout: ``/ID`` is not a direct array of two strings.
        """
        ids = trailer.raw(b"/ID")
        if ids is None:
            return b"<" + random_bytes(16).hex().encode() + b">"
        elements = []
        pos = _skip_ws(ids, 1) if ids.startswith(b"[") else len(ids)
        while pos < len(ids) and not ids.startswith(b"]", pos):
            end = _value_end(ids, pos)
            elements.append(ids[pos:end])
            pos = _skip_ws(ids, end)
        if len(elements) != 2 or not all(e[:1] in b"<(" and e[:2] != b"<<" for e in elements):
            raise UnsupportedLayout("trailer /ID is not an array of two strings")
        return elements[0]

    @property
    def size(self) -> int:
        """Length of the update in bytes (what :meth:`finish` returns)."""
        return len(self._before) + self._reserved + 2 + len(self._after)

    def digest(self, source: BinaryIO, sink: Callable[[bytes], object] | None = None) -> bytes:
        """The document digest over ``/ByteRange``: all of ``source`` from offset 0 and the
        update around ``/Contents``. With ``sink``, each chunk of ``source`` is also passed to
        it (to copy the input while it is hashed).

        Raises:
            OSError: reading ``source`` failed.
            UnsupportedLayout: ``source`` changed size since :meth:`prepare`.
        """
        md = hashlib.new(self._md_algorithm)
        source.seek(0)
        left = self._base_size
        while left > 0:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                raise UnsupportedLayout("the input shrank while signing")
            md.update(chunk)
            if sink is not None:
                sink(chunk)
            left -= len(chunk)
        md.update(self._before)
        md.update(self._after)
        return md.digest()

    def finish(self, cms_der: bytes) -> bytes:
        """The update, ``/Contents`` holding ``cms_der`` as uppercase hex padded with zeros.

        Raises:
            ValueError: the CMS is larger than the reservation (message names ``bytes_reserved``).
        """
        hex_cms = cms_der.hex().upper().encode()
        if len(hex_cms) > self._reserved:
            raise ValueError(
                f"the CMS signature ({len(hex_cms)} hex characters) is larger than "
                f"expected: bytes_reserved={self._reserved} is too small"
            )
        return b"".join((self._before, b"<", hex_cms.ljust(self._reserved, b"0"), b">", self._after))
