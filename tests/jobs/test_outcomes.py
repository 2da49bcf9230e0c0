"""What a run's outcome means for its job (:mod:`app.jobs.outcomes`): the backoff, and how a job
ends — pure decisions, no store."""

from __future__ import annotations

import random

import pytest

from app.errors import ZammadApiError
from app.jobs.outcomes import JobEnd, RetryPolicy, job_end
from app.jobs.records import JobState, OutcomeStatus
from app.workflow.archive import ArchiveOutcome
from app.workflow.classify import classify


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_backoff_is_exponential_capped_and_jittered(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=60)
    rng = random.Random(attempt)
    ceiling = min(60, 10 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt, rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 10  # jitter spreads them


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        (None, 5, 10),  # the backoff alone
        (2, 5, 10),  # asked for less than the backoff: the backoff
        (120, 120, 120),  # Zammad's Retry-After: at least that
        (86400, 600, 600),  # capped at max_seconds
    ],
)
def test_the_delay_is_at_least_zammads_retry_after_up_to_the_maximum(retry_after, low, high) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=600)
    rng = random.Random(7)
    delays = [policy.delay(1, rng, retry_after=retry_after) for _ in range(50)]
    assert all(low <= d <= high for d in delays)


def test_a_429s_retry_after_reaches_the_failure() -> None:
    throttled = classify(ZammadApiError("GET answered 429", status=429, retry_after=120.0))
    assert throttled.transient and throttled.retry_after == 120.0
    assert classify(ZammadApiError("GET answered 502", status=502)).retry_after is None


def failed(status: int) -> ArchiveOutcome:
    """A run that failed fetching the ticket: Zammad answered ``status`` (503 Transient, 404 Permanent)."""
    return ArchiveOutcome(
        OutcomeStatus.FAILED,
        "fetch ticket",
        started=True,
        failure=classify(ZammadApiError("x", status=status)),
    )


@pytest.mark.parametrize(
    ("outcome", "attempts", "end"),
    [
        (ArchiveOutcome(OutcomeStatus.ARCHIVED, started=True), 1, JobEnd(JobState.DONE, "archived")),
        (ArchiveOutcome(OutcomeStatus.ARCHIVED, started=True), 3, JobEnd(JobState.DONE, "archived")),
        (
            ArchiveOutcome(OutcomeStatus.SKIPPED, "already_signed"),
            1,
            JobEnd(JobState.DONE, "skipped: already_signed"),
        ),
        (failed(404), 1, JobEnd(JobState.FAILED, "failed")),  # Permanent: no retry, whatever is left
        (failed(503), 1, None),  # Transient with attempts left: it runs again
        (failed(503), 2, None),
        (failed(503), 3, JobEnd(JobState.DEAD, "failed", gave_up=True)),  # the last attempt
        (failed(503), 4, JobEnd(JobState.DEAD, "failed", gave_up=True)),
        (
            ArchiveOutcome(OutcomeStatus.FAILED, "render"),
            1,
            JobEnd(JobState.FAILED, "failed"),
        ),  # unclassified
    ],
)
def test_how_a_job_ends_after_its_run(outcome: ArchiveOutcome, attempts: int, end: JobEnd | None) -> None:
    assert job_end(outcome, attempts=attempts, max_attempts=3) == end
