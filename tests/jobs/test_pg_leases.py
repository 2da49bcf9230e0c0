"""Which jobs a replica holds (:mod:`app.jobs.pg_leases`): claims, fences, renewals, lease checks.
Several replicas (store instances) on one real database, mostly with a settable clock. The
replica tests of the whole service are in ``tests/e2e/test_replicas.py``."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from app.jobs.pg_schema import SCHEMA
from app.jobs.records import JobRequest, JobState, Lease, LeaseLost
from tests.jobs.support import (
    AT,
    REPORT,
    Clock,
    closed,
    new_job,
    opened,
    record_of,
    replica,
    stall,
)


async def test_a_job_runs_on_one_replica_only_and_a_dead_replicas_job_is_reclaimed(postgres_url: str) -> None:
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await new_job(a, 5)
    record = await a.start(job, AT)
    assert record is not None and record.attempts == 1
    assert await b.start(job, AT) is None
    assert await b.claim_due(5, AT) == []
    # Webhooks while it runs coalesce into one follow-up, whichever replica takes them.
    assert (await b.accept(JobRequest(5))).status == "coalesced"
    # Replica a dies (no renewals); within the lease nothing changes, after it b reclaims.
    stall(a)
    clock.now += 9
    assert await b.claim_due(5, AT) == []
    clock.now += 2
    reclaimed = await b.claim_due(5, AT)
    assert [r.job_id for r in reclaimed] == [job] and reclaimed[0].attempts == 2
    assert reclaimed[0].archived_at == AT  # the same archive path as the first run
    # The old owner's late writes change nothing (the fence moved on).
    with pytest.raises(LeaseLost):
        await a.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    with pytest.raises(LeaseLost):
        await a.retry_later(job, at=0, error="e", step="s", classification="Transient")
    follow = await b.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    assert follow is not None
    row = await record_of(b, job)
    assert (row.state, row.reported, row.attempts) == ("done", False, 2)
    await closed(a, b)


async def test_a_ticket_waits_for_its_report_and_an_orphaned_report_is_taken_over(postgres_url: str) -> None:
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await new_job(a, 7)
    await a.start(job, AT)
    await b.accept(JobRequest(7, reason="retry"))  # follow-up requested while it runs
    follow = await a.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    assert follow is not None
    # The follow-up is pending, but not claimable while the report is undelivered.
    assert (await record_of(b, follow)).state == "pending"
    assert await b.claim_due(5, AT) == [] and await b.start(follow, AT) is None
    assert await b.claim_reports(5) == []  # a's lease on the report holds
    stall(a)  # a dies before delivering
    clock.now += 11
    taken = await b.claim_reports(5)
    assert [r.job_id for r in taken] == [job] and taken[0].report == REPORT
    with pytest.raises(LeaseLost):
        await a.mark_reported(job)
    await b.mark_reported(job)
    claimed = await b.claim_due(5, AT)
    assert [r.job_id for r in claimed] == [follow] and claimed[0].reason == "follow_up"
    await closed(a, b)


async def test_renewals_keep_a_lease_and_a_lost_lease_is_reported(postgres_url: str) -> None:
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    lost: list[LeaseLost] = []
    a.on_lease_lost = lost.append
    job = await new_job(a, 8)
    await a.start(job, AT)
    for _ in range(5):  # 25 s of renewals every 5 s keep it
        clock.now += 5
        await a.renew_leases()
        assert await b.claim_due(5, AT) == []
    assert lost == []
    clock.now += 11  # a missed its renewals: b takes over, and a learns it at its next renewal
    assert len(await b.claim_due(5, AT)) == 1
    await a.renew_leases()
    assert [(e.job_id, e.taken_over) for e in lost] == [(job, True)]
    await closed(a, b)


async def test_a_retry_runs_on_whichever_replica_claims_it_when_due(postgres_url: str) -> None:
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    job = await new_job(a, 9)
    await a.start(job, AT)
    await a.retry_later(
        job, at=clock.now + 30, error="Zammad 503", step="fetch ticket", classification="Transient"
    )
    assert await b.claim_due(5, AT) == [] and await b.start(job, AT) is None
    clock.now += 31
    claimed = await b.claim_due(5, AT)
    assert [(r.job_id, r.attempts, r.last_error) for r in claimed] == [(job, 2, "Zammad 503")]
    await closed(a, b)


async def test_an_operators_retry_wakes_the_claimers_for_a_waiting_job_and_a_webhook_does_not(
    postgres_url: str,
) -> None:
    """The job waits 600 s for its next attempt. A webhook merged into it sends no NOTIFY and
    leaves it unclaimable; an operator's retry through replica a makes it due now and wakes
    replica b's claimer (``work_available``), which claims it as attempt 1 of a fresh count."""
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    job = await new_job(a, 9)
    await a.start(job, AT)
    await a.retry_later(
        job, at=clock.now + 600, error="Zammad 503", step="fetch ticket", classification="Transient"
    )
    await asyncio.wait_for(b.work_available.wait(), 5)  # the new job's NOTIFY (or the LISTEN's start)
    await asyncio.sleep(0.3)
    b.work_available.clear()
    await a.accept(JobRequest(9))
    await asyncio.sleep(0.5)
    assert not b.work_available.is_set()
    assert await b.claim_due(5, AT) == []
    await a.accept(JobRequest(9, reason="retry"))
    await asyncio.wait_for(b.work_available.wait(), 5)
    claimed = await b.claim_due(5, AT)
    assert [(r.job_id, r.attempts, r.next_attempt_at, r.archived_at) for r in claimed] == [(job, 1, None, AT)]
    await closed(a, b)


async def test_a_claim_made_while_leases_are_renewed_is_not_taken_for_lost(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = replica(postgres_url)
    await opened(a)
    lost: list[LeaseLost] = []
    a.on_lease_lost = lost.append
    first = await new_job(a, 1)
    await a.start(first, AT)
    second = await new_job(a, 2)
    plain_call = a.database.call
    claimed: list[object] = []

    async def claim_in_between(fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        result = await plain_call(fn)  # the renewal's UPDATE has run; a claim lands before it is judged
        if not claimed:
            claimed.append(None)
            claimed.append(await a.start(second, AT))
        return result

    monkeypatch.setattr(a.database, "call", claim_in_between)
    await a.renew_leases()
    monkeypatch.undo()
    assert claimed[1] is not None and lost == []
    await a.finish(second, state=JobState.DONE, result="archived")  # its fence is still known
    await closed(a)


async def test_a_job_ended_here_while_a_renewal_runs_is_not_reported_lost(postgres_url: str) -> None:
    """The renewal's statement runs after this replica's own ``finish`` committed (a skipped
    run: nothing to report, the lease given back) but before ``finish`` returned: the job is
    not taken for lost (that would cancel a run that belongs here); a job whose fence moved
    on is."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    lost: list[LeaseLost] = []
    a.on_lease_lost = lost.append
    ended = await new_job(a, 1)
    await a.start(ended, AT)
    taken = await new_job(a, 2)
    await a.start(taken, AT)
    conn = await asyncpg.connect(postgres_url)
    try:
        # What a's finish commits for a skipped run, before a has seen its answer.
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET state = 'done', reported = true, lease_owner = NULL WHERE job_id = $1",
            ended,
        )
        # What b's reclaim commits for the other job: the fence moves on.
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET fence = fence + 1, lease_owner = 'b' WHERE job_id = $1", taken
        )
    finally:
        await conn.close()
    await a.renew_leases()
    assert [(e.job_id, e.taken_over) for e in lost] == [(taken, True)]
    await closed(a, b)


async def test_a_lost_lease_blames_another_replica_only_when_one_holds_the_job(postgres_url: str) -> None:
    """Replica a is cut off for longer than the lease while it runs a job; nobody else takes
    the job, and a's own claimer reclaims it. One of its two runs ends it; the other then finds
    no claim: ``LeaseLost``, but not another replica's doing, and its message does not say so.
    When another replica holds the job, it does (also once this replica has forgotten it)."""
    generic = (
        "the job's lease was lost (it may have been taken over by another replica or "
        "reclaimed after an outage)"
    )
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    stall(a)
    own = await new_job(a, 1)
    await a.start(own, AT)
    clock.now += 11
    assert [(r.job_id, r.attempts) for r in await a.claim_due(5, AT)] == [(own, 2)]
    await a.finish(own, state=JobState.DONE, result="archived")  # one run ends it, nothing to report
    writes: list[Callable[[str], Awaitable[Any]]] = [
        a.confirm_lease,
        lambda job: a.finish(job, state=JobState.DONE, result="archived"),
        lambda job: a.retry_later(job, at=0, error="e", step="s", classification="Transient"),
    ]
    for write in writes:
        with pytest.raises(LeaseLost) as caught:
            await write(own)
        assert str(caught.value) == f"job {own}: {generic}"
        assert not caught.value.taken_over
    taken = await new_job(a, 2)
    await a.start(taken, AT)
    clock.now += 11
    assert [r.job_id for r in await b.claim_due(5, AT)] == [taken]
    for write in writes:
        with pytest.raises(LeaseLost) as caught:
            await write(taken)
        assert str(caught.value) == f"job {taken}: the job's lease was taken over by another replica"
        assert caught.value.taken_over
    await closed(a, b)


async def test_renewals_keep_only_the_jobs_this_replica_works_on(postgres_url: str) -> None:
    """A job that names this replica as its lease owner but that it does not track (a claim
    committed whose answer never arrived) is not renewed: its lease runs out and another
    replica reclaims it, while the tracked job's lease holds."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    tracked = await new_job(a, 1)
    await a.start(tracked, AT)
    orphan = await new_job(a, 2)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET state = 'running', attempts = 1, fence = fence + 1, "
            "lease_owner = $2, lease_expires_at = $3, started_at = $4 WHERE job_id = $1",
            orphan,
            a.leases.owner,
            clock.now + 10,
            clock.now,
        )
    finally:
        await conn.close()
    for _ in range(3):  # 15 s of renewals every 5 s
        clock.now += 5
        await a.renew_leases()
    claimed = await b.claim_due(5, AT)
    assert [r.job_id for r in claimed] == [orphan]
    await closed(a, b)


async def test_confirm_lease_extends_a_held_lease_and_refuses_a_lost_one(postgres_url: str) -> None:
    """``confirm_lease`` (awaited before a write to Zammad) extends the lease of a job this
    replica holds, also after the lease ran out as long as nobody reclaimed it; once another
    replica took the job over, it raises ``LeaseLost`` and the job is forgotten here."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await new_job(a, 3)
    await a.start(job, AT)
    clock.now += 11  # the lease ran out, but nobody took the job: confirming takes it back
    await a.confirm_lease(job)
    clock.now += 9
    assert await b.claim_due(5, AT) == []  # extended by the confirmation
    clock.now += 2
    assert len(await b.claim_due(5, AT)) == 1
    with pytest.raises(LeaseLost):
        await a.confirm_lease(job)
    with pytest.raises(LeaseLost):  # forgotten: no database call needed to know
        await a.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    # The report's lease is confirmed alike.
    await b.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    await b.confirm_lease(job)
    await b.mark_reported(job)
    with pytest.raises(LeaseLost):  # delivered: nothing held any more
        await b.confirm_lease(job)
    await closed(a, b)


async def test_release_all_gives_back_at_once_what_this_replica_holds(postgres_url: str) -> None:
    """What ``close`` does first: running jobs back to pending (the attempt does not count) and
    undelivered reports claimable by anyone, without waiting for the lease; this replica then
    holds nothing and its late writes are refused."""
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    running = await new_job(a, 1)
    await a.start(running, AT)
    reporting = await new_job(a, 2)
    await a.start(reporting, AT)
    await a.finish(reporting, state=JobState.DONE, result="archived", report=REPORT)
    mine = await new_job(b, 3)
    await b.start(mine, AT)  # another replica's claim is left alone
    await a.leases.release_all()
    assert a.leases.fences == {}
    with pytest.raises(LeaseLost):
        a.leases.fence(running)
    assert [(r.job_id, r.attempts) for r in await b.claim_due(5, AT)] == [(running, 1)]
    assert [r.job_id for r in await b.claim_reports(5)] == [reporting]
    await b.confirm_lease(mine)  # b still holds its own claim
    await closed(a, b)


async def test_claims_take_at_most_the_limit_oldest_first(postgres_url: str) -> None:
    clock = Clock()
    a = replica(postgres_url, clock)
    await opened(a)
    jobs = []
    for ticket in (1, 2, 3):
        jobs.append(await new_job(a, ticket))
        clock.now += 1
    assert await a.claim_due(0, AT) == []
    assert [r.job_id for r in await a.claim_due(2, AT)] == jobs[:2]
    assert a.pending_count == 1
    assert [r.job_id for r in await a.claim_due(2, AT)] == jobs[2:]
    assert set(a.leases.fences) == set(jobs)
    await closed(a)


async def test_check_clock_warns_once_while_the_replica_is_off_the_servers_clock(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Within a quarter lease of the server's clock: quiet. 20 s behind (lease 60 s): one
    warning, however often it is checked; back in range: one info line."""
    offset = [0.0]
    a = replica(postgres_url, lambda: time.time() + offset[0], lease=60)
    await opened(a)
    caplog.set_level("INFO", logger="app.jobs.store")
    caplog.clear()
    assert abs(await a.leases.check_clock()) < 1
    offset[0] = -20
    for _ in range(3):
        assert -21 < await a.leases.check_clock() < -19
    offset[0] = 0
    await a.leases.check_clock()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "clock" in r.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "s behind the database server's" in lines[0][1] and "within 15 s" in lines[0][1], lines
    await closed(a)


async def test_a_held_job_shows_its_lease_to_every_replica_and_reads_expired_once_it_ran_out(
    postgres_url: str,
) -> None:
    """What ``/jobs`` shows (the store's record, :meth:`JobRecord.describe`): the holder's
    ``lease_owner`` as stored (``host:pid:random``, nothing of the URL's password) and
    ``lease_expires_at``, ``expired`` once the reading replica's clock is past it — a dead
    replica's job told apart from a live one before anybody reclaims it."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await new_job(a, 11)
    pending = await b.latest(11)
    assert pending is not None and pending.lease is None and "lease" not in pending.describe()
    await a.start(job, AT)
    owner = a.leases.owner
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{6}}", owner), owner
    password = urlsplit(postgres_url).password
    assert password and password not in owner
    running = await b.latest(11)
    assert running is not None and running.describe()["lease"] == {
        "owner": owner,
        "expires_at": clock.now + 10,
        "expired": False,
    }
    assert (await b.get(job)) == running  # by id too
    clock.now += 5
    await a.renew_leases()  # a lives: its renewal moves the expiry on
    assert (await b.latest(11)).lease == Lease(owner, clock.now + 10, False)  # type: ignore[union-attr]
    stall(a)  # a dies
    clock.now += 10  # exactly at the expiry: not yet run out (claims compare the same way)
    assert (await b.latest(11)).lease == Lease(owner, clock.now, False)  # type: ignore[union-attr]
    clock.now += 1
    orphaned = await b.latest(11)
    assert orphaned is not None and orphaned.state == JobState.RUNNING
    assert orphaned.describe()["lease"] == {"owner": owner, "expires_at": clock.now - 1, "expired": True}
    # b reclaims it: the lease names b; its report, undelivered, is held by b too; delivered: none.
    assert [r.job_id for r in await b.claim_due(5, AT)] == [job]
    assert (await b.latest(11)).lease == Lease(b.leases.owner, clock.now + 10, False)  # type: ignore[union-attr]
    await b.finish(job, state=JobState.DONE, result="archived", report=REPORT)
    reporting = await a.latest(11)
    assert reporting is not None and reporting.state == JobState.DONE and not reporting.reported
    assert reporting.lease == Lease(b.leases.owner, clock.now + 10, False)
    await b.mark_reported(job)
    done = await a.latest(11)
    assert done is not None and done.lease is None and "lease" not in done.describe()
    await closed(a, b)


async def test_reclaims_after_a_lease_ran_out_are_counted_by_kind_and_given_back_work_is_not(
    postgres_url: str,
) -> None:
    """``on_reclaimed`` (the ``jobs_reclaimed_total{kind}`` counter): a dead replica's running
    job (``run``) and undelivered report (``report``) taken over once their leases ran out;
    what a replica gave back at its shutdown (``release_all``) is taken over uncounted."""
    clock = Clock()
    a, b, c = (replica(postgres_url, clock, lease=10) for _ in range(3))
    await opened(a, b, c)
    counted: list[tuple[str, int]] = []
    b.on_reclaimed = lambda kind, count: counted.append((kind, count))
    dead_run, dead_report = await new_job(a, 21), await new_job(a, 22)
    given_run, given_report = await new_job(c, 23), await new_job(c, 24)
    for store, job in ((a, dead_run), (a, dead_report), (c, given_run), (c, given_report)):
        assert await store.start(job, AT) is not None
    await a.finish(dead_report, state=JobState.DONE, result="archived", report=REPORT)
    await c.finish(given_report, state=JobState.DONE, result="archived", report=REPORT)
    await c.close()  # gives its run and its report back at once
    stall(a)  # a dies holding a run and a report
    assert {r.job_id for r in await b.claim_due(5, AT)} == {given_run}
    assert {r.job_id for r in await b.claim_reports(5)} == {given_report}
    assert counted == []
    clock.now += 11
    await b.renew_leases()  # b lives: its own claims hold
    assert {r.job_id for r in await b.claim_due(5, AT)} == {dead_run}
    assert {r.job_id for r in await b.claim_reports(5)} == {dead_report}
    assert counted == [("run", 1), ("report", 1)]
    await closed(a, b)
