"""JSON responses, and the one error shape every 4xx/5xx uses: ``{"error": code, "detail": text}``."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Send

from app.http.names import CONTENT_LENGTH_HEADER_RAW, CONTENT_TYPE_HEADER_RAW

JSON_TYPE = b"application/json"


class JSONResponse(Response):
    """A Starlette response serialised with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``{"error": code, "detail": detail}`` with ``status``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def send_json(send: Send, status: int, content: Any) -> None:
    """Send ``content`` as a JSON response straight on an ASGI ``send`` (no Starlette objects;
    for the hot path)."""
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (CONTENT_TYPE_HEADER_RAW, JSON_TYPE),
                (CONTENT_LENGTH_HEADER_RAW, str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    response: str = "http.response",
) -> None:
    """Send the error shape straight on an ASGI ``send`` (for middlewares, no Starlette objects).

    ``response`` is the ASGI message type's stem: ``"http.response"``, or
    ``"websocket.http.response"`` to refuse a WebSocket handshake with an HTTP answer (the ASGI
    ``websocket.http.response`` extension).
    """
    body = orjson.dumps({"error": code, "detail": detail})
    await send(
        {
            "type": f"{response}.start",
            "status": status,
            "headers": [
                (CONTENT_TYPE_HEADER_RAW, JSON_TYPE),
                (CONTENT_LENGTH_HEADER_RAW, str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": f"{response}.body", "body": body})
