"""Leases of the PostgreSQL job store and how the worker pool keeps them: renewals, lease checks, a database outage
at the end of a run. Several replicas (store instances) on one real database, mostly with a
settable clock. The replica tests of the whole service are in ``tests/e2e/test_replicas.py``."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.jobs.pg_schema import SCHEMA
from app.jobs.pool import RetryPolicy, WorkerPool
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRecord, JobRequest, LeaseLost
from app.workflow.archive import ArchiveOutcome
from app.workflow.ports import Guard
from app.workflow.report import Report
from tests.jobs.test_pool import FakeRunner, until
from tests.jobs.test_postgres_store import AT, REPORT, Clock, closed, opened, replica


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
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET state = 'done', reported = true, lease_owner = NULL WHERE job_id = $1",
            ended.job_id,
        )
        # What b's reclaim commits for the other job: the fence moves on.
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET fence = fence + 1, lease_owner = 'b' WHERE job_id = $1", taken.job_id
        )
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
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET state = 'running', attempts = 1, fence = fence + 1, "
            "lease_owner = $2, lease_expires_at = $3, started_at = $4 WHERE job_id = $1",
            orphan.job_id,
            a.owner,
            clock.now + 10,
            clock.now,
        )
    finally:
        await conn.close()
    for _ in range(3):  # 15 s of renewals every 5 s
        clock.now += 5
        await a.renew_leases()
    claimed = await b.claim_due(5, AT)
    assert [r.job_id for r in claimed] == [orphan.job_id]
    await closed(a, b)


async def test_confirm_lease_extends_a_held_lease_and_refuses_a_lost_one(postgres_url):
    """``confirm_lease`` (awaited before a write to Zammad) extends the lease of a job this
    replica holds, also after the lease ran out as long as nobody reclaimed it; once another
    replica took the job over, it raises ``LeaseLost`` and the job is forgotten here."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await a.accept(JobRequest(3))
    await a.start(job.job_id, AT)
    clock.now += 11  # the lease ran out, but nobody took the job: confirming takes it back
    await a.confirm_lease(job.job_id)
    clock.now += 9
    assert await b.claim_due(5, AT) == []  # extended by the confirmation
    clock.now += 2
    assert len(await b.claim_due(5, AT)) == 1
    with pytest.raises(LeaseLost):
        await a.confirm_lease(job.job_id)
    with pytest.raises(LeaseLost):  # forgotten: no database call needed to know
        await a.finish(job.job_id, state="done", result="archived", report=REPORT)
    # The report's lease is confirmed alike.
    await b.finish(job.job_id, state="done", result="archived", report=REPORT)
    await b.confirm_lease(job.job_id)
    await b.mark_reported(job.job_id)
    with pytest.raises(LeaseLost):  # delivered: nothing held any more
        await b.confirm_lease(job.job_id)
    await closed(a, b)


async def test_a_run_ending_during_a_database_outage_is_recorded_once_the_database_is_back(
    postgres_server, postgres_url
):
    """The database goes down while a job runs; its end cannot be recorded. The pool keeps the
    outcome and records it once the database is back: the job ends ``done`` (run once, report
    delivered), instead of staying ``running`` under a lease this replica keeps renewing."""
    store = PostgresJobStore(postgres_url, delivery_ttl_seconds=3600, max_pending=100, lease_seconds=4)
    runner = FakeRunner({})
    runner.gate.clear()
    pool = WorkerPool(
        store, runner, workers=1, retry=RetryPolicy(3, 0.02, 0.05), deliver_backoff_max_seconds=0.05
    )
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


class GuardedRunner(FakeRunner):
    """Waits at its gates, then awaits the pool's guard before each write to the ticket (as the
    workflow does) and records the writes it made."""

    def __init__(self) -> None:
        super().__init__({})
        self.writes: list[str] = []
        self.deliver_gate = asyncio.Event()
        self.delivering = False

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        self.active.add(job.ticket_id)
        try:
            await self.gate.wait()
            if guard is not None:
                await guard()
            self.writes.append(f"start {job.ticket_id}")
            return ArchiveOutcome("archived", started=True)
        finally:
            self.active.discard(job.ticket_id)

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        self.delivering = True
        await self.deliver_gate.wait()
        if guard is not None:
            await guard()
        self.writes.append(f"note {job.ticket_id}")


@pytest.mark.parametrize("stage", ["run", "report"])
async def test_a_replica_that_stalled_past_its_lease_writes_nothing_to_the_ticket(postgres_url, stage):
    """Replica a stalls (no renewals) while it runs a job, or while it delivers the report;
    b takes the job over once the lease ran out. When a goes on, the guard it awaits before
    writing to the ticket raises ``LeaseLost``: no start transition, no note; the pool ends
    that work without recording anything, and b holds the job."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    runner = GuardedRunner()
    if stage == "run":
        runner.gate.clear()
    pool = WorkerPool(
        a, runner, workers=1, retry=RetryPolicy(3, 0.02, 0.05), deliver_backoff_max_seconds=0.05
    )
    await pool.start()
    await b.open()
    await pool.submit(JobRequest(1))
    if stage == "run":
        await until(lambda: bool(runner.active), 5)
    else:
        await until(lambda: runner.delivering, 5)
    a._maintainer.cancel()  # a stalls: no renewals
    clock.now += 11
    taken = await (b.claim_due(5, AT) if stage == "run" else b.claim_reports(5))
    assert len(taken) == 1
    runner.gate.set()
    runner.deliver_gate.set()
    await until(lambda: pool.idle, 5)
    assert runner.writes == ([] if stage == "run" else ["start 1"])
    row = await b.get(taken[0].job_id)
    assert (row.state, row.reported) == (("running", True) if stage == "run" else ("done", False))
    await pool.stop(1)
    await closed(a, b)


async def test_a_stop_during_a_database_outage_ends_the_workers(postgres_server, postgres_url):
    """SIGTERM's ``stop()`` cancels a run while the database is down: giving the job back fails,
    and that must not swallow the cancellation (the worker went on and ``stop()`` waited for
    it for ever); the lease runs out and another replica runs the job."""
    store = PostgresJobStore(postgres_url, delivery_ttl_seconds=3600, max_pending=100, lease_seconds=4)
    runner = FakeRunner({})
    runner.gate.clear()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.02, 0.05))
    await pool.start()
    await pool.submit(JobRequest(1))
    await until(lambda: bool(runner.active), 5)
    await asyncio.to_thread(postgres_server.kill)
    try:
        await asyncio.wait_for(pool.stop(0.1), 10)
        await asyncio.wait_for(store.close(), 15)
    finally:
        await asyncio.to_thread(postgres_server.restart)
    assert runner.runs == []
