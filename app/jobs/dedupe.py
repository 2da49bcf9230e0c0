"""Delivery-id dedupe: has this ``X-Zammad-Delivery`` been accepted already?

Zammad re-sends a failed webhook up to four times with the same delivery id
(``docs/zammad.md`` §1.5). An id is *claimed* only after its job was queued, so a delivery
that failed before that (a 503, a crash) still gets through on Zammad's retry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class DeliveryIdCache:
    """Remembers delivery ids for ``ttl_seconds``, bounded to ``max_entries`` (oldest dropped).

    Args:
        ttl_seconds: how long an id counts as seen (``WORKFLOW_DELIVERY_ID_TTL_SECONDS``).
        max_entries: memory bound; at 100k entries of ~40-byte ids this is a few MiB.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(self, ttl_seconds: float, *, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.hits = 0

    def seen(self, delivery_id: str) -> bool:
        """Whether ``delivery_id`` was claimed within the TTL (counts a hit when it was)."""
        self._expire()
        if delivery_id in self._seen:
            self.hits += 1
            return True
        return False

    def claim(self, delivery_id: str) -> None:
        """Record ``delivery_id`` as accepted now."""
        self._seen[delivery_id] = self._clock() + self._ttl
        self._seen.move_to_end(delivery_id)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def _expire(self) -> None:
        now = self._clock()
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[key]
