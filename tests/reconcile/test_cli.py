"""``python -m app reconcile``'s refusal while a service holds the SQLite job store names what
that service's own sweep does: every N seconds, or nothing when RECONCILE_INTERVAL_SECONDS=0.
A dry run on a STATE_DIR without a job store creates none; a pass that creates one says so."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from pathlib import Path

import pytest

from app.config import load_settings
from app.jobs.store import SQLITE_FILE
from app.reconcile.cli import _claim_sqlite
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import API_TOKEN, REPO


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


async def _reconcile(simulator: ZammadSimulator, state: Path, *args: str) -> tuple[int, str, str]:
    """``python -m app reconcile ARGS`` on ``state`` against ``simulator``: (status, stdout, stderr)."""
    assert simulator.base_url is not None
    env = {
        "PATH": os.environ["PATH"],
        "ZAMMAD_BASE_URL": simulator.base_url,
        "ZAMMAD_API_TOKEN": API_TOKEN,
        "ALLOW_INSECURE_HTTP": "true",
        "STATE_DIR": str(state),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "reconcile", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_dry_run_on_a_state_dir_without_a_job_store_creates_none(
    simulator: ZammadSimulator, tmp_path: Path
) -> None:
    """After STATE_DIR was lost, `reconcile --dry-run` (the runbook's check) lists what Zammad
    shows and leaves no jobs.sqlite3: the next `serve` still finds none and warns that its store
    is new. The pass that queues creates the store and says so."""
    state = tmp_path / "state"  # deleted while the service was stopped

    status, out, err = await _reconcile(simulator, state, "--dry-run")

    assert status == 0, err
    assert "would queue  ticket 4711" in out
    assert f"no {SQLITE_FILE} in STATE_DIR" in out and "the running service holds it" not in out
    assert not (state / SQLITE_FILE).exists()

    status, out, err = await _reconcile(simulator, state)

    assert status == 0, err
    assert "queued       ticket 4711" in out
    assert (state / SQLITE_FILE).exists()
    assert f"new empty job store created in STATE_DIR {str(state)!r}" in err
