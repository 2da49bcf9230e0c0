"""The HMAC middleware (app/http/hmac_auth.py) with fake ASGI ends: Zammad's ``X-Hub-Signature``
over the raw body, checked before the route sees anything."""

from __future__ import annotations

import hmac

from app.http.hmac_auth import HmacSignatureMiddleware
from app.http.names import RAW_BODY_KEY
from tests.http.fake_asgi import BodyApp, Receiver, Sender, call, http_scope

SECRET = b"unit-hmac-secret"
BODY = b'{"ticket":{"id":4711}}'


def sign(body: bytes, algorithm: str = "sha1", secret: bytes = SECRET) -> str:
    return f"{algorithm}=" + hmac.new(secret, body, algorithm).hexdigest()


def guarded(**options: object) -> tuple[HmacSignatureMiddleware, BodyApp]:
    app = BodyApp()
    return HmacSignatureMiddleware(app, **{"secret": SECRET, **options}), app  # type: ignore[arg-type]  # options are the test's keyword arguments


async def test_a_signed_webhook_reaches_the_route_with_its_body_once() -> None:
    middleware, app = guarded()
    receive = Receiver(BODY[:10], BODY[10:])  # the signature covers the whole body, in two chunks
    sent = await call(middleware, http_scope(headers=[("X-Hub-Signature", sign(BODY))]), receive)
    assert sent.status == 202
    assert app.body == BODY  # replayed to the route ...
    assert app.scope is not None and app.scope[RAW_BODY_KEY] == BODY  # ... and handed over
    assert receive.calls == 2  # read once, by the middleware


async def test_sha256_and_upper_case_hex_are_accepted_too() -> None:
    middleware, _ = guarded()
    for header in (sign(BODY, "sha256"), sign(BODY).upper().replace("SHA1=", "sha1=")):
        sent = await call(middleware, http_scope(headers=[("X-Hub-Signature", header)]), Receiver(BODY))
        assert sent.status == 202, header


async def test_a_missing_signature_is_403_and_the_route_never_runs() -> None:
    middleware, app = guarded()
    sent = await call(middleware, http_scope(), Receiver(BODY))
    assert sent.status == 403 and sent.json == {"error": "forbidden", "detail": "missing X-Hub-Signature"}
    assert app.calls == 0


async def test_a_wrong_signature_is_403() -> None:
    middleware, app = guarded()
    for header in (sign(BODY, secret=b"another secret"), sign(BODY + b" "), "sha1=", "md5=00", "garbage"):
        sent = await call(middleware, http_scope(headers=[("X-Hub-Signature", header)]), Receiver(BODY))
        assert sent.status == 403, header
        assert sent.json["detail"] == "X-Hub-Signature does not match the body"
    assert app.calls == 0


async def test_the_first_signature_header_counts() -> None:
    headers = [("X-Hub-Signature", "sha1=00"), ("X-Hub-Signature", sign(BODY)), ("X-Zammad-Delivery", "d")]
    for require_delivery_id in (False, True):  # with a delivery id to find, the scan goes on
        middleware, _ = guarded(require_delivery_id=require_delivery_id)
        assert (await call(middleware, http_scope(headers=headers), Receiver(BODY))).status == 403


async def test_after_the_replayed_body_the_route_reads_the_client_again() -> None:
    received = []

    async def reads_on(scope, receive, send):
        received.extend([await receive(), await receive()])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = HmacSignatureMiddleware(reads_on, secret=SECRET)
    await call(middleware, http_scope(headers=[("X-Hub-Signature", sign(BODY))]), Receiver(BODY))
    assert received == [
        {"type": "http.request", "body": BODY, "more_body": False},
        {"type": "http.disconnect"},  # the client's own next message, not the body again
    ]


async def test_without_a_secret_webhooks_are_refused_503_before_reading_the_body() -> None:
    middleware, app = guarded(secret=None)
    receive = Receiver(BODY)
    sent = await call(middleware, http_scope(headers=[("X-Hub-Signature", sign(BODY))]), receive)
    assert sent.status == 503 and sent.json["error"] == "webhook_auth_not_configured"
    assert receive.calls == 0 and app.calls == 0


async def test_allow_unsigned_without_a_secret_lets_webhooks_through() -> None:
    middleware, app = guarded(secret=None, allow_unsigned=True)
    sent = await call(middleware, http_scope(), Receiver(BODY))
    assert sent.status == 202 and app.body == BODY


async def test_a_required_delivery_id_must_be_present_and_not_blank() -> None:
    middleware, app = guarded(require_delivery_id=True)
    signature = ("X-Hub-Signature", sign(BODY))
    for delivery in ([], [("X-Zammad-Delivery", "  ")]):
        sent = await call(middleware, http_scope(headers=[signature, *delivery]), Receiver(BODY))
        assert sent.status == 400 and sent.json["error"] == "missing_delivery_id"
    assert app.calls == 0
    for headers in ([signature, ("X-Zammad-Delivery", "d-1")], [("X-Zammad-Delivery", "d-1"), signature]):
        assert (await call(middleware, http_scope(headers=headers), Receiver(BODY))).status == 202


async def test_the_signature_is_checked_before_the_delivery_id() -> None:
    middleware, _ = guarded(require_delivery_id=True)
    assert (await call(middleware, http_scope(), Receiver(BODY))).status == 403


async def test_a_client_that_disconnects_mid_body_gets_no_answer() -> None:
    middleware, app = guarded()
    receive = Receiver(BODY[:5], BODY[5:], disconnect_after=1)
    sent = await call(middleware, http_scope(headers=[("X-Hub-Signature", sign(BODY))]), receive)
    assert sent.messages == [] and app.calls == 0


async def test_other_paths_and_methods_pass_untouched() -> None:
    middleware, app = guarded()
    for scope in (http_scope("/healthz", method="GET"), http_scope("/retry/4711"), http_scope(method="GET")):
        receive = Receiver(BODY)
        sent = await call(middleware, scope, receive)
        assert sent.status == 202 and app.scope is not None and RAW_BODY_KEY not in app.scope
    await middleware({"type": "lifespan"}, Receiver(), Sender())
    assert app.calls == 4


async def test_only_the_configured_paths_are_protected() -> None:
    middleware, _ = guarded(paths=frozenset({"/hook"}))
    assert (await call(middleware, http_scope("/hook"), Receiver(BODY))).status == 403
    assert (await call(middleware, http_scope("/ingest"), Receiver(BODY))).status == 202
