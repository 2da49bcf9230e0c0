"""How the workflow calls Zammad when a call may fail for a moment: retried while it fails Transient."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from app.workflow.classify import classify
from app.workflow.ports import ZammadPort
from app.workflow.tags import TagTransition

T = TypeVar("T")

WRITE_ATTEMPTS = 3
"""How often one tag or note write of a report, or a tag write of a revert, is tried."""


async def retry(call: Callable[[], Awaitable[T]], *, attempts: int, backoff_seconds: float) -> T:
    """Await ``call()`` until it succeeds, at most ``attempts`` times.

    Pauses ``backoff_seconds`` before the second attempt, doubling before each further one.

    Raises:
        Exception: the call's error, at once when :func:`~app.workflow.classify.classify`
            calls it Permanent, else the last one after ``attempts`` tries.
    """
    delay = backoff_seconds
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == attempts or not classify(exc).transient:
                raise
            await asyncio.sleep(delay)
            delay *= 2
    raise ValueError(f"attempts must be at least 1, got {attempts}")


async def apply_transition(
    zammad: ZammadPort, ticket_id: int, transition: TagTransition, *, attempts: int, backoff_seconds: float
) -> None:
    """Write ``transition`` to the ticket: every addition, then every removal, one call each
    (Zammad's tag calls are idempotent, so a repeated call is harmless), each tried as
    :func:`retry` does.

    Raises:
        app.errors.ZammadApiError: a call failed Permanent, or Transient ``attempts`` times;
            the calls after it were not made.
    """
    for tag in transition.add:
        await retry(
            partial(zammad.add_tag, ticket_id, tag), attempts=attempts, backoff_seconds=backoff_seconds
        )
    for tag in transition.remove:
        await retry(
            partial(zammad.remove_tag, ticket_id, tag), attempts=attempts, backoff_seconds=backoff_seconds
        )
