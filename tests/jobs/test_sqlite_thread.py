"""The SQLite store's thread (:class:`app.jobs.sqlite_thread.StoreThread`): calls run in order,
off the event loop, and their results and exceptions come back to the loop that asked."""

from __future__ import annotations

import asyncio
import functools
import threading
import time

import pytest

from app.jobs.sqlite_thread import StoreThread


async def test_calls_run_in_order_in_one_other_thread() -> None:
    thread = StoreThread("test-store")
    seen: list[tuple[int, int]] = []

    def call(n: int) -> int:
        time.sleep(0.001 * (5 - n))  # the first is the slowest: order is kept anyway
        seen.append((n, threading.get_ident()))
        return n * n

    try:
        answers = await asyncio.gather(*(thread.call(functools.partial(call, n)) for n in range(5)))
        assert answers == [0, 1, 4, 9, 16]
        assert [n for n, _ in seen] == list(range(5))
        assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()
    finally:
        thread.stop()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    thread = StoreThread("test-store")

    def fails() -> None:
        raise OSError(28, "No space left on device")

    try:
        with pytest.raises(OSError, match="No space left"):
            await thread.call(fails)
        assert await thread.call(lambda: "still here") == "still here"
    finally:
        thread.stop()


def test_stop_finishes_the_queued_calls_even_when_their_loop_is_gone() -> None:
    thread = StoreThread("test-store")
    done: list[str] = []

    def slow() -> None:
        time.sleep(0.05)
        done.append("slow")

    async def queue_and_leave() -> None:
        thread.submit(slow, lambda ok, value: None)
        thread.submit(functools.partial(done.append, "next"), lambda ok, value: None)

    asyncio.run(queue_and_leave())  # the loop is closed before the calls end
    thread.stop()
    assert done == ["slow", "next"]
