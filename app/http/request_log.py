"""Pure-ASGI middleware: one structured log line per request, and the request id.

The request id is the client's ``X-Request-ID`` (up to 128 printable characters) or a new
one; it is echoed in the response's ``X-Request-ID`` and put in ``scope["app.request_id"]``.
Routes may put ``app.ticket_id`` into the scope; the line carries it with the method, path,
status, ``duration_ms`` and ``X-Zammad-Delivery``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.hmac_auth import route_path
from app.http.names import (
    DELIVERY_HEADER_RAW,
    MAX_DELIVERY_ID_CHARS,
    MAX_REQUEST_ID_CHARS,
    REQUEST_ID_HEADER_RAW,
    REQUEST_ID_KEY,
    TICKET_ID_KEY,
)
from app.observability.logging import ACCESS_LOG

_PROCESS_PREFIX = os.urandom(6).hex()
_counter = itertools.count(1)


def _request_id(raw: bytes | None) -> str:
    """The client's id when it is printable and short, else ``<random per process>-<counter>``
    (unique per process run; cheaper than a UUID per request)."""
    if raw:
        text = raw.decode("latin-1").strip()
        if 0 < len(text) <= MAX_REQUEST_ID_CHARS and text.isprintable():
            return text
    return f"{_PROCESS_PREFIX}-{next(_counter)}"


class RequestLogMiddleware:
    """Log each HTTP request once it is answered.

    Args:
        on_response: ``callback(path, status)`` after each response (metrics), ``path`` as the
            router sees it (:func:`~app.http.hmac_auth.route_path`: without a root path).
    """

    def __init__(self, app: ASGIApp, *, on_response: Callable[[str, int], None] | None = None) -> None:
        self.app = app
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id_raw = delivery = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER_RAW:
                request_id_raw = value
            elif name == DELIVERY_HEADER_RAW and delivery is None:  # the first: the one recorded
                delivery = value.decode("latin-1")[:MAX_DELIVERY_ID_CHARS]
        request_id = _request_id(request_id_raw)
        scope[REQUEST_ID_KEY] = request_id
        header = (REQUEST_ID_HEADER_RAW, request_id.encode("latin-1"))
        status = 0

        def send_with_id(message: Message) -> Awaitable[None]:
            # A plain function returning send's awaitable: no coroutine of its own per message.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list, but the message itself is the sender's own: no copy of the dict.
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Whole microseconds, as milliseconds: round(…, 3) costs more than the rest of this line.
            duration_us = round((time.perf_counter() - started) * 1_000_000)
            ACCESS_LOG.write_request(
                request_id,
                scope["method"],
                scope["path"],
                status or None,
                duration_us / 1000,
                scope.get(TICKET_ID_KEY),
                delivery or None,
            )
            if self.on_response is not None and status:
                self.on_response(route_path(scope), status)
