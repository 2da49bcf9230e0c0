"""What a run's outcome means for its job: run it again later, or end it done, failed or dead.

Pure decisions, no I/O: :class:`RetryPolicy` says when a Transient failure runs again,
:func:`job_end` how a job ends. The worker pool (:mod:`app.jobs.pool`) records the answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.jobs.records import JobState, OutcomeStatus
from app.workflow.archive import ArchiveOutcome


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for Transient failures.

    Attributes:
        max_attempts: runs per job before it is dead (``WORKFLOW_MAX_ATTEMPTS``).
        base_seconds: the pause after the first failure (``WORKFLOW_RETRY_BASE_SECONDS``).
        max_seconds: the longest pause (``WORKFLOW_RETRY_MAX_SECONDS``).
    """

    max_attempts: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 900.0

    def delay(
        self, attempt: int, rng: random.Random | None = None, *, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based):
        ``min(max, base * 2**(attempt-1))``, scaled by a random factor in [0.5, 1.0] so that
        jobs failing together do not retry together.

        ``retry_after``: seconds Zammad asked us to wait (the ``Retry-After`` of a 429 or 503,
        :attr:`~app.workflow.classify.ClassifiedFailure.retry_after`); the delay is at least
        that, capped at ``max_seconds`` (a huge or hostile header does not park the job for
        hours: the job runs again after ``max_seconds`` at the latest, and a second 429 asks
        again).
        """
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        backoff = ceiling * (rng or random).uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.max_seconds))


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How a job ends after its run.

    Attributes:
        state: ``done`` (archived or skipped), ``failed`` (Permanent) or ``dead`` (Transient,
            attempts used up).
        result: ``jobs.result``: ``"archived"``, ``"skipped: <gate's reason>"`` or ``"failed"``.
        gave_up: a Transient failure on the last attempt (the report's note says so).
    """

    state: JobState
    result: str
    gave_up: bool = False


def job_end(outcome: ArchiveOutcome, *, attempts: int, max_attempts: int) -> JobEnd | None:
    """How the job ends after a run that ended with ``outcome`` on attempt ``attempts``
    (1-based); ``None`` when it runs again: a Transient failure with attempts left (after
    :meth:`RetryPolicy.delay`)."""
    if outcome.status == OutcomeStatus.ARCHIVED:
        return JobEnd(JobState.DONE, "archived")
    if outcome.status == OutcomeStatus.SKIPPED:
        return JobEnd(JobState.DONE, f"skipped: {outcome.reason}")
    if outcome.failure is not None and outcome.failure.transient:
        return None if attempts < max_attempts else JobEnd(JobState.DEAD, "failed", gave_up=True)
    return JobEnd(JobState.FAILED, "failed")
