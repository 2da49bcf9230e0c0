"""scripts/ops/retry.sh and jobs.sh: a command line they do not understand, or an environment
without credentials or with an ARCHIVER_URL that is no URL, is a usage error (exit 2); a service
that cannot be reached is exit 1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: a request the script sends fails there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``scripts/ops/NAME ARGS`` against a closed port, with a webhook secret set (``env``
    overrides; an empty value unsets)."""
    environment = {
        "ARCHIVER_URL": closed_port_url(),
        "WEBHOOK_HMAC_SECRET": "s",
        "PATH": "/usr/bin:/bin",
        **env,
    }
    return subprocess.run(
        ["bash", str(REPO / "scripts/ops" / name), *args],
        env={key: value for key, value in environment.items() if value},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["4711", "--forse"], "--forse"),
        (["12348", "4711"], "4711"),
        (["4711", "--force", "extra"], "extra"),
        (["--force"], "no ticket id"),
        ([], "no ticket id"),
        (["abc"], "abc"),
    ],
)
def test_retry_script_refuses_what_it_does_not_understand(args, named):
    result = run_script("retry.sh", *args)
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr and named in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["4711", "junk"], ["4711", "4712"], [], ["abc"]])
def test_jobs_script_refuses_anything_but_one_ticket_id(args):
    result = run_script("jobs.sh", *args)
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("name", ["retry.sh", "jobs.sh"])
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBHOOK_HMAC_SECRET": ""}, "set ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET"),
        ({"ARCHIVER_URL": "127.0.0.1:8080"}, "ARCHIVER_URL must start with http:// or https://"),
    ],
)
def test_a_set_up_error_is_exit_2_and_an_unreachable_service_exit_1(name, env, named):
    """Exit 1 means the service was asked and refused or could not be reached; a script that
    cannot even ask (no credentials, no URL) says so with exit 2, as for its command line."""
    result = run_script(name, "4711", **env)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and result.stdout == ""

    unreachable = run_script(name, "4711")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
