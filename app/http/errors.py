"""Pure-ASGI error handling in the common error shape, in place of Starlette's own two layers.

Starlette wraps every application in ``ServerErrorMiddleware`` (outermost: unhandled
exceptions become a plain-text 500) and ``ExceptionMiddleware`` (innermost: ``HTTPException``
becomes a response through registered handlers): a ``Request`` object and two ``send``
wrappers per request, for work that is, here, two ``except`` clauses.
:class:`ArchiverApp` builds its stack with these two classes instead (kept for ``make bench``
ingest_cpu: "ours instead of Starlette's error layers: instructions saved per webhook / full
stack's"):

- :class:`UnhandledErrorMiddleware` (outermost): an exception nobody handled is logged with its
  traceback (redacted, as every log line) and answered 500 ``internal_error`` when no response
  has started; otherwise it is re-raised and the server closes the connection. Starlette's
  ``ClientDisconnect`` (the client left mid-body) is no error: nothing is logged or sent. A
  WebSocket handshake is refused here in the error shape (:func:`refuse_websocket`).
- :class:`HTTPErrorMiddleware` (innermost, around the router): Starlette's ``HTTPException``
  (the router's 404 and 405) is answered in the error shape, with its headers (``Allow``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.responses import send_error

log = logging.getLogger("app.http")

HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}
"""The ``error`` code for an ``HTTPException``'s status; others get ``http_error``."""


class HTTPErrorMiddleware:
    """Answer Starlette's ``HTTPException`` as ``{"error", "detail"}`` with the exception's
    status and headers. Raised before a response starts (the router's 404/405 are)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except HTTPException as exc:
            if scope["type"] != "http":
                raise
            headers = [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()
            ]
            await send_error(
                send,
                exc.status_code,
                HTTP_ERROR_CODES.get(exc.status_code, "http_error"),
                str(exc.detail),
                headers,
            )


class UnhandledErrorMiddleware:
    """Log an exception that escaped every other layer and answer 500 ``internal_error`` in the
    error shape (or, once the response has started, re-raise it: the server closes the
    connection). Task cancellation and other ``BaseException``\\ s pass through untouched; a
    ``ClientDisconnect`` ends the request quietly (no one is left to answer). A ``websocket``
    scope is refused (:func:`refuse_websocket`); ``lifespan`` passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await refuse_websocket(scope, send)
                return
            await self.app(scope, receive, send)
            return
        started = False

        def tracking_send(message: Message) -> Awaitable[None]:
            # A plain function returning send's awaitable: no coroutine of its own per message.
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # Starlette's Request.body() found the client gone mid-body (POST /retry): there is
            # no one to answer and nothing went wrong here; the access line shows no status.
            return
        except Exception:
            log.exception(
                "unhandled error",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "request_id": scope.get("app.request_id"),
                },
            )
            if started:
                raise
            await send_error(send, 500, "internal_error", "an unexpected error occurred; see the service log")


class ArchiverApp(Starlette):
    """Starlette (its router, routes, state and lifespan) with :class:`UnhandledErrorMiddleware`
    and :class:`HTTPErrorMiddleware` in place of Starlette's ``ServerErrorMiddleware`` and
    ``ExceptionMiddleware``; the user middlewares sit between them, as in Starlette.
    ``exception_handlers`` are not used."""

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = HTTPErrorMiddleware(self.router)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return UnhandledErrorMiddleware(app)


WEBSOCKET_REFUSED = (400, "websocket_not_supported", "this service has no WebSocket endpoints")
"""The answer to a WebSocket handshake (``Upgrade: websocket``) on any path."""


async def refuse_websocket(scope: Scope, send: Send) -> None:
    """Refuse a WebSocket handshake in the error shape: 400 ``websocket_not_supported``.

    Sent as an HTTP response through the ASGI ``websocket.http.response`` extension
    (Hypercorn offers it); a server without it gets ``websocket.close`` before the handshake
    is accepted, which it answers 403 with no body (ASGI spec, "WebSocket", "Close - send
    event"). Starlette's router closed every handshake that way, so a peer got an empty 403.
    """
    status, code, detail = WEBSOCKET_REFUSED
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1000})
        return
    await send_error(send, status, code, detail, response="websocket.http.response")
