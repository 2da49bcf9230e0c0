"""The originals inside a PDF/A-3 archive: associated files, and what the pages say about them.

ISO 19005-3 lets a PDF/A-3 document carry any file as an *associated file*: an embedded
file stream with a MIME ``/Subtype`` and ``/Params /ModDate``, referenced from a file
specification with ``/AFRelationship`` and listed in the catalog's ``/AF`` array and the
``/Names /EmbeddedFiles`` name tree. fpdf2's ``embed_file`` writes all of that
(``docs/reference/rendering.md`` §5.3); this module feeds it the workflow's :class:`EmbeddedFile` values
with a fixed modification date, so identical input still gives identical bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

from fpdf.annotations import PDFEmbeddedFile
from fpdf.enums import AssociatedFileRelationship

from app.errors import RenderError
from app.i18n import translation
from app.render.embedded import SpooledEmbeddedFile
from app.render.metadata import cut_text, metadata_text
from app.workflow.ports import EmbeddedFile, OmittedFile

if TYPE_CHECKING:
    from fpdf import FPDF

_MIME_PARAMS = re.compile(r";.*$", re.DOTALL)
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True, slots=True)
class EmbeddedRecord:
    """One associated file as written: its name in the PDF, SHA-256 (hex) and size in bytes."""

    name: str
    sha256: str
    size: int
    mime_type: str
    relationship: str
    description: str
    article_id: int | None
    attachment_id: int | None

    def as_tuple(self) -> tuple[str, str, int]:
        """``(name, sha256, size)``, the shape of :attr:`RenderedPdf.embedded`."""
        return self.name, self.sha256, self.size


def clean_mime_type(value: str) -> str:
    """A MIME type fit for ``/Subtype``: lower-case, parameters dropped; ``application/octet-stream``
    if malformed."""
    mime = _MIME_PARAMS.sub("", value or "").strip().lower()
    return mime if _MIME.match(mime) else "application/octet-stream"


MAX_NAME_CHARS = 255
"""Longest name of an embedded file (``/F``, ``/UF`` and its key in the name tree), in
characters; a longer one keeps its first characters and its extension."""
MAX_DESCRIPTION_CHARS = 1000
"""Longest description (``/Desc``) of an embedded file, in characters; a longer one is cut and
ends with ``…``. Both keep every string of the file under the 32,767 bytes PDF/A allows (ISO
19005-3 §6.1.13): an attachment named with 40,000 characters failed veraPDF."""


def _unique(name: str, taken: set[str]) -> str:
    """``name`` (:func:`~app.render.metadata.metadata_text`: no bidi control reorders it in a
    viewer's list of attachments; at most :data:`MAX_NAME_CHARS`), or ``stem-2.ext``,
    ``stem-3.ext``… when a file of that name is already embedded."""
    name = metadata_text(name).strip() or "unnamed"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= 16:
            name = cut_text(stem, MAX_NAME_CHARS - len(ext) - 1) + "." + ext
        else:
            name = cut_text(name, MAX_NAME_CHARS)
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    number = 2
    while f"{stem}-{number}{dot}{ext}" in taken:
        number += 1
    return f"{stem}-{number}{dot}{ext}"


def _name_tree_key(fpdf_file: PDFEmbeddedFile) -> bytes:
    """The bytes a name-tree key sorts by: fpdf2 writes ASCII names as such, others as UTF-16BE with BOM."""
    name = fpdf_file.basename()
    return name.encode("ascii") if name.isascii() else b"\xfe\xff" + name.encode("utf-16-be")


#: MIME types whose bytes are compressed already: their embedded file streams are stored as
#: they are, since deflating them again costs CPU and saves next to nothing (ZIP containers —
#: Office documents, archives —, PDF, JPEG, PNG, GIF, WebP, audio and video).
PRECOMPRESSED_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "image/avif",
    }
)
PRECOMPRESSED_PREFIXES = (
    "audio/",
    "video/",
    "application/vnd.openxmlformats-",
    "application/vnd.oasis.opendocument.",
)


def worth_compressing(mime_type: str) -> bool:
    """Whether an original of ``mime_type`` (lower case, no parameters) is deflated in the PDF:
    everything but :data:`PRECOMPRESSED_TYPES` and :data:`PRECOMPRESSED_PREFIXES`."""
    return mime_type not in PRECOMPRESSED_TYPES and not mime_type.startswith(PRECOMPRESSED_PREFIXES)


def embed_originals(
    pdf: FPDF, files: Iterable[EmbeddedFile], *, modified: datetime, spool: BinaryIO | None = None
) -> tuple[EmbeddedRecord, ...]:
    """Embed ``files`` in ``pdf`` as associated files, in order; returns what was written.

    Each becomes an embedded file stream (deflated unless its type is compressed already,
    :func:`worth_compressing`) with ``/Subtype`` (MIME type),
    ``/Params /Size /ModDate`` (``modified``: the archive time, so output stays
    reproducible) and a file specification with ``/F``, ``/UF``, ``/Desc`` and
    ``/AFRelationship`` (ISO 19005-3 §6.8, ISO 32000-2 §14.13). Names are kept unique
    (``-2`` before the extension). The ``/EmbeddedFiles`` name tree is sorted by key, as
    ISO 32000-1 §7.9.6 requires (fpdf2 writes it in insertion order).

    ``files`` is iterated once, and each file's bytes are let go once embedded: the streams
    are :class:`~app.render.embedded.SpooledEmbeddedFile` objects, their compressed bytes in
    ``spool`` (a temporary file open for reading and writing that must stay open until the
    PDF is written) or, without one, in memory; the PDF is the same either way.

    Raises:
        RenderError: a relationship that is none of ``Source``, ``Data``, ``Alternative``,
            ``Supplement``, ``EncryptedPayload``, ``FormData``, ``Schema``, ``Unspecified``
            (permanent), or data that is not bytes.
        OSError: ``spool`` cannot be written, or a file's ``path`` cannot be read.
    """
    records: list[EmbeddedRecord] = []
    taken = {fpdf_file.basename() for fpdf_file in pdf.embedded_files}
    for file in files:
        if not isinstance(file.data, (bytes, bytearray, memoryview)):
            raise RenderError(
                f"embedded file {file.name!r}: data must be bytes, got {type(file.data).__name__}",
                transient=False,
            )
        data = bytes(file.content())
        try:
            relationship = AssociatedFileRelationship.coerce(file.relationship)
        except ValueError as exc:
            raise RenderError(
                f"embedded file {file.name!r}: unknown AFRelationship {file.relationship!r}", transient=False
            ) from exc
        name = _unique(file.name, taken)
        taken.add(name)
        mime = clean_mime_type(file.mime_type)
        description = cut_text(metadata_text(file.description or name), MAX_DESCRIPTION_CHARS)
        # What fpdf2's embed_file adds for PDF/A-3 or no PDF/A (the names are unique here), also
        # for empty bytes, which embed_file refuses: an empty original is still an original.
        pdf.embedded_files.append(
            SpooledEmbeddedFile(
                spool=spool,
                basename=name,
                contents=data,
                desc=description,
                modification_date=modified,
                mime_type=mime,
                af_relationship=relationship,
                compress=worth_compressing(mime),
            )
        )
        pdf._set_min_pdf_version("1.4")
        records.append(
            EmbeddedRecord(
                name=name,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                mime_type=mime,
                relationship=relationship.value,
                description=description,
                article_id=file.article_id,
                attachment_id=file.attachment_id,
            )
        )
    pdf.embedded_files.sort(key=_name_tree_key)
    return tuple(records)


class OriginalsIndex:
    """What the pages say about each attachment: embedded in this PDF, or left out and why.

    Args:
        embedded: the files as written by :func:`embed_originals`.
        omitted: the originals the workflow left out.
        language: the language of what the pages say (:data:`app.i18n.LANGUAGES`).
    """

    def __init__(
        self,
        embedded: Sequence[EmbeddedRecord],
        omitted: Sequence[OmittedFile],
        language: str = "en",
    ) -> None:
        self.language = language
        self.tr = translation(language)
        self.embedded = tuple(embedded)
        self.omitted = tuple(omitted)
        self._embedded_attachments = {
            r.attachment_id: r for r in self.embedded if r.attachment_id is not None
        }
        self._omitted_attachments = {o.attachment_id: o for o in self.omitted if o.attachment_id is not None}

    @property
    def has_articles_json(self) -> bool:
        """Whether Zammad's whole ``by_ticket`` answer is embedded (``articles.json``,
        :func:`app.workflow.originals.collect_originals`): it lists every article, also
        those a capped PDF leaves out."""
        return any(record.name == "articles.json" for record in self.embedded)

    @property
    def active(self) -> bool:
        """Whether originals were collected at all (something embedded or left out)."""
        return bool(self.embedded or self.omitted)

    def attachment_status(self, attachment_id: int | None) -> str:
        """``"embedded in this PDF"``, ``"not embedded: <reason>"``, or ``""`` when originals are off."""
        if not self.active:
            return ""
        _ = self.tr.gettext
        if attachment_id in self._embedded_attachments:
            return _("embedded in this PDF")
        omitted = self._omitted_attachments.get(attachment_id) if attachment_id is not None else None
        if omitted is not None:
            return _("not embedded: {reason}").format(reason=omitted.reason)
        return _("not embedded")

    def summary(self) -> str:
        """One line for the ticket block: how many files are embedded and left out."""
        tr = self.tr
        parts = []
        if self.embedded:
            total = sum(r.size for r in self.embedded)
            count = len(self.embedded)
            parts.append(
                tr.ngettext(
                    "{count} file embedded in this PDF ({total} bytes)",
                    "{count} files embedded in this PDF ({total} bytes)",
                    count,
                ).format(count=count, total=f"{total:,}".replace(",", "." if self.language == "de" else ","))
            )
        if self.omitted:
            parts.append(tr.gettext("{count} left out").format(count=len(self.omitted)))
        return ", ".join(parts) + tr.gettext(" – see “Originals” at the end")
