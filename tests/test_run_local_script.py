"""scripts/dev/run-local.sh: it hands the service the simulator URL of this run, never a stale one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Stands in for the interpreter: as the simulator it announces a fresh URL after a moment and
# stays up; as the service it records the ZAMMAD_BASE_URL it was given and exits (so the
# script stops there).
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
    *devtools.zammad_simulator*) sleep 0.3; echo "LISTENING http://127.0.0.1:1/fresh"; exec sleep 30 ;;
    *"app serve"*) echo "$ZAMMAD_BASE_URL" >"$SEEN"; exit 1 ;;
esac
"""


def test_run_local_ignores_the_previous_runs_listening_line(tmp_path: Path) -> None:
    """The previous run's var/local-simulator.out must not be read as this run's (one start in
    six did so, before the new simulator emptied it, then found no URL in it)."""
    (tmp_path / "scripts/dev").mkdir(parents=True)
    shutil.copy(REPO / "scripts/dev/run-local.sh", tmp_path / "scripts/dev/run-local.sh")
    (tmp_path / "scripts/dev/gen-dev-certs.sh").write_text("exit 0\n")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    seen = tmp_path / "seen-url"
    out = tmp_path / "var/local-simulator.out"
    out.parent.mkdir()
    out.write_text("LISTENING http://127.0.0.1:1/stale\n")
    # A slow `cd` (bash imports exported functions, and a function wins over the builtin) holds
    # back the simulator's subshell, as a busy machine does, so the script reads the file before
    # the simulator opens it: the race is lost on every run, not once in six.
    slow_cd = '() {  sleep 0.5; builtin cd "$@"; }'
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts/dev/run-local.sh")],
        env={**os.environ, "PYTHON": str(fake), "SEEN": str(seen), "BASH_FUNC_cd%%": slow_cd},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "the service exited" in result.stdout, result.stdout + result.stderr
    assert seen.read_text().strip() == "http://127.0.0.1:1/fresh"
