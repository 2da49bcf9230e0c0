"""Embedded file streams that wait on disk, not in memory, until the PDF is written.

fpdf2 (2.8.x) keeps every embedded file's compressed stream in memory from ``embed_file`` to
the end of ``output()``, and at output builds a file specification for each with three
``PDFString`` objects (file name twice, description) that all live until the document is
serialised. For a ticket with thousands of originals (every article's body, every raw
e-mail) that is tens of MB in the render process.

:class:`SpooledEmbeddedFile` is fpdf2's ``PDFEmbeddedFile`` (same dictionary, same
compressed stream: the PDF bytes do not change) whose compressed stream is appended to a
*spool*, an anonymous temporary file (``tempfile.TemporaryFile``: it has no name, so it
vanishes when closed or when the process dies), and read back when the object is
serialised. Its file specification is a :class:`LazyFileSpec`, which builds fpdf2's strings
only while it is serialised. Without a spool the stream stays in memory, as in fpdf2.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from fpdf.annotations import FileSpec, PDFEmbeddedFile
from fpdf.enums import AssociatedFileRelationship
from fpdf.syntax import PDFObject

from app.errors import RenderError


class LazyFileSpec(FileSpec):
    """fpdf2's ``FileSpec`` of an embedded file (``/Type /Filespec``, ``/F``, ``/UF``,
    ``/Desc``, ``/AFRelationship``, ``/EF``) whose values are made from the file's name,
    description and relationship only while it is serialised (same bytes as fpdf2's)."""

    def __init__(self, embedded_file: PDFEmbeddedFile) -> None:
        PDFObject.__init__(self)  # not FileSpec's: it would build the strings now
        self._embedded_file = embedded_file

    def serialize(self, obj_dict: dict[str, object] | None = None, _security_handler: Any = None) -> str:
        """The ``N 0 obj … endobj`` block, written by a ``FileSpec`` made for the moment."""
        file = self._embedded_file
        spec = FileSpec(file, file.basename(), file._desc, file._af_relationship)
        spec.id = self.id
        return spec.serialize(obj_dict, _security_handler)


class SpooledEmbeddedFile(PDFEmbeddedFile):
    """fpdf2's ``PDFEmbeddedFile`` (no checksum) whose stream — deflated unless ``compress``
    is false — is kept in ``spool`` from construction to serialisation.

    Args:
        spool: a binary file open for reading and writing (an anonymous temporary file),
            shared by the document's embedded files; ``None`` keeps the stream in memory.
            It must stay open until the PDF is written.
        basename, contents, desc, modification_date, mime_type, af_relationship, compress: as
            for ``PDFEmbeddedFile`` (``contents`` the uncompressed bytes; not kept).

    Raises:
        OSError: the spool cannot be written (here) or read back (at serialisation).
    """

    def __init__(
        self,
        *,
        spool: BinaryIO | None,
        basename: str,
        contents: bytes,
        desc: str,
        modification_date: Any,
        mime_type: str,
        af_relationship: AssociatedFileRelationship,
        compress: bool = True,
    ) -> None:
        super().__init__(
            basename=basename,
            contents=contents,
            desc=desc,
            modification_date=modification_date,
            mime_type=mime_type,
            af_relationship=af_relationship,
            compress=compress,
        )
        self._spool = spool
        self._offset = -1
        if spool is not None and self._contents:
            self._offset = spool.seek(0, 2)
            spool.write(self._contents)
            self._contents = b""

    def file_spec(self) -> FileSpec:
        """The file specification, a :class:`LazyFileSpec` (one per file)."""
        if not self._file_spec:
            self._file_spec = LazyFileSpec(self)
        return self._file_spec

    def content_stream(self) -> bytes:
        """The compressed stream, read back from the spool when it is there."""
        if self._offset < 0 or self._spool is None:
            return bytes(self._contents)
        self._spool.seek(self._offset)
        data = self._spool.read(self.length)
        if len(data) != self.length:
            raise RenderError(
                f"embedded file {self.basename()!r}: its spooled stream was cut short", transient=False
            )
        return data

    def serialize(self, obj_dict: dict[str, object] | None = None, _security_handler: Any = None) -> str:
        """The ``N 0 obj … endobj`` block with the stream (encrypted documents: read back first)."""
        if _security_handler is not None and self._offset >= 0:
            self._contents, self._offset = self.content_stream(), -1
        return super().serialize(obj_dict, _security_handler)
