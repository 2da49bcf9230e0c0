"""Can the service write under the storage root now? One test write, shared by its callers.

The readiness check (``GET /healthz?deep=true``, :mod:`app.http.health`) asks this on every
call. Probes come from orchestrators every few seconds, but nothing stops a client calling it
in a loop: 20 concurrent callers made ~1,100 test files a second under the root (often a CIFS
share) and tripled ``/ingest``'s median latency. :class:`StorageProbe` makes at most one test
write at a time and reuses its result for :data:`REUSE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable

REUSE_SECONDS = 1.0
"""How long a finished test write's result answers later callers, in seconds."""


def write_test_file(root: str) -> None:
    """Create, write and remove ``<root>/.healthz-<random hex>``.

    Raises:
        OSError: the root is not writable (missing, read-only, full, the share gone).
    """
    probe = os.path.join(root, f".healthz-{uuid.uuid4().hex}")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(probe)


class StorageProbe:
    """The storage root's writability, tested by one test write at a time (in a thread, with a
    timeout) and remembered for :data:`REUSE_SECONDS`; callers that arrive while a test runs
    wait for that one. One per service (:class:`app.runtime.Runtime`)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._running: asyncio.Future[str | None] | None = None
        self._result: str | None = None
        self._tested_at = float("-inf")

    async def check(self, root: str, timeout_seconds: float) -> str | None:
        """``None`` when ``root`` is writable, else why not (``"Read-only file system"``, a
        timeout after ``timeout_seconds``), from a test write at most :data:`REUSE_SECONDS` old."""
        if self._running is None and self._clock() - self._tested_at < REUSE_SECONDS:
            return self._result
        if self._running is None:
            self._running = asyncio.ensure_future(self._test(root, timeout_seconds))
        return await asyncio.shield(self._running)

    async def _test(self, root: str, timeout_seconds: float) -> str | None:
        try:
            await asyncio.wait_for(asyncio.to_thread(write_test_file, root), timeout_seconds)
            result = None
        except (OSError, TimeoutError) as exc:
            result = getattr(exc, "strerror", None) or repr(exc)
        finally:
            self._running = None  # anything else raised reaches this test's callers only
        self._result, self._tested_at = result, self._clock()
        return result
