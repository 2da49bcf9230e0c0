"""One thread that runs the SQLite job store's blocking calls in order (connect, checkpoint, close)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any


def resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Give ``future`` its result (``ok``) or exception (``value``), unless it is done already
    (cancelled by its caller)."""
    if not future.done():
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class StoreThread:
    """A daemon thread that runs the calls handed to it one after the other, and hands each
    result (or exception) back to the event loop that asked.

    Lighter than a ``ThreadPoolExecutor``: the hand-off is a ``SimpleQueue`` put (no
    Python-level lock or condition for the two threads to contend for) and the answer comes
    back with ``call_soon_threadsafe``.

    Args:
        name: the thread's name (shows in ``py-spy`` and thread dumps).
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.AbstractEventLoop, Callable[[bool, Any], None]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, loop, done = item
            try:
                ok, value = True, fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                ok, value = False, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: no one is waiting any more
                loop.call_soon_threadsafe(done, ok, value)

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in the thread; a future of the running loop gets its result or exception."""
        future = asyncio.get_running_loop().create_future()
        self.submit(fn, functools.partial(resolve, future))
        return future

    def submit(self, fn: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        """Run ``fn()`` in the thread, then ``done(ok, result_or_exception)`` on the running loop."""
        self._queue.put((fn, asyncio.get_running_loop(), done))

    def stop(self) -> None:
        """Finish the queued calls and end the thread (blocks until it has ended)."""
        self._queue.put(None)
        self._thread.join()
