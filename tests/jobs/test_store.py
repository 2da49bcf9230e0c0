"""The job store's contract (:class:`app.jobs.store.JobStore`) on both backends: a SQLite file
and a real PostgreSQL (``make_store``, ids ``[sqlite]``/``[postgres]``). Admission, the job's
transitions, the queries, and what is stored."""

from __future__ import annotations

import asyncio
import json

import orjson

from app.jobs.postgres import PostgresJobStore
from app.jobs.records import Admission, AdmissionStatus, FailingStreak, JobRequest, JobState
from app.jobs.sqlite import SqliteJobStore
from tests.conftest import JobStoreBackend
from tests.jobs.conftest import StoreFactory
from tests.jobs.support import AT, REPORT, job_of, new_job, record_of


async def test_accept_coalesce_duplicate_and_full(make_store: StoreFactory) -> None:
    store = make_store(max_pending=2)
    await store.open()
    first = await store.accept(JobRequest(1, delivery_id="d1"))
    assert first.status == AdmissionStatus.ACCEPTED and first.new
    assert (await store.accept(JobRequest(1, delivery_id="d1"))).status == AdmissionStatus.DUPLICATE
    merged = await store.accept(JobRequest(1, delivery_id="d2", force=True))
    assert (merged.status, merged.job_id, merged.new) == ("coalesced", first.job_id, False)
    assert (await record_of(store, job_of(first))).force is True
    assert (await store.accept(JobRequest(2))).status == "accepted"
    full = await store.accept(JobRequest(3, delivery_id="d3"))
    assert full.status == "full" and full.job_id is None and not full.accepted
    # A refused delivery is not remembered: Zammad's retry gets through once there is room.
    assert (await store.accept(JobRequest(3, delivery_id="d3"))).status == "full"
    await store.close()


async def test_delivery_ids_expire_and_win_over_full(make_store: StoreFactory) -> None:
    now = [1000.0]
    store = make_store(max_pending=1, ttl=60, clock=lambda: now[0])
    await store.open()
    first = job_of(await store.accept(JobRequest(1, delivery_id="d1")))
    # A delivery for a coalesced request is remembered with the job it was merged into.
    merged = await store.accept(JobRequest(1, delivery_id="d2"))
    assert (merged.status, merged.job_id) == ("coalesced", first)
    assert (await store.accept(JobRequest(1, delivery_id="d2"))) == Admission(
        AdmissionStatus.DUPLICATE, first
    )
    # The queue is full for another ticket, but a live delivery id is still a duplicate, not full.
    assert (await store.accept(JobRequest(2, delivery_id="d1"))).status == "duplicate"
    assert (await store.accept(JobRequest(2, delivery_id="d9"))).status == "full"
    await store.start(first, AT)
    await store.finish(first, state=JobState.DONE, result="archived")
    # Within the TTL the id stays a duplicate after its job ended; after it, it is new again.
    now[0] += 59
    assert (await store.accept(JobRequest(1, delivery_id="d1"))).status == "duplicate"
    now[0] += 2
    again = await store.accept(JobRequest(1, delivery_id="d1"))
    assert again.status == "accepted" and again.job_id != first
    assert (await store.accept(JobRequest(1, delivery_id="d1"))) == Admission(
        AdmissionStatus.DUPLICATE, again.job_id
    )
    await store.close()


async def test_batch_is_all_or_nothing_on_capacity(make_store: StoreFactory) -> None:
    store = make_store(max_pending=2)
    await store.open()
    answers = await store.accept_many([JobRequest(1), JobRequest(2), JobRequest(3)])
    assert [a.status for a in answers] == ["full"] * 3
    assert store.pending_count == 0
    answers = await store.accept_many([JobRequest(1), JobRequest(1), JobRequest(2)])
    assert [a.status for a in answers] == ["accepted", "coalesced", "accepted"]
    assert answers[0].job_id == answers[1].job_id and store.pending_count == 2
    await store.close()


async def test_a_batchs_delivery_id_dedupes_the_batch_not_its_payloads(make_store: StoreFactory) -> None:
    """The payloads of one ``/ingest/batch`` share its ``X-Zammad-Delivery``: each gets its job,
    and the same batch again is a duplicate as a whole. Found with two replicas on PostgreSQL:
    a batch of tickets 5008, 5009, 5010, 5011, 5010 with ``X-Zammad-Delivery: batch-1`` was
    answered ``202 accepted, count 5`` but only 5008 got a job; the others were recorded as
    duplicates of the first and never archived (SQLite archived all four)."""
    store = make_store()
    await store.open()
    batch = [JobRequest(t, delivery_id="b1") for t in (1, 2, 3, 2)]
    answers = await store.accept_many(batch)
    assert [a.status for a in answers] == ["accepted", "accepted", "accepted", "coalesced"]
    assert store.pending_count == 3
    assert len({a.job_id for a in answers}) == 3 and answers[1].job_id == answers[3].job_id
    again = await store.accept_many(batch)
    assert [a.status for a in again] == ["duplicate"] * 4
    assert store.pending_count == 3
    await store.close()


async def test_running_job_gets_one_follow_up(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    job = await new_job(store, 7)
    record = await store.start(job, AT)
    assert record is not None and record.state == JobState.RUNNING and record.attempts == 1
    assert await store.start(job, AT) is None  # not pending any more
    for _ in range(3):
        assert (await store.accept(JobRequest(7))).status == "coalesced"
    follow = await store.finish(job, state=JobState.DONE, result="archived")
    assert follow is not None and follow != job
    follow_up = await record_of(store, follow)
    assert (follow_up.state, follow_up.reason) == (JobState.PENDING, "follow_up")
    await store.close()


async def test_concurrent_accepts_are_group_committed(make_store: StoreFactory) -> None:
    store = make_store(max_pending=10_000)
    await store.open()
    assert isinstance(store, SqliteJobStore | PostgresJobStore)
    before = store.commits
    answers = await asyncio.gather(*(store.accept(JobRequest(i, delivery_id=f"d{i}")) for i in range(500)))
    assert all(a.status == "accepted" for a in answers)
    assert store.commits - before < 100  # far fewer transactions than requests
    await store.close()


async def test_a_run_and_its_retry_and_end_as_the_store_records_them(make_store: StoreFactory) -> None:
    """``requeue`` does not count the attempt; ``retry_later`` keeps the error until a run ends
    ``done``; ``failed`` keeps the newest error; ``mark_reported`` records a given-up report."""
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    job = await new_job(store, 1)
    await store.start(job, AT)
    await store.requeue(job)
    record = await record_of(store, job)
    assert (record.state, record.attempts, record.archived_at) == (JobState.PENDING, 0, AT)
    await store.start(job, "2030-01-01T00:00:00+00:00")  # the first start's archive time stays
    await store.retry_later(
        job, at=1005.0, error="Zammad 503", step="fetch ticket", classification="Transient"
    )
    record = await record_of(store, job)
    assert (record.state, record.next_attempt_at, record.last_error) == (
        JobState.PENDING,
        1005.0,
        "Zammad 503",
    )
    assert record.archived_at == AT and store.pending_count == 1
    now[0] = 1006.0
    assert await store.start(job, AT) is not None
    await store.finish(job, state=JobState.DONE, result="archived", report=REPORT, output_path="a/b.pdf")
    record = await record_of(store, job)
    assert (record.state, record.attempts, record.last_error, record.reported) == (
        JobState.DONE,
        2,
        None,
        False,
    )
    assert record.report == REPORT and record.output_path == "a/b.pdf"
    await store.mark_reported(job, given_up="ticket gone")
    record = await record_of(store, job)
    assert record.reported and record.report_error == "ticket gone"

    failing = await new_job(store, 2)
    await store.start(failing, AT)
    await store.finish(
        failing,
        state=JobState.FAILED,
        result="failed",
        error="404",
        step="fetch ticket",
        classification="Permanent",
    )
    record = await record_of(store, failing)
    assert (record.state, record.last_error, record.classification) == (JobState.FAILED, "404", "Permanent")
    assert record.reported  # no report: nothing to deliver
    await store.close()


async def test_an_operators_retry_ends_a_wait_for_the_next_attempt_and_a_webhook_does_not(
    make_store: StoreFactory,
) -> None:
    """A job waits for its next attempt after a Transient failure. A webhook or the sweep merged
    into it keep the wait (Zammad may still be down), and no job starts before its time; an
    operator's ``/retry`` (``RETRY_REASON``) makes it due now, its attempts counted afresh,
    keeping its archive time and the error it waited on."""
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    job = await new_job(store, 1)
    await store.start(job, AT)
    await store.retry_later(
        job, at=1600.0, error="Zammad 503", step="fetch ticket", classification="Transient"
    )
    assert await store.start(job, AT) is None  # not due before 1600
    for reason in ("webhook", "reconcile"):
        merged = await store.accept(JobRequest(1, reason=reason))
        assert (merged.status, merged.job_id, merged.due_now) == ("coalesced", job, False)
        record = await record_of(store, job)
        assert (record.state, record.next_attempt_at, record.attempts) == (JobState.PENDING, 1600.0, 1)
    assert await store.start(job, AT) is None
    retried = await store.accept(JobRequest(1, reason="retry", force=True))
    assert (retried.status, retried.job_id, retried.new) == ("coalesced", job, False)
    # SQLite tells the worker pool; PostgreSQL's replicas learn it from the store's NOTIFY.
    assert retried.due_now is isinstance(store, SqliteJobStore)
    record = await record_of(store, job)
    assert (record.state, record.next_attempt_at, record.attempts, record.force) == (
        JobState.PENDING,
        None,
        0,
        True,
    )
    assert (record.last_error, record.updated_at) == ("Zammad 503", 1000.0)
    assert store.pending_count == 1
    started = await store.start(job, "2030-01-01T00:00:00+00:00")
    assert started is not None and (started.attempts, started.archived_at) == (1, AT)
    # A retry merged into a job that has not run yet, or into a running job, is what it was.
    fresh = await new_job(store, 2)
    again = await store.accept(JobRequest(2, reason="retry"))
    assert (again.status, again.due_now) == ("coalesced", False)
    assert (await record_of(store, fresh)).attempts == 0
    follow = await store.accept(JobRequest(1, reason="retry"))
    assert (follow.status, follow.job_id, follow.due_now) == ("coalesced", job, False)
    record = await record_of(store, job)
    assert (record.state, record.attempts, record.follow_up) == (JobState.RUNNING, 1, True)
    await store.close()


async def test_latest_shows_a_tickets_active_job_first(make_store: StoreFactory) -> None:
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    old = await new_job(store, 4)
    await store.start(old, AT)
    now[0] += 1
    await store.accept(JobRequest(4))  # follow-up requested
    now[0] += 1
    follow = await store.finish(old, state=JobState.DONE, result="archived")
    latest = await store.latest(4)
    assert latest is not None and latest.job_id == follow and latest.state == JobState.PENDING
    assert await store.latest(5) is None
    await store.close()


async def test_stored_rows_and_answers_keep_the_states_words(
    make_store: StoreFactory, job_store: JobStoreBackend
) -> None:
    """The enums name exactly the strings stored before them: rows read from outside the store
    and the JSON of ``/jobs/{ticket_id}`` (``describe``) are unchanged."""
    store = make_store()
    await store.open()
    done = await new_job(store, 1, delivery_id="d1")
    await store.start(done, AT)
    await store.finish(done, state=JobState.DONE, result="skipped: already_signed")
    dead = await new_job(store, 2)
    await store.start(dead, AT)
    await store.finish(dead, state=JobState.DEAD, result="failed", report=REPORT)
    pending = await new_job(store, 3)
    await store.close()
    rows = await job_store.rows("SELECT job_id, state, result FROM jobs ORDER BY ticket_id")
    assert rows == [
        (done, "done", "skipped: already_signed"),
        (dead, "dead", "failed"),
        (pending, "pending", None),
    ]
    assert all(type(state) is str for _, state, _ in rows)
    store = make_store()
    await store.open()
    record = await record_of(store, dead)
    assert record.state is JobState.DEAD
    described = record.describe()
    assert json.loads(json.dumps(described))["state"] == "dead"
    assert orjson.loads(orjson.dumps(described))["state"] == "dead"
    await store.close()


JOBS_FIELDS = [
    "job_id", "state", "reason", "force", "attempts", "next_attempt_at", "last_error", "last_step",
    "classification", "output_path", "sha256", "result", "follow_up", "reported", "report_error",
    "delivery_id", "created_at", "updated_at", "started_at", "finished_at",
]  # fmt: skip
"""The fields of ``/jobs/{ticket_id}`` from the job's record, in order, as before leases were shown."""


async def test_a_running_job_shows_its_lease_only_with_a_shared_store(make_store: StoreFactory) -> None:
    """``/jobs`` fields of a running job and of one with its report undelivered: PostgreSQL adds
    ``lease`` (the holder, its expiry by the store's clock); SQLite, which has no leases, shows
    exactly the fields it always did."""
    now = [1000.0]
    store = make_store(clock=lambda: now[0], lease=30)
    await store.open()
    job = await new_job(store, 1)
    assert list((await record_of(store, job)).describe()) == JOBS_FIELDS  # pending: never a lease
    await store.start(job, AT)
    running = await store.latest(1)
    assert running is not None and running.state == JobState.RUNNING
    await store.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    reporting = await record_of(store, job)
    await store.mark_reported(job)
    reported = await record_of(store, job)
    assert list(reported.describe()) == JOBS_FIELDS
    if isinstance(store, SqliteJobStore):
        assert list(running.describe()) == JOBS_FIELDS and list(reporting.describe()) == JOBS_FIELDS
        assert running.lease is None and reporting.lease is None
    else:
        assert isinstance(store, PostgresJobStore)
        lease = {"owner": store.leases.owner, "expires_at": 1030.0, "expired": False}
        assert list(running.describe()) == [*JOBS_FIELDS, "lease"]
        assert running.describe()["lease"] == lease
        assert reporting.describe()["lease"] == lease
    await store.close()


async def test_confirm_lease_passes_for_a_job_this_store_runs(make_store: StoreFactory) -> None:
    store = make_store()
    await store.open()
    job = await new_job(store, 1)
    await store.start(job, AT)
    await store.confirm_lease(job)  # SQLite: one instance holds every job; PostgreSQL: its lease
    assert (await record_of(store, job)).state == JobState.RUNNING
    await store.close()


async def test_a_tickets_failing_streak_runs_back_over_dead_jobs_to_its_last_ending(
    make_store: StoreFactory,
) -> None:
    """``failing_streak`` (the download give-up's clock, WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): a dead
    job queued again (a new job row: the sweep, a webhook, a /retry) keeps the streak's start and
    adds its runs; a job that ended ``done`` or ``failed`` ends the streak; other tickets count not."""
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    assert await store.failing_streak("0" * 32) is None

    async def dies(ticket: int, runs: int, state: JobState = JobState.DEAD) -> str:
        job = await new_job(store, ticket, reason="reconcile")
        for run in range(runs):
            await store.start(job, AT)
            if run < runs - 1:
                await store.retry_later(
                    job, at=now[0], error="503", step="fetch images", classification="Transient"
                )
        now[0] += 100.0
        await store.finish(job, state=state, result="failed", error="503", classification="Transient")
        now[0] += 3600.0
        return job

    archived = await dies(7, 1, JobState.DONE)
    assert await store.failing_streak(archived) == FailingStreak(1000.0, 1, 1)
    first = await dies(7, 3)
    await dies(8, 2)  # another ticket's dead job, in between
    second = await dies(7, 2)
    start = now[0]
    running = await new_job(store, 7, reason="reconcile")
    await store.start(running, AT)
    first_at = (await record_of(store, first)).created_at
    assert first_at == 1000.0 + 3700.0
    assert await store.failing_streak(first) == FailingStreak(first_at, 3, 1)
    assert await store.failing_streak(second) == FailingStreak(first_at, 5, 2)
    assert await store.failing_streak(running) == FailingStreak(first_at, 6, 3)
    assert (await record_of(store, running)).created_at == start
    await store.finish(
        running, state=JobState.FAILED, result="failed", error="404", classification="Permanent"
    )
    now[0] += 10.0
    after = await new_job(store, 7, reason="retry")
    await store.start(after, AT)
    assert await store.failing_streak(after) == FailingStreak(now[0], 1, 1)  # a new streak
    await store.close()
