"""The service's own error layers (app/http/errors.py), called as ASGI apps."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.exceptions import HTTPException

from app.http.errors import HTTPErrorMiddleware, UnhandledErrorMiddleware

SCOPE = {"type": "http", "method": "GET", "path": "/x", "headers": []}


async def run(app, scope=SCOPE) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent


async def test_http_exception_becomes_the_error_shape_with_its_headers():
    async def raises(scope, receive, send):
        raise HTTPException(405, headers={"Allow": "POST"})

    start, body = await run(HTTPErrorMiddleware(raises))
    assert start["status"] == 405 and (b"allow", b"POST") in start["headers"]
    assert orjson.loads(body["body"]) == {"error": "method_not_allowed", "detail": "Method Not Allowed"}


async def test_unhandled_error_before_the_response_is_a_500():
    async def fails(scope, receive, send):
        raise ValueError("bug")

    start, body = await run(UnhandledErrorMiddleware(fails))
    assert start["status"] == 500 and orjson.loads(body["body"])["error"] == "internal_error"


async def test_unhandled_error_after_the_response_started_is_reraised_without_a_second_start():
    async def fails_midway(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("bug")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    with pytest.raises(ValueError):
        await UnhandledErrorMiddleware(fails_midway)(dict(SCOPE), None, send)
    assert [m["type"] for m in sent] == ["http.response.start"]


async def test_cancellation_passes_through():
    async def cancelled(scope, receive, send):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run(UnhandledErrorMiddleware(cancelled))
