"""How a run's concurrent downloads are left behind when one of them fails: cancelled, awaited
and their errors retrieved."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def reaped(*tasks: asyncio.Future[Any]) -> AsyncIterator[None]:
    """On leaving, cancel those of ``tasks`` still running and wait for them to end, and
    retrieve every task's exception, so that a fetch left behind by a failed step neither
    runs on nor is logged as an exception never retrieved (asyncio's "Task exception was
    never retrieved")."""
    try:
        yield
    finally:
        left = [task for task in tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        for task in tasks:
            if not task.cancelled():
                task.exception()
