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
