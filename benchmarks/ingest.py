"""Benchmark: ``POST /ingest`` through the full stack against a bare Starlette route.

Both servers run on the same Hypercorn (one process each, started one after the other) and
answer the same signed webhook. The bare route only checks the HMAC signature and parses
the JSON (``benchmarks/bare_app.py``); the full stack adds the request log, rate limiter,
body limit, HMAC middleware, dedupe and the job queue. The ratio full / bare of requests/s
is the result (target: at least 0.9). Rounds alternate bare/full so drift hits both alike.

The full stack runs with its default, durable job store (SQLite in a fresh ``STATE_DIR``,
WAL, group commits, each batch answered once the WAL sync helper has fdatasync'ed the WAL). In
the same run a third server per round runs the full stack with ``STATE_DURABLE=false`` (the
same store on an in-memory database): the ratio durable / in-memory of requests/s is what
durability costs (target: at least 0.8). Another server per round runs the durable store
without the helper, on SQLite's own ``synchronous=FULL`` with each batch committed in the
store's thread (``benchmarks/serve_sqlite_full_sync.py``, the design the helper replaced): the
ratio helper / SQLite FULL of requests/s (the median of the rounds' ratios), and that of the
worst rounds, are what the helper buys.
A fourth server runs the bare route answering in batches (``--batched``: each request waits
for a future released on the event loop's next turn with the others of that turn, as
``/ingest`` waits for its group commit, but with no work at all): its ratio to the bare route
is what answering in batches costs on this load generator by itself.

With PostgreSQL installed (Debian's ``postgresql``, as for the tests), a fifth server per round
runs the full stack on the PostgreSQL job store (``JOB_STORE_URL``, a fresh database per round on
one throw-away local server configured for durability: fsync, full_page_writes and
synchronous_commit on, see :mod:`benchmarks.pg`): the ratio PostgreSQL / SQLite (durable) of
requests/s is what the shared store costs at the edge (target: at least 0.8). Without PostgreSQL
the other rows are unchanged and one row says it was not measured.

Load generator: ``wrk`` when installed (one thread, 32 connections, a Lua script that gives
every request its own ``X-Zammad-Delivery``), else a bounded aiohttp client. Every loop is
bounded in time and count and targets 127.0.0.1 only.

Run alone: ``python -m benchmarks.ingest [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Result, free_port, print_rows, start_python, stop, wait_http
from benchmarks.pg import PostgresNotInstalled, PostgresServer, start_postgres

SECRET = "bench-secret"
BODY = b'{"ticket_id":4711,"ticket_number":"25004711"}'
SIGNATURE = "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
CONNECTIONS = 32
MAX_REQUESTS_PER_ROUND = 200_000
TARGET_RATIO = 0.9
TARGET_DURABLE_RATIO = 0.8
TARGET_POSTGRES_RATIO = 0.8

LUA = """
counter = 0
body = '%s'
request = function()
  counter = counter + 1
  local headers = {}
  headers["Content-Type"] = "application/json; charset=utf-8"
  headers["X-Hub-Signature"] = "%s"
  headers["X-Zammad-Delivery"] = "bench-" .. counter .. "-" .. math.random(1, 1000000000)
  return wrk.format("POST", "/ingest", headers, body)
end
"""


@dataclass
class Load:
    """One load round: requests/s and latency percentiles in milliseconds."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _wrk_field(pattern: str, out: str) -> str:
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"wrk printed no {pattern!r}: {out[-500:]!r}")
    return match.group(1)


def run_wrk(url: str, seconds: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % (BODY.decode(), SIGNATURE))
        script = fh.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    rps = float(_wrk_field(r"Requests/sec:\s+([\d.]+)", out))
    p50 = _ms(_wrk_field(r"\s50%\s+(\S+)", out))
    p99 = _ms(_wrk_field(r"\s99%\s+(\S+)", out))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return Load(rps, p50, p99, (int(bad.group(1)) if bad else 0) + (1 if errors else 0))


async def _aiohttp_load(url: str, seconds: float) -> Load:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Hub-Signature": SIGNATURE}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS_PER_ROUND:
            t0 = time.perf_counter()
            async with session.post(
                url, data=BODY, headers={**headers, "X-Zammad-Delivery": uuid.uuid4().hex}
            ) as r:
                await r.read()
                if r.status != 202:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
        errors,
    )


def load(url: str, seconds: float) -> Load:
    """Drive ``url`` for ``seconds`` with wrk, or aiohttp when wrk is not installed."""
    if shutil.which("wrk"):
        return run_wrk(url, seconds)
    return asyncio.run(_aiohttp_load(url, seconds))


def full_env(
    port: int, storage: Path, *, durable: bool = True, job_store_url: str | None = None
) -> dict[str, str]:
    """The environment of the full stack on ``port``: SQLite in a fresh ``STATE_DIR`` (in memory
    unless ``durable``), or the PostgreSQL store at ``job_store_url``."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=storage))  # a fresh job store per server
    env = {
        # Zammad is a closed port: jobs fail fast and, all for one ticket, coalesce; the
        # benchmark measures the edge, not the archive run.
        "ZAMMAD_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "ZAMMAD_API_TOKEN": "bench-token",
        "ZAMMAD_TIMEOUT_SECONDS": "1",
        "ALLOW_INSECURE_HTTP": "true",
        "WEBHOOK_HMAC_SECRET": SECRET,
        "STORAGE_ROOT": str(storage),
        "SIGNING_ENABLED": "false",
        "SERVER_PORT": str(port),
        "WORKERS": "2",
        "RENDER_PROCESSES": "1",
        "SHUTDOWN_GRACE_SECONDS": "0",
        # The limiter runs (its cost is measured) but never refuses.
        "HARDENING_RATE_LIMIT_RPS": "1000000000",
        "HARDENING_RATE_LIMIT_BURST": "1000000000",
        "LOG_LEVEL": "INFO",
        "STATE_DIR": str(state),
        "STATE_DURABLE": "true" if durable else "false",
    }
    if job_store_url is not None:
        env["JOB_STORE_URL"] = job_store_url
    return env


def start_full(
    port: int, storage: Path, *, durable: bool = True, job_store_url: str | None = None
) -> subprocess.Popen[bytes]:
    """The full stack (``python -m app serve``) on ``port`` (see :func:`full_env`)."""
    return start_python(
        ["-m", "app", "serve"], full_env(port, storage, durable=durable, job_store_url=job_store_url)
    )


def start_full_sync(port: int, storage: Path) -> subprocess.Popen[bytes]:
    """The full stack on a durable SQLite store without the WAL sync helper (SQLite's own
    ``synchronous=FULL``, batches committed in the store's thread)."""
    return start_python(["-m", "benchmarks.serve_sqlite_full_sync"], full_env(port, storage))


def start_bare(port: int, *, batched: bool = False) -> subprocess.Popen[bytes]:
    return start_python(
        ["-m", "benchmarks.bare_app", str(port), SECRET, *(["--batched"] if batched else [])], {}
    )


def walsync_helpers(pid: int) -> int:
    """How many WAL sync helper processes (``…/walsync.py``) process ``pid`` has as children;
    -1 where ``/proc`` cannot tell (not Linux)."""
    proc = Path("/proc")
    if not (proc / str(pid)).exists():
        return -1
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"walsync.py" in cmdline:
            count += 1
    return count


def measure(kind: str, seconds: float, storage: Path, job_store_url: str | None = None) -> Load:
    """One round against a fresh server: ``"bare"``, ``"batched"`` (the bare route answering in
    batches, see :mod:`benchmarks.bare_app`), ``"full"`` (durable job store), ``"full_sync"``
    (durable, SQLite's ``synchronous=FULL`` instead of the WAL sync helper), ``"memory"``
    (full stack, ``STATE_DURABLE=false``) or ``"postgres"`` (full stack, the PostgreSQL store
    at ``job_store_url``, a fresh database)."""
    port = free_port()
    if kind in ("bare", "batched"):
        proc = start_bare(port, batched=kind == "batched")
    elif kind == "postgres":
        assert job_store_url is not None
        proc = start_full(port, storage, job_store_url=job_store_url)
    elif kind == "full_sync":
        proc = start_full_sync(port, storage)
    else:
        proc = start_full(port, storage, durable=kind == "full")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        if kind in ("full", "full_sync"):  # the variant really is what it says
            expected, helpers = (1 if kind == "full" else 0), walsync_helpers(proc.pid)
            if helpers not in (expected, -1):
                raise RuntimeError(f"{kind}: {helpers} WAL sync helper processes, expected {expected}")
        load(f"http://127.0.0.1:{port}/ingest", 1.0)  # warm-up
        return load(f"http://127.0.0.1:{port}/ingest", seconds)
    finally:
        stop(proc)


def run(quick: bool = False) -> list[Result]:
    """Alternate bare, full (durable), full without the WAL sync helper, full in-memory, batched
    and full-on-PostgreSQL rounds; report medians, the full/bare ratio, the helper/SQLite FULL
    ratio, the durable/in-memory ratio and PostgreSQL/SQLite."""
    rounds, seconds = (1, 3.0) if quick else (3, 5.0)
    bare: list[Load] = []
    full: list[Load] = []
    full_sync: list[Load] = []
    memory: list[Load] = []
    batched: list[Load] = []
    postgres: list[Load] = []
    pg_missing = None
    try:
        server: PostgresServer | None = start_postgres()
    except PostgresNotInstalled as exc:
        server, pg_missing = None, str(exc)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for number in range(rounds):
                bare.append(measure("bare", seconds, Path(tmp)))
                full.append(measure("full", seconds, Path(tmp)))
                full_sync.append(measure("full_sync", seconds, Path(tmp)))
                memory.append(measure("memory", seconds, Path(tmp)))
                batched.append(measure("batched", seconds, Path(tmp)))
                if server is not None:
                    url = server.create_database(f"ingest_{number}")  # a fresh store per round
                    postgres.append(measure("postgres", seconds, Path(tmp), url))
                    server.drop_database(f"ingest_{number}")
    finally:
        if server is not None:
            server.stop()
    b_rps = statistics.median(x.rps for x in bare)
    f_rps = statistics.median(x.rps for x in full)
    m_rps = statistics.median(x.rps for x in memory)
    ratio = f_rps / b_rps
    durable_ratio = f_rps / m_rps
    batched_ratio = statistics.median(x.rps for x in batched) / b_rps
    s_rps = statistics.median(x.rps for x in full_sync)
    # Each round measures the two back to back: the median of the rounds' ratios is less moved by
    # the machine's load drifting between rounds than the ratio of the medians.
    helper_ratio = statistics.median(f.rps / s.rps for f, s in zip(full, full_sync, strict=True))
    worst_helper_ratio = min(x.rps for x in full) / min(x.rps for x in full_sync)
    errors = sum(x.errors for x in bare + full + full_sync + memory + batched)
    tool = "wrk" if shutil.which("wrk") else "aiohttp"
    rows = [
        Result("ingest", f"bare route requests/s ({tool}, {CONNECTIONS} conns)", round(b_rps), "req/s"),
        Result("ingest", "full stack requests/s", round(f_rps), "req/s"),
        Result(
            "ingest",
            "full / bare requests/s",
            round(ratio, 3),
            "ratio",
            f">= {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
        Result(
            "ingest",
            f"bare p50 {statistics.median(x.p50_ms for x in bare):.2f} ms / p99",
            round(statistics.median(x.p99_ms for x in bare), 2),
            "ms",
        ),
        Result(
            "ingest",
            f"full p50 {statistics.median(x.p50_ms for x in full):.2f} ms / p99",
            round(statistics.median(x.p99_ms for x in full), 2),
            "ms",
        ),
        Result(
            "ingest",
            "full stack, SQLite synchronous=FULL in a thread (no WAL sync helper) requests/s",
            round(s_rps),
            "req/s",
        ),
        Result(
            "ingest",
            "WAL sync helper / SQLite synchronous=FULL in a thread requests/s (median of rounds)",
            round(helper_ratio, 3),
            "ratio",
        ),
        Result(
            "ingest",
            "WAL sync helper / SQLite synchronous=FULL in a thread, worst rounds' requests/s",
            round(worst_helper_ratio, 3),
            "ratio",
        ),
        Result(
            "ingest",
            f"SQLite FULL in a thread p50 {statistics.median(x.p50_ms for x in full_sync):.2f} ms / p99",
            round(statistics.median(x.p99_ms for x in full_sync), 2),
            "ms",
        ),
        Result("ingest", "full stack, in-memory job store requests/s", round(m_rps), "req/s"),
        Result(
            "ingest",
            "durable / in-memory job store requests/s",
            round(durable_ratio, 3),
            "ratio",
            f">= {TARGET_DURABLE_RATIO}",
            durable_ratio >= TARGET_DURABLE_RATIO,
        ),
        Result(
            "ingest",
            f"in-memory p50 {statistics.median(x.p50_ms for x in memory):.2f} ms / p99",
            round(statistics.median(x.p99_ms for x in memory), 2),
            "ms",
        ),
        Result(
            "ingest",
            "bare route answering in batches (hand-off only, no work) / bare requests/s",
            round(batched_ratio, 3),
            "ratio",
        ),
        Result(
            "ingest",
            "non-202 answers (full + full without helper + in-memory + bare + batched)",
            errors,
            "count",
            "== 0",
            errors == 0,
        ),
    ]
    if server is None:
        rows.append(
            Result(
                "ingest",
                f"PostgreSQL job store: not measured ({pg_missing})"[:160],
                float("nan"),
                "",
                "runs",
                False,
            )
        )
        return rows
    p_rps = statistics.median(x.rps for x in postgres)
    pg_ratio = p_rps / f_rps
    pg_errors = sum(x.errors for x in postgres)
    rows += [
        Result(
            "ingest",
            "full stack, PostgreSQL job store (local server, fsync on) requests/s",
            round(p_rps),
            "req/s",
        ),
        Result(
            "ingest",
            "PostgreSQL / SQLite (durable) job store requests/s",
            round(pg_ratio, 3),
            "ratio",
            f">= {TARGET_POSTGRES_RATIO}",
            pg_ratio >= TARGET_POSTGRES_RATIO,
        ),
        Result(
            "ingest",
            f"PostgreSQL p50 {statistics.median(x.p50_ms for x in postgres):.2f} ms / p99",
            round(statistics.median(x.p99_ms for x in postgres), 2),
            "ms",
        ),
        Result("ingest", "non-202 answers (PostgreSQL)", pg_errors, "count", "== 0", pg_errors == 0),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
