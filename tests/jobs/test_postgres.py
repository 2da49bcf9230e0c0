"""The PostgreSQL job store as several replicas see it (:mod:`app.jobs.postgres`): the pending
count, a run's end that meets an outage, giving back at close, pruning. What both stores share
is in ``test_store.py``."""

from __future__ import annotations

import asyncio

import pytest

from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRequest, JobState, JobStoreUnavailable
from tests.jobs.support import (
    AT,
    REPORT,
    Clock,
    closed,
    new_job,
    opened,
    record_of,
    replica,
)
from tests.postgres_server import PostgresServer


async def test_the_pending_count_drops_only_when_the_claimed_jobs_are_handed_over(postgres_url: str) -> None:
    """The worker pool counts itself idle when the store's pending count is 0 and nothing is
    queued: the count must not drop while ``claim_due`` still holds the jobs it claimed."""
    a, b = replica(postgres_url), replica(postgres_url)
    await opened(a)
    job = await new_job(a, 6)
    await opened(b)
    assert b.pending_count == 1
    claim = asyncio.ensure_future(b.claim_due(5, AT))
    seen: list[int] = []
    while not claim.done():
        seen.append(b.pending_count)
        await asyncio.sleep(0)
    assert [r.job_id for r in claim.result()] == [job]
    assert seen and 0 not in seen, seen
    assert b.pending_count == 0
    await closed(a, b)


async def _until_reachable(store: PostgresJobStore, clock: Clock) -> None:
    """Renew ``store``'s leases (at ``clock``'s time) until the database answers again."""
    for _ in range(100):  # the pool reconnects by itself
        try:
            await store.renew_leases()
            return
        except JobStoreUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("the database did not come back")


@pytest.mark.parametrize("end", ["finish", "retry_later"])
async def test_a_run_whose_end_was_not_recorded_keeps_its_lease_until_it_is(
    postgres_server: PostgresServer, postgres_url: str, end: str
) -> None:
    """The database was unreachable when the run ended: the store keeps the job's fence, so the
    same write succeeds once the database is back (the pool writes again, ``_recorded``), and no
    other replica takes the job meanwhile."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await new_job(a, 1)
    await a.start(job, AT)

    async def write() -> None:
        if end == "finish":
            await a.finish(job, state=JobState.DONE, result="archived", report=REPORT)
        else:
            await a.retry_later(
                job,
                at=clock.now + 100,
                error="Zammad 503",
                step="fetch ticket",
                classification="Transient",
            )

    postgres_server.kill()
    with pytest.raises(JobStoreUnavailable):
        await write()
    postgres_server.restart()
    await _until_reachable(a, clock)
    assert await b.claim_due(5, AT) == []
    await write()
    row = await record_of(b, job)
    assert row.state == ("done" if end == "finish" else "pending") and row.attempts == 1
    assert await b.claim_due(5, AT) == []  # ended, or waiting for its retry time
    await closed(a, b)


async def test_close_gives_back_running_jobs_and_reports(postgres_url: str) -> None:
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    running = await new_job(a, 1)
    await a.start(running, AT)
    reporting = await new_job(a, 2)
    await a.start(reporting, AT)
    await a.finish(reporting, state=JobState.DONE, result="archived", report=REPORT)
    await a.close()
    # No lease wait: b takes both at once.
    claimed = await b.claim_due(5, AT)
    assert [(r.job_id, r.attempts) for r in claimed] == [(running, 1)]  # the given-back run did not count
    assert [r.job_id for r in await b.claim_reports(5)] == [reporting]
    assert a.unavailable == "the job store is closed"
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await a.accept(JobRequest(3))
    await a.close()  # idempotent
    await closed(b)


async def test_purge_removes_expired_deliveries_and_old_jobs_but_keeps_each_tickets_latest(
    postgres_url: str,
) -> None:
    clock = Clock()
    a = replica(postgres_url, clock, ttl=60, retention_seconds=3600)
    await opened(a)
    old = await new_job(a, 1, delivery_id="old")
    await a.start(old, AT)
    await a.finish(old, state=JobState.DONE, result="archived")
    clock.now += 10
    newer = await new_job(a, 1, delivery_id="newer")
    await a.start(newer, AT)
    await a.finish(newer, state=JobState.DONE, result="archived")
    lone = await new_job(a, 2)
    await a.start(lone, AT)
    await a.finish(lone, state=JobState.DONE, result="archived")
    clock.now += 7200
    assert await a.purge_deliveries() == 2
    assert await a.get(old) is None
    assert await a.get(newer) is not None and await a.get(lone) is not None
    assert (await a.accept(JobRequest(1, delivery_id="old"))).status == "accepted"  # forgotten, so new again
    await closed(a)
