"""The raw e-mail of an article (``GET /api/v1/ticket_article_plain/{id}``), the same bytes every time.

Zammad serves the mail it stored; the simulator writes one from the article: RFC 822 with
``email.policy.SMTP``. Simple articles (no attachments, short ASCII headers of plain names and
addresses, no ``Message-ID``/``In-Reply-To``/``References``) are written directly by
:func:`simple_eml`, byte for byte what the ``email`` package writes for them (its header
parsing dominates otherwise); all others go through ``EmailMessage`` (:func:`email_package_eml`).
"""

from __future__ import annotations

import email.contentmanager
import email.policy
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from devtools.zammad_simulator.files import declared_size, generated_file

_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
"""Header values :func:`simple_eml` writes as they are: short printable ASCII that the ``email``
package would neither encode, quote, fold nor reformat."""
_ADDR_SPEC = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_PLAIN_ADDRESS = re.compile(rf"(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_ADDR_SPEC}>|{_ADDR_SPEC})")
_ADDRESS_HEADERS = (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to"))
_EML_POLICY = email.policy.SMTP
_MAX_LINE = _EML_POLICY.max_line_length or 78


def article_eml(article: dict[str, Any], attachment_data: Mapping[int, bytes]) -> bytes:
    """The article as an RFC 822 message.

    Args:
        article: the stored article (``from``, ``to``, ``subject``, ``body``, ``attachments``…).
        attachment_data: contents of attachments posted through the API, by id; other
            attachments get stand-in contents (:func:`~devtools.zammad_simulator.files.generated_file`).
    """
    fast = simple_eml(article, _created(article))
    return fast if fast is not None else email_package_eml(article, attachment_data)


def _created(article: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(article.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


def simple_eml(article: dict[str, Any], created: datetime) -> bytes | None:
    """The ``email`` package's output for a simple article, written directly; ``None`` when
    the article is not simple (see the module's docstring)."""
    if article.get("attachments") or any(article.get(k) for k in ("message_id", "in_reply_to", "references")):
        return None
    headers = []
    for header, key in _ADDRESS_HEADERS:
        value = article.get(key)
        if value:
            value = str(value)
            if not _PLAIN_ADDRESS.fullmatch(value) or len(header) + 2 + len(value) > _MAX_LINE:
                return None
            headers.append(f"{header}: {value}")
    subject = str(article.get("subject") or "")
    if not _PLAIN_TEXT.fullmatch(subject) or "=?" in subject or len(subject) + 9 > _MAX_LINE:
        return None
    headers.append(f"Subject: {subject}")
    headers.append(f"Date: {format_datetime(created)}")
    subtype = "html" if article.get("content_type") == "text/html" else "plain"
    # The email package's own body encoder (what set_content uses), so the bytes are the same.
    encode_text = email.contentmanager._encode_text  # type: ignore[attr-defined]  # private, no stub
    cte, payload = encode_text(str(article.get("body") or ""), "utf-8", None, _EML_POLICY)
    headers += [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
        "MIME-Version: 1.0",
        "",
        "",
    ]
    body = payload.encode("ascii", "surrogateescape").replace(b"\n", b"\r\n")
    return "\r\n".join(headers).encode("ascii") + body


def email_package_eml(article: dict[str, Any], attachment_data: Mapping[int, bytes]) -> bytes:
    """The article as ``EmailMessage`` writes it (any article; attachments as MIME parts)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    for header, key in _ADDRESS_HEADERS:
        if article.get(key):
            msg[header] = str(article[key])
    msg["Subject"] = str(article.get("subject") or "")
    msg["Date"] = format_datetime(_created(article))
    for header, key in (
        ("Message-ID", "message_id"),
        ("In-Reply-To", "in_reply_to"),
        ("References", "references"),
    ):
        if article.get(key):
            msg[header] = str(article[key])
    subtype = "html" if article.get("content_type") == "text/html" else "plain"
    msg.set_content(str(article.get("body") or ""), subtype=subtype, charset="utf-8")
    for entry in article.get("attachments", []):
        preferences = entry.get("preferences") or {}
        if preferences.get("original-format"):
            continue  # the message.html pseudo-attachment is the body itself
        mime = (preferences.get("Mime-Type") or "application/octet-stream").lower()
        maintype, _, subtype = mime.partition("/")
        data = attachment_data.get(entry["id"]) or generated_file(mime, entry["id"], declared_size(entry))
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=entry["filename"]
        )
    if msg.is_multipart():
        # Zammad serves the stored mail, the same bytes every time: no random boundary.
        msg.set_boundary(f"=_zammad-simulator-{article.get('id')}")
    return msg.as_bytes()
