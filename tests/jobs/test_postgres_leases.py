"""Leases of the PostgreSQL job store and how the worker pool keeps them: renewals, a database outage
at the end of a run. Several replicas (store instances) on one real database, mostly with a
settable clock. The replica tests of the whole service are in ``tests/e2e/test_replicas.py``."""

from __future__ import annotations

import asyncio

import asyncpg

from app.jobs.pg_schema import SCHEMA
from app.jobs.pool import RetryPolicy, WorkerPool
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRequest
from tests.jobs.test_pool import FakeRunner, until
from tests.jobs.test_postgres_store import AT, Clock, closed, opened, replica


async def test_a_job_ended_here_while_a_renewal_runs_is_not_reported_lost(postgres_url):
    """The renewal's statement runs after this replica's own ``finish`` committed (a skipped
    run: nothing to report, the lease given back) but before ``finish`` returned: the job is
    not taken for lost (that would cancel a run that belongs here); a job whose fence moved
    on is."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    lost: list[str] = []
    a.on_lease_lost = lost.append
    ended = await a.accept(JobRequest(1))
    await a.start(ended.job_id, AT)
    taken = await a.accept(JobRequest(2))
    await a.start(taken.job_id, AT)
    conn = await asyncpg.connect(postgres_url)
    try:
        # What a's finish commits for a skipped run, before a has seen its answer.
        await conn.execute(f"UPDATE {SCHEMA}.jobs SET state = 'done', reported = true, lease_owner = NULL "
                           "WHERE job_id = $1", ended.job_id)
        # What b's reclaim commits for the other job: the fence moves on.
        await conn.execute(f"UPDATE {SCHEMA}.jobs SET fence = fence + 1, lease_owner = 'b' WHERE job_id = $1",
                           taken.job_id)
    finally:
        await conn.close()
    await a.renew_leases()
    assert lost == [taken.job_id]
    await closed(a, b)


async def test_renewals_keep_only_the_jobs_this_replica_works_on(postgres_url):
    """A job that names this replica as its lease owner but that it does not track (a claim
    committed whose answer never arrived) is not renewed: its lease runs out and another
    replica reclaims it, while the tracked job's lease holds."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    tracked = await a.accept(JobRequest(1))
    await a.start(tracked.job_id, AT)
    orphan = await a.accept(JobRequest(2))
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"UPDATE {SCHEMA}.jobs SET state = 'running', attempts = 1, fence = fence + 1, "
                           "lease_owner = $2, lease_expires_at = $3, started_at = $4 WHERE job_id = $1",
                           orphan.job_id, a.owner, clock.now + 10, clock.now)
    finally:
        await conn.close()
    for _ in range(3):  # 15 s of renewals every 5 s
        clock.now += 5
        await a.renew_leases()
    claimed = await b.claim_due(5, AT)
    assert [r.job_id for r in claimed] == [orphan.job_id]
    await closed(a, b)


async def test_a_run_ending_during_a_database_outage_is_recorded_once_the_database_is_back(
        postgres_server, postgres_url):
    """The database goes down while a job runs; its end cannot be recorded. The pool keeps the
    outcome and records it once the database is back: the job ends ``done`` (run once, report
    delivered), instead of staying ``running`` under a lease this replica keeps renewing."""
    store = PostgresJobStore(postgres_url, delivery_ttl_seconds=3600, max_pending=100, lease_seconds=4)
    runner = FakeRunner({})
    runner.gate.clear()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.02, 0.05), deliver_backoff_max_seconds=0.05)
    await pool.start()
    await pool.submit(JobRequest(1))
    await until(lambda: bool(runner.active), 5)
    await asyncio.to_thread(postgres_server.kill)
    runner.gate.set()
    await until(lambda: not runner.active, 5)
    await asyncio.sleep(1)  # the run is over; recording its end fails meanwhile
    await asyncio.to_thread(postgres_server.restart)
    await until(lambda: pool.idle and bool(runner.delivered), 20)
    job = await store.latest(1)
    assert (job.state, job.reported, job.attempts) == ("done", True, 1)
    assert runner.runs == [(1, 1)] and runner.delivered == [(1, "archived")]
    await pool.stop(1)
    await store.close()
