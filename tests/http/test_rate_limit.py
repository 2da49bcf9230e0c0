"""Token buckets and client addresses behind trusted proxies."""

from __future__ import annotations

import ipaddress

from app.http.rate_limit import TokenBuckets, client_address

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
