"""The request log middleware: one access line per request with the request's fields, and the
request id in the scope and echoed in the response."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
import pytest

from app.http.request_log import RequestLogMiddleware
from app.observability.logging import configure_logging
from tests.http.fake_asgi import BodyApp, Receiver, call, http_scope


@pytest.fixture
def log_stream(logging_restored: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", ["s3cret-token"], stream=stream)
    return stream


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "app.access"]


class TicketApp(BodyApp):
    """Answers 202 and names the ticket, as ``/ingest`` does."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["app.ticket_id"] = 4711
        await super().__call__(scope, receive, send)


async def test_a_request_gets_one_access_line_with_its_fields(log_stream: io.StringIO) -> None:
    seen: list[tuple[str, int]] = []
    app = TicketApp()
    middleware = RequestLogMiddleware(app, on_response=lambda path, status: seen.append((path, status)))
    scope = http_scope(headers=[("X-Zammad-Delivery", "d-1"), ("X-Request-ID", "abc-123")])
    sent = await call(middleware, scope, Receiver(b"{}"))
    assert sent.status == 202 and sent.headers[b"x-request-id"] == b"abc-123"
    assert app.scope is not None and app.scope["app.request_id"] == "abc-123"
    [line] = access_lines(log_stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts"))
    duration = line.pop("duration_ms")
    assert isinstance(duration, float) and 0 <= duration < 1000
    assert duration == round(duration, 3)  # whole microseconds
    assert line == {
        "level": "info",
        "logger": "app.access",
        "msg": "request",
        "request_id": "abc-123",
        "method": "POST",
        "path": "/ingest",
        "status": 202,
        "ticket_id": 4711,
        "delivery_id": "d-1",
    }
    assert seen == [("/ingest", 202)]


async def test_a_request_without_an_id_gets_a_new_one_and_secrets_are_redacted(
    log_stream: io.StringIO,
) -> None:
    middleware = RequestLogMiddleware(BodyApp())
    first = await call(middleware, http_scope("/ingest/s3cret-token"), Receiver(b"{}"))
    second = await call(middleware, http_scope(), Receiver(b"{}"))
    ids = [sent.headers[b"x-request-id"].decode() for sent in (first, second)]
    assert ids[0] != ids[1] and all(re.fullmatch(r"[0-9a-f]{12}-\d+", i) for i in ids)
    lines = access_lines(log_stream)
    assert [line["request_id"] for line in lines] == ids
    assert lines[0]["path"] == "/ingest/***" and "s3cret" not in log_stream.getvalue()
    assert "ticket_id" not in lines[1] and "delivery_id" not in lines[1]


async def test_two_delivery_headers_the_line_shows_the_first(log_stream: io.StringIO) -> None:
    """The route records the first X-Zammad-Delivery; the line showed the last."""
    middleware = RequestLogMiddleware(TicketApp())
    scope = http_scope(headers=[("X-Zammad-Delivery", "d-first"), ("X-Zammad-Delivery", "d-second")])
    await call(middleware, scope, Receiver(b"{}"))
    [line] = access_lines(log_stream)
    assert line["delivery_id"] == "d-first"


async def test_the_response_callback_gets_the_path_the_router_sees() -> None:
    """Under a root path the ingest responses were counted against ``/archiver/ingest``, which
    the metrics callback does not know: none was counted."""
    seen: list[tuple[str, int]] = []
    app = TicketApp()
    middleware = RequestLogMiddleware(app, on_response=lambda path, status: seen.append((path, status)))
    scope = {**http_scope("/archiver/ingest"), "root_path": "/archiver"}
    assert (await call(middleware, scope, Receiver(b"{}"))).status == 202
    assert seen == [("/ingest", 202)]
