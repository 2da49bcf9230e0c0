"""Benchmark: CPU instructions per ``POST /ingest``, full stack against the bare route.

The requests/s of :mod:`benchmarks.ingest` move by ±10 % between rounds on a shared machine;
instruction counts much less (a few per cent on a busy machine, through the batch sizes). Each
server (the bare route of ``benchmarks/bare_app.py``, the full stack with its durable job
store, and the full stack with ``STATE_DURABLE=false``) runs under ``valgrind
--tool=callgrind`` with instrumentation switched on only while the same signed webhooks as in
:mod:`benchmarks.ingest` load it (wrk, 32 connections; aiohttp without wrk). The figure is
user-space instructions of the server process per answered request, and bare / full is the CPU
side of the full/bare requests/s ratio. It leaves out what callgrind cannot see: the kernel's
share (system calls: the access log's write, the job store's WAL writes), other processes (the
WAL sync helper), and waiting.

What each hand-written piece of the edge buys is counted in-process
(:mod:`benchmarks.app_instructions`: the application called straight through its middleware
chain, 2,048 signed webhooks in waves of 32, under callgrind): the service as it is, and the
service with one piece swapped back for the library's own (:mod:`benchmarks.library_variants`:
Starlette's error layers instead of :class:`app.http.errors.ArchiverApp`'s, prometheus-client's
labelled ``Counter`` instead of :class:`app.observability.metrics.StatusCounter`). Each row
gives the instructions the piece saves per webhook as a share of the full stack's (the server's
count above): what it buys on the full/bare figure. The in-process workload is the same in
every run and waits on nothing, so those counts repeat closely whatever else the machine does;
the server's count follows the machine's timing through its batch sizes (several per cent on a
busy machine).

Information only (no target). Skipped with a row saying so when valgrind is not installed
(Debian: ``apt-get install valgrind``; ``make bench`` installs it). About 4 minutes.

Run alone: ``python -m benchmarks.ingest_cpu [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import ingest
from benchmarks.common import REPO, Result, free_port, print_rows, stop, wait_http

KINDS = ("bare", "full", "memory")
"""The servers measured: the bare route, the full stack (durable and in-memory job store)."""
VARIANTS = {
    "starlette_errors": "Starlette's error layers",
    "prometheus_counter": "prometheus-client's Counter for ingest statuses",
}
"""The library variants counted in-process (:mod:`benchmarks.library_variants` names) and how
the rows name them."""


def _under_callgrind(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env}
    full_env.pop("CONFIG_PATH", None)
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={log.with_suffix('.out')}",
            f"--log-file={log}",
            sys.executable,
            *args,
        ],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(kind: str, seconds: float, tmp: Path) -> tuple[float, int]:
    """Instructions per request and the non-202 count for one server (one of :data:`KINDS`)."""
    port = free_port()
    log = tmp / f"{kind}.callgrind.log"
    start_python = ingest.start_python
    ingest.start_python = lambda args, env: _under_callgrind(args, env, log)
    try:
        proc = (
            ingest.start_bare(port)
            if kind == "bare"
            else ingest.start_full(port, tmp, durable=kind == "full")
        )
    finally:
        ingest.start_python = start_python
    url = f"http://127.0.0.1:{port}/ingest"
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=300)
        ingest.load(url, 3.0)  # warm-up, not counted
        subprocess.run(
            ["callgrind_control", "--instr=on", str(proc.pid)], capture_output=True, check=True, timeout=60
        )
        result = ingest.load(url, seconds)
        subprocess.run(
            ["callgrind_control", "--instr=off", str(proc.pid)], capture_output=True, check=True, timeout=60
        )
        # A dump now: the server's own exit (after SIGTERM, slow under valgrind) may be cut short.
        subprocess.run(
            ["callgrind_control", "--dump", str(proc.pid)], capture_output=True, check=True, timeout=120
        )
    finally:
        stop(proc)
    counted = _counted(log, kind)
    requests = round(result.rps * seconds)
    return counted / max(1, requests), result.errors


def _counted(log: Path, what: str) -> int:
    """The largest ``totals`` of the callgrind dumps next to ``log``."""
    counted = 0
    for dump in log.parent.glob(f"{log.with_suffix('.out').name}*"):
        totals = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
        counted = max(counted, int(totals.group(1)) if totals else 0)
    if not counted:
        raise RuntimeError(f"callgrind counted nothing for {what} (see {log})")
    return counted


def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line the child prints, within ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"no answer from benchmarks.app_instructions within {timeout:.0f} s")
    return proc.stdout.readline().strip()


def _callgrind_control(*args: str, timeout: float = 120) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=True, timeout=timeout)


def app_instructions(variant: str | None, tmp: Path) -> tuple[float, int]:
    """Instructions per in-process webhook and the non-202 count, for the service as it is
    (``variant`` None) or with a library variant (:mod:`benchmarks.app_instructions`)."""
    log = tmp / f"app-{variant or 'ours'}.callgrind.log"
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_PATH"}
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={log.with_suffix('.out')}",
            f"--log-file={log}",
            sys.executable,
            "-m",
            "benchmarks.app_instructions",
            *([variant] if variant else []),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None
    try:
        if (line := _line(proc, 600)) != "READY":
            raise RuntimeError(f"benchmarks.app_instructions did not start: {line!r} (see {log})")
        _callgrind_control("--instr=on", str(proc.pid))
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        done = _line(proc, 900).split()
        _callgrind_control("--instr=off", str(proc.pid))
        _callgrind_control("--dump", str(proc.pid))
        proc.stdin.write("EXIT\n")
        proc.stdin.flush()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if len(done) != 3 or done[0] != "DONE":
        raise RuntimeError(f"benchmarks.app_instructions ended with {done!r} (see {log})")
    return _counted(log, f"app_instructions {variant}") / int(done[1]), int(done[2])


def run(quick: bool = False) -> list[Result]:
    """Instructions per request for the bare route, the full stack and its in-memory variant
    (the CPU side of full/bare), and what each hand-written piece of the edge buys."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return [Result("ingest_cpu", "skipped: valgrind is not installed", float("nan"), "")]
    # Requests in flight when wrk stops (up to 32) and the connections' set-up are counted too:
    # ~2 % of a 20 s window, less than the differences this measures.
    seconds = 6.0 if quick else 20.0
    per_request: dict[str, float] = {}
    errors = 0
    in_process: dict[str | None, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            per_request[kind], bad = measure(kind, seconds, Path(tmp))
            errors += bad
        for variant in (None, *VARIANTS):
            in_process[variant], bad = app_instructions(variant, Path(tmp))
            errors += bad
    bare, full, memory = (per_request[k] for k in KINDS)
    ours = in_process[None]
    rows = [
        Result(
            "ingest_cpu", "bare route, instructions per request (callgrind)", round(bare / 1000, 1), "k instr"
        ),
        Result("ingest_cpu", "full stack, instructions per request", round(full / 1000, 1), "k instr"),
        Result(
            "ingest_cpu",
            "full stack, in-memory job store, instructions per request",
            round(memory / 1000, 1),
            "k instr",
        ),
        Result(
            "ingest_cpu",
            "bare / full instructions per request (the CPU side of full/bare req/s)",
            round(bare / full, 3),
            "ratio",
        ),
        Result(
            "ingest_cpu",
            "the application in-process (no server), instructions per webhook",
            round(ours / 1000, 1),
            "k instr",
        ),
    ]
    for variant, named in VARIANTS.items():
        saved = in_process[variant] - ours
        rows.append(
            Result(
                "ingest_cpu",
                f"ours instead of {named}: instructions saved per webhook / full stack's",
                round(saved / full, 4),
                "ratio",
            )
        )
    rows.append(Result("ingest_cpu", "non-202 answers", errors, "count", "== 0", errors == 0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter load")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
