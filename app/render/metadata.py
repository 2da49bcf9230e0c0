"""What an archive says about itself: the XMP packet of a PDF/A document.

fpdf2's own PDF/A XMP dates itself "now" (``docs/reference/rendering.md`` §5.4), so identical
input would not give identical bytes; the archive writes its own packet from a
:class:`DocumentMetadata`, dated with the archive time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

#: fpdf2's compliance profile, and the part and conformance it writes into ``pdfaid``.
PDFA_PROFILE = "PDFA_3B"
PDFA_PART, PDFA_CONFORMANCE = 3, "B"
PDFA_LABEL = f"{PDFA_PART}{PDFA_CONFORMANCE}"

#: Characters XML 1.0 forbids (an XMP packet with them is not well-formed).
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml(value: str) -> str:
    return escape(XML_INVALID.sub("", value), quote=True).replace("'", "&apos;")


@dataclass(frozen=True, slots=True)
class DocumentMetadata:
    """The document's title, subject, author, keywords, creating tool, producer, date and language.

    Attributes:
        title, subject, author: ``dc:title``, ``dc:description``, ``dc:creator`` (one entry).
        keywords: ``pdf:Keywords``, comma-separated; ``""`` writes none.
        creator: ``xmp:CreatorTool`` (the service and its version).
        producer: ``pdf:Producer`` (the PDF library and its version).
        date: the archive time (timezone-aware): ``xmp:CreateDate``, ``xmp:ModifyDate`` and
            ``xmp:MetadataDate``, in UTC to the second.
        language: a BCP 47 tag for ``dc:language``, matching the catalog's ``/Lang``; ``""``
            writes none.
    """

    title: str
    subject: str
    author: str
    keywords: str
    creator: str
    producer: str
    date: datetime
    language: str = ""

    def xmp(self, *, pdfa: bool) -> str:
        """The XMP packet body (``<x:xmpmeta>``, no ``<?xpacket>``) for ``FPDF.set_xmp_metadata``.

        The same properties fpdf2 derives from ``set_title`` and friends, but ``xmp:CreateDate``,
        ``xmp:ModifyDate`` and ``xmp:MetadataDate`` are all :attr:`date` instead of the wall
        clock, and, with ``pdfa``, ``pdfaid:part``/``pdfaid:conformance`` (ISO 19005-3 §6.6.4),
        which a user-supplied packet must carry itself. Characters XML 1.0 forbids are dropped.
        """
        stamp = self.date.astimezone(UTC).isoformat(timespec="seconds")
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
        lines += [
            "    </rdf:Description>",
            "  </rdf:RDF>",
            "</x:xmpmeta>",
        ]
        return "\n".join(lines)
