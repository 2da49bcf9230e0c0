"""Shared pieces of the benchmarks: the result row, free ports, and starting servers.

Every benchmark module has ``run(quick: bool = False) -> list[Result]``. Targets are
compared on ratios measured in one run, never on absolute times: the machines are shared
and noisy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One measured figure.

    Attributes:
        bench: the benchmark's name, e.g. ``"ingest"``.
        metric: what was measured, e.g. ``"full stack / bare route, requests/s"``.
        value: the figure.
        unit: e.g. ``"ratio"``, ``"req/s"``, ``"ms"``.
        target: the target as text (``">= 0.9"``), or ``None`` for context figures.
        met: whether the target was met, or ``None`` without a target.
    """

    bench: str
    metric: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def print_rows(rows: list[Result]) -> None:
    """Print result rows for a benchmark run alone (``python -m benchmarks.NAME``)."""
    for row in rows:
        print(
            f"{row.metric:70} {row.value:>9} {row.unit:9} {row.target or ''} "
            f"{'' if row.met is None else ('met' if row.met else 'NOT met')}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200, or raise when ``proc`` died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_python(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``python args…`` from the repository root with ``env`` added; output discarded."""
    full_env = {**os.environ, **env}
    full_env.pop("CONFIG_PATH", None)
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
