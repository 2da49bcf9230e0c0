"""Pure-ASGI middleware: a token bucket per client, 429 with ``Retry-After`` when empty.

The client is the peer address, or the first untrusted address in ``X-Forwarded-For``
when the peer is one of the trusted proxies (walking all the header's lines right to left, so
a client cannot spoof its way past the proxy; see :func:`client_address`). Buckets live in a
bounded LRU: at most ``max_clients`` are kept, the least recently seen are forgotten (a
forgotten client starts with a full bucket, which errs on the side of letting Zammad through).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.hmac_auth import route_path
from app.http.names import FORWARDED_FOR_HEADER_RAW, RETRY_AFTER_HEADER_RAW
from app.http.responses import send_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
DEFAULT_MAX_CLIENTS = 10_000
"""Most clients whose buckets are kept (least recently seen forgotten first)."""


class TokenBuckets:
    """Token buckets keyed by client, bounded in number.

    Args:
        rate: tokens added per second.
        burst: bucket size.
        max_clients: most buckets kept (LRU).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take one token for ``client``; returns 0 when allowed, else the seconds to wait."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(client)
        if bucket is None:
            bucket = [self.burst, now]
            buckets[client] = bucket
            if len(buckets) > self.max_clients:
                buckets.popitem(last=False)
            tokens = self.burst
        else:
            buckets.move_to_end(client)
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, or via ``X-Forwarded-For`` when the peer is trusted.

    Every ``X-Forwarded-For`` line counts, in order, as one list (RFC 9110 §5.3): a proxy may
    add a line of its own instead of appending to the client's (HAProxy's ``option
    forwardfor`` does), and reading only the first line took the client's forged one. The
    list is walked right to left past trusted addresses; the first untrusted one is the
    client. A hop that is no IP address (``203.0.113.9:4711`` and ``[2001:db8::1]:4711`` are
    read without their port) was not written by a proxy: the trusted address to its right,
    which received it, is the client then, so a bucket's key is always an address.
    """
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    values = [value for name, value in scope["headers"] if name == FORWARDED_FOR_HEADER_RAW]
    if not values:
        return peer
    closest = peer
    for hop in reversed(b",".join(values).decode("latin-1").split(",")):
        hop = hop.strip()
        if not hop:
            continue
        ip = _hop_address(hop)
        if ip is None:
            return closest
        if not any(ip in net for net in trusted):
            return str(ip)
        closest = str(ip)
    return closest


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def _hop_address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An ``X-Forwarded-For`` entry as an address (a port after it dropped), or ``None``."""
    if hop.startswith("["):  # [v6] or [v6]:port
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:  # v4:port
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


class RateLimitMiddleware:
    """Answer 429 ``rate_limited`` (with ``Retry-After`` in whole seconds) to clients over their rate.

    Args:
        rate: requests per second per client; 0 switches the middleware off.
        burst: requests a client may make at once.
        trusted_proxies: networks whose ``X-Forwarded-For`` is believed.
        exempt_paths: paths never limited (health probes, metrics scrapes), as the router sees
            them (:func:`~app.http.hmac_auth.route_path`: under a root path too).
        on_limited: called once per refused request (metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        burst: int,
        trusted_proxies: Iterable[Network] = (),
        exempt_paths: frozenset[str] = DEFAULT_EXEMPT_PATHS,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        on_limited: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst, max_clients=max_clients) if rate > 0 else None
        self.trusted = tuple(trusted_proxies)
        self.exempt_paths = exempt_paths
        self.on_limited = on_limited

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the awaitable of the next layer (or of the 429): no
        # coroutine of its own, so a request that waits (for its group commit) has one frame
        # fewer to suspend and resume.
        if self.buckets is None or scope["type"] != "http" or route_path(scope) in self.exempt_paths:
            return self.app(scope, receive, send)
        wait = self.buckets.take(client_address(scope, self.trusted))
        if wait:
            if self.on_limited is not None:
                self.on_limited()
            return send_error(
                send,
                429,
                "rate_limited",
                "too many requests; retry after the time in Retry-After",
                [(RETRY_AFTER_HEADER_RAW, str(max(1, math.ceil(wait))).encode())],
            )
        return self.app(scope, receive, send)
