"""Pure-ASGI middleware that refuses request bodies above a size limit with 413.

A declared ``Content-Length`` above the limit is refused before any byte is read. A body
without one (chunked) is counted while the application reads it; once the count passes the
limit the application's ``receive`` raises :class:`ContentTooLarge` and the middleware
answers 413 — at most the limit plus one chunk is read, and nothing more is buffered.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.responses import send_error

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024


class ContentTooLarge(Exception):
    """Raised from ``receive`` when the body passes ``max_body_size`` bytes."""

    def __init__(self, max_body_size: int) -> None:
        super().__init__(f"request body larger than {max_body_size} bytes")
        self.max_body_size = max_body_size


class BodyLimitMiddleware:
    """Answer 413 ``payload_too_large`` for bodies over ``max_body_size`` bytes."""

    def __init__(self, app: ASGIApp, *, max_body_size: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_size
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > limit:
                    await send_error(send, 413, "payload_too_large", f"the body may be at most {limit} bytes")
                    return
                break

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ContentTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except ContentTooLarge:
            if started:
                raise
            await send_error(send, 413, "payload_too_large", f"the body may be at most {limit} bytes")
