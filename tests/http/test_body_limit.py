"""The body-limit middleware (app/http/body_limit.py) with fake ASGI ends: 413 by size, 408 by time."""

from __future__ import annotations

import asyncio

import pytest

from app.http import body_limit
from app.http.body_limit import BodyLimitMiddleware, ContentTooLarge, expire_body_reads
from tests.http.fake_asgi import BodyApp, Receiver, Sender, call, http_scope

LIMIT = 100


def middleware(app: object | None = None, **options: object) -> tuple[BodyLimitMiddleware, BodyApp]:
    inner = app if app is not None else BodyApp()
    return BodyLimitMiddleware(inner, max_body_size=LIMIT, **options), inner  # type: ignore[arg-type]  # options are the test's keyword arguments


@pytest.fixture
def fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stalled reads are looked for every 10 ms instead of every second."""
    monkeypatch.setattr(body_limit, "SWEEP_SECONDS", 0.01)


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    limit, app = middleware()
    receive = Receiver(b"a" * 60, b"b" * 40)
    sent = await call(limit, http_scope(), receive)
    assert sent.status == 202 and app.body == b"a" * 60 + b"b" * 40


async def test_a_declared_length_over_the_limit_is_413_before_any_byte_is_read() -> None:
    limit, app = middleware()
    receive = Receiver(b"x" * (LIMIT + 1))
    sent = await call(limit, http_scope(headers=[("Content-Length", str(LIMIT + 1))]), receive)
    assert sent.status == 413 and sent.json == {
        "error": "payload_too_large",
        "detail": f"the body may be at most {LIMIT} bytes",
    }
    assert receive.calls == 0 and app.calls == 0


async def test_a_declared_length_at_the_limit_passes() -> None:
    limit, app = middleware()
    sent = await call(limit, http_scope(headers=[("Content-Length", str(LIMIT))]), Receiver(b"x" * LIMIT))
    assert sent.status == 202 and app.body == b"x" * LIMIT


async def test_a_content_length_that_is_not_a_number_is_400() -> None:
    limit, app = middleware()
    sent = await call(limit, http_scope(headers=[("Content-Length", "12abc")]), Receiver(b"{}"))
    assert sent.status == 400 and sent.json["error"] == "bad_request" and app.calls == 0


async def test_a_chunked_body_is_cut_one_chunk_past_the_limit() -> None:
    limit, app = middleware()
    receive = Receiver(*([b"x" * 30] * 10))  # 300 bytes, no Content-Length
    sent = await call(limit, http_scope(), receive)
    assert sent.status == 413 and sent.json["error"] == "payload_too_large"
    assert receive.calls == 4  # 120 bytes read: the fourth chunk passed the limit, nothing after
    assert app.body is None


async def test_too_large_after_the_response_started_is_raised_not_answered_twice() -> None:
    async def answers_then_reads(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    limit, _ = middleware(answers_then_reads)
    sender = Sender()
    with pytest.raises(ContentTooLarge):
        await limit(http_scope(), Receiver(*([b"x" * 60] * 3)), sender)
    assert sender.status == 200


async def test_a_stalled_body_is_408_and_the_connection_closed(fast_sweep: None) -> None:
    limit, app = middleware(read_timeout=0.05)
    sent = await asyncio.wait_for(call(limit, http_scope(), Receiver(b"{", stall=True)), 5)
    assert sent.status == 408 and sent.json["error"] == "request_timeout"
    assert sent.headers[b"connection"] == b"close"
    assert app.body is None
    assert not limit._sweeper.reading and not limit._sweeper.expired  # nothing left behind


async def test_the_deadline_counts_from_the_first_read_not_per_chunk(fast_sweep: None) -> None:
    class Trickle(Receiver):
        async def __call__(self):
            await asyncio.sleep(0.03)  # each chunk in time, the whole body not
            return await super().__call__()

    limit, _ = middleware(read_timeout=0.1)
    sent = await asyncio.wait_for(call(limit, http_scope(), Trickle(*([b"x"] * 20))), 5)
    assert sent.status == 408


async def test_a_body_that_arrives_in_time_is_not_cut(fast_sweep: None) -> None:
    limit, app = middleware(read_timeout=0.05)
    sent = await call(limit, http_scope(), Receiver(b"a", b"b"))
    await asyncio.sleep(0.1)  # past the deadline: the sweeper must not touch the finished request
    assert sent.status == 202 and app.body == b"ab"
    assert not limit._sweeper.reading


async def test_no_read_timeout_means_no_sweeper() -> None:
    limit, app = middleware(read_timeout=None)
    sent = await call(limit, http_scope(), Receiver(b"{}"))
    assert sent.status == 202 and limit._sweeper._task is None


async def test_expire_body_reads_answers_a_stalled_read_at_once() -> None:
    limit, _ = middleware(read_timeout=3600)
    request = asyncio.ensure_future(call(limit, http_scope(), Receiver(b"{", stall=True)))
    await asyncio.sleep(0.01)
    assert not request.done()
    expire_body_reads()
    sent = await asyncio.wait_for(request, 5)
    assert sent.status == 408


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    limit, _ = middleware(read_timeout=3600)
    request = asyncio.ensure_future(call(limit, http_scope(), Receiver(b"{", stall=True)))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert not limit._sweeper.reading


async def test_non_http_scopes_pass_through() -> None:
    seen = []

    async def lifespan_app(scope, receive, send):
        seen.append(scope["type"])

    limit, _ = middleware(lifespan_app)
    await limit({"type": "lifespan"}, Receiver(), Sender())
    assert seen == ["lifespan"]
