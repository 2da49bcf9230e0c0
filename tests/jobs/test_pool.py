"""Job store and worker pool on both backends (real SQLite files, a real PostgreSQL): admission,
coalescing, retries, recovery, outbox."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import ZammadApiError
from app.jobs.pool import RetryPolicy, WorkerPool
from app.jobs.records import Admission, JobRecord, JobRequest
from app.jobs.sqlite import SqliteJobStore as JobStore
from app.workflow.archive import ArchiveOutcome
from app.workflow.classify import classify
from app.workflow.ports import Guard
from app.workflow.report import Report, UndeliverableReport


def store_at(path: Path | None, **kw) -> JobStore:
    return JobStore(
        path, delivery_ttl_seconds=kw.pop("ttl", 3600), max_pending=kw.pop("max_pending", 100), **kw
    )


async def test_accept_coalesce_duplicate_and_full(make_store):
    store = make_store(max_pending=2)
    await store.open()
    first = await store.accept(JobRequest(1, delivery_id="d1"))
    assert first.status == "accepted" and first.new
    assert (await store.accept(JobRequest(1, delivery_id="d1"))).status == "duplicate"
    merged = await store.accept(JobRequest(1, delivery_id="d2", force=True))
    assert (merged.status, merged.job_id, merged.new) == ("coalesced", first.job_id, False)
    assert (await store.get(first.job_id)).force is True
    assert (await store.accept(JobRequest(2))).status == "accepted"
    full = await store.accept(JobRequest(3, delivery_id="d3"))
    assert full.status == "full" and full.job_id is None
    # A refused delivery is not remembered: Zammad's retry gets through once there is room.
    assert (await store.accept(JobRequest(3, delivery_id="d3"))).status == "full"
    await store.close()


async def test_delivery_ids_expire_and_win_over_full(make_store):
    now = [1000.0]
    store = make_store(max_pending=1, ttl=60, clock=lambda: now[0])
    await store.open()
    first = await store.accept(JobRequest(1, delivery_id="d1"))
    assert first.status == "accepted"
    # A delivery for a coalesced request is remembered with the job it was merged into.
    merged = await store.accept(JobRequest(1, delivery_id="d2"))
    assert (merged.status, merged.job_id) == ("coalesced", first.job_id)
    assert (await store.accept(JobRequest(1, delivery_id="d2"))) == Admission("duplicate", first.job_id)
    # The queue is full for another ticket, but a live delivery id is still a duplicate, not full.
    assert (await store.accept(JobRequest(2, delivery_id="d1"))).status == "duplicate"
    assert (await store.accept(JobRequest(2, delivery_id="d9"))).status == "full"
    await store.start(first.job_id, "2025-03-06T13:20:11+00:00")
    await store.finish(first.job_id, state="done", result="archived")
    # Within the TTL the id stays a duplicate after its job ended; after it, it is new again.
    now[0] += 59
    assert (await store.accept(JobRequest(1, delivery_id="d1"))).status == "duplicate"
    now[0] += 2
    again = await store.accept(JobRequest(1, delivery_id="d1"))
    assert again.status == "accepted" and again.job_id != first.job_id
    assert (await store.accept(JobRequest(1, delivery_id="d1"))) == Admission("duplicate", again.job_id)
    await store.close()


async def test_batch_is_all_or_nothing_on_capacity(make_store):
    store = make_store(max_pending=2)
    await store.open()
    answers = await store.accept_many([JobRequest(1), JobRequest(2), JobRequest(3)])
    assert [a.status for a in answers] == ["full"] * 3
    answers = await store.accept_many([JobRequest(1), JobRequest(1), JobRequest(2)])
    assert [a.status for a in answers] == ["accepted", "coalesced", "accepted"]
    assert answers[0].job_id == answers[1].job_id
    await store.close()


async def test_running_job_gets_one_follow_up(make_store):
    store = make_store()
    await store.open()
    job = await store.accept(JobRequest(7))
    record = await store.start(job.job_id, "2025-03-06T13:20:11+00:00")
    assert record.state == "running" and record.attempts == 1
    for _ in range(3):
        assert (await store.accept(JobRequest(7))).status == "coalesced"
    follow = await store.finish(job.job_id, state="done", result="archived")
    assert follow is not None and follow != job.job_id
    assert (await store.get(follow)).state == "pending"
    await store.close()


async def test_recovery_after_a_crash(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    store = store_at(path)
    await store.open()
    running = await store.accept(JobRequest(1))
    await store.start(running.job_id, "2025-01-01T00:00:00+00:00")
    pending = await store.accept(JobRequest(2))
    later = await store.accept(JobRequest(3))
    await store.start(later.job_id, "2025-01-01T00:00:00+00:00")
    await store.retry_later(later.job_id, at=9e9, error="boom", step="sign", classification="Transient")
    done = await store.accept(JobRequest(4))
    await store.start(done.job_id, "2025-01-01T00:00:00+00:00")
    await store.finish(
        done.job_id,
        state="done",
        result="archived",
        report={"add": ["pdf:signed"], "remove": [], "subject": "s", "body_html": "b"},
    )
    # No close(): the process "dies" here; a new store opens the same file.
    again = store_at(path)
    recovery = await again.open()
    assert recovery.interrupted == 1
    assert sorted(recovery.due) == sorted([(running.job_id, 1), (pending.job_id, 2)])
    assert recovery.scheduled == [(later.job_id, 3, 9e9)]
    assert [r.job_id for r in recovery.unreported] == [done.job_id]
    assert (await again.get(running.job_id)).archived_at == "2025-01-01T00:00:00+00:00"
    assert again.pending_count == 3
    await again.close()
    await store.close()


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_backoff_is_exponential_capped_and_jittered(attempt):
    policy = RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=60)
    rng = random.Random(attempt)
    ceiling = min(60, 10 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt, rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 10  # jitter spreads them


class FakeRunner:
    """Outcomes scripted per ticket; records runs and deliveries."""

    def __init__(
        self, script: dict[int, list[str]], *, deliver_failures: int = 0, undeliverable: bool = False
    ):
        self.script = script
        self.runs: list[tuple[int, int]] = []
        self.delivered: list[tuple[int, str]] = []
        self.active: set[int] = set()
        self.overlap = False
        self.deliver_failures = deliver_failures
        self.undeliverable = undeliverable
        self.fresh: list[bool] = []  # the ``fresh`` flag of each delivery attempt
        self.gate = asyncio.Event()
        self.gate.set()

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        if job.ticket_id in self.active:
            self.overlap = True
        self.active.add(job.ticket_id)
        try:
            await self.gate.wait()
            await asyncio.sleep(0.01)
            self.runs.append((job.ticket_id, job.attempts))
            kind = self.script.get(job.ticket_id, ["ok"])[
                min(job.attempts, len(self.script.get(job.ticket_id, ["ok"]))) - 1
            ]
        finally:
            self.active.discard(job.ticket_id)
        if kind == "ok":
            return ArchiveOutcome("archived", started=True)
        status = 503 if kind == "transient" else 404
        return ArchiveOutcome(
            "failed", "fetch ticket", started=True, failure=classify(ZammadApiError("x", status=status))
        )

    def report(self, job: JobRecord, outcome: ArchiveOutcome, *, gave_up: bool) -> Report | None:
        return Report(
            ("pdf:signed",) if outcome.status == "archived" else ("pdf:error",),
            (),
            "dead" if gave_up else outcome.status,
            "",
        )

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        self.fresh.append(fresh)
        if self.undeliverable:
            raise UndeliverableReport("ticket gone")
        if self.deliver_failures:
            self.deliver_failures -= 1
            raise ZammadApiError("down", status=503)
        self.delivered.append((job.ticket_id, report.subject))


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` every 10 ms until it holds or ``seconds`` pass (the caller asserts)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def run_pool(make_store, runner, requests, *, max_attempts=3, workers=3) -> tuple[WorkerPool, JobStore]:
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


async def test_retries_then_success_dead_and_permanent(make_store):
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


async def test_one_job_per_ticket_across_workers(make_store):
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


async def test_report_delivery_is_retried_until_it_succeeds(make_store):
    runner = FakeRunner({}, deliver_failures=3)
    pool, store = await run_pool(make_store, runner, [JobRequest(9)])
    assert runner.delivered == [(9, "archived")]
    # Only the first attempt is fresh: a failed post may have reached Zammad.
    assert runner.fresh == [True, False, False, False]
    assert (await pool.status(9))["reported"] is True
    await pool.stop(0)
    await store.close()


async def test_a_slow_report_frees_the_worker_but_holds_its_ticket(make_store):
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

    runner.deliver = slow_deliver  # type: ignore[method-assign]
    plain_execute = runner.execute

    async def logged_execute(job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        events.append(f"run {job.ticket_id}")
        return await plain_execute(job, guard=guard)

    runner.execute = logged_execute  # type: ignore[method-assign]
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
    assert (await store.latest(3)).reported is False
    await store.close()


async def test_undeliverable_report_is_given_up(make_store):
    runner = FakeRunner({}, undeliverable=True)
    pool, store = await run_pool(make_store, runner, [JobRequest(9)])
    assert pool.idle and runner.delivered == []
    status = await pool.status(9)
    assert status["reported"] is True and status["report_error"] == "ticket gone"
    await pool.stop(0)
    await store.close()


async def test_shutdown_puts_a_running_job_back_and_a_restart_resumes_it(make_store):
    runner = FakeRunner({})
    runner.gate.clear()
    store = make_store()
    pool = WorkerPool(store, runner, workers=1, retry=RetryPolicy(3, 0.01, 0.02))
    await pool.start()
    admission = await pool.submit(JobRequest(11))
    await until(lambda: 11 in runner.active, 2)
    await pool.stop(0.05)
    await store.close()
    record_store = make_store()
    recovery = await record_store.open()
    if make_store.backend == "sqlite":
        assert recovery.due == [(admission.job_id, 11)] and recovery.interrupted == 0
    record = await record_store.get(admission.job_id)
    assert (record.state, record.attempts) == ("pending", 0)  # the cancelled run does not count
    await record_store.close()

    runner.gate.set()
    pool, store = await run_pool(make_store, runner, [])
    assert runner.runs == [(11, 1)] and runner.delivered == [(11, "archived")]
    await pool.stop(0)
    await store.close()


async def test_in_memory_store_works_the_same(tmp_path):
    store = store_at(None)
    await store.open()
    assert (await store.accept(JobRequest(1, delivery_id="a"))).status == "accepted"
    assert (await store.accept(JobRequest(1, delivery_id="a"))).status == "duplicate"
    await store.close()


async def test_stop_ends_even_when_a_wake_up_arrives_as_it_cancels(make_store):
    """A wake-up (the store's NOTIFY for the claimer, a retry for the scheduler) in the same turn
    as stop() cancels the waiting tasks: asyncio.wait_for of Python 3.11 swallowed such a
    cancellation, the task lived on and stop() waited for it forever."""
    store = make_store()
    pool = WorkerPool(store, FakeRunner({}), workers=1, retry=RetryPolicy())
    await pool.start()
    await asyncio.sleep(0.05)  # the claimer and the scheduler are waiting now
    pool._wake.set()
    if getattr(store, "work_available", None) is not None:
        store.work_available.set()
    async with asyncio.timeout(10):
        await pool.stop(0)
    await store.close()


async def test_concurrent_accepts_are_group_committed(make_store):
    store = make_store(max_pending=10_000)
    await store.open()
    before = store.commits
    answers = await asyncio.gather(*(store.accept(JobRequest(i, delivery_id=f"d{i}")) for i in range(500)))
    assert all(a.status == "accepted" for a in answers)
    assert store.commits - before < 100  # far fewer transactions than requests
    await store.close()


async def test_pending_count_follows_the_database(tmp_path):
    """The counter behind ``full`` and ``/healthz`` never counts a change that did not happen:
    a retry of a job that is not running changes nothing, and an op that fails after
    counting is rolled back together with its count."""
    store = store_at(tmp_path / "jobs.sqlite3")
    await store.open()
    job = await store.accept(JobRequest(1))
    assert store.pending_count == 1
    await store.retry_later(
        job.job_id, at=9e9, error="e", step="s", classification="Transient"
    )  # not running
    assert store.pending_count == 1

    def counts_then_fails(conn):
        conn.execute(
            "INSERT INTO jobs (job_id, ticket_id, state, reason, created_at, updated_at) "
            "VALUES ('x', 2, 'pending', 'webhook', 0, 0)"
        )
        store._pending_count += 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store._run(counts_then_fails)
    assert store.pending_count == 1
    assert (await store.get("x")) is None
    await store.close()


async def test_older_database_gets_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, ticket_id INTEGER NOT NULL, state TEXT NOT NULL, "
        "reason TEXT NOT NULL, force INTEGER NOT NULL DEFAULT 0, delivery_id TEXT, attempts INTEGER NOT "
        "NULL DEFAULT 0, next_attempt_at REAL, archived_at TEXT, last_error TEXT, last_step TEXT, "
        "classification TEXT, output_path TEXT, sha256 TEXT, follow_up INTEGER NOT NULL DEFAULT 0, "
        "follow_up_force INTEGER NOT NULL DEFAULT 0, report TEXT, reported INTEGER NOT NULL DEFAULT 1, "
        "created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL)"
    )
    conn.execute(
        "INSERT INTO jobs (job_id, ticket_id, state, reason, created_at, updated_at) "
        "VALUES ('old', 5, 'pending', 'webhook', 1, 1)"
    )
    conn.commit()
    conn.close()
    store = store_at(path)
    recovery = await store.open()
    assert recovery.due == [("old", 5)]
    record = await store.get("old")
    assert record.result is None and record.report_error is None
    await store.close()
