"""``python -m app serve`` and the other commands refuse bad settings: one line naming them, exit 2."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_PATH"}
    env.update(
        {
            "ZAMMAD_BASE_URL": "https://zammad.example",
            "ZAMMAD_API_TOKEN": "t0ken-value",
            "STORAGE_ROOT": str(tmp_path),
            "STATE_DIR": str(tmp_path / "state"),
            "SIGNING_ENABLED": "false",
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": "1",
        }
    )
    env.update(overrides)
    return env


def _serve(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    return _command(tmp_path, ["serve"], **overrides)


def _command(tmp_path: Path, argv: list[str], **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=REPO,
        env=_env(tmp_path, **overrides),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str], named: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error:") and named in lines[0], (
        result.stderr
    )


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"WORKERS": "abc"}, "WORKERS"),
        ({"ZAMMAD_BASE_URL": "http://zammad.example"}, "ZAMMAD_BASE_URL"),
        ({"STORAGE_ROOT": "/nonexistent/archive"}, "STORAGE_ROOT"),
        ({"STATE_DIR": "/proc/forbidden/state"}, "STATE_DIR"),
        ({"ZAMMAD_BASE_URL": "https://[bad"}, "ZAMMAD_BASE_URL"),
        ({"ZAMMAD_BASE_URL": "https://127.0.0.1:abc/"}, "ZAMMAD_BASE_URL"),
        ({"TSA_URL": "https://[bad"}, "TSA_URL"),
        ({"JOB_STORE_URL": "postgresql://u:S3cretPW@[bad/db"}, "JOB_STORE_URL"),
        ({"JOB_STORE_URL": "postgresql://u:S3cretPW@127.0.0.1:abc/db"}, "JOB_STORE_URL"),
    ],
)
def test_bad_setting_exits_2_naming_it(tmp_path, overrides, named):
    result = _serve(tmp_path, **overrides)
    _one_line(result, named)
    assert "S3cretPW" not in result.stderr + result.stdout


@pytest.mark.parametrize("argv", [["reconcile", "--dry-run"], ["lta-refresh", "--dry-run"], ["audit"]])
@pytest.mark.parametrize(
    ("key", "url"),
    [("ZAMMAD_BASE_URL", "https://127.0.0.1:abc/"), ("JOB_STORE_URL", "postgresql://u:S3cretPW@[bad/db")],
)
def test_every_command_refuses_an_unreadable_url_with_exit_2(tmp_path, argv, key, url):
    result = _command(tmp_path, argv, **{key: url})
    if argv[0] == "audit":  # its JSON log starts before the settings are read: the last line
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("audit:") and key in last, result.stderr
    else:
        _one_line(result, key)
    assert "S3cretPW" not in result.stderr + result.stdout


def test_a_port_in_use_or_a_bad_host_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _one_line(_serve(tmp_path, SERVER_PORT=str(taken.getsockname()[1])), "SERVER_PORT")
    _one_line(_serve(tmp_path, SERVER_HOST="999.1.1.1"), "SERVER_HOST")


def test_a_second_instance_on_the_same_state_dir_is_refused_before_touching_it(tmp_path):
    """Another process holds STATE_DIR/.lock: the start is refused without opening the job store."""
    state = tmp_path / "state"
    state.mkdir()
    fd = os.open(state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _one_line(_serve(tmp_path), "STATE_DIR")
        assert not (state / "jobs.sqlite3").exists()
    finally:
        os.close(fd)


def test_sigterm_answers_a_stalled_upload_at_once(tmp_path):
    """A client stalled mid-body does not hold the shutdown for HARDENING_BODY_READ_TIMEOUT_SECONDS:
    it gets its 408 when SIGTERM arrives, and the service exits well before the timeout."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = _env(
        tmp_path,
        SERVER_PORT=str(port),
        WEBHOOK_HMAC_SECRET="s3cret-value",
        SHUTDOWN_GRACE_SECONDS="1",
        HARDENING_BODY_READ_TIMEOUT_SECONDS="60",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the service did not start"
                time.sleep(0.1)
        with client:
            client.sendall(
                b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Hub-Signature: sha1=00\r\nContent-Length: 1000\r\n\r\n{"
            )
            time.sleep(0.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            client.settimeout(20)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_job_store_that_cannot_be_used_is_one_line_and_exit_1(tmp_path, postgres_server):
    """A missing database is final at once (no start wait); the line names the store, never
    its password."""
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    url = postgres_server.url("no_such_db")
    result = _serve(tmp_path, JOB_STORE_URL=url, SERVER_PORT=str(port))
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("start failed: cannot use the job store postgresql://") and "no_such_db" in last, (
        last
    )
    assert postgres_server.password not in result.stderr + result.stdout
