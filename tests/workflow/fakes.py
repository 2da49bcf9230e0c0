"""Small in-memory adapters behind the workflow's ports, with faults on request.

They behave like the real ones where the workflow's decisions depend on it: Zammad's tag
calls are idempotent, ``list_articles(containing=...)`` answers ``[]`` when no article holds
the text, a note post is not idempotent; the renderer, signer and storage work file to file
and refuse an existing target. Faults are exceptions queued per call
(:meth:`FakeZammad.fail`) or set on the adapter (``error``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

from app.errors import ZammadApiError
from app.workflow.archive import ArchiveWorkflow
from app.workflow.ports import RenderedPdf, SignedPdf, StoredArchive, TicketSnapshot

TRIGGER = "pdf:sign"
NOTE_IDS_FROM = 90000
"""Articles the workflow posts get ids above this one; a ticket's own articles stay below."""


def _create(target: Path, data: bytes) -> None:
    """Create ``target`` (it must not exist) holding ``data``: a few bytes, so no thread."""
    with open(target, "xb") as out:
        out.write(data)


def _read(source: Path) -> bytes:
    return source.read_bytes()


@dataclass
class FakeZammad:
    """One Zammad with tickets, their tags, articles and attachments; records every call.

    Attributes:
        tags, articles: per ticket id.
        attachments: ``(ticket_id, article_id, attachment_id)`` → bytes.
        plain: article id → raw e-mail (``b""`` when none is stored).
        calls: ``(method, *arguments)`` of every call, in order.
        lose_note_answer: how many of the next note posts succeed in Zammad but fail on the
            way back (the answer is lost: a Transient error reaches the caller).
    """

    tags: dict[int, list[str]] = field(default_factory=dict)
    articles: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    attachments: dict[tuple[int, int, int], bytes] = field(default_factory=dict)
    plain: dict[int, bytes] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    lose_note_answer: int = 0
    _faults: dict[str, list[BaseException]] = field(default_factory=dict)
    _next_article_id: int = NOTE_IDS_FROM

    def ticket(self, ticket_id: int, tags: list[str], articles: list[dict[str, Any]] | None = None) -> None:
        """Add a ticket with ``tags`` and ``articles``."""
        self.tags[ticket_id] = list(tags)
        self.articles[ticket_id] = list(articles or [])

    def fail(self, method: str, *errors: BaseException) -> None:
        """Make the next calls of ``method`` raise ``errors``, one each, in order."""
        self._faults.setdefault(method, []).extend(errors)

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """The internal notes posted to the ticket through :meth:`create_internal_note`."""
        return [a for a in self.articles.get(ticket_id, []) if a["id"] > NOTE_IDS_FROM]

    def writes(self) -> list[tuple[Any, ...]]:
        """The calls that changed a ticket (tags, notes), in order."""
        return [c for c in self.calls if c[0] in ("add_tag", "remove_tag", "create_internal_note")]

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        queued = self._faults.get(method)
        if queued:
            raise queued.pop(0)

    async def get_tags(self, ticket_id: int) -> list[str]:
        self._call("get_tags", ticket_id)
        return list(self.tags[ticket_id])

    async def get_ticket_raw(self, ticket_id: int) -> tuple[dict[str, Any], bytes]:
        self._call("get_ticket_raw", ticket_id)
        ticket = {"id": ticket_id, "number": f"2500{ticket_id}", "title": f"Ticket {ticket_id}"}
        return ticket, repr(ticket).encode()

    async def list_articles_raw(self, ticket_id: int) -> tuple[list[dict[str, Any]], bytes]:
        self._call("list_articles_raw", ticket_id)
        articles = [dict(a) for a in self.articles[ticket_id]]
        return articles, repr(articles).encode()

    async def list_articles(self, ticket_id: int, *, containing: str | None = None) -> list[dict[str, Any]]:
        self._call("list_articles", ticket_id, containing)
        articles = [dict(a) for a in self.articles[ticket_id]]
        if containing is not None and not any(containing in str(a.get("body")) for a in articles):
            return []
        return articles

    async def get_links(self, ticket_id: int) -> dict[str, Any]:
        self._call("get_links", ticket_id)
        return {"links": [], "assets": {}}

    async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
        self._call("get_attachment", ticket_id, article_id, attachment_id)
        return self.attachments[(ticket_id, article_id, attachment_id)]

    async def get_article_plain(self, article_id: int) -> bytes:
        self._call("get_article_plain", article_id)
        return self.plain.get(article_id, b"")

    async def add_tag(self, ticket_id: int, tag: str) -> None:
        self._call("add_tag", ticket_id, tag)
        if tag not in self.tags[ticket_id]:
            self.tags[ticket_id].append(tag)

    async def remove_tag(self, ticket_id: int, tag: str) -> None:
        self._call("remove_tag", ticket_id, tag)
        self.tags[ticket_id] = [t for t in self.tags[ticket_id] if t != tag]

    async def create_internal_note(self, ticket_id: int, *, subject: str, body_html: str) -> dict[str, Any]:
        self._call("create_internal_note", ticket_id, subject)
        self._next_article_id += 1
        note = {
            "id": self._next_article_id,
            "ticket_id": ticket_id,
            "type": "note",
            "internal": True,
            "subject": subject,
            "body": body_html,
        }
        self.articles[ticket_id].append(note)
        if self.lose_note_answer:
            self.lose_note_answer -= 1
            raise ZammadApiError("POST /api/v1/ticket_articles: no answer", status=None)
        return note


@dataclass
class FakeRenderer:
    """Writes a tiny "PDF" naming the ticket; keeps the snapshot it was given."""

    error: BaseException | None = None
    snapshots: list[TicketSnapshot] = field(default_factory=list)
    hold: asyncio.Event | None = None
    """When set, a render waits for it (so a test can cancel a run in the middle)."""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    originals: list[list[tuple[str, str | None, bytes]]] = field(default_factory=list)
    """Per render: each original's name, spool file (or ``None``) and bytes, read at render time."""

    async def render_file(self, snapshot: TicketSnapshot, target: Path) -> RenderedPdf:
        self.snapshots.append(snapshot)
        self.originals.append([(o.name, o.path, o.content()) for o in snapshot.embedded])
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        _create(target, f"%PDF-fake ticket {snapshot.ticket['id']}".encode())
        n = len(snapshot.articles)
        return RenderedPdf(b"", page_count=1, articles_included=n, articles_total=n, path=target)


@dataclass
class FakeSigner:
    """Prefixes the file with ``signed:``; a PAdES B-B signature by ``CN=Fake Signer``."""

    error: BaseException | None = None

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        if self.error is not None:
            raise self.error
        _create(target, b"signed:" + _read(source))
        return SignedPdf(b"", True, "B-B", "CN=Fake Signer", "cd" * 32, path=target)


@dataclass
class FakeStorage:
    """Keeps each stored archive in memory with its sidecar; notes whether the spool file
    it was given existed (it must, until the run ends)."""

    error: BaseException | None = None
    stored: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)

    async def store_file(
        self, snapshot: TicketSnapshot, source: Path, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive:
        self.sources.append(source)
        if self.error is not None:
            raise self.error
        data = _read(source)
        self.stored.append((data, dict(sidecar or {})))
        name = f"{snapshot.ticket['number']}.pdf"
        return StoredArchive(Path("/archive") / name, name, hashlib.sha256(data).hexdigest(), len(data))


TICKET = 4711
ARTICLES = [
    {"id": 1, "type": "email", "content_type": "text/plain", "body": "Guten Tag"},
    {"id": 2, "type": "note", "content_type": "text/html", "body": "<p>Rückruf</p>"},
]


class Rig:
    """An :class:`ArchiveWorkflow` on these fakes, with ticket 4711 (two articles) tagged
    ``rechnung`` and the trigger tag unless ``tags`` says otherwise."""

    def __init__(self, spool: Path, tags: list[str] | None = None, **options: Any) -> None:
        self.zammad = FakeZammad()
        self.zammad.ticket(TICKET, ["rechnung", TRIGGER] if tags is None else tags, ARTICLES)
        self.renderer = FakeRenderer()
        self.signer = FakeSigner()
        self.storage = FakeStorage()
        self.spool = spool
        self.workflow = ArchiveWorkflow(
            zammad=self.zammad,
            renderer=self.renderer,
            signer=self.signer,
            storage=self.storage,
            spool_dir=spool,
            trigger_tag=TRIGGER,
            write_backoff_seconds=0,
            **options,
        )

    def tags(self) -> list[str]:
        return sorted(self.zammad.tags[TICKET])

    def note_fields(self) -> dict[str, str]:
        (note,) = self.zammad.notes(TICKET)
        return {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note["body"])}
