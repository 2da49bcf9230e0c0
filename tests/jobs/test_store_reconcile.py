"""What the reconciliation sweep asks of the job store: each ticket's latest job (both backends),
and whose turn it is to sweep (one instance with SQLite; one replica at a time on PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.jobs.pg_schema import SCHEMA, SWEEP_LOCK_CLASS
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRequest, JobStoreUnavailable
from app.jobs.sqlite import SqliteJobStore
from tests.jobs.support import HeldCloseProxy

AT = "2026-12-07T10:00:00+00:00"


async def test_latest_jobs_match_latest_per_ticket(make_store):
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    # 1: a finished job, then a newer pending one; 2: a finished job only; 3: a running job.
    first = await store.accept(JobRequest(1))
    await store.start(first.job_id, AT)
    await store.finish(first.job_id, state="done", result="archived")
    now[0] += 1
    second = await store.accept(JobRequest(1))
    two = await store.accept(JobRequest(2))
    await store.start(two.job_id, AT)
    await store.finish(two.job_id, state="dead", result="failed", error="TSA down")
    three = await store.accept(JobRequest(3))
    await store.start(three.job_id, AT)

    latest = await store.latest_jobs([3, 2, 1, 4, 2])
    assert {t: (j.job_id, j.state) for t, j in latest.items()} == {
        1: (second.job_id, "pending"),
        2: (two.job_id, "dead"),
        3: (three.job_id, "running"),
    }
    for ticket_id, job in latest.items():
        assert job == await store.latest(ticket_id)
    assert await store.latest_jobs([]) == {}
    await store.close()


async def test_latest_jobs_for_many_tickets_at_once(make_store):
    store = make_store()
    await store.open()
    for ticket_id in (1, 777, 1499):
        await store.accept(JobRequest(ticket_id))
    latest = await store.latest_jobs(range(1, 1501))  # more ids than one SQLite statement takes
    assert sorted(latest) == [1, 777, 1499]
    await store.close()


async def test_sqlite_it_is_always_the_one_instances_turn(tmp_path):
    store = SqliteJobStore(tmp_path / "jobs.sqlite3", delivery_ttl_seconds=60, max_pending=10)
    await store.open()
    for _ in range(2):
        async with store.sweep_turn("reconcile", min_interval_seconds=3600) as mine:
            assert mine
    await store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replica(url: str, clock: Clock) -> PostgresJobStore:
    return PostgresJobStore(url, delivery_ttl_seconds=60, max_pending=10, clock=clock)


async def test_postgres_one_replica_sweeps_at_a_time_and_once_per_interval(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await asyncio.gather(a.open(), b.open())
    try:
        async with a.sweep_turn("reconcile", min_interval_seconds=0) as mine_a:
            async with b.sweep_turn("reconcile", min_interval_seconds=0) as mine_b:
                assert (mine_a, mine_b) == (True, False)
            # Another sweep name is another turn.
            async with b.sweep_turn("other", min_interval_seconds=0) as other:
                assert other
        # a's pass ended now: within the interval nobody sweeps again, after it one does.
        async with b.sweep_turn("reconcile", min_interval_seconds=60) as mine_b:
            assert not mine_b
        clock.now += 61
        async with b.sweep_turn("reconcile", min_interval_seconds=60) as mine_b:
            assert mine_b
        # The end is recorded however the pass ends.
        clock.now += 61
        with pytest.raises(RuntimeError):
            async with a.sweep_turn("reconcile", min_interval_seconds=60) as mine_a:
                assert mine_a
                raise RuntimeError("the pass failed")
        async with b.sweep_turn("reconcile", min_interval_seconds=60) as mine_b:
            assert not mine_b
        conn = await asyncpg.connect(postgres_url)
        try:
            rows = await conn.fetch(f"SELECT name, finished_at, owner FROM {SCHEMA}.sweeps ORDER BY name")
            assert [(r["name"], r["finished_at"], r["owner"]) for r in rows] == [
                ("other", 1_000_000.0, b.leases.owner),
                ("reconcile", clock.now, a.leases.owner),
            ]
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            assert held == 0  # every turn gave its lock back
        finally:
            await conn.close()
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_postgres_a_replica_that_dies_mid_sweep_frees_the_turn(postgres_url):
    """The server ends a's session mid-sweep. Its lock goes with it, so b gets the turn; a's
    ``FATAL`` arrives before the close (the proxy holds the close back, as a slow network
    would), and a's end of the sweep raises nothing, gives the session up and sweeps again."""
    clock = Clock()
    async with HeldCloseProxy(postgres_url) as proxy:
        a, b = replica(proxy.url, clock), replica(postgres_url, clock)
        await asyncio.gather(a.open(), b.open())
        admin = await asyncpg.connect(postgres_url)
        try:
            async with a.sweep_turn("reconcile", min_interval_seconds=0) as mine_a:
                assert mine_a
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = $1::oid AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())",
                    SWEEP_LOCK_CLASS,
                )
                assert killed == 1
                for _ in range(200):
                    async with b.sweep_turn("reconcile", min_interval_seconds=0) as mine_b:
                        if mine_b:
                            break
                    await asyncio.sleep(0.05)
                assert mine_b
                await asyncio.sleep(0.1)  # a's protocol has read the FATAL; the close is held
            # a's end could not be written (its session is gone) and raised nothing.
            async with a.sweep_turn("reconcile", min_interval_seconds=0) as again:
                assert again
        finally:
            await admin.close()
            await asyncio.gather(a.close(), b.close())


async def test_postgres_sweep_turn_when_closed(postgres_url):
    store = replica(postgres_url, Clock())
    with pytest.raises(JobStoreUnavailable):
        async with store.sweep_turn("reconcile", min_interval_seconds=0):
            pass
