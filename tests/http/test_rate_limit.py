"""The rate limiter (app/http/rate_limit.py): token buckets, client addresses behind trusted
proxies, and the middleware with fake ASGI ends."""

from __future__ import annotations

import ipaddress

import pytest

from app.http.rate_limit import RateLimitMiddleware, TokenBuckets, client_address
from tests.http.fake_asgi import BodyApp, Receiver, Sender, call, http_scope

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def scope(peer: str, xff: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", xff.encode())] if xff is not None else []
    return {"client": (peer, 1234), "headers": headers}


def test_peer_is_the_client_unless_trusted():
    assert client_address(scope("192.0.2.7", "203.0.113.9"), TRUSTED) == "192.0.2.7"
    assert client_address(scope("192.0.2.7", "203.0.113.9"), ()) == "192.0.2.7"


def test_forwarded_for_walked_right_to_left_past_trusted_hops():
    # The client may put anything at the left; only the hop the trusted proxy appended counts.
    assert client_address(scope("10.1.1.1", "6.6.6.6, 203.0.113.9"), TRUSTED) == "203.0.113.9"
    assert client_address(scope("10.1.1.1", "203.0.113.9, 10.2.2.2"), TRUSTED) == "203.0.113.9"
    assert client_address(scope("::1", "2001:db8::5"), TRUSTED) == "2001:db8::5"
    assert client_address(scope("10.1.1.1"), TRUSTED) == "10.1.1.1"


def test_every_forwarded_for_line_counts_not_only_the_clients_first_one():
    """A proxy that adds its own X-Forwarded-For line (HAProxy's ``option forwardfor``) after
    the client's: only the first line was read, so the client's forged address was the key
    and a new one per request got past the limit."""
    forged_first = {
        "client": ("10.1.1.1", 1234),
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")],
    }
    assert client_address(forged_first, TRUSTED) == "203.0.113.9"
    two_proxies = {
        "client": ("10.1.1.1", 1234),
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-for", b"10.2.2.2")],
    }
    assert client_address(two_proxies, TRUSTED) == "203.0.113.9"


def test_a_forwarded_hop_that_is_no_address_is_never_a_key():
    """Garbage left of trusted hops was the bucket's key as sent (up to a whole header line per
    client, 10,000 of them kept); the trusted address that received it is the key instead.
    A port after an address is dropped."""
    assert client_address(scope("10.1.1.1", "x" * 8000 + ", 10.2.2.2"), TRUSTED) == "10.2.2.2"
    assert client_address(scope("10.1.1.1", "not-an-ip"), TRUSTED) == "10.1.1.1"
    assert client_address(scope("10.1.1.1", "203.0.113.9:4711"), TRUSTED) == "203.0.113.9"
    assert client_address(scope("10.1.1.1", "[2001:db8::5]:4711"), TRUSTED) == "2001:db8::5"
    assert client_address(scope("10.1.1.1", "2001:DB8:0::5"), TRUSTED) == "2001:db8::5"


def test_bucket_refills_at_the_rate():
    now = [0.0]
    buckets = TokenBuckets(2.0, 3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # clients are independent


def test_buckets_are_bounded():
    buckets = TokenBuckets(1.0, 1, max_clients=100)
    for i in range(10_000):
        buckets.take(f"client-{i}")
    assert len(buckets) == 100


# -- the middleware, with fake ASGI ends ---------------------------------------------------------


def limiter(
    rate: float = 0.001, burst: int = 2, **options: object
) -> tuple[RateLimitMiddleware, BodyApp, list]:
    """A rate limiter whose buckets do not refill within a test (0.001 tokens a second)."""
    app = BodyApp()
    limited: list[None] = []
    middleware = RateLimitMiddleware(
        app, rate=rate, burst=burst, on_limited=lambda: limited.append(None), **options
    )
    return middleware, app, limited


async def test_a_client_over_its_burst_gets_429_with_retry_after_and_is_counted() -> None:
    middleware, app, limited = limiter()
    answers = [await call(middleware, http_scope(), Receiver(b"{}")) for _ in range(4)]
    assert [a.status for a in answers] == [202, 202, 429, 429]
    refused = answers[2]
    assert refused.json == {
        "error": "rate_limited",
        "detail": "too many requests; retry after the time in Retry-After",
    }
    assert int(refused.headers[b"retry-after"]) >= 1  # whole seconds, never 0
    assert app.calls == 2 and len(limited) == 2


@pytest.mark.parametrize(("rate", "retry_after"), [(0.4, b"3"), (0.5, b"2"), (10.0, b"1")])
async def test_retry_after_is_the_wait_for_one_token_rounded_up(rate: float, retry_after: bytes) -> None:
    middleware, _, _ = limiter(rate=rate, burst=1)  # a token every 2.5 s, 2 s, 0.1 s
    await call(middleware, http_scope(), Receiver(b"{}"))
    refused = await call(middleware, http_scope(), Receiver(b"{}"))
    assert refused.status == 429 and refused.headers[b"retry-after"] == retry_after


async def test_clients_have_their_own_buckets() -> None:
    middleware, _, _ = limiter(burst=1)
    first = await call(middleware, http_scope(client=("192.0.2.1", 1)), Receiver(b"{}"))
    other = await call(middleware, http_scope(client=("192.0.2.2", 1)), Receiver(b"{}"))
    again = await call(middleware, http_scope(client=("192.0.2.1", 2)), Receiver(b"{}"))
    assert (first.status, other.status, again.status) == (202, 202, 429)


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited() -> None:
    middleware, _, _ = limiter(burst=1, trusted_proxies=TRUSTED)

    def via_proxy(client: str) -> dict:
        return http_scope(client=("10.0.0.5", 1), headers=[("X-Forwarded-For", client)])

    assert (await call(middleware, via_proxy("203.0.113.1"), Receiver(b"{}"))).status == 202
    assert (await call(middleware, via_proxy("203.0.113.2"), Receiver(b"{}"))).status == 202
    assert (await call(middleware, via_proxy("203.0.113.1"), Receiver(b"{}"))).status == 429


async def test_probes_are_never_limited() -> None:
    middleware, app, limited = limiter(burst=1)
    for path in ("/healthz", "/metrics", "/healthz"):
        assert (await call(middleware, http_scope(path, method="GET"), Receiver())).status == 202
    assert app.calls == 3 and not limited


async def test_probes_under_a_root_path_are_never_limited() -> None:
    """Under an ASGI server run with a root path, ``path`` is ``/archiver/healthz``: compared
    whole with the exempt paths, the probes were limited like any client (429 on the second)."""
    middleware, app, limited = limiter(burst=1)
    for _ in range(3):
        scope = {**http_scope("/archiver/healthz", method="GET"), "root_path": "/archiver"}
        assert (await call(middleware, scope, Receiver())).status == 202
    assert app.calls == 3 and not limited


async def test_rate_zero_switches_the_limiter_off() -> None:
    middleware, app, limited = limiter(rate=0, burst=1)
    statuses = [(await call(middleware, http_scope(), Receiver(b"{}"))).status for _ in range(5)]
    assert statuses == [202] * 5 and app.calls == 5 and not limited


async def test_non_http_scopes_pass_through() -> None:
    middleware, app, _ = limiter(burst=1)
    for _ in range(3):
        await middleware({"type": "lifespan"}, Receiver(), Sender())
    assert app.calls == 3
