"""Which of an article's attachments are Zammad's own copy of its body, not something sent.

Zammad's e-mail parser stores the HTML part of every incoming mail a second time, as an
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


def is_body_copy(attachment: Mapping[str, Any]) -> bool:
    """Whether ``attachment`` (one entry of an article's ``attachments``) is Zammad's copy of
    the mail's HTML part: its ``preferences`` say ``original-format`` or
    ``content-alternative`` (JSON ``true``). A malformed entry is not."""
    preferences = attachment.get("preferences")
    if not isinstance(preferences, Mapping):
        return False
    return preferences.get("original-format") is True or preferences.get("content-alternative") is True
