"""The simulated Zammad's data: tickets, articles, tags and attachments, and how they are seeded.

Zammad's seeded lookup tables (``db/seeds``) give the names ``?expand=true`` shows for ids;
:class:`SimulatorState` keeps the records in memory, in the shapes the REST API answers
(``docs/reference/zammad.md`` §3.3), and loads the fixtures of ``tests/fixtures/zammad/``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from devtools.zammad_simulator.files import declared_size, sized_file
from devtools.zammad_simulator.responses import zammad_error

TICKET_NAME_KEYS = (
    "group",
    "organization",
    "state",
    "priority",
    "owner",
    "customer",
    "created_by",
    "updated_by",
    "create_article_type",
    "create_article_sender",
)
"""The name strings ``?expand=true`` adds to a ticket (§3.2)."""

STATES = {
    1: "new",
    2: "open",
    3: "pending reminder",
    4: "closed",
    5: "merged",
    6: "pending close",
    7: "removed",
}
MERGED_STATE_ID = 5
PRIORITIES = {1: "1 low", 2: "2 normal", 3: "3 high"}
ARTICLE_TYPES = {
    1: "email",
    2: "sms",
    3: "chat",
    4: "fax",
    5: "phone",
    6: "twitter status",
    7: "twitter direct-message",
    8: "facebook feed post",
    9: "facebook feed comment",
    10: "note",
    11: "web",
    12: "telegram personal-message",
}
ARTICLE_TYPE_IDS = {name: type_id for type_id, name in ARTICLE_TYPES.items()}
SENDERS = {1: "Agent", 2: "Customer", 3: "System"}
SENDER_IDS = {name: sender_id for sender_id, name in SENDERS.items()}

_INLINE_URL = re.compile(r"/api/v1/ticket_attachment/(\d+)/(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """One stored link between two tickets, as Zammad's ``links`` table holds it (``Link.add``):
    ``link_type`` (``normal``, ``parent``, ``child``) from ticket ``source`` to ticket ``target``."""

    link_type: str
    source: int
    target: int


LINK_TYPE_SEEN_FROM_SOURCE = {"normal": "normal", "parent": "child", "child": "parent"}
"""``Link.list``'s ``@map``: the type a link is listed with for its source object."""


@dataclass(slots=True)
class TicketRecord:
    """One stored ticket.

    Attributes:
        columns: the ticket's columns (with ``_id``s), as ``GET /tickets/{id}`` answers them.
        names: the name strings of ``?expand=true`` (``group``, ``state``, ``owner``, …).
        tags: the ticket's tags, in the order they were added.
        article_ids: its articles, oldest first (notes created through the API included).
        time_accounting_ids: ``ticket_time_accounting_ids`` for ``?expand``/``?all``.
        all_extras: the other ``?all=true`` parts (``assets`` besides the ticket and its
            articles, ``links``, ``mentions``, ``time_accountings``, ``form_meta``).
    """

    columns: dict[str, Any]
    names: dict[str, Any]
    tags: list[str]
    article_ids: list[int]
    time_accounting_ids: list[int]
    all_extras: dict[str, Any] = field(default_factory=dict)


class SimulatorState:
    """Tickets, articles, tags and attachments of the simulated Zammad, in memory.

    Args:
        user_login, user_id: the API user; articles created through the API carry them as
            ``created_by``/``created_by_id`` (like ``note-created.json``).
        user_name: the ``from`` of created articles.
    """

    def __init__(
        self, *, user_login: str = "pdf-archiver", user_id: int = 14, user_name: str = "PDF Archiver"
    ):
        self.user_login = user_login
        self.user_id = user_id
        self.user_name = user_name
        self.tickets: dict[int, TicketRecord] = {}
        self.articles: dict[int, dict[str, Any]] = {}
        self.created_article_ids: set[int] = set()
        """Articles created through ``POST /api/v1/ticket_articles`` (the notes the archiver posted)."""
        self.hidden_attachments: dict[int, list[dict[str, Any]]] = {}
        """Per article, the inline images its body references but ``attachments`` leaves out (§4)."""
        self.attachment_data: dict[int, bytes] = {}
        """Contents of attachments posted through the API; others are :func:`generated_file`\\ s."""
        self.stored_mail: Mapping[int, bytes] = {}
        """Raw e-mails by article id, served as they are by ``ticket_article_plain`` (Zammad serves
        the file it stored); an e-mail article not in it gets one written by
        :func:`~devtools.zammad_simulator.mail.article_eml`. The benchmarks fill it so that a
        generated ticket's mails are written once, not on every request."""
        self.links: list[LinkRecord] = []
        """Links between tickets, oldest first (``GET /api/v1/links``; :meth:`merge_ticket`)."""

    # -- set-up --------------------------------------------------------------------------------

    def add_ticket(
        self,
        ticket: dict[str, Any],
        articles: list[dict[str, Any]],
        tags: list[str],
        *,
        names: dict[str, Any] | None = None,
        all_extras: dict[str, Any] | None = None,
    ) -> int:
        """Store a ticket with its articles and tags; returns the ticket id.

        Args:
            ticket: the ticket record (columns with ``_id``s, e.g. the ``assets.Ticket`` entry
                of ``ticket-all.json``). Name strings and ``article_ids`` in it are moved
                aside; ``ticket_time_accounting_ids`` is kept for ``?expand``/``?all``.
            articles: articles as ``by_ticket`` returns them (``type``/``sender``/
                ``created_by`` names; missing names are derived from the ids). Inline images
                referenced as ``/api/v1/ticket_attachment/{t}/{a}/{id}`` in a body but absent
                from ``attachments`` are registered as hidden PNG attachments, as Zammad
                hides inline attachments it has rewritten (§4).
            tags: the ticket's tags.
            names: the ``?expand=true`` name strings (``group``, ``state``, ``owner``, …);
                missing ones are derived from the ids (``owner_id`` 1 → ``-``).
            all_extras: extra ``?all=true`` parts: ``assets`` (e.g. ``User``,
                ``Organization``, ``Group``), ``links``, ``mentions``, ``time_accountings``,
                ``form_meta``.

        Raises:
            ValueError: the ticket or an article has no positive integer ``id``.
        """
        columns = copy.deepcopy(ticket)
        ticket_id = columns.get("id")
        if not isinstance(ticket_id, int) or ticket_id <= 0:
            raise ValueError(f"ticket needs a positive int 'id', got {ticket_id!r}")
        given_names = {key: columns.pop(key) for key in TICKET_NAME_KEYS if key in columns}
        columns.pop("article_ids", None)
        time_ids = list(columns.pop("ticket_time_accounting_ids", []) or [])
        merged_names = {**_default_names(columns), **given_names, **(names or {})}
        article_ids: list[int] = []
        for article in articles:
            stored = copy.deepcopy(article)
            article_id = stored.get("id")
            if not isinstance(article_id, int) or article_id <= 0:
                raise ValueError(f"article needs a positive int 'id', got {article_id!r}")
            stored["ticket_id"] = ticket_id
            stored.setdefault("type", _name(ARTICLE_TYPES, stored.get("type_id"), "note"))
            stored.setdefault("sender", _name(SENDERS, stored.get("sender_id"), "Agent"))
            stored.setdefault("created_by", user_name(stored.get("created_by_id")))
            stored.setdefault("updated_by", user_name(stored.get("updated_by_id")))
            stored.setdefault("attachments", [])
            self.articles[article_id] = stored
            self.hidden_attachments[article_id] = _inline_attachments(stored, ticket_id)
            article_ids.append(article_id)
        self.tickets[ticket_id] = TicketRecord(
            columns=columns,
            names=merged_names,
            tags=list(dict.fromkeys(t.strip() for t in tags if t.strip())),
            article_ids=article_ids,
            time_accounting_ids=time_ids,
            all_extras=copy.deepcopy(all_extras or {}),
        )
        return ticket_id

    def seed_fixture_ticket(self, fixtures_dir: Path) -> int:
        """Load ticket 4711 from ``ticket-all.json``, ``articles-by-ticket.json``, ``tags.json``
        (names from ``ticket-expand.json`` when present); returns the ticket id."""
        fixtures_dir = Path(fixtures_dir)

        def load(name: str) -> Any:
            return json.loads((fixtures_dir / name).read_text(encoding="utf-8"))

        everything = load("ticket-all.json")
        ticket_id = int(everything["ticket_id"])
        ticket = everything["assets"]["Ticket"][str(ticket_id)]
        names = None
        if (fixtures_dir / "ticket-expand.json").exists():
            expanded = load("ticket-expand.json")
            names = {key: expanded[key] for key in TICKET_NAME_KEYS if key in expanded}
        extras = {
            "assets": {k: v for k, v in everything["assets"].items() if k not in ("Ticket", "TicketArticle")},
            **{
                k: everything[k]
                for k in ("links", "mentions", "time_accountings", "form_meta")
                if k in everything
            },
        }
        return self.add_ticket(
            ticket, load("articles-by-ticket.json"), load("tags.json")["tags"], names=names, all_extras=extras
        )

    def clone_ticket(
        self,
        source_id: int,
        new_id: int,
        *,
        number: str | None = None,
        tags: list[str] | None = None,
        article_ids: list[int] | None = None,
    ) -> int:
        """Add a copy of ticket ``source_id`` as ``new_id`` (number ``number``, default
        ``str(new_id)``; tags ``tags``, default the source's), with copies of its articles
        (of those in ``article_ids`` only, when given) under fresh article ids. Inline image
        URLs in the bodies are rewritten to the new ticket and article ids; attachment ids are
        kept. Notes created through the API are not copied. Returns ``new_id``.

        Raises:
            ValueError: ticket ``new_id`` exists already.
            KeyError: there is no ticket ``source_id``.
        """
        if new_id in self.tickets:
            raise ValueError(f"ticket {new_id} exists already")
        source = self.ticket_record(source_id)
        next_article = max(self.articles, default=0) + 1
        articles = []
        for old_id in source.article_ids:
            if old_id in self.created_article_ids or (article_ids is not None and old_id not in article_ids):
                continue  # notes the archiver posted belong to the source ticket only
            article = copy.deepcopy(self.articles[old_id])
            article["id"] = next_article
            article["body"] = str(article.get("body") or "").replace(
                f"/api/v1/ticket_attachment/{source_id}/{old_id}/",
                f"/api/v1/ticket_attachment/{new_id}/{next_article}/",
            )
            article.pop("ticket_id", None)
            articles.append(article)
            next_article += 1
        columns = {**copy.deepcopy(source.columns), "id": new_id, "number": number or str(new_id)}
        return self.add_ticket(
            columns,
            articles,
            list(source.tags) if tags is None else tags,
            names=copy.deepcopy(source.names),
            all_extras=source.all_extras,
        )

    def add_link(self, link_type: str, source: int, target: int) -> None:
        """Link ticket ``source`` to ticket ``target`` as Zammad's ``Link.add`` does (``parent``:
        ``source`` is the parent of ``target``).

        Raises:
            ValueError: an unknown ``link_type``.
        """
        if link_type not in LINK_TYPE_SEEN_FROM_SOURCE:
            raise ValueError(f"unknown link type {link_type!r}")
        self.links.append(LinkRecord(link_type, source, target))

    def merge_ticket(self, source_id: int, target_id: int, *, user_id: int = 1) -> None:
        """Merge ticket ``source_id`` into ``target_id`` as Zammad's ``Ticket#merge_to`` does
        (``docs/reference/zammad.md`` §3.8): the source's articles move to the target (kept in
        date order there), the source gets one article ``merged`` (a public note by an agent),
        its links move to the target, a ``parent`` link from the target to the source is added,
        its state becomes ``merged`` (id 5) and its owner ``-`` (id 1).

        Raises:
            KeyError: a ticket does not exist.
            ValueError: the target is merged itself, or is the source (Zammad's 422s).
        """
        source, target = self.ticket_record(source_id), self.ticket_record(target_id)
        if target.columns.get("state_id") == MERGED_STATE_ID:
            raise ValueError("It is not possible to merge into an already merged ticket.")
        if source_id == target_id:
            raise ValueError("A ticket cannot be merged into itself.")
        moved = list(source.article_ids)  # all of them, the notes posted through the API too
        for article_id in moved:
            self.articles[article_id]["ticket_id"] = target_id
        target.article_ids = sorted(
            [*target.article_ids, *moved],
            key=lambda a: (str(self.articles[a].get("created_at") or ""), a),
        )
        source.article_ids = []
        created = now()
        article_id = max(self.articles, default=0) + 1
        self.articles[article_id] = {
            "id": article_id,
            "ticket_id": source_id,
            "type_id": ARTICLE_TYPE_IDS["note"],
            "sender_id": SENDER_IDS["Agent"],
            "from": None,
            "to": None,
            "cc": None,
            "subject": None,
            "reply_to": None,
            "message_id": None,
            "message_id_md5": None,
            "in_reply_to": None,
            "content_type": "text/plain",
            "references": None,
            "body": "merged",
            "internal": False,
            "preferences": {},
            "updated_by_id": user_id,
            "created_by_id": user_id,
            "origin_by_id": None,
            "created_at": created,
            "updated_at": created,
            "detected_language": None,
            "type": "note",
            "sender": "Agent",
            "created_by": user_name(user_id),
            "updated_by": user_name(user_id),
            "attachments": [],
            "time_unit": None,
        }
        self.hidden_attachments[article_id] = []
        source.article_ids.append(article_id)
        # The source's links move to the target; one that would then exist twice is dropped.
        self.links = list(
            dict.fromkeys(
                LinkRecord(
                    link.link_type,
                    target_id if link.source == source_id else link.source,
                    target_id if link.target == source_id else link.target,
                )
                for link in self.links
            )
        )
        self.add_link("parent", target_id, source_id)
        for record in (source, target):
            record.columns["article_count"] = len(record.article_ids)
            record.columns["updated_at"] = created
        source.columns.update(state_id=MERGED_STATE_ID, owner_id=1)
        source.names.update(state=STATES[MERGED_STATE_ID], owner=user_name(1))

    def links_of(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's links as ``Link.list`` gives them: first those it is the source of (type
        mapped, :data:`LINK_TYPE_SEEN_FROM_SOURCE`; the target named), then those it is the
        target of (type as stored; the source named)."""
        seen_from_source = [
            {
                "link_type": LINK_TYPE_SEEN_FROM_SOURCE[link.link_type],
                "link_object": "Ticket",
                "link_object_value": link.target,
            }
            for link in self.links
            if link.source == ticket_id
        ]
        seen_from_target = [
            {"link_type": link.link_type, "link_object": "Ticket", "link_object_value": link.source}
            for link in self.links
            if link.target == ticket_id
        ]
        return seen_from_source + seen_from_target

    # -- inspection ----------------------------------------------------------------------------

    def tags(self, ticket_id: int) -> list[str]:
        """The ticket's current tags (a copy)."""
        return list(self.ticket_record(ticket_id).tags)

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Articles created through ``POST /api/v1/ticket_articles`` for the ticket, oldest first."""
        ticket = self.ticket_record(ticket_id)
        return [copy.deepcopy(self.articles[a]) for a in ticket.article_ids if a in self.created_article_ids]

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """The stored ticket columns (a copy)."""
        return copy.deepcopy(self.ticket_record(ticket_id).columns)

    # -- look-ups for the routes ---------------------------------------------------------------

    def ticket_record(self, ticket_id: int) -> TicketRecord:
        """The stored ticket.

        Raises:
            KeyError: no such ticket (the message names it).
        """
        try:
            return self.tickets[ticket_id]
        except KeyError:
            raise KeyError(f"no ticket {ticket_id} in the simulator") from None

    def lookup_ticket(self, raw_id: str) -> TicketRecord | web.Response:
        """The ticket named by a path or query value, or Zammad's 404."""
        ticket = self.tickets.get(int(raw_id)) if raw_id.isdigit() else None
        if ticket is None:
            return zammad_error(404, f"Couldn't find Ticket with 'id'={raw_id}")
        return ticket

    def lookup_article(self, raw_id: str) -> dict[str, Any] | web.Response:
        """The article named by a path value, or Zammad's 404."""
        article = self.articles.get(int(raw_id)) if raw_id.isdigit() else None
        if article is None:
            return zammad_error(404, f"Couldn't find Ticket::Article with 'id'={raw_id}")
        return article

    def attachment_bytes(self, entry: Mapping[str, Any]) -> bytes:
        """An attachment's contents: what was posted for it, else a stand-in of its type and
        declared size (:func:`~devtools.zammad_simulator.files.sized_file`)."""
        data = self.attachment_data.get(entry["id"])
        if data is not None:
            return data
        preferences = entry.get("preferences") or {}
        content_type = (
            preferences.get("Content-Type") or preferences.get("Mime-Type") or "application/octet-stream"
        )
        mime = (preferences.get("Mime-Type") or content_type).split(";")[0].strip().lower()
        return sized_file(mime, entry["id"], declared_size(entry))

    def all_attachment_ids(self) -> list[int]:
        """Every attachment id in use (listed and hidden)."""
        ids = [att["id"] for a in self.articles.values() for att in a.get("attachments", [])]
        ids += [att["id"] for hidden in self.hidden_attachments.values() for att in hidden]
        return ids


def now() -> str:
    """The current time as Zammad writes it: ``2025-03-03T08:12:44.123Z``."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def user_name(user_id: Any) -> str | None:
    """The login shown for a user id: ``-`` for the system user 1, else ``user-<id>``."""
    if user_id is None:
        return None
    return "-" if user_id == 1 else f"user-{user_id}"


def _name(table: Mapping[int, str], value: Any, default: str) -> str:
    return table.get(value, default) if isinstance(value, int) else default


def _default_names(columns: dict[str, Any]) -> dict[str, Any]:
    """Name strings derived from ids when the caller gives none (Zammad's seeded tables)."""

    def named(key: str, table: dict[int, str] | None = None, prefix: str = "") -> Any:
        value = columns.get(key)
        if value is None:
            return None
        if table is not None:
            return table.get(value, f"{prefix}{value}")
        return f"{prefix}{value}"

    return {
        "group": named("group_id", prefix="group-"),
        "organization": named("organization_id", prefix="organization-"),
        "state": named("state_id", STATES, "state-"),
        "priority": named("priority_id", PRIORITIES, "priority-"),
        "owner": user_name(columns.get("owner_id")),
        "customer": user_name(columns.get("customer_id")),
        "created_by": user_name(columns.get("created_by_id")),
        "updated_by": user_name(columns.get("updated_by_id")),
        "create_article_type": named("create_article_type_id", ARTICLE_TYPES, "type-"),
        "create_article_sender": named("create_article_sender_id", SENDERS, "sender-"),
    }


def _inline_attachments(article: dict[str, Any], ticket_id: int) -> list[dict[str, Any]]:
    """Inline images the body references but ``attachments`` hides (§4 ``insert_urls``)."""
    listed = {att.get("id") for att in article.get("attachments", [])}
    hidden = []
    for t, a, att_id in _INLINE_URL.findall(str(article.get("body") or "")):
        if int(t) == ticket_id and int(a) == article["id"] and int(att_id) not in listed:
            listed.add(int(att_id))
            hidden.append(
                {
                    "id": int(att_id),
                    "filename": f"image{att_id}.png",
                    "size": "0",
                    "preferences": {"Mime-Type": "image/png", "Content-Disposition": "inline"},
                }
            )
    return hidden
