"""``python -m benchmarks`` (``make bench``): every benchmark, one table, one JSON file.

Runs each module's ``run(quick) -> list[Result]`` in order (ingest, ingest_cpu,
ingest_under_load, e2e, replicas, memory, render, sign, audit), prints one table (bench, metric,
value, unit, target, met) and
writes it with the machine's facts to ``benchmarks/results/latest.json``. A benchmark that
raises shows its error as a row and the others still run; targets not met are reported,
not fatal. Exit status 0 unless the harness itself broke (2 for bad arguments).

    python -m benchmarks [--quick] [--only ingest,e2e] [--output PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import REPO, Result

BENCHMARKS = (
    "ingest",
    "ingest_cpu",
    "ingest_under_load",
    "e2e",
    "replicas",
    "memory",
    "render",
    "sign",
    "audit",
)
OUTPUT = REPO / "benchmarks" / "results" / "latest.json"


def cpu_model() -> str:
    """The ``model name`` of the first CPU in ``/proc/cpuinfo``, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_one(name: str, quick: bool) -> tuple[list[Result], float]:
    """One benchmark's rows and seconds; an exception becomes one row with the error."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        rows = list(module.run(quick=quick))
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc(file=sys.stderr)
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        rows = [Result(name, f"ERROR {message[:160]}", float("nan"), "", "runs", False)]
    return rows, time.perf_counter() - started


def _value(row: Result) -> str:
    if row.value != row.value:  # NaN
        return "-"
    return f"{row.value:g}" if isinstance(row.value, float) else str(row.value)


def table(rows: list[Result]) -> str:
    """The rows as an aligned text table."""
    cells = [("bench", "metric", "value", "unit", "target", "met")]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        cells.append((row.bench, row.metric, _value(row), row.unit, row.target or "", met))
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    lines = []
    for index, cell in enumerate(cells):
        parts = [
            cell[0].ljust(widths[0]),
            cell[1].ljust(widths[1]),
            cell[2].rjust(widths[2]),
            cell[3].ljust(widths[3]),
            cell[4].ljust(widths[4]),
            cell[5],
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (figures are not comparable)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"JSON result file (default {OUTPUT})")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = load_average()
    info = {**machine(), "load_average_start": load_start}
    print(
        f"benchmarks on {info['cpu_count']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"load average {' '.join(map(str, load_start))}" + (" — quick run" if args.quick else ""),
        flush=True,
    )
    started = time.perf_counter()
    rows: list[Result] = []
    seconds: dict[str, float] = {}
    for name in names:
        print(f"… {name}", flush=True)
        result, took = run_one(name, args.quick)
        rows += result
        seconds[name] = round(took, 1)
        print(f"  {name}: {took:.0f} s", flush=True)
    total = time.perf_counter() - started
    info["load_average_end"] = load_average()

    print()
    print(table(rows))
    targets = [r for r in rows if r.met is not None]
    print(
        f"\n{sum(1 for r in targets if r.met)} of {len(targets)} targets met; "
        f"{total:.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})"
    )

    document = {
        "machine": info,
        "started_at": started_at,
        "quick": args.quick,
        "seconds": round(total, 1),
        "seconds_by_bench": seconds,
        "results": [{**r.as_dict(), "value": None if r.value != r.value else r.value} for r in rows],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written to {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
