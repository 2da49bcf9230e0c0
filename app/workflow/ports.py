"""The small interfaces the archive workflow depends on, and the values they return.

The workflow never imports aiohttp, fpdf2, pyHanko or the file system directly: it talks
to these protocols, so decisions are tested with simple fakes and the adapters
(:mod:`app.zammad`, :mod:`app.render`, :mod:`app.signing`, :mod:`app.storage`) are tested
against the real thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class EmbeddedFile:
    """An original to embed in the PDF as a PDF/A-3 associated file (ISO 19005-3, ``/AF``).

    Attributes:
        name: file name inside the PDF, unique per document (e.g. ``article-23051.eml``).
        data: the bytes exactly as fetched from Zammad.
        mime_type: e.g. ``message/rfc822``, ``application/json``.
        relationship: ``/AFRelationship``: ``Source`` for originals the pages were made
            from, ``Data`` for attachments.
        description: a short human description.
        article_id: the article it belongs to, or ``None`` for ticket-level files.
        attachment_id: the Zammad attachment id, when it is one.
    """

    name: str
    data: bytes
    mime_type: str
    relationship: str
    description: str = ""
    article_id: int | None = None
    attachment_id: int | None = None


@dataclass(frozen=True, slots=True)
class OmittedFile:
    """An original that was not embedded, and why (shown on the pages and in the note).

    Attributes:
        name, size: the file's name and size in bytes (``None`` when unknown).
        reason: e.g. ``"larger than PDF_EMBED_MAX_BYTES (10485760)"``.
        article_id, attachment_id: where it belongs.
    """

    name: str
    size: int | None
    reason: str
    article_id: int | None = None
    attachment_id: int | None = None


@dataclass(frozen=True, slots=True)
class TicketSnapshot:
    """Everything fetched from Zammad for one archive run.

    Attributes:
        ticket: ``GET /api/v1/tickets/{id}?expand=true`` as returned (names as strings:
            ``group``, ``state``, ``priority``, ``owner``, ``customer``, ``organization``).
        articles: ``GET /api/v1/ticket_articles/by_ticket/{id}``, oldest first.
        tags: ``GET /api/v1/tags?object=Ticket&o_id={id}`` → ``tags``.
        archived_at: the archive time (UTC, timezone-aware); used in the PDF and the path.
        images: attachment id → bytes of the inline images and image attachments that were
            fetched for the layout (a missing id is drawn as a placeholder).
        embedded: originals to embed as associated files (empty when PDF_EMBED_ORIGINALS is off).
        omitted: originals left out (caps, fetch failures), listed on the pages.
        articles_raw: the ``by_ticket`` answer exactly as Zammad sent it (the JSON
            ``articles`` was parsed from), or ``None``. A renderer in another process may
            send these bytes instead of ``articles`` and parse them there.
    """

    ticket: dict[str, Any]
    articles: list[dict[str, Any]]
    tags: list[str]
    archived_at: datetime
    images: Mapping[int, bytes] = field(default_factory=dict)
    embedded: tuple[EmbeddedFile, ...] = ()
    omitted: tuple[OmittedFile, ...] = ()
    articles_raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class RenderedPdf:
    """An unsigned PDF and facts about its layout.

    Attributes:
        data: the PDF bytes.
        page_count: number of pages.
        articles_included, articles_total: how many articles are in the PDF, of how many.
        missing_glyphs: characters no font could show (drawn as visible placeholders).
        missing_scripts: the scripts of those characters, sorted (e.g. ``("CJK", "Emoji")``):
            say in the note which fonts to install.
        embedded: ``(name, sha256 hex, size)`` of every associated file embedded, in order.
        pdfa: the PDF/A conformance written (e.g. ``"3B"``), or ``None``.
        path: the file holding the PDF when it was rendered into a file
            (:meth:`FileRendererPort.render_file`); ``data`` is then empty.
    """

    data: bytes
    page_count: int
    articles_included: int
    articles_total: int
    missing_glyphs: int = 0
    missing_scripts: tuple[str, ...] = ()
    embedded: tuple[tuple[str, str, int], ...] = ()
    pdfa: str | None = None
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class SignedPdf:
    """The PDF as it will be stored.

    Attributes:
        data: the PDF bytes (signed when ``signed`` is true, else the input unchanged).
        signed: whether a PAdES signature was applied.
        pades_level: ``"B-B"``, ``"B-T"``, … or ``None`` when unsigned.
        signer_subject: the signing certificate's subject (RFC 4514 string), or ``None``.
        signer_cert_sha256: SHA-256 fingerprint of the signing certificate (hex), or ``None``.
        timestamp: the RFC 3161 signature-timestamp time, or ``None`` without a TSA.
        timestamp_authority: subject of the TSA certificate that made the timestamp
            (RFC 4514 string), or ``None``.
        path: the file holding the PDF when it was signed file to file
            (:meth:`FileSignerPort.sign_file`); ``data`` is then empty.
    """

    data: bytes
    signed: bool
    pades_level: str | None = None
    signer_subject: str | None = None
    signer_cert_sha256: str | None = None
    timestamp: datetime | None = None
    timestamp_authority: str | None = None
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class StoredArchive:
    """Where an archive landed.

    Attributes:
        path: absolute path of the PDF.
        relative_path: the path relative to the storage root, ``/``-separated.
        sha256: SHA-256 of the stored bytes (lowercase hex).
        size: size in bytes.
    """

    path: Path
    relative_path: str
    sha256: str
    size: int


class ZammadPort(Protocol):
    """The Zammad REST calls the workflow makes (see ``docs/reference/zammad.md``, Zammad's API).

    Every method raises :class:`app.errors.ZammadApiError` on failure.
    """

    async def get_ticket(self, ticket_id: int) -> dict[str, Any]: ...

    async def get_tags(self, ticket_id: int) -> list[str]: ...

    async def list_articles(
        self, ticket_id: int, *, containing: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def add_tag(self, ticket_id: int, tag: str) -> None: ...

    async def remove_tag(self, ticket_id: int, tag: str) -> None: ...

    async def create_internal_note(
        self, ticket_id: int, *, subject: str, body_html: str
    ) -> dict[str, Any]: ...

    async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes: ...

    async def get_ticket_raw(self, ticket_id: int) -> tuple[dict[str, Any], bytes]: ...

    async def list_articles_raw(self, ticket_id: int) -> tuple[list[dict[str, Any]], bytes]: ...

    async def get_article_plain(self, article_id: int) -> bytes: ...


class ImageRefLike(Protocol):
    """An image to download for the layout (:class:`app.render.images.ImageRef`)."""

    attachment_id: int
    article_id: int
    ticket_id: int
    filename: str


class RendererPort(Protocol):
    """Lays a snapshot out as an unsigned PDF; raises :class:`app.errors.RenderError`."""

    async def render(self, snapshot: TicketSnapshot) -> RenderedPdf: ...


class SignerPort(Protocol):
    """Signs a PDF; raises :class:`app.errors.SigningError`."""

    async def sign(self, pdf: bytes) -> SignedPdf: ...


class StoragePort(Protocol):
    """Writes an archive atomically under the storage root; raises :class:`app.errors.StorageError`.

    ``sidecar`` holds the facts of the run (ticket, signature, job) for the ``<file>.pdf.json``
    completion marker written after the PDF; the storage adds the file's own facts (path,
    SHA-256, size).
    """

    async def store(
        self, snapshot: TicketSnapshot, data: bytes, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive: ...


class FileRendererPort(RendererPort, Protocol):
    """A renderer that can also write the PDF into a file (big tickets never sit whole in the
    caller's memory); raises :class:`app.errors.RenderError`.

    ``render_file`` creates ``target`` (which must not exist) and returns the layout's facts
    with ``path=target`` and empty ``data``.
    """

    async def render_file(self, snapshot: TicketSnapshot, target: Path) -> RenderedPdf: ...


class FileSignerPort(SignerPort, Protocol):
    """A signer that can also sign file to file; raises :class:`app.errors.SigningError`.

    ``sign_file`` reads the PDF at ``source`` and creates ``target`` (which must not exist)
    with the signed PDF; it returns the facts with ``path=target`` and empty ``data``.
    """

    async def sign_file(self, source: Path, target: Path) -> SignedPdf: ...


class FileStoragePort(StoragePort, Protocol):
    """A storage that can also take the archive from a file, read in chunks (hashed while
    copied); same guarantees and errors as :meth:`StoragePort.store`."""

    async def store_file(
        self, snapshot: TicketSnapshot, source: Path, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive: ...
