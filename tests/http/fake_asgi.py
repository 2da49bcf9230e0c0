"""Fake ASGI ends for the middleware unit tests: a scope, a ``receive`` fed from a list, a
``send`` that records, and an application that reads the body and answers 202.

No server and no sockets: a middleware is called like Hypercorn calls it, and each test
looks at what went in and out. The live-server tests (``test_edge_server.py``) cover the
same layers through Hypercorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson

from app.http.hmac_auth import read_body

Message = dict[str, Any]


def http_scope(
    path: str = "/ingest",
    *,
    method: str = "POST",
    headers: Iterable[tuple[str, str]] = (),
    client: tuple[str, int] | None = ("192.0.2.10", 40000),
) -> dict[str, Any]:
    """An HTTP scope as Hypercorn builds it (header names lower-cased bytes)."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
    }


class Receiver:
    """``receive``: the body in ``chunks`` (``more_body`` on all but the last), then
    ``http.disconnect``; with ``stall=True`` it never delivers the last chunk (a client that
    stopped sending) and with ``disconnect_after`` it disconnects after that many chunks."""

    def __init__(self, *chunks: bytes, stall: bool = False, disconnect_after: int | None = None) -> None:
        self.chunks = list(chunks) or [b""]
        self.stall = stall
        self.disconnect_after = disconnect_after
        self.calls = 0

    async def __call__(self) -> Message:
        index = self.calls
        self.calls += 1
        if self.disconnect_after is not None and index >= self.disconnect_after:
            return {"type": "http.disconnect"}
        last = len(self.chunks) - 1
        if index == last and self.stall:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        if index > last:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": self.chunks[index], "more_body": index < last}


class Sender:
    """``send``: records every message; ``status``, ``headers``, ``json`` read the answer."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) <= 1, f"more than one response started: {starts}"
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        return {k: v for m in self.messages if m["type"] == "http.response.start" for k, v in m["headers"]}

    @property
    def json(self) -> Any:
        return orjson.loads(
            b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        )


class BodyApp:
    """The application behind a middleware: reads the whole body (through the middleware's
    ``receive``) and answers 202; records its calls, the scope and the body it read."""

    def __init__(self) -> None:
        self.calls = 0
        self.scope: dict[str, Any] | None = None
        self.body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        self.scope = scope
        if scope["type"] == "http":
            self.body = await read_body(receive)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, scope: dict[str, Any], receive: Any) -> Sender:
    """Call ``app`` once with ``scope`` and ``receive``; returns what it sent."""
    sender = Sender()
    await app(scope, receive, sender)
    return sender
