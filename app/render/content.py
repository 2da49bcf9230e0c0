"""What the PDF says about a ticket: the text of every field, article header and body, before layout.

Pure functions over Zammad's JSON. Ticket fields come either as name strings
(``GET /api/v1/tickets/{id}?expand=true``) or as nested objects (webhook payload:
``{"name": ...}`` for group, priority, state and organization; ``{"login", "firstname",
"lastname", "email"}`` for users); both are accepted everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload
from zoneinfo import ZoneInfo

from app.i18n import translation, zone_name
from app.zammad.attachments import is_body_alternative

_MIME_PARAMS = re.compile(r";.*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class AttachmentLine:
    """One attachment as listed under its article.

    Attributes:
        filename: the file name as Zammad stores it.
        content_type: the MIME type without parameters, or ``""`` when unknown.
        size: human-readable size, e.g. ``"179.5 KiB (183,764 bytes)"``.
        attachment_id: Zammad's attachment id, or ``None`` when the attachment has none.
    """

    filename: str
    content_type: str
    size: str
    attachment_id: int | None = None


def display_name(value: Any) -> str:
    """A ticket field as readable text: names stay, objects become their name.

    Users (``firstname``/``lastname``/``email``/``login``) become ``"First Last <email>"``
    (or whichever parts exist); other objects their ``name``; ``None`` becomes ``""``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "name" in value and value["name"] is not None:
            return str(value["name"])
        person = " ".join(str(value[k]).strip() for k in ("firstname", "lastname") if value.get(k)).strip()
        email = str(value.get("email") or "").strip()
        if person and email:
            return f"{person} <{email}>"
        return person or email or str(value.get("login") or "")
    if isinstance(value, (list, tuple)):
        return ", ".join(display_name(item) for item in value)
    return str(value)


def ticket_field(ticket: dict[str, Any], key: str) -> str:
    """``ticket[key]`` via :func:`display_name`; falls back to ``"(id N)"`` from ``key_id``."""
    text = display_name(ticket.get(key))
    if not text and ticket.get(f"{key}_id") is not None:
        text = f"(id {ticket[f'{key}_id']})"
    return text


def parse_time(value: Any) -> datetime | None:
    """A Zammad timestamp (``"2025-03-03T08:12:44.031Z"``) as an aware datetime, or ``None``."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: Any, zone: ZoneInfo, language: str = "en") -> str:
    """A timestamp in ``zone``, in the form of ``language`` (:mod:`app.i18n`).

    ``en``: with its UTC offset, ``"2025-03-03 09:12:44 +01:00"``; ``de``: day first and
    the zone named, ``"03.03.2025 09:12:44 MEZ"`` (:func:`app.i18n.zone_name`).
    Unparseable values are shown as they are; ``None`` becomes ``""``.
    """
    parsed = parse_time(value)
    if parsed is None:
        return "" if value is None else str(value)
    local = parsed.astimezone(zone)
    offset = local.strftime("%z")  # ±HHMM, or ±HHMMSS for a local mean time (before ~1900)
    offset = ":".join((offset[:3], *(offset[i : i + 2] for i in range(3, len(offset), 2))))
    if language == "en":
        return f"{local:%Y-%m-%d %H:%M:%S} {offset}"
    return f"{local:%d.%m.%Y %H:%M:%S} {zone_name(local, language, offset)}"


_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def article_order(articles: Iterable[Any]) -> list[int]:
    """The positions of ``articles`` oldest first: by ``created_at`` then ``id``; unparseable
    times keep their place at the end. Each article is read once and none is kept (for a
    sequence that parses each article when read).

    Raises:
        TypeError: an article is not a ``dict``.
    """
    keys = []
    for index, article in enumerate(articles):
        if not isinstance(article, dict):
            raise TypeError(f"article {index} is a {type(article).__name__}, not an object")
        article_id = article.get("id")
        keys.append(
            (
                parse_time(article.get("created_at")) or _FAR_FUTURE,
                article_id if isinstance(article_id, int) else 0,
                index,
            )
        )
    keys.sort()
    return [key[2] for key in keys]


def kept_positions(articles: Iterable[Any], max_articles: int) -> list[int]:
    """The positions of the articles an archive holds under ``PDF_MAX_ARTICLES``
    (``max_articles``, 0 = no limit): :func:`article_order` (oldest first, by ``created_at``
    then ``id``), cut to its first ``max_articles``. The renderer draws these and the
    workflow fetches the images and originals of these only, so both always mean the same
    articles.

    Raises:
        TypeError: an article is not a ``dict``.
    """
    order = article_order(articles)
    return order[:max_articles] if max_articles and len(order) > max_articles else order


class KeptArticles(Sequence[dict[str, Any]]):
    """The articles of ``articles`` at ``positions``, in that order, read from ``articles``
    when read (so a sequence that parses each article when read,
    :class:`app.zammad.articles.LazyArticles`, still parses one at a time).

    Args:
        articles: the ticket's articles (``by_ticket``).
        positions: indexes into ``articles`` (:func:`kept_positions`).
    """

    def __init__(self, articles: Sequence[dict[str, Any]], positions: Sequence[int]) -> None:
        self._articles = articles
        self._positions = tuple(positions)

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._articles[position] for position in self._positions[index]]
        return self._articles[self._positions[index]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for position in self._positions:
            yield self._articles[position]


def kept_articles(articles: Sequence[dict[str, Any]], max_articles: int) -> Sequence[dict[str, Any]]:
    """The articles an archive holds under ``PDF_MAX_ARTICLES`` (``max_articles``, 0 = no
    limit): ``articles`` itself when within the limit, else a :class:`KeptArticles` of
    :func:`kept_positions` (the oldest ``max_articles``, oldest first).

    Raises:
        TypeError: over the limit, an article is not a ``dict``.
    """
    if not max_articles or len(articles) <= max_articles:
        return articles
    return KeptArticles(articles, kept_positions(articles, max_articles))


def human_size(value: Any, language: str = "en") -> str:
    """A byte count as text: ``"512 bytes"``, ``"179.5 KiB (183,764 bytes)"``; ``""`` for ``None``.

    ``de``: German separators and unit, ``"179,5 KiB (183.764 Bytes)"``.
    """
    try:
        size = int(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if size < 1024:
        text = f"{size} byte" if size == 1 else f"{size} bytes"
    else:
        scaled = size / 1024
        unit = "GiB"
        for candidate in ("KiB", "MiB"):
            if scaled < 1024:
                unit = candidate
                break
            scaled /= 1024
        text = f"{scaled:.1f} {unit} ({size:,} bytes)"
    if language == "de":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".").replace("byte", "Byte")
    return text


def visible_attachments(article: dict[str, Any], language: str = "en") -> list[AttachmentLine]:
    """The article's attachments worth listing, in order.

    Leaves out Zammad's ``message.html`` pseudo-attachment
    (:func:`app.zammad.attachments.is_body_alternative`): it is the body again, not something
    the sender attached. Sizes are written in ``language`` (:func:`human_size`).
    """
    lines: list[AttachmentLine] = []
    for attachment in article.get("attachments") or []:
        if not isinstance(attachment, dict):
            continue
        if is_body_alternative(attachment):
            continue
        preferences = attachment.get("preferences") or {}
        if not isinstance(preferences, dict):
            preferences = {}
        content_type = str(preferences.get("Mime-Type") or preferences.get("Content-Type") or "")
        content_type = _MIME_PARAMS.sub("", content_type).strip()
        lines.append(
            AttachmentLine(
                filename=str(attachment.get("filename") or translation(language).gettext("(no name)")),
                content_type=content_type,
                size=human_size(attachment.get("size"), language),
                attachment_id=attachment["id"] if isinstance(attachment.get("id"), int) else None,
            )
        )
    return lines


#: Ticket attributes Zammad itself defines; every other key a ticket carries is a custom
#: attribute (object manager field) and is listed under its own name.
STANDARD_TICKET_KEYS = frozenset(
    [
        "id",
        "number",
        "title",
        "state",
        "state_id",
        "priority",
        "priority_id",
        "group",
        "group_id",
        "owner",
        "owner_id",
        "customer",
        "customer_id",
        "organization",
        "organization_id",
        "note",
        "type",
        "time_unit",
        "preferences",
        "created_at",
        "updated_at",
        "created_by",
        "created_by_id",
        "updated_by",
        "updated_by_id",
        "article_count",
        "article_ids",
        "ticket_time_accounting_ids",
        "ticket_time_accounting",
        "first_response_at",
        "first_response_escalation_at",
        "first_response_in_min",
        "first_response_diff_in_min",
        "close_at",
        "close_escalation_at",
        "close_in_min",
        "close_diff_in_min",
        "update_escalation_at",
        "update_in_min",
        "update_diff_in_min",
        "last_contact_at",
        "last_contact_agent_at",
        "last_contact_customer_at",
        "last_owner_update_at",
        "last_close_at",
        "escalation_at",
        "pending_time",
        "create_article_type",
        "create_article_type_id",
        "create_article_sender",
        "create_article_sender_id",
        "tags",
        "mentions",
        "checklist_id",
        "referencing_checklist_ids",
        "shared_draft_id",
        "article",
        "articles",
        "escalation_at_in_min",
        "overdue_at",
        "state_type",
        "links",
    ]
)


def custom_attributes(ticket: dict[str, Any], language: str = "en") -> list[tuple[str, str]]:
    """The ticket's custom attributes as ``(label, value)``, sorted by name, empty ones left out.

    Labels are the attribute names made readable (``contract_number`` → ``Contract number``);
    values go through :func:`display_name` (booleans as ``yes``/``no`` in ``language``, lists
    joined, objects by name or as compact JSON).
    """
    import json

    out: list[tuple[str, str]] = []
    for key in sorted(k for k in ticket if isinstance(k, str) and k not in STANDARD_TICKET_KEYS):
        value = ticket[key]
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, bool):
            text = translation(language).gettext("yes" if value else "no")
        elif (
            isinstance(value, dict)
            and "name" not in value
            and not {"firstname", "lastname", "email", "login"} & set(value)
        ):
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        else:
            text = display_name(value)
        if text:
            out.append((key.replace("_", " ").strip().capitalize() or key, text))
    return out


def quote_depth(line: str) -> int:
    """How deeply a plain-text line is quoted: the number of leading ``>`` (spaces between allowed)."""
    depth = 0
    for char in line:
        if char == ">":
            depth += 1
        elif char not in " \t":
            break
    return depth


def is_html(article: dict[str, Any]) -> bool:
    """Whether the article body is ``text/html``."""
    return str(article.get("content_type") or "").lower().startswith("text/html")


def body_text(article: dict[str, Any]) -> str:
    """The article body as plain text.

    ``text/html`` goes through inscriptis (:func:`app.render.html.html_to_text`: links shown
    as ``[text](url)``, images as ``[alt]``, quotes indented). Other content types are taken
    as plain text with their line breaks.
    """
    from app.render.html import html_to_text

    body = article.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        body = str(body)
    if is_html(article):
        return html_to_text(body)
    return body.rstrip()
