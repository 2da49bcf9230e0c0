"""``python -m app reconcile``'s refusal while a service holds the SQLite job store names what
that service's own sweep does: every N seconds, or nothing when RECONCILE_INTERVAL_SECONDS=0."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from app.config import load_settings
from app.reconcile.cli import _claim_sqlite


@pytest.mark.parametrize(
    ("interval", "expected", "not_expected"),
    [
        ("300", "it sweeps itself every RECONCILE_INTERVAL_SECONDS, 300 s", "off"),
        ("0", "its sweep is off with these settings: RECONCILE_INTERVAL_SECONDS=0", "sweeps itself"),
    ],
)
def test_the_refusal_says_whether_the_service_sweeps(
    tmp_path: Path, interval: str, expected: str, not_expected: str
) -> None:
    settings = load_settings(
        {"STATE_DIR": str(tmp_path), "RECONCILE_INTERVAL_SECONDS": interval}, require_complete=False
    )
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `python -m app serve` holds it
    try:
        refusal, lock = _claim_sqlite(settings, dry_run=False)
    finally:
        os.close(fd)
    assert lock is None and refusal is not None
    assert "holds its SQLite job store" in refusal and expected in refusal and not_expected not in refusal
    memory = load_settings(
        {"STATE_DURABLE": "false", "RECONCILE_INTERVAL_SECONDS": interval}, require_complete=False
    )
    refusal, _ = _claim_sqlite(memory, dry_run=False)
    assert refusal is not None and expected in refusal and not_expected not in refusal
