"""What the PDF says about a ticket: the text of every field, article header and body, before layout.

Pure functions over Zammad's JSON. Ticket fields come either as name strings
(``GET /api/v1/tickets/{id}?expand=true``) or as nested objects (webhook payload:
``{"name": ...}`` for group, priority, state and organization; ``{"login", "firstname",
"lastname", "email"}`` for users); both are accepted everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement

_BLANK_RUNS = re.compile(r"\n{4,}")
_MIME_PARAMS = re.compile(r";.*$", re.DOTALL)

# inscriptis' "strict" profile (no padding around every <div>), with quoted mail indented.
_CSS = {**CSS_PROFILES["strict"], "blockquote": HtmlElement(display=Display.block, padding_inline=4)}


@dataclass(frozen=True, slots=True)
class AttachmentLine:
    """One attachment as listed under its article.

    Attributes:
        filename: the file name as Zammad stores it.
        content_type: the MIME type without parameters, or ``""`` when unknown.
        size: human-readable size, e.g. ``"179.5 KiB (183,764 bytes)"``.
    """

    filename: str
    content_type: str
    size: str


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
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_time(value: Any, zone: ZoneInfo) -> str:
    """A timestamp in ``zone`` with its UTC offset: ``"2025-03-03 09:12:44 +01:00"``.

    Unparseable values are shown as they are; ``None`` becomes ``""``.
    """
    parsed = parse_time(value)
    if parsed is None:
        return "" if value is None else str(value)
    local = parsed.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def ordered_articles(articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Articles oldest first: by ``created_at`` then ``id``; unparseable times keep their place at the end."""
    far_future = datetime.max.replace(tzinfo=timezone.utc)

    def key(indexed: tuple[int, dict[str, Any]]) -> tuple[datetime, int, int]:
        index, article = indexed
        article_id = article.get("id")
        return (
            parse_time(article.get("created_at")) or far_future,
            article_id if isinstance(article_id, int) else 0,
            index,
        )

    return [article for _, article in sorted(enumerate(articles), key=key)]


def _human_size(value: Any) -> str:
    try:
        size = int(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if size < 1024:
        return f"{size} bytes"
    scaled = size / 1024
    for unit in ("KiB", "MiB"):
        if scaled < 1024:
            return f"{scaled:.1f} {unit} ({size:,} bytes)"
        scaled /= 1024
    return f"{scaled:.1f} GiB ({size:,} bytes)"


def visible_attachments(article: dict[str, Any]) -> list[AttachmentLine]:
    """The article's attachments worth listing, in order.

    Leaves out Zammad's ``message.html`` pseudo-attachment (preferences ``original-format``
    or ``content-alternative`` true): it is the HTML body again, not something the sender
    attached.
    """
    lines: list[AttachmentLine] = []
    for attachment in article.get("attachments") or []:
        if not isinstance(attachment, dict):
            continue
        preferences = attachment.get("preferences") or {}
        if not isinstance(preferences, dict):
            preferences = {}
        if preferences.get("original-format") is True or preferences.get("content-alternative") is True:
            continue
        content_type = str(preferences.get("Mime-Type") or preferences.get("Content-Type") or "")
        content_type = _MIME_PARAMS.sub("", content_type).strip()
        lines.append(
            AttachmentLine(
                filename=str(attachment.get("filename") or "(no name)"),
                content_type=content_type,
                size=_human_size(attachment.get("size")),
            )
        )
    return lines


def body_text(article: dict[str, Any]) -> str:
    """The article body as plain text.

    ``text/html`` goes through inscriptis (links shown as ``[text](url)``, images as
    ``[alt]``, quotes indented) with runs of more
    than two blank lines shortened; any failure falls back to the raw body, so an odd body
    never fails a job. Other content types are taken as plain text with their line breaks.
    """
    body = article.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        body = str(body)
    content_type = str(article.get("content_type") or "").lower()
    if content_type.startswith("text/html"):
        try:
            text = get_text(body, ParserConfig(css=_CSS, display_links=True, display_images=True))
        except Exception:  # inscriptis on hostile input: show the source rather than fail the job
            return body
        return _BLANK_RUNS.sub("\n\n\n", text).strip("\n")
    return body.rstrip()
