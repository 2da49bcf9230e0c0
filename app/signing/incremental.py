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
  no deeper than :data:`~app.signing.pdf_syntax.MAX_NESTING`, and syntax it reads to the end
  (the reading is :mod:`app.signing.pdf_syntax`).

Those are the objects pyHanko's own writer reads for a signature (so a file one takes, the
other takes too), except the XMP packet's content, which pyHanko parses and updates and this
module leaves as is.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import BinaryIO

from app.signing.pdf_syntax import (
    REF,
    PdfDict,
    PdfSource,
    UnsupportedLayout,
    indirect_ref,
    skip_ws,
    value_end,
)

__all__ = ["DIGESTS", "IncrementalSignature", "UnsupportedLayout"]

DIGESTS = frozenset({"sha256", "sha384", "sha512"})
"""Document digests it computes itself (``hashlib``, fixed length)."""

_CHUNK = 256 * 1024
_BYTE_RANGE_WIDTH = 60
"""Characters reserved for the ``/ByteRange`` array (four numbers, padded with spaces)."""


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
        src = PdfSource(source)
        root = indirect_ref(src.trailer.data, src.trailer.entries.get(b"/Root"))
        catalog = src.read_dict(*root)
        if catalog.raw(b"/Type") not in (None, b"/Catalog"):
            raise UnsupportedLayout("/Root is not a catalog")
        for key in (b"/AcroForm", b"/Extensions", b"/Perms"):
            if key in catalog.entries:
                raise UnsupportedLayout(f"catalog has {key.decode()}")
        # pyHanko's writer reads (and updates) these two; a file it cannot read is left to it.
        if b"/Info" in src.trailer.entries:
            src.read_dict(*indirect_ref(src.trailer.data, src.trailer.entries[b"/Info"]))
        if b"/Metadata" in catalog.entries:
            src.check_stream(*indirect_ref(catalog.data, catalog.entries[b"/Metadata"]))
        version = src.version
        declared = catalog.raw(b"/Version")
        if declared is not None:
            match = re.fullmatch(rb"/(\d)\.(\d)", declared)
            if not match:
                raise UnsupportedLayout("unreadable catalog /Version")
            version = max(version, (int(match[1]), int(match[2])))
        if version >= (2, 0):
            raise UnsupportedLayout("PDF 2.0")
        page = cls._first_page(src, indirect_ref(catalog.data, catalog.entries.get(b"/Pages")))
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
    def _first_page(src: PdfSource, ref: tuple[int, int]) -> PdfDict:
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
            first = REF.match(kids, skip_ws(kids, 1))
            if not first:
                raise UnsupportedLayout("empty page tree")
            ref = (int(first[1]), int(first[2]))
        raise UnsupportedLayout("page tree too deep")

    @staticmethod
    def _first_id(trailer: PdfDict, random_bytes: Callable[[int], bytes]) -> bytes:
        """The first ``/ID`` element, kept (ISO 32000-1 §14.4), or a new one when there is none.

        Raises:
            UnsupportedLayout: ``/ID`` is not a direct array of two strings.
        """
        ids = trailer.raw(b"/ID")
        if ids is None:
            return b"<" + random_bytes(16).hex().encode() + b">"
        elements = []
        pos = skip_ws(ids, 1) if ids.startswith(b"[") else len(ids)
        while pos < len(ids) and not ids.startswith(b"]", pos):
            end = value_end(ids, pos)
            elements.append(ids[pos:end])
            pos = skip_ws(ids, end)
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
