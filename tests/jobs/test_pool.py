"""The worker pool (:mod:`app.jobs.pool`) on both backends (a SQLite file, a real PostgreSQL):
retries, one job per ticket, report delivery, shutdown; and with the shared store, what a lost
lease or a database outage does to a run."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from app.errors import ZammadApiError
from app.jobs.outcomes import RetryPolicy
from app.jobs.pool import WorkerPool
from app.jobs.records import JobRecord, JobRequest, JobState, JobStoreUnavailable, OutcomeStatus
from app.jobs.store import JobStore
from app.workflow.archive import ArchiveOutcome
from app.workflow.classify import classify
from app.workflow.ports import Guard
from app.workflow.report import Report
from tests.jobs.conftest import StoreFactory
from tests.jobs.support import (
    AT,
    Clock,
    FakeRunner,
    GuardedRunner,
    closed,
    job_of,
    record_of,
    replica,
    stall,
    until,
)
from tests.postgres_server import PostgresServer


async def run_pool(
    make_store: StoreFactory,
    runner: FakeRunner,
    requests: list[JobRequest],
    *,
    max_attempts: int = 3,
    workers: int = 3,
) -> tuple[WorkerPool, JobStore]:
    """A pool of ``workers`` on a new store, fed ``requests``; returns once it is idle."""
    store = make_store()
    pool = WorkerPool(
        store,
        runner,
        workers=workers,
        retry=RetryPolicy(max_attempts, 0.02, 0.05),
        deliver_backoff_max_seconds=0.05,
    )
    await pool.start()
    for request in requests:
        await pool.submit(request)
    await until(lambda: pool.idle, 10)
    return pool, store


async def test_retries_then_success_dead_and_permanent(make_store: StoreFactory) -> None:
    runner = FakeRunner({1: ["transient", "ok"], 2: ["transient"] * 3, 3: ["permanent"]})
    pool, store = await run_pool(make_store, runner, [JobRequest(1), JobRequest(2), JobRequest(3)])
    assert sorted(runner.runs) == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 1)]
    states = {t: (await pool.status(t)) for t in (1, 2, 3)}
    assert states[1]["last_error"] is None and states[1]["attempts"] == 2  # done: the retried error is gone
    assert states[2]["last_error"] == "x" and states[3]["last_step"] == "fetch ticket"
    assert {t: s["state"] for t, s in states.items()} == {1: "done", 2: "dead", 3: "failed"}
    assert states[2]["attempts"] == 3 and states[2]["classification"] == "Transient"
    assert sorted(runner.delivered) == [(1, "archived"), (2, "dead"), (3, "failed")]
    assert all(s["reported"] for s in states.values())
    await pool.stop(0)
    await store.close()


class ThrottledRunner(FakeRunner):
    """Every run fails: Zammad answered 429 with ``Retry-After: 120``."""

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        self.runs.append((job.ticket_id, job.attempts))
        failure = classify(ZammadApiError("GET answered 429", status=429, retry_after=120.0))
        return ArchiveOutcome(OutcomeStatus.FAILED, "fetch ticket", started=True, failure=failure)


async def test_a_retry_waits_for_zammads_retry_after(make_store: StoreFactory) -> None:
    """The backoff would be a few hundredths of a second; Zammad asked for 120 s."""
    store = make_store()
    runner = ThrottledRunner({})
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.02, 900))
    await pool.start()
    await pool.submit(JobRequest(7))
    await until(lambda: runner.runs == [(7, 1)] and pool.in_flight == 0, 5)
    await asyncio.sleep(0.2)  # past the 0.01-0.02 s the backoff alone would wait
    assert runner.runs == [(7, 1)]
    status = await pool.status(7)
    assert status["state"] == "pending" and status["attempts"] == 1
    assert status["next_attempt_at"] - time.time() > 110
    await pool.stop(0)
    await store.close()


async def test_an_operators_retry_runs_a_job_waiting_for_its_next_attempt_at_once(
    make_store: StoreFactory,
) -> None:
    """The backoff is 50-100 s. A webhook merged into the waiting job leaves it waiting; the
    operator fixes the cause and retries: it runs at once (SQLite: handed to the workers;
    PostgreSQL: the claimer, woken by the store's NOTIFY), as attempt 1 of a fresh count."""
    store = make_store()
    runner = FakeRunner({7: ["transient"]})
    pool = WorkerPool(store, runner, workers=2, retry=RetryPolicy(3, 100.0, 200.0))
    await pool.start()
    await pool.submit(JobRequest(7))
    await until(lambda: runner.runs == [(7, 1)] and pool.in_flight == 0, 5)
    waiting = await pool.status(7)
    assert waiting["state"] == "pending" and waiting["next_attempt_at"] > time.time() + 40
    assert (await pool.submit(JobRequest(7))).status == "coalesced"  # a webhook
    await asyncio.sleep(1.5)  # past the claimer's poll (PostgreSQL)
    assert runner.runs == [(7, 1)]
    status = await pool.status(7)
    assert (status["state"], status["next_attempt_at"]) == ("pending", waiting["next_attempt_at"])
    runner.script[7] = ["ok"]  # the operator fixed the cause
    assert (await pool.submit(JobRequest(7, reason="retry"))).status == "coalesced"
    await until(lambda: len(runner.runs) == 2 and pool.idle, 5)
    assert runner.runs == [(7, 1), (7, 1)] and runner.delivered == [(7, "archived")]
    status = await pool.status(7)
    assert (status["state"], status["attempts"], status["next_attempt_at"]) == ("done", 1, None)
    assert pool.idle  # no stale retry time left in the schedule
    await pool.stop(0)
    await store.close()


async def test_one_job_per_ticket_across_workers(make_store: StoreFactory) -> None:
    runner = FakeRunner({})
    runner.gate.clear()
    store = make_store()
    pool = WorkerPool(store, runner, workers=4, retry=RetryPolicy(3, 0.01, 0.02))
    await pool.start()
    first = await pool.submit(JobRequest(5))
    await asyncio.sleep(0.05)  # running now, blocked on the gate
    answers = await asyncio.gather(*(pool.submit(JobRequest(5)) for _ in range(10)))
    assert {a.status for a in answers} == {"coalesced"}
    runner.gate.set()
    await until(lambda: pool.idle, 4)
    assert not runner.overlap
    assert len(runner.runs) == 2  # the job and exactly one follow-up
    assert first.new
    await pool.stop(0)
    await store.close()


async def test_report_delivery_is_retried_until_it_succeeds(make_store: StoreFactory) -> None:
    runner = FakeRunner({}, deliver_failures=3)
    pool, store = await run_pool(make_store, runner, [JobRequest(9)])
    assert runner.delivered == [(9, "archived")]
    # Only the first attempt is fresh: a failed post may have reached Zammad.
    assert runner.fresh == [True, False, False, False]
    assert (await pool.status(9))["reported"] is True
    await pool.stop(0)
    await store.close()


async def test_a_failed_delivery_logs_its_cause_and_a_traceback_only_for_a_defect(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Zammad's error (here a 503) and a shared store's outage are expected failures: one line
    with the cause, no traceback on every retry. An error that is neither keeps its traceback."""
    runner = FakeRunner({}, deliver_failures=1)
    plain_deliver = runner.deliver
    defects = [JobStoreUnavailable("the PostgreSQL job store is unreachable"), RuntimeError("bug")]

    async def deliver(
        job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        if defects:
            raise defects.pop()
        await plain_deliver(job, report, fresh=fresh, guard=guard)

    runner.deliver = deliver  # type: ignore[method-assign]  # this test wraps the fake's method
    with caplog.at_level(logging.WARNING, logger="app.jobs"):
        pool, store = await run_pool(make_store, runner, [JobRequest(9)])
    retries = [r for r in caplog.records if r.getMessage() == "report not delivered; retrying"]
    assert [(r.code, r.cause, bool(r.exc_info)) for r in retries] == [  # type: ignore[attr-defined]
        ("internal_error", "RuntimeError: bug", True),
        ("job_store_unavailable", "the PostgreSQL job store is unreachable", False),
        ("zammad_api_error", "down", False),
    ]
    assert [r.classification for r in retries[1:]] == ["Transient", "Transient"]  # type: ignore[attr-defined]
    assert runner.delivered == [(9, "archived")]
    await pool.stop(0)
    await store.close()


async def test_a_slow_report_frees_the_worker_but_holds_its_ticket(make_store: StoreFactory) -> None:
    """With one worker, the next ticket runs while a report is still being delivered; the
    same ticket's follow-up waits for the delivery; stop() leaves an undelivered report in
    the store's outbox."""
    runner = FakeRunner({})
    deliver_gate = asyncio.Event()
    events: list[str] = []
    plain_deliver = runner.deliver

    async def slow_deliver(
        job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        events.append(f"deliver {job.ticket_id} starts")
        await deliver_gate.wait()
        await plain_deliver(job, report, fresh=fresh, guard=guard)
        events.append(f"deliver {job.ticket_id} done")

    runner.deliver = slow_deliver  # type: ignore[method-assign]  # this test wraps the fake's method
    plain_execute = runner.execute

    async def logged_execute(job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        events.append(f"run {job.ticket_id}")
        return await plain_execute(job, guard=guard)

    runner.execute = logged_execute  # type: ignore[method-assign]  # this test wraps the fake's method
    store = make_store()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.01, 0.02))
    await pool.start()
    await pool.submit(JobRequest(1))
    await until(lambda: "deliver 1 starts" in events, 1)
    # Ticket 1's report hangs; a follow-up for ticket 1 and a job for ticket 2 arrive.
    await pool.submit(JobRequest(1, reason="retry"))
    await pool.submit(JobRequest(2))
    await until(lambda: "deliver 2 starts" in events, 1)
    assert events == ["run 1", "deliver 1 starts", "run 2", "deliver 2 starts"]
    assert not pool.idle
    deliver_gate.set()
    await until(lambda: pool.idle, 4)
    assert events.index("run 1", 1) > events.index("deliver 1 done")  # the follow-up waited
    assert sorted(runner.delivered) == [(1, "archived"), (1, "archived"), (2, "archived")]
    # A report still being delivered at shutdown stays in the outbox for the next start.
    deliver_gate.clear()
    await pool.submit(JobRequest(3))
    await until(lambda: "deliver 3 starts" in events, 1)
    await pool.stop(0)
    latest = await store.latest(3)
    assert latest is not None and latest.reported is False
    await store.close()


async def test_undeliverable_report_is_given_up(make_store: StoreFactory) -> None:
    runner = FakeRunner({}, undeliverable=True)
    pool, store = await run_pool(make_store, runner, [JobRequest(9)])
    assert pool.idle and runner.delivered == []
    status = await pool.status(9)
    assert status["reported"] is True and status["report_error"] == "ticket gone"
    await pool.stop(0)
    await store.close()


async def test_shutdown_puts_a_running_job_back_and_a_restart_resumes_it(make_store: StoreFactory) -> None:
    runner = FakeRunner({})
    runner.gate.clear()
    store = make_store()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.01, 0.02))
    await pool.start()
    job = job_of(await pool.submit(JobRequest(11)))
    await until(lambda: 11 in runner.active, 2)
    await pool.stop(0.05)
    await store.close()
    record_store = make_store()
    recovery = await record_store.open()
    if make_store.backend == "sqlite":
        assert recovery.due == [(job, 11)] and recovery.interrupted == 0
    record = await record_of(record_store, job)
    assert (record.state, record.attempts) == ("pending", 0)  # the cancelled run does not count
    await record_store.close()

    runner.gate.set()
    pool, store = await run_pool(make_store, runner, [])
    assert runner.runs == [(11, 1)] and runner.delivered == [(11, "archived")]
    await pool.stop(0)
    await store.close()


async def test_stop_lets_a_running_job_finish_and_returns_as_soon_as_it_has(make_store: StoreFactory) -> None:
    runner = FakeRunner({})
    runner.gate.clear()
    store = make_store()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.01, 0.02))
    await pool.start()
    await pool.submit(JobRequest(1))
    await until(lambda: 1 in runner.active, 2)
    stopping = asyncio.ensure_future(pool.stop(30))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # within the grace: the run goes on
    runner.gate.set()
    await asyncio.wait_for(stopping, 5)  # not the whole grace
    assert runner.runs == [(1, 1)] and runner.delivered == [(1, "archived")]
    latest = await store.latest(1)
    assert latest is not None and (latest.state, latest.reported) == (JobState.DONE, True)
    await store.close()


async def test_stop_ends_even_when_a_wake_up_arrives_as_it_cancels(make_store: StoreFactory) -> None:
    """A wake-up (the store's NOTIFY for the claimer, a retry for the scheduler) in the same turn
    as stop() cancels the waiting tasks: asyncio.wait_for of Python 3.11 swallowed such a
    cancellation, the task lived on and stop() waited for it forever."""
    store = make_store()
    pool = WorkerPool(store, FakeRunner({}), workers=1, retry=RetryPolicy())
    await pool.start()
    await asyncio.sleep(0.05)  # the claimer and the scheduler are waiting now
    pool._wake.set()
    if store.work_available is not None:
        store.work_available.set()
    async with asyncio.timeout(10):
        await pool.stop(0)
    await store.close()


async def test_a_run_ending_during_a_database_outage_is_recorded_once_the_database_is_back(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """The database goes down while a job runs; its end cannot be recorded. The pool keeps the
    outcome and records it once the database is back: the job ends ``done`` (run once, report
    delivered), instead of staying ``running`` under a lease this replica keeps renewing."""
    store = replica(postgres_url, time.time, lease=4)
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
    assert job is not None and (job.state, job.reported, job.attempts) == ("done", True, 1)
    assert runner.runs == [(1, 1)] and runner.delivered == [(1, "archived")]
    await pool.stop(1)
    await store.close()


@pytest.mark.parametrize("stage", ["run", "report"])
async def test_a_replica_that_stalled_past_its_lease_writes_nothing_to_the_ticket(
    postgres_url: str, stage: str
) -> None:
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
    stall(a)  # a stalls: no renewals
    clock.now += 11
    taken = await (b.claim_due(5, AT) if stage == "run" else b.claim_reports(5))
    assert len(taken) == 1
    runner.gate.set()
    runner.deliver_gate.set()
    await until(lambda: pool.idle, 5)
    assert runner.writes == ([] if stage == "run" else ["start 1"])
    row = await record_of(b, taken[0].job_id)
    assert (row.state, row.reported) == (("running", True) if stage == "run" else ("done", False))
    await pool.stop(1)
    await closed(a, b)


async def test_a_replica_that_reclaimed_its_own_job_after_an_outage_blames_no_other_replica(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Replica a's renewals stop for longer than the lease while it runs a job (an outage);
    nobody else takes the job, and a's own claimer reclaims it: a second run waits for the
    ticket. The first run ends the job; the second finds no claim at its lease check and writes
    nothing. Its warning says the lease was lost, not that another replica took the job over
    (which was logged before, and was false)."""
    clock = Clock()
    a = replica(postgres_url, clock, lease=10)
    runner = GuardedRunner()
    runner.gate.clear()
    runner.deliver_gate.set()
    pool = WorkerPool(
        a, runner, workers=2, retry=RetryPolicy(3, 0.02, 0.05), deliver_backoff_max_seconds=0.05
    )
    await pool.start()
    job = job_of(await pool.submit(JobRequest(1)))
    await until(lambda: bool(runner.active), 5)
    stall(a)
    clock.now += 11
    await until(lambda: a.leases.fences.get(job) == 2, 5)  # reclaimed by a's own claimer
    caplog.set_level(logging.WARNING, logger="app.jobs")
    runner.gate.set()
    await until(lambda: pool.idle, 5)
    assert runner.writes == ["start 1", "note 1"]
    row = await record_of(a, job)
    assert (row.state, row.reported) == ("done", True)
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.jobs"]
    assert warnings == [
        "run stopped before writing to the ticket: the job's lease was lost "
        "(it may have been taken over by another replica or reclaimed after an outage)"
    ]
    await pool.stop(1)
    await closed(a)


async def test_a_stop_during_a_database_outage_ends_the_workers(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """SIGTERM's ``stop()`` cancels a run while the database is down: giving the job back fails,
    and that must not swallow the cancellation (the worker went on and ``stop()`` waited for
    it for ever); the lease runs out and another replica runs the job."""
    store = replica(postgres_url, time.time, lease=4)
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


async def test_a_busy_replica_sees_the_shared_queue_fill_up(postgres_url: str) -> None:
    """Replica b's only worker is busy while replica a accepts jobs up to the shared limit: b's
    claimer, though it claims nothing, reads the pending count, so b's readiness (``saturated``,
    the ``queue`` check of ``/healthz?deep=true``) fails as a's does, and ``queue_depth`` is
    the store's. Found with two replicas (``WORKERS=1``, ``WORKFLOW_QUEUE_MAX=4``): ``/ingest``
    answered 503 ``queue_full`` while both replicas' ``queue`` check said ``ok`` and their
    ``queue_depth`` was 2 and 3."""
    a = replica(postgres_url, time.time, max_pending=3)
    b = replica(postgres_url, time.time, max_pending=3)
    runner = FakeRunner({})
    runner.gate.clear()  # b's run of ticket 1 holds its only worker
    pool = WorkerPool(
        b, runner, workers=1, retry=RetryPolicy(3, 0.02, 0.05), deliver_backoff_max_seconds=0.05
    )
    await pool.start()
    await a.open()
    await pool.submit(JobRequest(1))
    await until(lambda: bool(runner.active), 5)
    for ticket_id in (2, 3, 4):
        job_of(await a.accept(JobRequest(ticket_id)))
    assert a.pending_count == 3
    await until(lambda: pool.saturated, 5)  # the claimer polls every second
    assert pool.saturated and pool.depth == 3
    runner.gate.set()
    await until(lambda: pool.idle, 10)
    assert not pool.saturated
    await pool.stop(1)
    await closed(a, b)
