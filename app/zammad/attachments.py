"""Which of an article's attachments are Zammad's own copies of the mail's body, not something sent.

Zammad's e-mail parser stores the HTML part of an incoming mail a second time, as an
attachment named ``message.html`` (or the part's file name) with the preferences
``"original-format": true`` and ``"content-alternative": true``: the raw, unsanitised HTML of
the part, beside the sanitised ``body`` (``app/models/channel/email_parser/content_parser.rb``;
``docs/reference/zammad.md`` §4, "message.html pseudo-attachment"). Users see it as a stray
download (zammad/zammad#956). The raw e-mail (``GET /api/v1/ticket_article_plain/{id}``)
holds that part as it was received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _preference(attachment: Mapping[str, Any], name: str) -> bool:
    preferences = attachment.get("preferences")
    return isinstance(preferences, Mapping) and preferences.get(name) is True


def is_html_part_copy(attachment: Mapping[str, Any]) -> bool:
    """Whether ``attachment`` (one entry of an article's ``attachments``) is Zammad's copy of
    the mail's original HTML part (``message.html``): its ``preferences`` say
    ``original-format`` (JSON ``true``). A malformed entry is not."""
    return _preference(attachment, "original-format")


def is_body_alternative(attachment: Mapping[str, Any]) -> bool:
    """Whether ``attachment`` is another form of the mail's body rather than a file the sender
    attached: :func:`is_html_part_copy`, or ``preferences`` saying ``content-alternative``
    (JSON ``true``). A malformed entry is not."""
    return _preference(attachment, "original-format") or _preference(attachment, "content-alternative")


def declared_size(attachment: Mapping[str, Any]) -> int | None:
    """The size in bytes Zammad's article JSON declares for ``attachment`` (a string of
    digits there: the stored file's bytes), or ``None`` when it is missing, not a number or
    negative."""
    try:
        size = int(attachment["size"])
    except (KeyError, TypeError, ValueError):
        return None
    return size if size >= 0 else None
