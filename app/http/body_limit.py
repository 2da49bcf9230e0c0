"""Pure-ASGI middleware that bounds request bodies in size (413) and in time (408).

Size: a declared ``Content-Length`` above the limit is refused before any byte is read. A
body without one (chunked) is counted while the application reads it; once the count passes
the limit the application's ``receive`` raises :class:`ContentTooLarge` and the middleware
answers 413 — at most the limit plus one chunk is read, and nothing more is buffered.

Time: a body that has not fully arrived ``read_timeout`` seconds after the application first
asked for it is answered 408 ``request_timeout`` (RFC 9110 §15.5.9) and the connection is
closed, so a client that stalls mid-body cannot hold a connection and a task forever.
Hypercorn's own ``read_timeout`` would do the same with an ``asyncio.wait_for`` around every
socket read. Here a body read only registers its task in a dict, and one sweeper task per
process looks once a second for reads past their deadline; stalls before the request line
and headers are complete are Hypercorn's
``keep_alive_timeout``'s business (the connection still counts as idle then).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.names import (
    CONNECTION_HEADER_RAW,
    CONTENT_LENGTH_HEADER_RAW,
    DEFAULT_BODY_READ_TIMEOUT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
)
from app.http.responses import send_error

SWEEP_SECONDS = 1.0
"""How often the sweeper looks for stalled body reads: a stalled read is answered between
``read_timeout`` and ``read_timeout + SWEEP_SECONDS`` seconds after it began."""


class ContentTooLarge(Exception):
    """Raised from ``receive`` when the body passes ``max_body_size`` bytes."""

    def __init__(self, max_body_size: int) -> None:
        super().__init__(f"request body larger than {max_body_size} bytes")
        self.max_body_size = max_body_size


class BodyReadTimeout(Exception):
    """Raised from ``receive`` when the body did not arrive within ``read_timeout`` seconds."""

    def __init__(self, read_timeout: float) -> None:
        super().__init__(f"the request body did not arrive within {read_timeout:g} s")
        self.read_timeout = read_timeout


class _Sweeper:
    """Cancels tasks whose body read passed its deadline; runs only while reads are registered."""

    def __init__(self) -> None:
        self.reading: dict[asyncio.Task[object], float] = {}
        self.expired: set[asyncio.Task[object]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the sweeper runs on (``None`` while none runs)."""
        _SWEEPERS.add(self)

    def expire_all(self) -> None:
        """Answer every body read in progress now, as if its deadline had passed."""
        for task in list(self.reading):
            if task not in self.expired:
                self.expired.add(task)
                task.cancel()

    def register(self, task: asyncio.Task[object], loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Time ``task``'s body read (on ``loop``, its loop) until ``deadline`` (``loop.time()``)."""
        self.reading[task] = deadline
        if self._loop is not loop:  # no sweeper runs on this loop (none at all, or it ended)
            self._loop = loop
            self._task = loop.create_task(self._sweep(), name="body-read-sweeper")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.reading:
                await asyncio.sleep(SWEEP_SECONDS)
                now = loop.time()
                for task, deadline in list(self.reading.items()):
                    if deadline <= now and task not in self.expired:
                        self.expired.add(task)
                        task.cancel()
        finally:
            if self._loop is loop:  # the next read starts a sweeper again
                self._loop = None


_SWEEPERS: weakref.WeakSet[_Sweeper] = weakref.WeakSet()


def expire_body_reads() -> None:
    """End every request body still being read with 408, now (call it on the event loop).

    For shutdown: Hypercorn waits for open requests before it stops, and a client stalled
    mid-body would otherwise hold the shutdown for up to the read timeout.
    """
    for sweeper in list(_SWEEPERS):
        sweeper.expire_all()


class BodyLimitMiddleware:
    """Answer 413 ``payload_too_large`` for bodies over ``max_body_size`` bytes and 408
    ``request_timeout`` for bodies that take longer than ``read_timeout`` seconds to arrive
    (``None``: no time limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_BYTES,
        read_timeout: float | None = DEFAULT_BODY_READ_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.read_timeout = read_timeout if read_timeout is not None and math.isfinite(read_timeout) else None
        self._sweeper = _Sweeper()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_size
        declared = None
        for name, value in scope["headers"]:
            if name == CONTENT_LENGTH_HEADER_RAW:
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > limit:
                    await send_error(send, 413, "payload_too_large", f"the body may be at most {limit} bytes")
                    return
                break

        # Framing is Hypercorn's (h11): a body never exceeds its declared Content-Length, so
        # only a body without one needs counting.
        counted = declared is None
        received = 0
        started = False
        body_done = False
        deadline = 0.0
        sweeper = self._sweeper
        # The task whose body read is timed (None: no time limit) and its limit in seconds.
        task: asyncio.Task[object] | None = None
        timeout = 0.0
        if self.read_timeout is not None:
            task = asyncio.current_task()
            timeout = self.read_timeout

        async def bounded_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done or task is None:
                message = await receive()
            else:
                loop = task.get_loop()
                if not deadline:
                    deadline = loop.time() + timeout
                sweeper.register(task, loop, deadline)
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if task in sweeper.expired:
                        sweeper.expired.discard(task)
                        task.uncancel()
                        raise BodyReadTimeout(timeout) from None
                    raise
                finally:
                    sweeper.reading.pop(task, None)
            if message["type"] == "http.request":
                if counted:
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise ContentTooLarge(limit)
                if not message.get("more_body", False):
                    body_done = True
            else:
                body_done = True
            return message

        def tracking_send(message: Message) -> Awaitable[None]:
            # A plain function returning send's awaitable: no coroutine of its own per message.
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except ContentTooLarge:
            if started:
                raise
            await send_error(send, 413, "payload_too_large", f"the body may be at most {limit} bytes")
        except BodyReadTimeout as exc:
            if started:
                raise
            await send_error(send, 408, "request_timeout", str(exc), [(CONNECTION_HEADER_RAW, b"close")])
        finally:
            if task is not None and sweeper.expired:
                sweeper.expired.discard(task)
