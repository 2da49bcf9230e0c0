"""The small interfaces the archive workflow depends on, and the values they return.

The workflow never imports aiohttp, fpdf2, pyHanko or the storage: it talks to these
protocols, so its decisions are tested with small fakes (``tests/workflow/fakes.py``) and the
adapters (:mod:`app.zammad`, :mod:`app.render`, :mod:`app.signing`, :mod:`app.storage`) are
tested against the real thing. The only files the workflow touches itself are its per-job
folders in the spool, which the renderer, signer and storage read and write: the PDF moves
from step to step as a file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

FETCH_CONCURRENCY = 4
"""How many downloads from Zammad (images, raw e-mails, attachments: :class:`ZammadPort`
calls) are in flight at once; it bounds the answers held in memory at a time to this many.

A run shares one bound of this size between its images and its originals
(:mod:`app.workflow.archive`); :func:`~app.workflow.images.fetch_images` without such a
shared ``limit`` bounds itself to it, :func:`~app.workflow.originals.collect_originals` always.
"""


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
        path: the file name (a ``str``: thousands of ``Path`` objects cost MBs) holding the
            bytes instead, when the workflow spooled them to disk as they were fetched
            (``data`` is then ``b""``); read with :meth:`content`.
    """

    name: str
    data: bytes
    mime_type: str
    relationship: str
    description: str = ""
    article_id: int | None = None
    attachment_id: int | None = None
    path: str | None = None

    def content(self) -> bytes:
        """The bytes: ``data``, or the whole file at ``path``.

        Raises:
            OSError: the file at ``path`` cannot be read.
        """
        if self.path is None:
            return self.data
        with open(self.path, "rb") as spooled:
            return spooled.read()


@dataclass(frozen=True, slots=True)
class OmittedFile:
    """An original that was not embedded, and why (shown on the pages and in the note).

    Attributes:
        name, size: the file's name and size in bytes (``None`` when unknown).
        reason: e.g. ``"larger than PDF_EMBED_MAX_BYTES (10485760)"``.
        article_id, attachment_id: where it belongs.
        size_declared: ``size`` is what Zammad's article JSON declares for an attachment that
            was not downloaded (left out by a cap, or its download failed), not bytes counted.
    """

    name: str
    size: int | None
    reason: str
    article_id: int | None = None
    attachment_id: int | None = None
    size_declared: bool = False


@dataclass(frozen=True, slots=True)
class MergedInto:
    """Where a merged ticket's articles went: the ticket Zammad merged it into
    (``Ticket#merge_to``, ``docs/reference/zammad.md`` §3.8), found through its ``parent`` link.

    Attributes:
        ticket_id: the target ticket's id, or ``None`` when it could not be found.
        number: the target ticket's number (Zammad's ``number``, a string), or ``None`` when
            unknown (not found, or the links answer's ``assets`` do not hold it).
        reason: why the target is unknown (``""`` when it is known), a sentence without
            secrets, e.g. ``"GET /api/v1/links answered 403: Not authorized"``.
    """

    ticket_id: int | None
    number: str | None = None
    reason: str = ""

    @property
    def known(self) -> bool:
        """Whether the target ticket was found."""
        return self.ticket_id is not None

    def text(self, gettext: Callable[[str], str]) -> str:
        """What the PDF and the note say the ticket went into, through ``gettext`` (a
        catalogue's :meth:`~gettext.GNUTranslations.gettext`): ``"#25004712 (ticket id 4712)"``,
        ``"ticket id 4712"`` when the number is unknown, ``"merged; target unknown"`` when the
        ticket is."""
        _ = gettext
        if self.ticket_id is None:
            return _("merged; target unknown")
        if self.number is None:
            return _("ticket id {id}").format(id=self.ticket_id)
        return _("#{number} (ticket id {id})").format(number=self.number, id=self.ticket_id)

    def as_json(self) -> dict[str, Any]:
        """``{"ticket_id", "ticket_number"}``, plus ``"reason"`` when the target is unknown."""
        out: dict[str, Any] = {"ticket_id": self.ticket_id, "ticket_number": self.number}
        if not self.known:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class ImagePlaceholder:
    """A layout image (an inline image of an HTML body, or an image attachment's preview) that
    the PDF shows as a placeholder with its file name, and why (listed in the note and the
    sidecar, so an archivist knows the pages are incomplete).

    Attributes:
        name: the attachment's file name (``image-<attachment id>`` when Zammad gives none).
        article_id, attachment_id: where it belongs.
        classification: ``"Permanent"`` (Zammad refused the download for good, e.g. 403/404,
            the image is over a size cap, or its bytes are no image the layout can decode) or
            ``"Transient"`` (a length other than Zammad's declared size on every attempt of the
            job): the :class:`~app.workflow.classify.Classification` value. A download that fails
            Transient otherwise never becomes a placeholder: it fails the run
            (:func:`app.workflow.images.fetch_images`).
        code: a stable code: the download error's (``zammad_api_error``, ...),
            ``download_failed`` (the length), ``image_too_large``; ``image_undecodable`` for
            an image downloaded whole that the layout cannot decode
            (:attr:`RenderedPdf.undecodable`).
        cause: a sentence without secrets, e.g. ``"GET /api/v1/ticket_attachment/4711/23051/91202
            answered 404: Couldn't find the requested record"``.
    """

    name: str
    article_id: int
    attachment_id: int
    classification: str
    code: str
    cause: str


@dataclass(frozen=True, slots=True)
class TicketSnapshot:
    """Everything fetched from Zammad for one archive run.

    Attributes:
        ticket: ``GET /api/v1/tickets/{id}?expand=true`` as returned (names as strings:
            ``group``, ``state``, ``priority``, ``owner``, ``customer``, ``organization``).
        articles: ``GET /api/v1/ticket_articles/by_ticket/{id}``, oldest first (a list, or a
            sequence that parses each article when read).
        tags: ``GET /api/v1/tags?object=Ticket&o_id={id}`` → ``tags``.
        archived_at: the archive time (UTC, timezone-aware); used in the PDF and the path.
        images: attachment id → bytes of the inline images and image attachments that were
            fetched for the layout (a missing id is drawn as a placeholder).
        placeholders: the layout images left out of ``images`` and why (the note and the
            sidecar list them; the renderer does not need them).
        embedded: originals to embed as associated files (empty when PDF_EMBED_ORIGINALS is off).
        omitted: originals left out (caps, fetch failures), listed on the pages.
        articles_raw: the ``by_ticket`` answer exactly as Zammad sent it (the JSON
            ``articles`` was parsed from), or ``None``. A renderer in another process may
            send these bytes instead of ``articles`` and parse them there.
        merged_into: for a ticket in state ``merged``, the ticket its articles went to
            (:class:`MergedInto`, perhaps unknown); ``None`` for any other ticket.
    """

    ticket: dict[str, Any]
    articles: Sequence[dict[str, Any]]
    tags: list[str]
    archived_at: datetime
    images: Mapping[int, bytes] = field(default_factory=dict)
    embedded: tuple[EmbeddedFile, ...] = ()
    omitted: tuple[OmittedFile, ...] = ()
    articles_raw: bytes | None = None
    merged_into: MergedInto | None = None
    placeholders: tuple[ImagePlaceholder, ...] = ()


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
        missing_by_script: ``(script, count)`` of those characters, sorted by script: the
            render process's count travels back with the result (the
            ``missing_glyphs_total{script}`` metric).
        embedded: ``(name, sha256 hex, size)`` of every associated file embedded, in order.
        pdfa: the PDF/A conformance written (e.g. ``"3B"``), or ``None``.
        path: the file holding the PDF when it was rendered into a file
            (:meth:`RendererPort.render_file`); ``data`` is then empty.
        language: the archive's language (:data:`app.i18n.LANGUAGES`); the success note is
            written in it.
        undecodable: the layout images that were downloaded but could not be decoded (a cut
            JPEG, an HTML page or SVG served as ``image/png``, no bytes), drawn as placeholders,
            in the order the layout met them (code ``image_undecodable``, Permanent): the render
            process sends them back with the result, and the workflow lists them with the
            download's :attr:`TicketSnapshot.placeholders` in the note and the sidecar.
    """

    data: bytes
    page_count: int
    articles_included: int
    articles_total: int
    missing_glyphs: int = 0
    missing_scripts: tuple[str, ...] = ()
    missing_by_script: tuple[tuple[str, int], ...] = ()
    embedded: tuple[tuple[str, str, int], ...] = ()
    pdfa: str | None = None
    path: Path | None = None
    language: str = "en"
    undecodable: tuple[ImagePlaceholder, ...] = ()


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
            (:meth:`SignerPort.sign_file`); ``data`` is then empty.
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
        already_stored: this job's complete archive was there already, written by an earlier
            run of the same job (a restart after its publish, or a job store restored from an
            older backup), and nothing was written: its note may be on the ticket already.
            Not compared: two values naming the same file are equal.
    """

    path: Path
    relative_path: str
    sha256: str
    size: int
    already_stored: bool = field(default=False, compare=False)


class ZammadPort(Protocol):
    """The Zammad REST calls the workflow makes (``docs/reference/zammad.md`` §3, implemented by
    :class:`app.zammad.client.ZammadClient`).

    Every method raises :class:`app.errors.ZammadApiError` on failure.
    """

    async def get_tags(self, ticket_id: int) -> list[str]:
        """The ticket's tags (``GET /api/v1/tags?object=Ticket&o_id={id}``)."""
        ...

    async def get_ticket_raw(self, ticket_id: int) -> tuple[dict[str, Any], bytes]:
        """The ticket (``GET /api/v1/tickets/{id}?expand=true``) and the answer's bytes as sent."""
        ...

    async def list_articles_raw(self, ticket_id: int) -> tuple[Sequence[dict[str, Any]], bytes]:
        """The ticket's articles, oldest first (``GET /api/v1/ticket_articles/by_ticket/{id}``),
        and the answer's bytes as sent. The sequence may parse each article when it is read
        (:class:`app.zammad.articles.LazyArticles`): read it in passes, keep only what is needed."""
        ...

    async def list_articles(self, ticket_id: int, *, containing: str | None = None) -> list[dict[str, Any]]:
        """The ticket's articles; with ``containing``, ``[]`` when the answer does not hold that
        text (a big ticket's articles are then not parsed)."""
        ...

    async def get_links(self, ticket_id: int) -> dict[str, Any]:
        """The ticket's links (``GET /api/v1/links?link_object=Ticket&link_object_value={id}``):
        ``{"links": [...], "assets": {...}}`` (``docs/reference/zammad.md`` §3.8)."""
        ...

    async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
        """An attachment's bytes (``GET /api/v1/ticket_attachment/{ticket}/{article}/{attachment}``)."""
        ...

    async def get_article_plain(self, article_id: int) -> bytes:
        """An e-mail article's raw RFC 822 message; ``b""`` when Zammad holds none."""
        ...

    async def add_tag(self, ticket_id: int, tag: str) -> None:
        """Add ``tag`` to the ticket (idempotent in Zammad)."""
        ...

    async def remove_tag(self, ticket_id: int, tag: str) -> None:
        """Remove ``tag`` from the ticket (idempotent in Zammad)."""
        ...

    async def create_internal_note(self, ticket_id: int, *, subject: str, body_html: str) -> dict[str, Any]:
        """Post an internal HTML note; returns the article. Not idempotent."""
        ...


class ImageRefLike(Protocol):
    """An image to download for the layout (:class:`app.render.images.ImageRef`)."""

    @property
    def attachment_id(self) -> int: ...

    @property
    def article_id(self) -> int: ...

    @property
    def ticket_id(self) -> int: ...

    @property
    def filename(self) -> str: ...


class RendererPort(Protocol):
    """Lays a snapshot out as an unsigned PDF file; raises :class:`app.errors.RenderError`.

    ``render_file`` creates ``target`` (which must not exist) and returns the layout's facts
    with ``path=target`` and empty ``data``: a big ticket's PDF never sits whole in the
    caller's memory.
    """

    async def render_file(self, snapshot: TicketSnapshot, target: Path) -> RenderedPdf: ...


class SignerPort(Protocol):
    """Signs a PDF file to file; raises :class:`app.errors.SigningError`.

    ``sign_file`` reads the PDF at ``source`` and creates ``target`` (which must not exist)
    with the signed PDF (or an unsigned copy when signing is off); it returns the facts with
    ``path=target`` and empty ``data``.
    """

    async def sign_file(self, source: Path, target: Path) -> SignedPdf: ...


class StoragePort(Protocol):
    """Writes an archive atomically under the storage root, from a file read in chunks
    (hashed while copied); raises :class:`app.errors.StorageError`.

    ``sidecar`` holds the facts of the run (ticket, signature, job) for the ``<file>.pdf.json``
    completion marker written after the PDF; the storage adds the file's own facts (path,
    SHA-256, size).
    """

    async def store_file(
        self, snapshot: TicketSnapshot, source: Path, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive: ...


Guard = Callable[[], Awaitable[None]]
"""A check awaited right before a write to the ticket that only the holder of the job may
make: it returns when this process may write, and raises when it may not — with several
replicas on one job store, when another replica has taken the job over (its lease ran out:
``app.jobs.records.LeaseLost``) or when that cannot be confirmed (the database unreachable).
The workflow then writes nothing more for the job; the exception reaches the caller."""
