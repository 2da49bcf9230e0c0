"""The signature revision of a PDF, written directly: one incremental update (ISO 32000-1 §7.5.6)
with an invisible signature field and a reserved ``/Contents``, for the plain files fpdf2 writes.

pyHanko's ``PdfSigner`` parses every object it touches into Python objects and serialises them
again; for an archive PDF whose catalog lists dozens of embedded files that is most of the cost
of a signature. This module reads only what the update needs (trailer, cross-reference table,
catalog, first page), copies the catalog and page dictionaries byte for byte with the new entries
added, and leaves the CMS to pyHanko (``Signer.async_sign``). Its output has the structure
pyHanko's own signing produces (same field, widget, ``/AcroForm``, ``/ESIC`` extension and
signature dictionary) — except that the XMP metadata stream is left as it was.

Anything unusual — cross-reference streams, several revisions, encryption, an existing
``/AcroForm`` or ``/Extensions``, PDF 2.0, an indirect ``/Annots`` — raises
:class:`UnsupportedLayout`, and the caller signs with pyHanko instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

__all__ = ["IncrementalSignature", "UnsupportedLayout"]

_CHUNK = 256 * 1024
_TAIL = 4096
_MAX_OBJECT = 1024 * 1024
_REGULAR_RUN = re.compile(rb"[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_WS_RUN = re.compile(rb"(?:[\x00\t\n\x0c\r ]+|%[^\r\n]*)*")
_REF = re.compile(rb"(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+R(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")
_STRING_TOKENS = re.compile(rb"[()\\]")
_FLAT_STRING = re.compile(rb"\((?:[^()\\]|\\.)*\)", re.S)
"""A literal string without unescaped parentheses inside (the common case, one regex match)."""
_FLAT_ARRAY = re.compile(rb"\[[^()<>\[\]{}%]*\]")
"""An array of numbers, references, names and keywords only (no strings, arrays, dicts, comments)."""
_STARTXREF = re.compile(rb"startxref[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+%%EOF[\x00\t\n\x0c\r ]*$")
_SUBSECTION = re.compile(rb"(\d+) (\d+)[ \t]*(?:\r\n|\r|\n)")
_OBJ_HEADER = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj")
_HEADER = re.compile(rb"%PDF-(\d)\.(\d)")
_BYTE_RANGE_WIDTH = 60
"""Characters reserved for the ``/ByteRange`` array (four numbers, padded with spaces)."""


class UnsupportedLayout(Exception):
    """The file is not one this module writes an update for; sign it with pyHanko instead."""


# --- a minimal reader of PDF syntax (ISO 32000-1 §7.2, §7.3) --------------------------------


def _skip_ws(data: bytes, pos: int) -> int:
    return _WS_RUN.match(data, pos).end()


def _value_end(data: bytes, pos: int) -> int:
    """End offset of the direct object starting at ``pos`` (whitespace already skipped)."""
    if pos >= len(data):
        raise UnsupportedLayout("object truncated")
    c = data[pos]
    if c == 0x2F:  # /Name
        return _REGULAR_RUN.match(data, pos + 1).end()
    if c == 0x28:  # (literal string)
        simple = _FLAT_STRING.match(data, pos)
        if simple:
            return simple.end()
        depth = 0
        for match in _STRING_TOKENS.finditer(data, pos):
            token = match[0]
            if token == b"\\":
                continue  # handled by the lookbehind below
            if match.start() > 0 and _escaped(data, match.start()):
                continue
            depth += 1 if token == b"(" else -1
            if depth == 0:
                return match.end()
        raise UnsupportedLayout("unterminated string")
    if c == 0x3C:  # <<dict>> or <hex>
        if data.startswith(b"<<", pos):
            return _dict_entries(data, pos)[1]
        end = data.find(b">", pos)
        if end < 0:
            raise UnsupportedLayout("unterminated hex string")
        return end + 1
    if c == 0x5B:  # [array]
        flat = _FLAT_ARRAY.match(data, pos)
        if flat:
            return flat.end()
        pos = _skip_ws(data, pos + 1)
        while not data.startswith(b"]", pos):
            pos = _skip_ws(data, _value_end(data, pos))
        return pos + 1
    ref = _REF.match(data, pos)
    if ref:
        return ref.end()
    end = _REGULAR_RUN.match(data, pos).end()
    if end == pos:
        raise UnsupportedLayout(f"unexpected {data[pos : pos + 1]!r}")
    return end


def _escaped(data: bytes, pos: int) -> bool:
    """Whether the byte at ``pos`` is escaped by an odd number of backslashes before it."""
    n = 0
    while pos - n - 1 >= 0 and data[pos - n - 1] == 0x5C:
        n += 1
    return n % 2 == 1


def _dict_entries(data: bytes, pos: int) -> tuple[dict[bytes, tuple[int, int]], int]:
    """Keys of the dictionary at ``pos`` (``<<``) and each value's span; and the end offset."""
    entries: dict[bytes, tuple[int, int]] = {}
    pos = _skip_ws(data, pos + 2)
    while not data.startswith(b">>", pos):
        if pos >= len(data) or data[pos] != 0x2F:
            raise UnsupportedLayout("malformed dictionary")
        key_end = _REGULAR_RUN.match(data, pos + 1).end()
        start = _skip_ws(data, key_end)
        end = _value_end(data, start)
        entries[data[pos:key_end]] = (start, end)
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
            self._sections.append((first, count, sub.end()))
            pos = _skip_ws(table, sub.end() + 20 * count)
        if not table.startswith(b"trailer", pos):
            raise UnsupportedLayout("no trailer after the cross-reference table")
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
        if any(first + count > self.next_number for first, count, _ in self._sections):
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

    def read_dict(self, num: int, gen: int) -> _Dict:
        """The dictionary object ``num gen``; not a stream."""
        at = self.offset(num, gen)
        want = 4096
        while True:
            self._stream.seek(at)
            data = self._stream.read(want)
            header = _OBJ_HEADER.match(data)
            if not header or (int(header[1]), int(header[2])) != (num, gen):
                raise UnsupportedLayout(f"object {num} {gen} not found at its offset")
            start = _skip_ws(data, header.end())
            try:
                entries, end = _dict_entries(data, start)
            except UnsupportedLayout:
                if len(data) < want or want >= _MAX_OBJECT:
                    raise
                want *= 4
                continue
            if not data.startswith(b"endobj", _skip_ws(data, end)):
                raise UnsupportedLayout(f"object {num} {gen} is not a plain dictionary")
            return _Dict(
                num, gen, data[start:end], {key: (a - start, b - start) for key, (a, b) in entries.items()}
            )


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
            UnsupportedLayout: the file is not a single-revision PDF 1.x with a classic
                cross-reference table, a plain catalog without ``/AcroForm`` and
                ``/Extensions``, and a first page whose ``/Annots`` is absent or a direct array.
            OSError: reading ``source`` failed.
        """
        src = _Source(source)
        root = _ref(src.trailer.data, src.trailer.entries.get(b"/Root"))
        catalog = src.read_dict(*root)
        if catalog.raw(b"/Type") not in (None, b"/Catalog"):
            raise UnsupportedLayout("/Root is not a catalog")
        for key in (b"/AcroForm", b"/Extensions", b"/Perms"):
            if key in catalog.entries:
                raise UnsupportedLayout(f"catalog has {key.decode()}")
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
            b"/Extensions": b"<< /ESIC << /Type /DeveloperExtensions /BaseVersion /1.7 /ExtensionLevel 1 >> >>",
        }
        if version < (1, 7):
            catalog_entries[b"/Version"] = b"/1.7"
        annots = page.raw(b"/Annots")
        if annots is None:
            new_annots = b"[%d 0 R]" % field
        elif annots.startswith(b"["):
            new_annots = annots[:-1].rstrip() + b" %d 0 R]" % field
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
        ids = trailer.raw(b"/ID")
        if ids is not None:
            pos = _skip_ws(ids, 1)
            if ids.startswith(b"<", pos) or ids.startswith(b"(", pos):
                return ids[pos : _value_end(ids, pos)]
        return b"<" + random_bytes(16).hex().encode() + b">"

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
