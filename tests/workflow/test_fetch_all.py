"""The workflow's bounded fetcher: results in order, failures in place, a few calls at a time."""

from __future__ import annotations

import asyncio

from app.workflow.originals import fetch_all


async def test_results_keep_their_order_and_failures_their_place():
    running = 0
    most = 0

    def call(index: int):
        async def run() -> bytes:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.001 * (7 - index % 7))  # finish out of order
            running -= 1
            if index % 5 == 0:
                raise OSError(f"no {index}")
            return str(index).encode()

        return run

    results = await fetch_all([call(i) for i in range(40)], 4)
    assert most == 4
    for index, result in enumerate(results):
        if index % 5 == 0:
            assert isinstance(result, OSError) and str(result) == f"no {index}"
        else:
            assert result == str(index).encode()
    assert await fetch_all([], 4) == []
