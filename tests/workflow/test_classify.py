"""Transient or Permanent: the classification of a failure."""

from __future__ import annotations

import errno

import pytest

from app.errors import RenderError, SigningError, StorageError, ZammadApiError
from app.jobs.records import JobStoreUnavailable
from app.workflow.classify import MAX_CAUSE_CHARS, Classification, classify


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ZammadApiError("boom", status=500), Classification.TRANSIENT),
        (ZammadApiError("boom", status=503), Classification.TRANSIENT),
        (ZammadApiError("slow", status=None), Classification.TRANSIENT),
        (ZammadApiError("rate", status=429), Classification.TRANSIENT),
        (ZammadApiError("auth", status=401), Classification.PERMANENT),
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
