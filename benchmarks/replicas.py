"""Benchmark: two replicas on one PostgreSQL job store — throughput, and a dead replica's job.

**Throughput.** The ticket mix of :mod:`benchmarks.e2e` (``N`` generated tickets of 20
articles, signing on, ``WORKERS=2`` per service) archived by one replica and by two replicas
(:class:`benchmarks.stack.Stack` with ``replicas``) sharing one PostgreSQL database, one storage
root and this machine; the webhooks go to the replicas in turn, as a load balancer would send
them. Each stack is warmed up first (two tickets per replica, so that render processes are up),
then gets all ``N`` webhooks at once; the clock runs from the first webhook to the last ticket
seen ``pdf:signed`` with its note. The result is the ratio two replicas / one replica of
tickets/s (no target: the replicas share the same CPUs, so about 1.0 is what to expect; well
below it would mean they get in each other's way in the store). Rounds alternate one and two
replicas; medians are reported, and the CPU the PostgreSQL server spent per ticket.

**Reclaim.** Two replicas with ``JOB_LEASE_SECONDS`` = :data:`LEASE_SECONDS`; the simulator holds
the ticket fetch of fixture ticket 4711 for :data:`HOLD_SECONDS`, so its job is still running when
the replica running it (found from the job's ``lease_owner`` in the database) is SIGKILLed with
its render processes, as soon as the job runs (so with close to a whole lease left: the slow
case; a replica that dies at a random moment has on average 1/8 of a lease less, as leases are
renewed every quarter lease). The figure is the time from the SIGKILL to the job's start (its
``started_at``) on the other replica, once the dead replica's lease ran out (target: at most the
lease + 5 s); then the job must end ``pdf:signed`` with one note.

The PostgreSQL server is a throw-away local one with production durability settings
(:mod:`benchmarks.pg`). Everything runs on and talks to 127.0.0.1; every wait is bounded.

Run alone: ``python -m benchmarks.replicas [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp
import asyncpg

from app.jobs.pg_schema import SCHEMA
from benchmarks.common import Result, print_rows
from benchmarks.e2e import ARTICLES
from benchmarks.pg import PostgresServer, start_postgres
from benchmarks.simulator import FIXTURE_TICKET
from benchmarks.stack import Stack, cpu_seconds, process_tree

WORKERS = 2
"""``WORKERS`` of each replica (the e2e benchmark's profiled setting)."""
WARM_UP_PER_REPLICA = 2
LEASE_SECONDS = 10.0
"""``JOB_LEASE_SECONDS`` of the reclaim run (the default is 60)."""
RECLAIM_SLACK_SECONDS = 5.0
"""Target: a dead replica's job starts again within the lease + this."""
HOLD_SECONDS = 3.0
"""How long the simulator holds the ticket fetch of the job that is killed (and of its rerun)."""
POLL_SECONDS = 0.02


def _pg_cpu(server: PostgresServer) -> float:
    """CPU seconds of the PostgreSQL server so far (postmaster and all its processes; those of
    backends that ended count through the postmaster's reaped children)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    tree = process_tree(postmaster)
    return cpu_seconds(tree[0], reaped=True) + sum(cpu_seconds(pid) for pid in tree[1:])


async def _throughput(
    server: PostgresServer, database: str, replicas: int, tickets: int, budget_seconds: float
) -> tuple[float, int, float, float]:
    """One stack of ``replicas`` on a fresh database: tickets/s, tickets not archived (within
    ``budget_seconds``), CPU
    seconds per ticket of the services (main and render processes) and of PostgreSQL."""
    url = server.create_database(database)
    warm_up = WARM_UP_PER_REPLICA * replicas
    with Stack(
        tickets=tickets + warm_up,
        articles=ARTICLES,
        workers=WORKERS,
        replicas=replicas,
        env={"JOB_STORE_URL": url},
    ) as stack:
        warm, measured = stack.ticket_ids[:warm_up], stack.ticket_ids[warm_up:]
        if await stack.post(warm):
            raise RuntimeError("a warm-up webhook was refused")
        if (await stack.wait_signed(warm, 60))[1]:
            raise RuntimeError(f"the warm-up tickets were not archived: {stack.log_tail('service.log')}")
        pg_before, cpu_before, before = _pg_cpu(server), stack.cpu(), await stack.done_so_far()
        started = time.perf_counter()
        refused = await stack.post(measured)
        if refused:
            raise RuntimeError(f"{refused} webhooks were refused")
        ended, missing = await stack.wait_signed(measured, budget_seconds, before=before)
        archived = len(measured) - len(missing)
        pg_per_ticket = (_pg_cpu(server) - pg_before) / max(archived, 1)
        cpu_after = stack.cpu()
        own = sum(cpu_after[k] - cpu_before[k] for k in ("service", "render")) / max(archived, 1)
    server.drop_database(database)
    return archived / (ended - started), len(missing), own, pg_per_ticket


def _owner_pid(owner: str) -> int:
    """The pid in a ``lease_owner`` (``host:pid:random``)."""
    return int(owner.rsplit(":", 2)[1])


async def _job(conn: asyncpg.Connection, ticket_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT job_id, state, lease_owner, lease_expires_at, fence, started_at FROM {SCHEMA}.jobs "
        "WHERE ticket_id = $1 ORDER BY created_at DESC LIMIT 1",
        ticket_id,
    )


async def _wait_job(
    conn: asyncpg.Connection, ticket_id: int, within_seconds: float, what: str, condition: Any
) -> asyncpg.Record:
    """The ticket's latest job once ``condition(row)`` holds; RuntimeError after ``within_seconds``."""
    try:
        async with asyncio.timeout(within_seconds):
            while True:
                row = await _job(conn, ticket_id)
                if row is not None and condition(row):
                    return row
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise RuntimeError(f"timed out after {within_seconds:.0f} s waiting for {what}") from None


async def _reclaim(server: PostgresServer, database: str) -> tuple[float, float, bool]:
    """SIGKILL the replica running a job: seconds from the kill to the job's start on the other
    replica, seconds its lease still had at the kill, and whether the job then ended
    ``pdf:signed`` with exactly one note."""
    url = server.create_database(database)
    hold = ["--delay", "GET", rf"^/api/v1/tickets/{FIXTURE_TICKET}\b", str(HOLD_SECONDS)]
    with Stack(
        tickets=0,
        articles=ARTICLES,
        workers=WORKERS,
        replicas=2,
        simulator_args=hold,
        env={"JOB_STORE_URL": url, "JOB_LEASE_SECONDS": f"{LEASE_SECONDS:g}"},
    ) as stack:
        conn = await asyncpg.connect(url)
        try:
            if await stack.post([FIXTURE_TICKET], replica=0):
                raise RuntimeError("the webhook was refused")
            running = await _wait_job(
                conn,
                FIXTURE_TICKET,
                30,
                "the job to run",
                lambda row: row["state"] == "running" and row["lease_owner"],
            )
            pids = [proc.pid for proc in stack.services]
            victim = pids.index(_owner_pid(running["lease_owner"]))
            killed_at = time.time()
            stack.kill_replica(victim)
            dead = await _job(conn, FIXTURE_TICKET)  # its last renewal is the lease that must run out
            assert dead is not None
            lease_left = dead["lease_expires_at"] - killed_at
            reclaimed = await _wait_job(
                conn,
                FIXTURE_TICKET,
                LEASE_SECONDS + 30,
                "the job's start on the other replica",
                lambda row: (
                    row["fence"] > running["fence"]
                    and row["lease_owner"] != running["lease_owner"]
                    and row["started_at"] is not None
                    and row["started_at"] > killed_at
                ),
            )
        finally:
            await conn.close()
        _, missing = await stack.wait_signed([FIXTURE_TICKET], 60)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{stack.sim_url}/_sim/state/{FIXTURE_TICKET}") as resp,
        ):
            state = await resp.json()
        archived = not missing and "pdf:signed" in state["tags"] and len(state["notes"]) == 1
    server.drop_database(database)
    return reclaimed["started_at"] - killed_at, lease_left, archived


def run(quick: bool = False) -> list[Result]:
    """Throughput of one and two replicas (alternating rounds) and one reclaim after a SIGKILL."""
    rounds, tickets, timeout = (1, 20, 60.0) if quick else (2, 120, 120.0)
    server = start_postgres()
    rates: dict[int, list[float]] = {1: [], 2: []}
    pg_cpu: dict[int, list[float]] = {1: [], 2: []}
    own_cpu: dict[int, list[float]] = {1: [], 2: []}
    missed = 0
    try:
        for number in range(rounds):
            for replicas in (1, 2):
                rate, missing, own, per_ticket = asyncio.run(
                    _throughput(server, f"replicas_{replicas}_{number}", replicas, tickets, timeout)
                )
                rates[replicas].append(rate)
                own_cpu[replicas].append(own)
                pg_cpu[replicas].append(per_ticket)
                missed += missing
        reclaim, lease_left, archived = asyncio.run(_reclaim(server, "reclaim"))
    finally:
        server.stop()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    ratio = two / one
    target = LEASE_SECONDS + RECLAIM_SLACK_SECONDS
    label = f"{tickets} tickets, {ARTICLES} articles, signed, WORKERS={WORKERS} each"
    return [
        Result("replicas", f"one replica on PostgreSQL: tickets/s ({label})", round(one, 1), "tickets/s"),
        Result(
            "replicas", "two replicas on one PostgreSQL, same machine: tickets/s", round(two, 1), "tickets/s"
        ),
        Result("replicas", "two replicas / one replica tickets/s", round(ratio, 3), "ratio"),
        Result(
            "replicas",
            "CPU per ticket, services (main + render processes), one / two replicas "
            f"{statistics.median(own_cpu[1]) * 1000:.1f} ms / ",
            round(statistics.median(own_cpu[2]) * 1000, 1),
            "ms",
        ),
        Result(
            "replicas",
            "CPU per ticket, PostgreSQL server, one / two replicas "
            f"{statistics.median(pg_cpu[1]) * 1000:.1f} ms / ",
            round(statistics.median(pg_cpu[2]) * 1000, 1),
            "ms",
        ),
        Result(
            "replicas",
            f"tickets not archived in {timeout:.0f} s (of {tickets} per run)",
            missed,
            "count",
            "== 0",
            missed == 0,
        ),
        Result(
            "replicas",
            f"SIGKILL of the replica running a job -> its start on the other replica "
            f"(JOB_LEASE_SECONDS={LEASE_SECONDS:g}; lease left at the kill {lease_left:.1f} s)",
            round(reclaim, 2),
            "s",
            f"<= {target:g}",
            reclaim <= target,
        ),
        Result(
            "replicas",
            "the reclaimed job archived (pdf:signed, one note)",
            int(archived),
            "bool",
            "== 1",
            archived,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 20 tickets instead of two of 120")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
