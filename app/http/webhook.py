"""What is a valid webhook? Signature check and ticket-id extraction, as pure functions.

Zammad signs the exact body bytes with HMAC-SHA1 and sends ``X-Hub-Signature: sha1=<hex>``
(Zammad ``lib/user_agent.rb``; ``docs/reference/zammad.md`` §1.4). ``sha256=<hex>`` is accepted too,
for proxies and senders that use it.
"""

from __future__ import annotations

import hmac
from typing import Any

_ALGORITHMS = {"sha1": "sha1", "sha256": "sha256"}
"""Accepted ``X-Hub-Signature`` prefixes and their digest names for :func:`hmac.digest` (OpenSSL's
one-shot HMAC: no Python ``HMAC`` object per request)."""
MAX_TICKET_ID = 2**63 - 1


class InvalidPayload(ValueError):
    """The body is not a webhook payload the archiver can act on; the message says why."""


def signature_ok(body: bytes, header: str | None, secret: bytes) -> bool:
    """Check an ``X-Hub-Signature`` header over the raw body in constant time.

    Args:
        body: the request body exactly as received.
        header: ``"sha1=<hex>"`` or ``"sha256=<hex>"`` (case-insensitive hex), or ``None``.
        secret: the webhook's HMAC token as UTF-8 bytes.

    Returns:
        True only when the header names a known algorithm and its digest matches.
    """
    if not header:
        return False
    algorithm, sep, given = header.strip().partition("=")
    digest = _ALGORITHMS.get(algorithm.lower())
    if not sep or digest is None:
        return False
    want = hmac.digest(secret, body, digest).hex()
    return hmac.compare_digest(want.encode(), given.strip().lower().encode())


_MAX_TICKET_ID_DIGITS = len(str(MAX_TICKET_ID))


def ticket_id_from_digits(text: str) -> int | None:
    """A ticket id written as ASCII digits (``"4711"``, ``"004711"``), or ``None``.

    ``None`` when ``text`` is not all ASCII digits, or is 0, or is above
    :data:`MAX_TICKET_ID`. The digits are counted before they are converted: Python refuses
    to convert more than 4,300 digits (``ValueError``, its guard against quadratic-time
    conversion), and a request path or payload may carry any number of them.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    if not significant or len(significant) > _MAX_TICKET_ID_DIGITS:
        return None
    number = int(significant)
    return number if number <= MAX_TICKET_ID else None


def as_ticket_id(value: Any, where: str) -> int:
    """A ticket id as a webhook may name it: a JSON integer or a string of ASCII digits
    (:func:`ticket_id_from_digits`), 1 to :data:`MAX_TICKET_ID`.

    Raises:
        InvalidPayload: a boolean, a float (also an integer beyond 64 bits, as orjson reads
            it), another type, or a number out of range; the message names ``where``.
    """
    if isinstance(value, bool):
        raise InvalidPayload(f"{where} must be a positive integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        parsed = ticket_id_from_digits(value.strip())
        if parsed is None:
            raise InvalidPayload(f"{where} must be a positive integer of at most {MAX_TICKET_ID}")
        number = parsed
    elif isinstance(value, float):  # orjson reads integers beyond 64 bits as floats
        raise InvalidPayload(
            f"{where} must be a positive integer of at most {MAX_TICKET_ID}, got a non-integer "
            "or larger number"
        )
    else:
        raise InvalidPayload(f"{where} must be a positive integer or a string of digits")
    if not 0 < number <= MAX_TICKET_ID:
        raise InvalidPayload(f"{where} must be a positive integer of at most {MAX_TICKET_ID}")
    return number


def extract_ticket_id(payload: Any) -> int:
    """Find the ticket id in a webhook payload (``docs/reference/zammad.md`` §2).

    Looks, in order, at the top-level ``ticket_id`` (a custom payload; an integer or a string
    of digits) and at ``ticket.id`` (Zammad's default payload). A payload with both must name
    the same ticket: a custom template that adds ``ticket_id`` beside Zammad's ``ticket`` object
    and puts another number there is a mistake, and archiving either ticket would be a guess.
    A ``ticket.id`` that is not a ticket id at all is ignored when ``ticket_id`` is valid.

    Raises:
        InvalidPayload: not a JSON object, an ``{"error": …}`` body (Zammad sends one when a
            custom payload template failed to render), no valid ticket id, or ``ticket_id`` and
            ``ticket.id`` naming different tickets.
    """
    if not isinstance(payload, dict):
        raise InvalidPayload("the body must be a JSON object")
    ticket = payload.get("ticket")
    if "ticket_id" in payload:
        number = as_ticket_id(payload["ticket_id"], "ticket_id")
        if isinstance(ticket, dict) and "id" in ticket:
            try:
                other = as_ticket_id(ticket["id"], "ticket.id")
            except InvalidPayload:
                return number
            if other != number:
                raise InvalidPayload(
                    f"ticket_id ({number}) and ticket.id ({other}) name different tickets; "
                    "check the webhook's custom payload"
                )
        return number
    if isinstance(ticket, dict) and "id" in ticket:
        return as_ticket_id(ticket["id"], "ticket.id")
    if "error" in payload:
        raise InvalidPayload("Zammad sent an error instead of a payload (check the webhook's custom payload)")
    raise InvalidPayload("no ticket id: expected 'ticket_id' or 'ticket.id'")
