"""What an archive says about itself: the XMP packet and, equal to it, the document information dictionary.

Readers look in two places. XMP-aware tools and PDF/A validators read the catalog's
``/Metadata`` stream; ``pdfinfo``, Windows Explorer and Acrobat's document properties read the
document information dictionary (the trailer's ``/Info``, ISO 32000-1 §14.3.3). fpdf2 (2.8.x)
writes ``/Info`` only outside PDF/A mode (``OutputProducer.bufferize``: ``if not
fpdf._compliance``), and its own PDF/A XMP dates itself "now" (``docs/reference/rendering.md``
§5.4), so identical input would not give identical bytes. The archive writes both itself,
from one :class:`DocumentMetadata` dated with the archive time: the XMP packet
(:meth:`DocumentMetadata.xmp`) and, in PDF/A mode, an ``/Info`` whose every entry is equal to
its XMP property (:meth:`DocumentMetadata.info`, written by :class:`ArchiveInfoProducer`), the
pairs ISO 19005-1 §6.7.3 names: Title = ``dc:title``, Author = ``dc:creator`` (one entry),
Subject = ``dc:description``, Keywords = ``pdf:Keywords``, Creator = ``xmp:CreatorTool``,
Producer = ``pdf:Producer``, CreationDate = ``xmp:CreateDate``, ModDate = ``xmp:ModifyDate``
(veraPDF checks them only in its PDF/A-1 profile, rules 6.7.3-1 to -8; tests run it on our
PDF/A-3 files too).
"""

from __future__ import annotations

import re
from binascii import hexlify
from codecs import BOM_UTF16_BE
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from fpdf.errors import FPDFException
from fpdf.output import OutputProducer, PDFInfo, PDFXmpMetadata, PDFXrefAndTrailer
from fpdf.syntax import PDFDate, PDFString

#: fpdf2's compliance profile, and the part and conformance it writes into ``pdfaid``.
PDFA_PROFILE = "PDFA_3B"
PDFA_PART, PDFA_CONFORMANCE = 3, "B"
PDFA_LABEL = f"{PDFA_PART}{PDFA_CONFORMANCE}"

#: Characters XML 1.0 forbids (an XMP packet with them is not well-formed).
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

#: The bidi controls (Unicode's Bidi_Control property, PropList.txt): ALM U+061C, LRM/RLM
#: U+200E/U+200F, the embeddings and overrides U+202A–U+202E and the isolates U+2066–U+2069.
#: Unseen, they reorder what a viewer shows of a text: ``"invoice\u202efdp.exe"`` reads
#: "invoiceexe.pdf". The archive path drops them with every format character
#: (:func:`app.storage.paths.sanitize_segment`, category ``Cf``); the metadata keeps the other
#: format characters (ZWJ in emoji, ZWNJ in Persian words).
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


#: Tab, line feed and carriage return as character references: an XML parser reads them raw as
#: a space in an attribute value and a line feed for a carriage return (XML 1.0 §3.3.3, §2.11).
_XML_WHITESPACE = str.maketrans({"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


MAX_TEXT_CHARS = 4000
"""Longest metadata text, in characters; a longer one is cut and ends with ``…``. As UTF-16BE
in hexadecimal (:class:`InfoText`) it stays under the 32,767 bytes a PDF/A string may hold
(ISO 19005-3 §6.1.13, veraPDF rule 6.1.13-3): a ticket title of 100 KB made the archive fail
PDF/A-3B."""


def cut_text(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and ``…`` when it is longer than ``limit``
    characters (PDF/A strings stay under 32,767 bytes, ISO 19005-3 §6.1.13)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metadata_text(text: str) -> str:
    """``text`` as the file's metadata carries it (the XMP and ``/Info`` texts, the embedded
    files' names and descriptions): without the characters XML 1.0 forbids
    (:data:`XML_INVALID`) and without bidi controls (:data:`BIDI_CONTROLS`), so that no viewer
    shows a reordered, spoofed title or file name. The pages draw the texts as they are."""
    return BIDI_CONTROLS.sub("", XML_INVALID.sub("", text))


def _text(value: str) -> str:
    """``value`` as both the XMP and ``/Info`` carry it (:func:`metadata_text`), at most
    :data:`MAX_TEXT_CHARS` long."""
    return cut_text(metadata_text(value), MAX_TEXT_CHARS)


def _xml(value: str) -> str:
    """``value`` (:func:`_text`) escaped for an XML attribute or element, read back unchanged."""
    return escape(_text(value), quote=True).replace("'", "&apos;").translate(_XML_WHITESPACE)


@dataclass(frozen=True, slots=True)
class DocumentMetadata:
    """The document's title, subject, author, keywords, creating tool, producer, date and language.

    Attributes:
        title, subject, author: ``dc:title``, ``dc:description``, ``dc:creator`` (one entry).
        keywords: ``pdf:Keywords``, comma-separated; ``""`` writes none.
        creator: ``xmp:CreatorTool`` (the service and its version).
        producer: ``pdf:Producer`` (the PDF library and its version).
        date: the archive time (timezone-aware): ``xmp:CreateDate``, ``xmp:ModifyDate`` and
            ``xmp:MetadataDate``, ``/CreationDate`` and ``/ModDate``, in UTC to the second.
        language: a BCP 47 tag for ``dc:language``, matching the catalog's ``/Lang``; ``""``
            writes none.
        relation: ``dc:relation`` (Dublin Core "a related resource"; one entry of its bag):
            for a merged ticket, the ticket it was merged into; ``""`` writes none. ``/Info``
            has no such entry.
    """

    title: str
    subject: str
    author: str
    keywords: str
    creator: str
    producer: str
    date: datetime
    language: str = ""
    relation: str = ""

    def _instant(self) -> datetime:
        """:attr:`date` in UTC, to the second (both the XMP and ``/Info`` dates)."""
        return self.date.astimezone(UTC).replace(microsecond=0)

    def xmp(self, *, pdfa: bool) -> str:
        """The XMP packet body (``<x:xmpmeta>``, no ``<?xpacket>``) for ``FPDF.set_xmp_metadata``.

        The same properties fpdf2 derives from ``set_title`` and friends, but ``xmp:CreateDate``,
        ``xmp:ModifyDate`` and ``xmp:MetadataDate`` are all :attr:`date` instead of the wall
        clock, and, with ``pdfa``, ``pdfaid:part``/``pdfaid:conformance`` (ISO 19005-3 §6.6.4),
        which a user-supplied packet must carry itself. Characters XML 1.0 forbids are dropped.
        """
        stamp = self._instant().isoformat()
        lines = [
            '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="fpdf2">',
            '  <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
            '    <rdf:Description rdf:about=""',
            '        xmlns:dc="http://purl.org/dc/elements/1.1/"',
            '        xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
            '        xmlns:pdf="http://ns.adobe.com/pdf/1.3/"',
            '        xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"',
            f'        xmp:CreatorTool="{_xml(self.creator)}"',
            f'        xmp:CreateDate="{stamp}"',
            f'        xmp:ModifyDate="{stamp}"',
            f'        xmp:MetadataDate="{stamp}"',
            f'        pdf:Producer="{_xml(self.producer)}"',
        ]
        if self.keywords:
            lines.append(f'        pdf:Keywords="{_xml(self.keywords)}"')
        lines.append("      >")
        if pdfa:
            lines += [
                f"      <pdfaid:part>{PDFA_PART}</pdfaid:part>",
                f"      <pdfaid:conformance>{PDFA_CONFORMANCE}</pdfaid:conformance>",
            ]
        lines += [
            "      <dc:format>application/pdf</dc:format>",
            "      <dc:title><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{_xml(self.title)}</rdf:li></rdf:Alt></dc:title>',
            "      <dc:description><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{_xml(self.subject)}</rdf:li></rdf:Alt></dc:description>',
            f"      <dc:creator><rdf:Seq><rdf:li>{_xml(self.author)}</rdf:li></rdf:Seq></dc:creator>",
        ]
        if self.language:
            lines.append(
                f"      <dc:language><rdf:Bag><rdf:li>{_xml(self.language)}</rdf:li></rdf:Bag></dc:language>"
            )
        if self.relation:
            lines.append(
                f"      <dc:relation><rdf:Bag><rdf:li>{_xml(self.relation)}</rdf:li></rdf:Bag></dc:relation>"
            )
        lines += [
            "    </rdf:Description>",
            "  </rdf:RDF>",
            "</x:xmpmeta>",
        ]
        return "\n".join(lines)

    def info(self) -> ArchiveInfo:
        """The document information dictionary equal to :meth:`xmp` (ISO 32000-1 §14.3.3).

        Every text entry is the XMP property's value (characters XML 1.0 forbids dropped from
        both) as an :class:`InfoText`: printable ASCII as a literal string, anything else as
        UTF-16BE with a byte order mark (ISO 32000-1 §7.9.2.2). An empty value writes no
        entry (``pdf:Keywords`` is then absent as well). ``/CreationDate`` and ``/ModDate``
        are :attr:`date` in UTC to the second, the instant and offset of ``xmp:CreateDate`` and
        ``xmp:ModifyDate`` (``D:20250307120000Z`` for ``2025-03-07T12:00:00+00:00``).
        """
        instant = PDFDate(self._instant(), with_tz=True)
        return ArchiveInfo(
            title=self.title,
            subject=self.subject,
            author=self.author,
            keywords=self.keywords,
            creator=self.creator,
            producer=self.producer,
            created=instant,
            modified=instant,
        )


class InfoText(PDFString):
    """A text string of the document information dictionary (ISO 32000-1 §7.9.2.2) that every
    reader decodes alike: printable ASCII as a literal string, anything else as UTF-16BE with a
    byte order mark. fpdf2's ``PDFString`` writes any ASCII literally; a line feed or tab so
    written is text to poppler but bytes to pyHanko, whose PDFDocEncoding leaves codes 9, 10
    and 13 undefined."""

    def serialize(self, _security_handler: Any = None, _obj_id: int | None = None) -> str:
        """``(text)`` or ``<FEFF…>``; encrypted as fpdf2 encrypts (never, under PDF/A)."""
        if _security_handler is not None or (self.isascii() and self.isprintable()):
            return super().serialize(_security_handler, _obj_id)
        return f"<{hexlify(BOM_UTF16_BE + self.encode('utf-16-be')).decode('ascii')}>"


def _entry(value: str) -> InfoText | None:
    """An ``/Info`` text entry: ``value`` (:func:`_text`), or none for an empty one."""
    text = _text(value)
    return InfoText(text) if text else None


class ArchiveInfo(PDFInfo):
    """fpdf2's document information dictionary object with :class:`InfoText` entries and a
    ``/ModDate`` (fpdf2 writes none; ``xmp:ModifyDate`` is always there). Empty texts write no
    entry."""

    def __init__(
        self,
        *,
        title: str,
        subject: str,
        author: str,
        keywords: str,
        creator: str,
        producer: str,
        created: PDFDate,
        modified: PDFDate,
    ) -> None:
        super().__init__(None, None, None, None, None, None, created)
        self.title, self.subject, self.author = _entry(title), _entry(subject), _entry(author)
        self.keywords, self.creator, self.producer = _entry(keywords), _entry(creator), _entry(producer)
        self.mod_date = modified


class ArchiveInfoProducer(OutputProducer):
    """fpdf2's ``OutputProducer`` writing, in PDF/A mode, the document information dictionary
    of the document's :class:`DocumentMetadata` (its ``archive_metadata`` attribute; the XMP
    packet must be that object's :meth:`~DocumentMetadata.xmp`). Without PDF/A, or without
    ``archive_metadata``, the output is fpdf2's.

    The dictionary is added right after the XMP stream, where fpdf2 adds its own outside PDF/A
    mode, and is named in the trailer before the first byte is written.

    Raises:
        FPDFException: fpdf2's output no longer builds its trailer before it writes (an fpdf2
            outside the pinned ``>=2.8.9,<2.9``).
    """

    _info: ArchiveInfo | None = None

    def _add_xmp_metadata(self) -> PDFXmpMetadata | None:
        xmp = super()._add_xmp_metadata()
        metadata = getattr(self.fpdf, "archive_metadata", None)
        if xmp is not None and self.fpdf._compliance and isinstance(metadata, DocumentMetadata):
            self._info = metadata.info()
            self._add_pdf_obj(self._info)
        return xmp

    def _out(self, data: bytes | bytearray | str) -> None:
        if self._info is not None:  # the first write (the header): every object is built by now
            trailer = self.pdf_objs[-1]
            if not isinstance(trailer, PDFXrefAndTrailer):
                raise FPDFException("the document information dictionary found no trailer to go into")
            trailer.info_obj, self._info = self._info, None
        super()._out(data)
