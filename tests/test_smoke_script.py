"""scripts/ci/smoke-test.sh against a locally started service, as CI runs it (through make test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_smoke_script_archives_one_signed_ticket():
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("CONFIG_PATH", None)
    result = subprocess.run(
        ["bash", str(REPO / "scripts/ci/smoke-test.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[smoke] OK" in result.stdout
    assert "Signature is Valid" in result.stdout
