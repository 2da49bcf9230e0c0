"""Zammad calls retried while they fail Transient; tag transitions add before they remove."""

from __future__ import annotations

import pytest

from app.errors import ZammadApiError
from app.workflow import writes
from app.workflow.tags import TagTransition
from app.workflow.writes import apply_transition, retry
from tests.workflow.fakes import FakeZammad


class Flaky:
    """Fails with ``errors`` one call each, then answers ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff pauses ``retry`` takes, in seconds (none is actually waited)."""
    taken: list[float] = []

    async def sleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(writes.asyncio, "sleep", sleep)
    return taken


async def test_a_transient_failure_is_retried_with_a_doubling_pause(pauses: list[float]):
    call = Flaky(ZammadApiError("502", status=502), ZammadApiError("timeout", status=None))
    assert await retry(call, attempts=3, backoff_seconds=0.5) == "ok"
    assert call.calls == 3 and pauses == [0.5, 1.0]


async def test_a_permanent_failure_is_not_retried(pauses: list[float]):
    call = Flaky(ZammadApiError("403", status=403))
    with pytest.raises(ZammadApiError):
        await retry(call, attempts=3, backoff_seconds=0.5)
    assert call.calls == 1 and pauses == []


async def test_the_last_transient_failure_is_raised_after_the_attempts(pauses: list[float]):
    call = Flaky(*[ZammadApiError(f"503 #{i}", status=503) for i in range(3)])
    with pytest.raises(ZammadApiError, match="503 #1"):
        await retry(call, attempts=2, backoff_seconds=0.1)
    assert call.calls == 2 and pauses == [0.1]


async def test_no_attempt_is_a_usage_error():
    with pytest.raises(ValueError):
        await retry(Flaky(), attempts=0, backoff_seconds=0)


async def test_a_transition_adds_then_removes_in_order():
    zammad = FakeZammad()
    zammad.ticket(1, ["pdf:processing", "x"])
    await apply_transition(
        zammad,
        1,
        TagTransition(add=("pdf:signed", "y"), remove=("pdf:processing", "x")),
        attempts=1,
        backoff_seconds=0,
    )
    assert zammad.writes() == [
        ("add_tag", 1, "pdf:signed"),
        ("add_tag", 1, "y"),
        ("remove_tag", 1, "pdf:processing"),
        ("remove_tag", 1, "x"),
    ]


async def test_a_transition_stops_at_a_call_that_keeps_failing(pauses: list[float]):
    zammad = FakeZammad()
    zammad.ticket(1, ["pdf:processing"])
    zammad.fail("add_tag", ZammadApiError("403", status=403))
    with pytest.raises(ZammadApiError):
        await apply_transition(
            zammad,
            1,
            TagTransition(add=("pdf:signed",), remove=("pdf:processing",)),
            attempts=3,
            backoff_seconds=0,
        )
    assert zammad.tags[1] == ["pdf:processing"]  # never without a state tag
