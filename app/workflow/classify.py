"""Is a failure Transient or Permanent?

Transient failures may heal by themselves (network, timeouts, Zammad 5xx, a full disk):
the trigger tag is kept so the ticket is tried again. Permanent failures need a person
(a deleted ticket, no access to its group, invalid data, a read-only share): the trigger tag
is removed so the ticket is not retried in a loop.

Policy for Zammad's statuses, after ``docs/reference/zammad.md`` §3.6: 408/425/429 and 5xx
transient, no response (connection error, timeout) transient; 403/404/422 permanent. A refusal
of the service's API token (every 401, and a 403 ``API token access disabled!``;
:func:`app.zammad.client.refuses_credentials`) is Transient, code ``zammad_unauthorized``
(:class:`~app.errors.ZammadUnauthorized`): it is no fault of the ticket, every ticket fails
alike until the operator fixes the token, and then the retries (or, once a job is ``dead``,
the reconciliation sweep) archive them without anyone retrying each by hand. §3.6 calls
401 a config error without retry; a retry that meets the same refusal only costs one request.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from app.errors import TRANSIENT_ERRNOS, ArchiverError, StorageError, ZammadApiError

MAX_CAUSE_CHARS = 500

_TRANSIENT_STATUSES = {401, 408, 425, 429}
"""401: the token refused; the client raises it as :class:`~app.errors.ZammadUnauthorized`
(pinned Transient), a hand-made :class:`~app.errors.ZammadApiError` of 401 is Transient too."""


class Classification(enum.Enum):
    """The two failure classes written into notes and metrics."""

    TRANSIENT = "Transient"
    PERMANENT = "Permanent"


@dataclass(frozen=True, slots=True)
class ClassifiedFailure:
    """A failure ready for a note.

    Attributes:
        classification: Transient or Permanent.
        code: the error's stable code (e.g. ``zammad_api_error``, ``internal_error``).
        cause: a human sentence without secrets, at most :data:`MAX_CAUSE_CHARS` characters.
        retry_after: seconds Zammad asked us to wait before the next request (the
            ``Retry-After`` of its 429 or 503 answer, :attr:`ZammadApiError.retry_after`),
            else ``None``; the job's retry waits at least this long
            (:meth:`app.jobs.outcomes.RetryPolicy.delay`).
    """

    classification: Classification
    code: str
    cause: str
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.classification is Classification.TRANSIENT


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ArchiverError) and exc.transient is not None:
        return exc.transient
    if isinstance(exc, ZammadApiError):
        return exc.status is None or exc.status >= 500 or exc.status in _TRANSIENT_STATUSES
    if isinstance(exc, StorageError):
        return exc.errno in TRANSIENT_ERRNOS
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    # A defect in our own code does not heal by retrying the same input.
    return False


def classify(exc: BaseException) -> ClassifiedFailure:
    """Classify an exception that ended a job.

    Args:
        exc: any exception. :class:`~app.errors.ArchiverError` messages are used as the cause
            as they are (they are written without secrets); other exceptions are described by
            their type and message.

    Returns:
        The classification with a cause truncated to :data:`MAX_CAUSE_CHARS` characters.
    """
    if isinstance(exc, ArchiverError):
        code, cause = exc.code, str(exc)
    else:
        code, cause = "internal_error", f"{type(exc).__name__}: {exc}"
    cause = " ".join(cause.split()) or type(exc).__name__
    if len(cause) > MAX_CAUSE_CHARS:
        cause = cause[: MAX_CAUSE_CHARS - 1] + "…"
    kind = Classification.TRANSIENT if _is_transient(exc) else Classification.PERMANENT
    retry_after = exc.retry_after if isinstance(exc, ZammadApiError) else None
    return ClassifiedFailure(kind, code, cause, retry_after)
