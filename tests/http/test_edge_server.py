"""The HTTP surface through a real Hypercorn on loopback: status codes, limits, auth, probes."""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import hmac
import json
import logging
import re
import resource
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
import yarl
from multidict import CIMultiDict
from starlette.routing import Route

import app.jobs.sqlite_walsync as store_module
from app.http import ingest
from app.http.openapi import OPENAPI
from app.storage import probe
from devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET, REPO
from tests.http.fake_asgi import Receiver, http_scope
from tests.http.fake_asgi import call as fake_call


async def call(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, dict(resp.headers), parsed


def assert_error_shape(payload: Any, code: str) -> None:
    assert isinstance(payload, dict), payload
    assert payload["error"] == code, payload
    assert isinstance(payload["detail"], str) and payload["detail"], payload


def signed(payload: Any, **kw: Any) -> tuple[bytes, dict[str, str]]:
    return zammad_webhook(payload, HMAC_SECRET, **kw)


# -- every status code the runbook lists --------------------------------------------------------


async def test_400_invalid_json_and_missing_delivery_id(archiver):
    service = await archiver(HARDENING_WEBHOOK_REQUIRE_DELIVERY_ID="true")
    body = b"{not json"
    sig = "sha1=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha1).hexdigest()
    status, headers, payload = await call(
        "POST",
        f"{service.url}/ingest",
        body=body,
        headers={"X-Hub-Signature": sig, "X-Zammad-Delivery": "d-1"},
    )
    assert status == 400
    assert_error_shape(payload, "invalid_json")
    assert headers["X-Request-ID"]
    body, hdrs = signed({"ticket_id": 4711})
    del hdrs["X-Zammad-Delivery"]
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 400
    assert_error_shape(payload, "missing_delivery_id")
    assert (await service.runtime.pool.status(4711))["state"] == "none"


async def test_two_delivery_headers_the_first_counts_everywhere(archiver):
    """The route records the first X-Zammad-Delivery; the check of HARDENING_WEBHOOK_REQUIRE_
    DELIVERY_ID looked at the last, so a blank first one and a real second one got past the
    check and the job was recorded without a delivery id (no dedupe of Zammad's retries)."""
    service = await archiver(HARDENING_WEBHOOK_REQUIRE_DELIVERY_ID="true")
    body, hdrs = signed({"ticket_id": 4711})
    headers = CIMultiDict({k: v for k, v in hdrs.items() if k != "X-Zammad-Delivery"})
    headers.add("X-Zammad-Delivery", "")
    headers.add("X-Zammad-Delivery", "d-second")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service.url}/ingest", data=body, headers=headers) as resp,
    ):
        status, payload = resp.status, await resp.json()
    assert status == 400, payload
    assert_error_shape(payload, "missing_delivery_id")
    assert (await service.runtime.pool.status(4711))["state"] == "none"


async def test_400_invalid_delivery_id_instead_of_cutting_it_to_a_duplicate_key(archiver):
    """Two different ids longer than 200 characters used to be cut to the same key: the second
    was answered "duplicate" and its job dropped. Now each is refused; 200 characters pass."""
    service = await archiver()
    for path, payload in (("/ingest", {"ticket_id": 4711}), ("/ingest/batch", [{"ticket_id": 4711}])):
        for last in "ab":
            body, hdrs = signed(payload, delivery_id="d" * 200 + last)
            status, _, answer = await call("POST", f"{service.url}{path}", body=body, headers=hdrs)
            assert status == 400, answer
            assert_error_shape(answer, "invalid_delivery_id")
            assert "201 characters" in answer["detail"]
    assert (await service.runtime.pool.status(4711))["state"] == "none"
    body, hdrs = signed({"ticket_id": 4712}, delivery_id="d" * 200)
    status, _, answer = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert (status, answer["status"]) == (202, "accepted")


async def test_413_by_content_length(archiver):
    service = await archiver(HARDENING_BODY_MAX_BYTES="1000")
    body, hdrs = signed({"ticket_id": 4711, "pad": "x" * 2000})
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 413
    assert_error_shape(payload, "payload_too_large")


async def test_429_with_retry_after_and_probes_exempt(archiver):
    service = await archiver(HARDENING_RATE_LIMIT_RPS="0.5", HARDENING_RATE_LIMIT_BURST="2")
    results = []
    for _ in range(4):
        body, hdrs = signed({"ticket_id": 4711})
        results.append(await call("POST", f"{service.url}/ingest", body=body, headers=hdrs))
    assert [r[0] for r in results] == [202, 202, 429, 429]
    status, headers, payload = results[2]
    assert_error_shape(payload, "rate_limited")
    assert int(headers["Retry-After"]) >= 1
    assert (await call("GET", f"{service.url}/healthz"))[0] == 200
    assert service.runtime.metrics.rate_limited_total._value.get() == 2


async def test_503_without_secret_and_when_shutting_down(archiver):
    service = await archiver(WEBHOOK_HMAC_SECRET="")
    body, hdrs = zammad_webhook({"ticket_id": 4711}, None)
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 503
    assert_error_shape(payload, "webhook_auth_not_configured")

    await service.stop()
    service = await archiver(HARDENING_WEBHOOK_ALLOW_UNSIGNED="true", WEBHOOK_HMAC_SECRET="")
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 202
    await service.wait_idle()
    service.runtime.pool.shutting_down = True
    status, headers, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 503 and headers["Retry-After"]
    assert_error_shape(payload, "shutting_down")
    service.runtime.pool.shutting_down = False


async def test_503_when_queue_full(archiver, simulator):
    simulator.delay("GET", r"^/api/v1/tags", 2)
    service = await archiver(WORKERS="1", WORKFLOW_QUEUE_MAX="1")
    answers = []
    for ticket_id in (1, 2, 3):
        body, hdrs = signed({"ticket_id": ticket_id})
        answers.append(await call("POST", f"{service.url}/ingest", body=body, headers=hdrs))
        await asyncio.sleep(0.05)
    assert [a[0] for a in answers] == [202, 202, 503]
    assert_error_shape(answers[2][2], "queue_full")
    simulator.clear_faults()


async def test_404_and_405_use_the_error_shape(archiver):
    service = await archiver()
    status, _, payload = await call("GET", f"{service.url}/nope")
    assert status == 404
    assert_error_shape(payload, "not_found")
    status, headers, payload = await call("GET", f"{service.url}/ingest")
    assert status == 405 and headers["Allow"] == "POST"
    assert_error_shape(payload, "method_not_allowed")
    # No redirect to the slash-less path (its Location would come from the Host header).
    body, hdrs = signed({"ticket_id": 4711})
    status, headers, payload = await call(
        "POST", f"{service.url}/ingest/", body=body, headers={**hdrs, "Host": "evil.example"}
    )
    assert status in (403, 404) and "Location" not in headers
    assert_error_shape(payload, "not_found" if status == 404 else "forbidden")


async def test_a_websocket_handshake_is_refused_in_the_error_shape(archiver):
    """Starlette's router closed a WebSocket handshake before accepting it, which Hypercorn
    answers 403 with an empty body: the one error that was not JSON."""
    service = await archiver()
    port = int(service.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert re.search(rb"(?i)\r\ncontent-type: application/json\r\n", head), head
    assert_error_shape(orjson.loads(body), "websocket_not_supported")


async def test_a_newline_after_a_webhook_path_does_not_skip_the_signature_check(archiver):
    """``POST /ingest%0A`` (the path ``"/ingest\\n"``) matched Starlette's ``^/ingest$`` (Python's
    ``$`` matches before a final newline) while the HMAC middleware protects the exact paths:
    an unsigned webhook was answered 202 and the ticket archived; with no
    WEBHOOK_HMAC_SECRET set at all, the same request got past the 503 too."""
    service = await archiver()
    unsigned = orjson.dumps({"ticket_id": 4711})
    for path in ("/ingest%0A", "/ingest/batch%0a", "/healthz%0A"):
        body = b"[" + unsigned + b"]" if "batch" in path else unsigned
        async with (
            aiohttp.ClientSession() as session,
            session.post(yarl.URL(f"{service.url}{path}", encoded=True), data=body) as resp,
        ):
            status, payload = resp.status, await resp.json()
        assert status == 404, (path, status, payload)
        assert_error_shape(payload, "not_found")
    assert (await service.runtime.pool.status(4711))["state"] == "none"


async def test_a_root_path_does_not_skip_the_signature_check(archiver):
    """Under an ASGI server run with a root path (``uvicorn --root-path /archiver``), ``path`` is
    ``/archiver/ingest`` and Starlette routes ``/ingest``: the HMAC middleware compared the
    whole path with ``/ingest``, let the request through, and an unsigned webhook was 202."""

    def under_root(app: Any) -> Any:
        async def with_root(scope, receive, send):
            if scope["type"] == "http":
                scope = {**scope, "root_path": "/archiver", "path": "/archiver" + scope["path"]}
            await app(scope, receive, send)

        return with_root

    service = await archiver(wrap=under_root)
    status, _, payload = await call("POST", f"{service.url}/ingest", body=orjson.dumps({"ticket_id": 4711}))
    assert status == 403, payload
    assert_error_shape(payload, "forbidden")
    assert (await service.runtime.pool.status(4711))["state"] == "none"
    body, hdrs = signed({"ticket_id": 4711})
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert (status, payload) == (202, {"status": "accepted", "ticket_id": 4711})


async def test_the_webhook_routes_refuse_a_body_the_signature_check_did_not_see(archiver, caplog):
    """The webhook routes read the body themselves when the HMAC middleware had not handed it
    over: any path the middleware and the router read differently was an unsigned way in.
    Called straight, as the router would after such a mismatch, they now refuse (fail closed)."""
    service = await archiver()
    body = orjson.dumps({"ticket_id": 4711})
    sent = await fake_call(ingest.IngestEndpoint(service.runtime), http_scope("/ingest"), Receiver(body))
    assert sent.status == 403 and sent.json["error"] == "forbidden", sent.messages
    batch = Route("/ingest/batch", functools.partial(ingest.ingest_batch, service.runtime), methods=["POST"])
    sent = await fake_call(batch, http_scope("/ingest/batch"), Receiver(b"[" + body + b"]"))
    assert sent.status == 403 and sent.json["error"] == "forbidden", sent.messages
    assert (await service.runtime.pool.status(4711))["state"] == "none"
    assert any("without the signature check" in r.getMessage() for r in caplog.records)


# -- body limit while streaming --------------------------------------------------------------------


class CountingApp:
    """Counts the request-body bytes that reach the application."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope, receive, send):
        async def counting():
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


async def test_chunked_50_mib_upload_is_cut_off(archiver):
    limit = 64 * 1024
    counter: list[CountingApp] = []

    def wrap(app: Any) -> Any:
        counter.append(CountingApp(app))
        return counter[0]

    service = await archiver(wrap, HARDENING_BODY_MAX_BYTES=str(limit))
    chunk = b"x" * 65536
    total = 50 * 1024 * 1024
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def body():
        sent = 0
        while sent < total:
            yield chunk
            sent += len(chunk)

    status = None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{service.url}/ingest", data=body(), headers={"X-Hub-Signature": "sha1=00"}
            ) as resp,
        ):
            status = resp.status
            payload = await resp.json()
    except aiohttp.ClientError:
        pass  # the server may close the connection while the client is still sending
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert counter[0].received <= limit + len(chunk)
    assert counter[0].received > limit  # the limit was reached by streaming, not by Content-Length
    if status is not None:
        assert status == 413
        assert_error_shape(payload, "payload_too_large")
    assert (rss_after - rss_before) * 1024 < 20 * 1024 * 1024


HALF_BODY = (
    b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"X-Hub-Signature: sha1=00\r\nContent-Length: 1000\r\n\r\n" + b"{" * 100
)
"""A webhook request whose body stops after 100 of its 1,000 bytes."""


async def assert_tasks_return_to(baseline: int) -> None:
    """Wait up to 5 s for the loop's task count to fall back to ``baseline``."""
    for _ in range(100):
        await asyncio.sleep(0.05)
        if len(asyncio.all_tasks()) <= baseline:
            break
    assert len(asyncio.all_tasks()) <= baseline, [t.get_coro() for t in asyncio.all_tasks()]


async def test_half_body_then_disconnect_leaves_no_task(archiver):
    service = await archiver()
    await asyncio.sleep(0.1)
    baseline = len(asyncio.all_tasks())
    port = int(service.url.rsplit(":", 1)[1])
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_BODY)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()
    await assert_tasks_return_to(baseline)


async def test_a_retry_whose_client_leaves_mid_body_logs_no_error(archiver, caplog):
    """POST /retry reads its body with Starlette's Request.body(), which raises ClientDisconnect
    when the client leaves mid-body: it reached the unhandled-error layer, an error line with a
    traceback per request (and a 500 sent to no one)."""
    finished = asyncio.Event()

    def wrap(app: Any) -> Any:
        async def noting_the_end(scope, receive, send):
            try:
                await app(scope, receive, send)
            finally:
                if scope["type"] == "http" and scope["path"] == "/retry/4711":
                    finished.set()

        return noting_the_end

    service = await archiver(wrap, ADMIN_BEARER_TOKEN="admin-token-4711")
    port = int(service.url.rsplit(":", 1)[1])
    caplog.set_level(logging.INFO, logger="app")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /retry/4711 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-4711\r\n"
        b"Content-Length: 100\r\n\r\n0123456789"
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(finished.wait(), 5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (await service.runtime.pool.status(4711))["state"] == "none"  # no retry was queued


async def test_stalled_body_gets_408_and_the_connection_closes(archiver):
    """A client that sends half a body and then nothing gets 408 within the read timeout
    (plus the sweeper's second), with Content-Length and chunked alike, and no task stays."""
    service = await archiver(HARDENING_BODY_READ_TIMEOUT_SECONDS="1")
    await asyncio.sleep(0.1)
    baseline = len(asyncio.all_tasks())
    port = int(service.url.rsplit(":", 1)[1])
    heads = [
        HALF_BODY,
        b'POST /retry/4711 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
    ]
    for head in heads:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        elapsed = time.monotonic() - started
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 408"), answer
        assert_error_shape(json.loads(rest.split(b"\r\n\r\n", 1)[1]), "request_timeout")
        assert 0.9 <= elapsed < 4, elapsed
    await assert_tasks_return_to(baseline)


async def test_a_slow_but_moving_body_is_not_cut_while_within_the_timeout(archiver):
    service = await archiver(HARDENING_BODY_READ_TIMEOUT_SECONDS="2")
    body, hdrs = signed({"ticket_id": 4711})
    port = int(service.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    writer.write(
        f"POST /ingest HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:5]
    )
    await writer.drain()
    await asyncio.sleep(1.0)
    writer.write(body[5:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer


# -- dedupe under concurrency --------------------------------------------------------------------------


async def test_1000_concurrent_ingests_200_delivery_ids_make_200_jobs(archiver):
    service = await archiver(WORKERS="4")
    requests = []
    for ticket_id in range(1, 201):
        body, hdrs = signed({"ticket_id": 100000 + ticket_id}, delivery_id=f"delivery-{ticket_id}")
        requests.extend([(body, hdrs)] * 5)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, hdrs: dict[str, str]) -> str:
            async with session.post(f"{service.url}/ingest", data=body, headers=hdrs) as resp:
                assert resp.status == 202
                return (await resp.json())["status"]

        statuses = await asyncio.gather(*(one(b, h) for b, h in requests))
    assert statuses.count("accepted") == 200 and statuses.count("duplicate") == 800
    await service.wait_idle(120)
    processed = service.runtime.metrics.jobs_processed_total
    assert sum(processed.labels(s)._value.get() for s in ("archived", "skipped", "failed")) == 200
    assert service.runtime.metrics.dedupe_hits_total._value.get() == 800


async def test_rejected_delivery_is_not_claimed(archiver, simulator):
    service = await archiver(WORKERS="1", WORKFLOW_QUEUE_MAX="1")
    simulator.delay("GET", r"^/api/v1/tags", 1)
    for ticket_id in (1, 2):
        body, hdrs = signed({"ticket_id": ticket_id})
        assert (await call("POST", f"{service.url}/ingest", body=body, headers=hdrs))[0] == 202
        await asyncio.sleep(0.05)
    body, hdrs = signed({"ticket_id": 3}, delivery_id="retry-me")
    assert (await call("POST", f"{service.url}/ingest", body=body, headers=hdrs))[0] == 503
    simulator.clear_faults()
    await service.wait_idle()
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert (status, payload["status"]) == (202, "accepted")  # Zammad's retry gets through


# -- batch ----------------------------------------------------------------------------------------------


async def test_batch(archiver):
    service = await archiver(HARDENING_BATCH_MAX_ITEMS="3")
    body, hdrs = signed([{"ticket_id": 11}, {"ticket": {"id": 12}}])
    status, _, payload = await call("POST", f"{service.url}/ingest/batch", body=body, headers=hdrs)
    assert (status, payload) == (202, {"status": "accepted", "count": 2})
    body, hdrs = signed({"payloads": [{"ticket_id": 13}, {"ticket_id": "x"}]})
    status, _, payload = await call("POST", f"{service.url}/ingest/batch", body=body, headers=hdrs)
    assert status == 422
    assert_error_shape(payload, "invalid_payload")
    assert "index 1" in payload["detail"]
    assert (await service.runtime.pool.status(13))["state"] == "none"  # nothing of the bad batch was recorded
    body, hdrs = signed([{"ticket_id": n} for n in range(4)])
    status, _, payload = await call("POST", f"{service.url}/ingest/batch", body=body, headers=hdrs)
    assert status == 422
    assert_error_shape(payload, "too_many_items")


# -- retry and jobs --------------------------------------------------------------------------------------


async def test_retry_and_jobs_are_never_anonymous(archiver, simulator):
    service = await archiver(ADMIN_BEARER_TOKEN="admin-token-4711")
    for method, path in (("POST", "/retry/4711"), ("GET", "/jobs/4711")):
        status, _, payload = await call(method, f"{service.url}{path}")
        assert status == 403
        assert_error_shape(payload, "forbidden")
        status, _, _ = await call(method, f"{service.url}{path}", headers={"Authorization": "Bearer wrong"})
        assert status == 403
    status, _, payload = await call(
        "POST", f"{service.url}/retry/4711", headers={"Authorization": "Bearer admin-token-4711"}
    )
    assert (status, payload) == (202, {"status": "accepted", "ticket_id": 4711})
    await service.wait_idle()
    # The old scheme, a signature over the empty body, never changes: it is refused.
    empty = "sha1=" + hmac.new(HMAC_SECRET.encode(), b"", hashlib.sha1).hexdigest()
    assert (await call("GET", f"{service.url}/jobs/4711", headers={"X-Hub-Signature": empty}))[0] == 403

    def signed_target(target: str) -> dict[str, str]:
        return {
            "X-Hub-Signature": "sha1="
            + hmac.new(HMAC_SECRET.encode(), target.encode(), hashlib.sha1).hexdigest()
        }

    now = int(time.time())
    target = f"/jobs/4711?requested_at={now}"
    status, _, payload = await call("GET", f"{service.url}{target}", headers=signed_target(target))
    assert status == 200
    assert (
        payload["ticket_id"] == 4711 and payload["in_flight"] is False and payload["shutting_down"] is False
    )
    assert payload["state"] == "done" and payload["result"] == "archived" and payload["attempts"] == 1
    assert payload["output_path"].endswith(".pdf") and len(payload["sha256"]) == 64
    # Another ticket with the same signature, or a stale one, is refused.
    assert (await call("GET", f"{service.url}/jobs/4712?requested_at={now}", headers=signed_target(target)))[
        0
    ] == 403
    stale = f"/jobs/4711?requested_at={now - 3600}"
    assert (await call("GET", f"{service.url}{stale}", headers=signed_target(stale)))[0] == 403
    status, _, payload = await call(
        "GET", f"{service.url}/jobs/abc", headers={"Authorization": "Bearer admin-token-4711"}
    )
    assert status == 422
    assert_error_shape(payload, "invalid_ticket_id")


async def test_a_retry_runs_a_job_waiting_for_its_next_attempt_now_a_webhook_does_not(archiver, simulator):
    """Zammad answers 503: the job waits minutes for its next attempt. A webhook meanwhile is
    merged and leaves the wait (Zammad may still be down). The operator fixes the cause and
    retries: /jobs shows the job due now at once, and it is archived in its first attempt of a
    fresh count, without waiting out the backoff."""
    service = await archiver(
        ADMIN_BEARER_TOKEN="admin-token-4711",
        WORKFLOW_RETRY_BASE_SECONDS="300",
        WORKFLOW_RETRY_MAX_SECONDS="600",
    )
    auth = {"Authorization": "Bearer admin-token-4711"}

    async def job() -> dict[str, Any]:
        status, _, payload = await call("GET", f"{service.url}/jobs/4711", headers=auth)
        assert status == 200, payload
        return payload

    async def job_when(condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while not condition(payload := await job()):  # noqa: ASYNC110 - read through the route
                await asyncio.sleep(0.05)
        return payload

    simulator.fail("*", r"^/api/v1/", 503)
    await service.ingest({"ticket_id": 4711})
    waiting = await job_when(lambda j: j["state"] == "pending" and j["next_attempt_at"] is not None)
    assert waiting["attempts"] == 1 and waiting["next_attempt_at"] > time.time() + 100
    await service.ingest({"ticket_id": 4711})
    await asyncio.sleep(1.5)  # past the claimer's poll (PostgreSQL)
    still = await job()
    assert (still["job_id"], still["state"], still["attempts"], still["next_attempt_at"]) == (
        waiting["job_id"],
        "pending",
        1,
        waiting["next_attempt_at"],
    )
    simulator.clear_faults()  # the operator fixed the cause
    status, _, payload = await call("POST", f"{service.url}/retry/4711", headers=auth)
    assert (status, payload) == (202, {"status": "accepted", "ticket_id": 4711})
    due = await job()
    assert (due["job_id"], due["next_attempt_at"]) == (waiting["job_id"], None)
    done = await job_when(lambda j: j["state"] == "done")
    assert (done["job_id"], done["result"], done["attempts"]) == (waiting["job_id"], "archived", 1)
    assert "pdf:signed" in simulator.tags(4711)


async def test_a_ticket_id_of_thousands_of_digits_is_a_422_not_a_500(archiver):
    """Python refuses to convert a string of more than 4,300 digits to an int (ValueError):
    such a ticket id in a webhook or in the path of /jobs and /retry was answered 500, and
    /jobs did so before its authentication (a traceback in the log per anonymous request)."""
    service = await archiver(ADMIN_BEARER_TOKEN="admin-token-4711")
    digits = "1" * 5000
    for path, payload in (
        ("/ingest", {"ticket_id": digits}),
        ("/ingest", {"ticket": {"id": digits}}),
        ("/ingest/batch", [{"ticket_id": 4711}, {"ticket_id": digits}]),
    ):
        body, hdrs = signed(payload)
        status, _, answer = await call("POST", f"{service.url}{path}", body=body, headers=hdrs)
        assert status == 422, (path, answer)
        assert_error_shape(answer, "invalid_payload")
    assert (await service.runtime.pool.status(4711))["state"] == "none"  # the batch recorded nothing
    admin = {"Authorization": "Bearer admin-token-4711"}
    for method, path in (("GET", f"/jobs/{digits}"), ("POST", f"/retry/{digits}")):
        status, _, answer = await call(method, f"{service.url}{path}")
        assert status == 403, (method, answer)
        assert_error_shape(answer, "forbidden")
        status, _, answer = await call(method, f"{service.url}{path}", headers=admin)
        assert status == 422, (method, answer)
        assert_error_shape(answer, "invalid_ticket_id")
    status, _, answer = await call("GET", f"{service.url}/jobs/{'0' * 5000}4711", headers=admin)
    assert (status, answer["ticket_id"]) == (200, 4711)


async def run_ops_script(service: Any, script: str, *args: str) -> bytes:
    """Run ``scripts/ops/<script> args…`` against ``service`` with the webhook secret; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(REPO / "scripts/ops" / script),
        *args,
        env={"ARCHIVER_URL": service.url, "WEBHOOK_HMAC_SECRET": HMAC_SECRET, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    return out


async def test_retry_script_signs_the_request(archiver):
    service = await archiver()
    out = await run_ops_script(service, "retry.sh", "4711")
    assert json.loads(out) == {"status": "accepted", "ticket_id": 4711}
    await service.wait_idle()
    assert (await service.runtime.pool.status(4711))["result"] == "archived"
    out = await run_ops_script(service, "jobs.sh", "4711")
    assert json.loads(out)["result"] == "archived"


async def test_a_signed_retry_covers_force(archiver):
    """A captured plain retry cannot be replayed as a forced one; the script signs --force;
    a force value that is not true/false is refused."""
    service = await archiver(ADMIN_BEARER_TOKEN="admin-token-4711")
    plain = json.dumps({"ticket_id": 4711, "requested_at": int(time.time())}).encode()
    sig = {"X-Hub-Signature": "sha1=" + hmac.new(HMAC_SECRET.encode(), plain, hashlib.sha1).hexdigest()}
    status, _, payload = await call("POST", f"{service.url}/retry/4711?force=true", body=plain, headers=sig)
    assert status == 403
    assert_error_shape(payload, "forbidden")
    assert "force" in payload["detail"]
    status, _, payload = await call(
        "POST", f"{service.url}/retry/4711?force=maybe", headers={"Authorization": "Bearer admin-token-4711"}
    )
    assert status == 422
    assert_error_shape(payload, "invalid_query")
    out = await run_ops_script(service, "retry.sh", "4711", "--force")
    assert json.loads(out) == {"status": "accepted", "ticket_id": 4711}
    await service.wait_idle()
    assert (await service.runtime.pool.status(4711))["force"] is True


async def test_a_signed_retry_names_its_ticket_exactly(archiver):
    """The signed body's ticket id went through int(): ``{"ticket_id": 4711.9}`` was a retry of
    ticket 4711 and ``{"ticket_id": true}`` one of ticket 1. An integer or a string of digits
    is the ticket, as in a webhook; anything else is refused."""
    service = await archiver()
    now = int(time.time())

    async def signed_retry(ticket: int, signed_id: Any) -> int:
        body = json.dumps({"ticket_id": signed_id, "requested_at": now}).encode()
        sig = "sha1=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha1).hexdigest()
        status, _, _ = await call(
            "POST", f"{service.url}/retry/{ticket}", body=body, headers={"X-Hub-Signature": sig}
        )
        return status

    assert await signed_retry(4711, 4711.9) == 403
    assert await signed_retry(1, True) == 403
    assert await signed_retry(4711, [4711]) == 403
    assert (await service.runtime.pool.status(4711))["state"] == "none"
    assert (await service.runtime.pool.status(1))["state"] == "none"
    assert await signed_retry(4711, " 004711 ") == 202
    assert await signed_retry(4712, 4712) == 202


# -- health and metrics -------------------------------------------------------------------------------


async def test_healthz_liveness_and_readiness(archiver, dev_pki):
    service = await archiver()
    status, _, payload = await call("GET", f"{service.url}/healthz")
    assert status == 200 and payload["status"] == "ok" and payload["service"] == "zammad-pdf-archiver"
    status, _, payload = await call("GET", f"{service.url}/healthz?deep=true")
    assert status == 200 and payload["checks"] == {
        "storage": "ok",
        "signer": "ok",
        "queue": "ok",
        "job_store": "ok",
        "fonts": payload["checks"]["fonts"],  # "ok" or "ok (degraded: …)": tests/e2e/test_fonts.py
    }
    assert payload["checks"]["fonts"].startswith("ok")
    service.storage_root.rename(service.storage_root.with_name("moved"))
    await asyncio.sleep(probe.REUSE_SECONDS)  # the last test write's result answers for a second
    status, _, payload = await call("GET", f"{service.url}/healthz?deep=true")
    assert status == 503 and payload["status"] == "fail"
    assert_error_shape(payload, "not_ready")
    assert "storage" in payload["detail"] and payload["checks"]["storage"].startswith("fail")


async def test_concurrent_readiness_probes_share_one_test_write_a_second(archiver, monkeypatch):
    """20 callers polling /healthz?deep=true in a loop made ~1,100 test files a second under the
    storage root (often a CIFS share): now one test write at a time, its result kept a second."""
    service = await archiver()
    writes: list[str] = []
    real = probe.write_test_file

    def counted(root: str) -> None:
        writes.append(root)
        real(root)

    monkeypatch.setattr(probe, "write_test_file", counted)
    await asyncio.sleep(probe.REUSE_SECONDS)  # the start's own probes are over
    answers = await asyncio.gather(*(call("GET", f"{service.url}/healthz?deep=true") for _ in range(20)))
    assert [status for status, _, _ in answers] == [200] * 20
    for _ in range(3):  # a second caller, right after
        assert (await call("GET", f"{service.url}/healthz?deep=true"))[0] == 200
    assert writes == [str(service.storage_root)]
    await asyncio.sleep(probe.REUSE_SECONDS)
    assert (await call("GET", f"{service.url}/healthz?deep=true"))[0] == 200
    assert len(writes) == 2


async def test_healthz_deep_names_an_unloaded_signer_and_omits_version(archiver):
    service = await archiver(SIGNING_PFX_PASSWORD="wrong-password", HEALTHZ_OMIT_VERSION="true")
    status, _, payload = await call("GET", f"{service.url}/healthz")
    assert (status, payload) == (200, {"status": "ok"})
    status, _, payload = await call("GET", f"{service.url}/healthz?deep=true")
    assert status == 503 and "signer" in payload["detail"]
    assert "wrong-password" not in json.dumps(payload)


async def test_metrics(archiver):
    service = await archiver()
    status, _, payload = await call("GET", f"{service.url}/metrics")
    assert status == 404
    assert_error_shape(payload, "not_found")

    await service.stop()  # else, on PostgreSQL, its workers could take the job counted below
    service = await archiver(OBSERVABILITY_METRICS_ENABLED="true", METRICS_BEARER_TOKEN="scrape-token-1")
    status, headers, payload = await call("GET", f"{service.url}/metrics")
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
    assert_error_shape(payload, "unauthorized")
    body, hdrs = signed({"ticket_id": 4711})
    assert (await call("POST", f"{service.url}/ingest", body=body, headers=hdrs))[0] == 202
    await service.wait_idle()
    status, headers, text = await call(
        "GET", f"{service.url}/metrics", headers={"Authorization": "Bearer scrape-token-1"}
    )
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'zammad_pdf_archiver_jobs_processed_total{status="archived"} 1.0' in text
    assert 'zammad_pdf_archiver_ingest_responses_total{status="202"} 1.0' in text
    assert 'zammad_pdf_archiver_step_duration_seconds_count{step="render"} 1.0' in text
    assert "zammad_pdf_archiver_queue_depth 0.0" in text


async def test_a_bearer_token_configured_with_a_trailing_newline_still_works(archiver):
    """HTTP takes surrounding whitespace off a header value, so a token read with its file's
    last newline (ADMIN_BEARER_TOKEN, METRICS_BEARER_TOKEN) could never be sent: every /jobs,
    /retry and /metrics request was refused. A token of only whitespace still opens nothing."""
    service = await archiver(
        ADMIN_BEARER_TOKEN="admin-token-4711\n",
        OBSERVABILITY_METRICS_ENABLED="true",
        METRICS_BEARER_TOKEN=" scrape-token-1\n",
    )
    status, _, payload = await call(
        "GET", f"{service.url}/jobs/4711", headers={"Authorization": "Bearer admin-token-4711"}
    )
    assert (status, payload.get("state")) == (200, "none"), payload
    status, _, _ = await call(
        "GET", f"{service.url}/metrics", headers={"Authorization": "Bearer scrape-token-1"}
    )
    assert status == 200
    assert (await call("GET", f"{service.url}/metrics", headers={"Authorization": "Bearer x"}))[0] == 401
    await service.stop()
    service = await archiver(
        ADMIN_BEARER_TOKEN="  ", OBSERVABILITY_METRICS_ENABLED="true", METRICS_BEARER_TOKEN=" "
    )
    for auth in ("Bearer ", "Bearer", "Bearer  \t"):
        assert (await call("GET", f"{service.url}/jobs/4711", headers={"Authorization": auth}))[0] == 403
        assert (await call("GET", f"{service.url}/metrics", headers={"Authorization": auth}))[0] == 401


async def test_the_bearer_scheme_is_case_insensitive(archiver):
    """RFC 9110 §11.1: the auth scheme is case-insensitive. ``Authorization: bearer <token>``
    (as typed by hand, or sent by a client that lower-cases it) was refused on /jobs and /retry
    (403) and /metrics (401)."""
    service = await archiver(
        ADMIN_BEARER_TOKEN="admin-token-4711",
        OBSERVABILITY_METRICS_ENABLED="true",
        METRICS_BEARER_TOKEN="scrape-token-1",
    )
    for scheme in ("bearer", "BEARER"):
        admin = {"Authorization": f"{scheme} admin-token-4711"}
        status, _, payload = await call("GET", f"{service.url}/jobs/4711", headers=admin)
        assert (status, payload.get("ticket_id")) == (200, 4711), payload
        status, _, payload = await call("POST", f"{service.url}/retry/4711", headers=admin)
        assert status == 202, payload
        scrape = {"Authorization": f"{scheme} scrape-token-1"}
        assert (await call("GET", f"{service.url}/metrics", headers=scrape))[0] == 200
        wrong = {"Authorization": f"{scheme} admin-token-4712"}
        assert (await call("GET", f"{service.url}/jobs/4711", headers=wrong))[0] == 403
        assert (await call("POST", f"{service.url}/retry/4711", headers=wrong))[0] == 403


# -- OpenAPI --------------------------------------------------------------------------------------------


def test_openapi_yaml_matches_the_served_document():
    assert yaml.safe_load((REPO / "docs/openapi.yaml").read_text()) == json.loads(json.dumps(OPENAPI))


def test_openapi_ticket_ids_are_those_the_service_accepts():
    """The spec allowed 0 and ids of any length ("^[0-9]+$"), which the service refuses (422):
    a fuzzer's "valid" requests were mostly refused."""
    [param] = [p for p in OPENAPI["paths"]["/jobs/{ticket_id}"]["get"]["parameters"] if p["in"] == "path"]
    pattern = re.compile(param["schema"]["pattern"])
    for good in ("1", "4711", "0004711", str(2**63 - 1)):
        assert pattern.search(good), good
    for bad in ("0", "000", "-1", "abc", "1" * 20, ""):
        assert not pattern.search(bad), bad
    ticket_id = OPENAPI["components"]["schemas"]["WebhookPayload"]["properties"]["ticket_id"]["oneOf"]
    assert ticket_id[0]["maximum"] == 2**63 - 1 and ticket_id[1]["pattern"] == param["schema"]["pattern"]


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(archiver, tmp_path):
    # Unsigned webhooks allowed and a bearer token given, so every operation is exercised past
    # its authentication (with a secret set, the fuzzer could only ever reach the 403s).
    service = await archiver(
        HARDENING_BODY_MAX_BYTES="4096",
        WEBHOOK_HMAC_SECRET="",
        HARDENING_WEBHOOK_ALLOW_UNSIGNED="true",
        ADMIN_BEARER_TOKEN="fuzz-admin",
        OBSERVABILITY_METRICS_ENABLED="true",
    )
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/schemathesis")
        if (REPO / ".venv/bin/schemathesis").exists()
        else "schemathesis",
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "25",
        "--phases",
        "examples,coverage,fuzzing",
        "-H",
        "Authorization: Bearer fuzz-admin",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    assert re.search(r"\d+ generated, \d+ passed", text), text[-2000:]
    assert "Authentication failed" not in text, text[-2000:]


async def test_a_failing_job_store_answers_503_not_500(archiver):
    # A full state disk under SQLite is stood in for by a failing accept (a mock: the fault is
    # the store's, and the edge's answer to it is what is tested here).
    service = await archiver()
    store = service.runtime.store

    async def broken(requests):
        raise OSError(28, "No space left on device")

    original, store.accept_many = store.accept_many, broken
    try:
        body, hdrs = signed({"ticket_id": 4711})
        status, headers, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    finally:
        store.accept_many = original
    assert status == 503 and headers["Retry-After"]
    assert_error_shape(payload, "job_store_unavailable")


# The WAL sync helper is the SQLite store's; PostgreSQL: tests/e2e/test_job_store_outage.py.
@pytest.mark.sqlite_only
async def test_a_killed_wal_sync_helper_is_started_again(archiver):
    service = await archiver()
    store = service.runtime.store
    await asyncio.sleep(store_module.RESPAWN_SECONDS + 0.1)
    helper = store._wal_sync._proc
    helper.kill()
    await asyncio.to_thread(helper.wait, 10)
    body, hdrs = signed({"ticket_id": 4711})
    status, _, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
    assert status == 202 and payload["status"] == "accepted"
    assert store._wal_sync._proc.pid != helper.pid


# The WAL sync helper is the SQLite store's; PostgreSQL: tests/e2e/test_job_store_outage.py.
@pytest.mark.sqlite_only
async def test_a_failing_wal_sync_answers_503_fails_readiness_and_jobs_still_reads(
    archiver, monkeypatch, tmp_path
):
    # A disk whose fdatasync fails is stood in for by a helper that reports EIO once the test
    # says so (the service's start-up syncs succeed); the service around it is real.
    helper, failing = tmp_path / "failing_walsync.py", tmp_path / "disk-fails"
    helper.write_text(
        f"import os\nwhile os.read(0, 1):\n    if os.path.exists({str(failing)!r}):\n"
        f"        os.write(1, b'E[Errno 5] Input/output error\\n')\n        break\n"
        f"    os.write(1, b'k')\n"
    )
    monkeypatch.setattr(store_module, "WALSYNC_SCRIPT", helper)
    service = await archiver(ADMIN_BEARER_TOKEN="admin-token-1")
    failing.touch()
    body, hdrs = signed({"ticket_id": 4711})
    for _ in range(2):  # the sync fails; every later write is refused
        status, headers, payload = await call("POST", f"{service.url}/ingest", body=body, headers=hdrs)
        assert status == 503 and headers["Retry-After"]
        assert_error_shape(payload, "job_store_unavailable")
    status, _, payload = await call("GET", f"{service.url}/healthz?deep=true")
    assert status == 503 and "job_store" in payload["detail"]
    assert payload["checks"]["job_store"].startswith("fail: the job store cannot make writes durable")
    assert "Input/output error" in payload["checks"]["job_store"]
    status, _, payload = await call(
        "GET", f"{service.url}/jobs/4711", headers={"Authorization": "Bearer admin-token-1"}
    )
    assert status == 200 and payload["ticket_id"] == 4711  # reads still answer


async def test_an_unhandled_error_is_a_500_in_the_error_shape(archiver):
    # A bug is stood in for by a metrics exposition that raises (a mock: no real input makes
    # the service fail there); what is tested is the answer and that nothing of it leaks.
    service = await archiver(OBSERVABILITY_METRICS_ENABLED="true")

    def broken() -> tuple[bytes, str]:
        raise RuntimeError(f"exposition failed near {service.settings.zammad_api_token.reveal()}")

    service.runtime.metrics.exposition = broken
    status, headers, payload = await call("GET", f"{service.url}/metrics")
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert_error_shape(payload, "internal_error")
    assert service.settings.zammad_api_token.reveal() not in json.dumps(payload)
    status, _, payload = await call("GET", f"{service.url}/healthz")  # the service goes on
    assert status == 200 and payload["status"] == "ok"
