"""Build a webhook request byte for byte as Zammad sends it (for the demo, tests and tools).

Zammad posts ``params.to_json`` (compact JSON; Rails escapes ``<``, ``>``, ``&`` as
``\\u003c``, ``\\u003e``, ``\\u0026``) with the headers of ``lib/user_agent.rb`` and
``app/jobs/trigger_webhook_job.rb`` (``docs/reference/zammad.md`` §1.2–1.4).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any


def zammad_json(payload: Any) -> bytes:
    """Serialise ``payload`` like Rails' ``to_json``: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def zammad_webhook(
    payload: Any, secret: str | None, *, delivery_id: str | None = None, trigger: str = "PDF archive"
) -> tuple[bytes, dict[str, str]]:
    """Return ``(body, headers)`` of a Zammad webhook POST for ``payload``.

    Args:
        payload: the JSON payload (default or custom).
        secret: the webhook's HMAC token; ``None`` sends no ``X-Hub-Signature`` (as Zammad
            does when no token is set).
        delivery_id: ``X-Zammad-Delivery``; a fresh UUID when omitted.
        trigger: ``X-Zammad-Trigger``, the trigger's name.
    """
    body = zammad_json(payload)
    headers = {
        "User-Agent": "Zammad User Agent",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "*/*",
        "X-Zammad-Trigger": trigger,
        "X-Zammad-Delivery": delivery_id or str(uuid.uuid4()),
    }
    if secret is not None:
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return body, headers
