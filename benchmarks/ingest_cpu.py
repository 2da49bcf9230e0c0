"""Benchmark: CPU instructions per ``POST /ingest``, full stack against the bare route.

The requests/s of :mod:`benchmarks.ingest` move by ±10 % between rounds on a shared machine;
instruction counts do not. Each server (the bare route of ``benchmarks/bare_app.py``, the
full stack with its durable job store, and the full stack with ``STATE_DURABLE=false``) runs
under ``valgrind --tool=callgrind`` with instrumentation switched on only while the same
signed webhooks as in :mod:`benchmarks.ingest` load it (wrk, 32 connections; aiohttp without
wrk). The figure is user-space instructions of the server process per answered request, and
bare / full is the CPU side of the full/bare requests/s ratio. It leaves out what callgrind
cannot see: the kernel's share (system calls: the access log's write, the job store's WAL
writes), other processes (the WAL sync helper), and waiting.

Two more servers run the full stack with one of our hand-written pieces swapped back for the
library's own (:mod:`benchmarks.library_variants`): Starlette's error layers instead of
:class:`app.http.errors.ArchiverApp`'s, and prometheus-client's labelled ``Counter`` instead of
:class:`app.observability.metrics.StatusCounter`. Their instructions per request over the full
stack's say what each piece buys on the ingest figure (above 1: ours costs less). A piece whose
ratio cannot be told from 1 (the rows repeat to about ±0.3 %) goes back to the library.

Information only (no target). Skipped with a row saying so when valgrind is not installed
(Debian: ``apt-get install valgrind``; ``make bench`` installs it). About 4 minutes.

Run alone: ``python -m benchmarks.ingest_cpu [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import ingest
from benchmarks.common import REPO, Result, free_port, print_rows, stop, wait_http

KINDS = ("bare", "full", "memory", "starlette_errors", "prometheus_counter")
"""The servers measured: the bare route, the full stack (durable and in-memory job store), and
the full stack with one piece swapped for the library's (a :mod:`benchmarks.library_variants` name)."""


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
        if kind == "bare":
            proc = ingest.start_bare(port)
        elif kind in ("full", "memory"):
            proc = ingest.start_full(port, tmp, durable=kind == "full")
        else:
            proc = ingest.start_full(port, tmp, variant=kind)
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
    counted = 0
    for dump in log.parent.glob(f"{log.with_suffix('.out').name}*"):
        totals = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
        counted = max(counted, int(totals.group(1)) if totals else 0)
    if not counted:
        raise RuntimeError(f"callgrind counted nothing for {kind} (see {log})")
    requests = round(result.rps * seconds)
    return counted / max(1, requests), result.errors


def run(quick: bool = False) -> list[Result]:
    """Instructions per request for the bare route, the full stack, its in-memory variant and
    the two library variants; the CPU side of full/bare and what each hand-written piece buys."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return [Result("ingest_cpu", "skipped: valgrind is not installed", float("nan"), "")]
    # Requests in flight when wrk stops (up to 32) and the connections' set-up are counted too:
    # ~2 % of a 20 s window, less than the differences this measures.
    seconds = 6.0 if quick else 20.0
    per_request: dict[str, float] = {}
    errors = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            per_request[kind], bad = measure(kind, seconds, Path(tmp))
            errors += bad
    bare, full, memory, starlette_errors, prometheus_counter = (per_request[k] for k in KINDS)
    return [
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
            "full stack with Starlette's error layers / ours, instructions per request",
            round(starlette_errors / full, 3),
            "ratio",
        ),
        Result(
            "ingest_cpu",
            "full stack with prometheus-client's Counter for ingest statuses / ours, instructions per req.",
            round(prometheus_counter / full, 3),
            "ratio",
        ),
        Result("ingest_cpu", "non-202 answers", errors, "count", "== 0", errors == 0),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter load")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
