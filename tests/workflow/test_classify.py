"""Transient or Permanent: the classification of a failure."""

from __future__ import annotations

import errno

import pytest

from app.errors import RenderError, SigningError, StorageError, ZammadApiError
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
