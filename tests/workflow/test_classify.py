"""Transient or Permanent: the classification of a failure."""

from __future__ import annotations

import errno

import pytest

from app.errors import RenderError, SigningError, StorageError, ZammadApiError, ZammadUnauthorized
from app.jobs.records import JobStoreUnavailable
from app.workflow.classify import MAX_CAUSE_CHARS, Classification, classify


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ZammadApiError("boom", status=500), Classification.TRANSIENT),
        (ZammadApiError("boom", status=503), Classification.TRANSIENT),
        (ZammadApiError("slow", status=None), Classification.TRANSIENT),
        (ZammadApiError("rate", status=429), Classification.TRANSIENT),
        (ZammadApiError("auth", status=401), Classification.TRANSIENT),
        (ZammadUnauthorized("token", status=401), Classification.TRANSIENT),
        (ZammadUnauthorized("token access disabled", status=403), Classification.TRANSIENT),
        (ZammadApiError("forbidden", status=403), Classification.PERMANENT),
        (ZammadApiError("gone", status=404), Classification.PERMANENT),
        (ZammadApiError("invalid", status=422), Classification.PERMANENT),
        (StorageError("full", errno=errno.ENOSPC), Classification.TRANSIENT),
        (StorageError("io", errno=errno.EIO), Classification.TRANSIENT),
        (StorageError("ro", errno=errno.EROFS), Classification.PERMANENT),
        (StorageError("denied", errno=errno.EACCES), Classification.PERMANENT),
        (SigningError("tsa down", transient=True), Classification.TRANSIENT),
        (SigningError("bad password", transient=False), Classification.PERMANENT),
        (RenderError("pool died", transient=True), Classification.TRANSIENT),
        (TimeoutError(), Classification.TRANSIENT),
        (KeyError("bug"), Classification.PERMANENT),
    ],
)
def test_classification(exc, expected):
    assert classify(exc).classification is expected


def test_cause_is_bounded_and_one_line():
    failure = classify(ZammadApiError("line one\nline two " + "x" * 2000, status=500))
    assert "\n" not in failure.cause
    assert len(failure.cause) == MAX_CAUSE_CHARS
    assert failure.cause.startswith("line one line two")


def test_a_job_store_outage_is_transient_job_store_unavailable():
    """Wherever it meets a classification (a lease check before a write to the ticket, marking
    a report delivered): the database may come back, so the trigger tag is kept."""
    failure = classify(JobStoreUnavailable("cannot connect to the job store postgresql://u:***@db/x"))
    assert failure.classification is Classification.TRANSIENT
    assert failure.code == "job_store_unavailable"
    assert failure.cause == "cannot connect to the job store postgresql://u:***@db/x"


def test_a_refused_token_is_transient_zammad_unauthorized():
    """The token, not the ticket: retried like an outage, under its own code; the cause is the
    client's message as it is (Zammad's text, no token)."""
    message = "GET /api/v1/tags answered 401: Can't find User for Token"
    failure = classify(ZammadUnauthorized(message, status=401, method="GET", path="/api/v1/tags"))
    assert (failure.classification, failure.code, failure.cause) == (
        Classification.TRANSIENT,
        "zammad_unauthorized",
        message,
    )
    assert failure.retry_after is None
    group_refused = ZammadApiError("GET /api/v1/tickets/4711 answered 403: Not authorized", status=403)
    assert classify(group_refused).code == "zammad_api_error"
