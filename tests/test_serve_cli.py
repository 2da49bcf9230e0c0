"""``python -m app serve`` refuses bad settings with one line naming them and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"WORKERS": "abc"}, "WORKERS"),
        ({"ZAMMAD_BASE_URL": "http://zammad.example"}, "ZAMMAD_BASE_URL"),
        ({"STORAGE_ROOT": "/nonexistent/archive"}, "STORAGE_ROOT"),
        ({"STATE_DIR": "/proc/forbidden/state"}, "STATE_DIR"),
    ],
)
def test_bad_setting_exits_2_naming_it(tmp_path, overrides, named):
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_PATH"}
    env.update({"ZAMMAD_BASE_URL": "https://zammad.example", "ZAMMAD_API_TOKEN": "t0ken-value",
                "STORAGE_ROOT": str(tmp_path), "STATE_DIR": str(tmp_path / "state"), "SIGNING_ENABLED": "false",
                "SERVER_PORT": "1"})
    env.update(overrides)
    result = subprocess.run([sys.executable, "-m", "app", "serve"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error:") and named in lines[0], result.stderr
