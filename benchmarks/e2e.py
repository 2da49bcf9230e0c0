"""Benchmark: tickets of 20 articles archived per second, end to end, signing on.

A fresh stack (:class:`benchmarks.stack.Stack`: the seeded simulator and the service as
subprocesses, dev PFX, local storage, durable job store) archives fixture ticket 4711 and
:data:`WARM_UP_PER_CPU` generated tickets per CPU of the run's kind as a warm-up (the render
processes start lazily, and each must have rendered that kind before the clock starts), then
gets one webhook for each of ``N`` further generated tickets at once. The clock runs from the
first webhook to the moment the last ticket is seen ``pdf:signed`` with its note in the
simulator; tickets/s = ``N`` / that time.

The main row is of the Zammad mix (:func:`benchmarks.tickets.make_mixed_ticket`: mostly
``text/html`` e-mails as Outlook, Gmail, Apple Mail and Thunderbird write them, 6 inline
images per ticket fetched from the simulator, raw mails and attachments embedded as
originals) with ``WORKERS=2`` (target: at least 25 tickets/s on 2 cores). The second rows
are of plain-text tickets (:func:`benchmarks.tickets.make_articles`, ~1,000 characters per
article) for ``WORKERS`` = 1, 2 and 4 (target: at least 20).

The profile rows (both ``WORKERS=2`` runs) say where the time goes: CPU seconds per ticket of the
service's main process (HTTP, Zammad client, signing, storage), of its render processes
and of the simulator, from ``/proc``; and the mean wall time of each step from the
service's ``/metrics``. The ceiling row is the CPU count divided by the service's CPU per
ticket: no setting of ``WORKERS`` archives faster than that on this machine.

Run alone: ``python -m benchmarks.e2e [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from benchmarks.common import Result, print_rows
from benchmarks.simulator import FIXTURE_TICKET
from benchmarks.stack import Stack, StepProfile

ARTICLES = 20
WORKER_COUNTS = (1, 2, 4)
TARGET_RATE = 20.0
TARGET_MIX_RATE = 25.0
PROFILED_WORKERS = 2
MIX_WORKERS = 2
#: Warm-up tickets (of the run's own kind) per CPU, archived before the clock starts: the render
#: processes (one per CPU) start lazily and spend ~1 s of CPU on their imports and first render
#: (``MAX_TASKS_PER_CHILD`` in :mod:`app.render.pool`); two tickets per process make each of
#: them render that kind of ticket before the measured ones.
WARM_UP_PER_CPU = 2


async def measure(
    workers: int, tickets: int, budget_seconds: float, mix: str = "plain"
) -> tuple[float, int, dict[str, float], StepProfile]:
    """One stack: returns tickets/s, tickets not archived within ``budget_seconds``, CPU
    seconds per ticket, step profile."""
    warm_up = WARM_UP_PER_CPU * (os.cpu_count() or 1)
    with Stack(tickets=warm_up + tickets, articles=ARTICLES, mix=mix, workers=workers) as stack:
        warm, measured = [FIXTURE_TICKET, *stack.ticket_ids[:warm_up]], stack.ticket_ids[warm_up:]
        if await stack.post(warm):
            raise RuntimeError("a warm-up webhook was refused")
        _, missing = await stack.wait_signed(warm, 60)
        if missing:
            raise RuntimeError(f"the warm-up tickets were not archived: {stack.log_tail('service.log')}")
        cpu_before, profile_before, before = stack.cpu(), await stack.profile(), await stack.done_so_far()
        started = time.perf_counter()
        refused = await stack.post(measured)
        if refused:
            raise RuntimeError(f"{refused} webhooks were refused")
        ended, missing = await stack.wait_signed(measured, budget_seconds, before=before)
        cpu_after, profile = stack.cpu(), await stack.profile() - profile_before
        archived = tickets - len(missing)
        per_ticket = {k: (cpu_after[k] - cpu_before[k]) / max(archived, 1) for k in cpu_after}
        return archived / (ended - started), len(missing), per_ticket, profile


def profile_rows(label: str, per_ticket: dict[str, float], profile: StepProfile) -> list[Result]:
    """CPU per ticket by process, the CPU ceiling and the wall time per step of one run."""
    cpus = os.cpu_count() or 1
    rows = [
        Result("e2e", f"{label}: CPU per ticket, {what}", round(per_ticket[name] * 1000, 1), "ms")
        for name, what in (
            ("service", "service main process"),
            ("render", "render processes"),
            ("simulator", "simulator"),
        )
    ]
    own = per_ticket["service"] + per_ticket["render"]
    rows.append(
        Result(
            "e2e",
            f"{label}: CPU ceiling, {cpus} CPUs / service CPU per ticket",
            round(cpus / own, 1) if own else 0.0,
            "tickets/s",
        )
    )
    rows.append(
        Result(
            "e2e",
            f"{label}: wall per job (gate to stored; report not included)",
            round(profile.mean_ms(), 1),
            "ms",
        )
    )
    for step in ("fetch", "render", "sign", "store"):
        rows.append(
            Result("e2e", f"{label}: wall per job, step {step}", round(profile.mean_ms(step), 1), "ms")
        )
    return rows


def run(quick: bool = False) -> list[Result]:
    """Archive ``N`` tickets of the Zammad mix with ``WORKERS=2``, then ``N`` plain-text
    tickets for each ``WORKERS`` value; rates, misses and the profiles of the ``WORKERS=2`` runs."""
    tickets, timeout = (20, 60.0) if quick else (120, 120.0)
    cpus = os.cpu_count() or 1
    rate, missed, per_ticket, profile = asyncio.run(measure(MIX_WORKERS, tickets, timeout, mix="zammad"))
    rows = [
        Result(
            "e2e",
            f"Zammad mix: tickets/s, {ARTICLES} articles, signed, WORKERS={MIX_WORKERS} ({cpus} CPUs)",
            round(rate, 1),
            "tickets/s",
            f">= {TARGET_MIX_RATE:g}",
            rate >= TARGET_MIX_RATE,
        ),
        *profile_rows(f"Zammad mix, WORKERS={MIX_WORKERS}", per_ticket, profile),
    ]
    profiled = None
    for workers in WORKER_COUNTS:
        rate, missing, per_ticket, profile = asyncio.run(measure(workers, tickets, timeout))
        missed += missing
        rows.append(
            Result(
                "e2e",
                f"plain text: tickets/s, {ARTICLES} articles, signed, WORKERS={workers} ({cpus} CPUs)",
                round(rate, 1),
                "tickets/s",
                f">= {TARGET_RATE:g}",
                rate >= TARGET_RATE,
            )
        )
        if workers == PROFILED_WORKERS:
            profiled = (per_ticket, profile)
    rows.append(
        Result(
            "e2e",
            f"tickets not archived in {timeout:.0f} s (of {tickets} per run, {1 + len(WORKER_COUNTS)} runs)",
            missed,
            "count",
            "== 0",
            missed == 0,
        )
    )
    if profiled is not None:
        rows += profile_rows(f"plain text, WORKERS={PROFILED_WORKERS}", *profiled)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 tickets per run instead of 120")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
