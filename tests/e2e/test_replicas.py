"""Two or three service processes on one PostgreSQL job store, tried as an operator would.

Every replica is a real ``python -m app serve`` (see :mod:`tests.e2e.replicas`); they share
the test's PostgreSQL database (``JOB_STORE_URL``), the Zammad simulator and ``STORAGE_ROOT``,
with a short lease (``JOB_LEASE_SECONDS`` = 5) so a dead replica's job is reclaimed in seconds.
Whatever happens to the replicas — webhooks spread over them, the same delivery on two at
once, SIGKILL mid-run or mid-report, a replica frozen (SIGSTOP) or cut off from the database
past its lease, a database outage, SIGTERM, retries, a dead job — each ticket ends
``pdf:signed`` with exactly one archive and exactly one "PDF archived" note, nothing is left
pending or running, and ``/jobs/{ticket_id}`` answers the same on every replica. The soak
(``slow``, about 40 s) does it with 3 replicas, 300 webhooks, two SIGKILLs and a restart.

Figures (reclaim times, the soak's throughput) are printed: ``pytest -s`` shows them.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.config_fingerprint import APPLICATION_PREFIX
from app.jobs.pg_replicas import REPLICA_CONNECTIONS
from app.workflow.notes import FAILURE_SUBJECT, SUCCESS_SUBJECT
from tests.e2e.replicas import (
    SIGNED_TAGS,
    Cluster,
    Replica,
    archives,
    assert_archived_once,
    post_until_accepted,
    signed,
    small_tickets,
    wait_for,
)

RECLAIM_SLACK_SECONDS = 3.0
"""Past the lease: the claimer's poll (1 s), the renewal period's offset, a loaded machine."""
STOP_MARGIN_SECONDS = 5.0
"""Past ``SHUTDOWN_GRACE_SECONDS``: Hypercorn's own shutdown, the store's close, process exit."""


@pytest.fixture
async def cluster(simulator, dev_pki, postgres_url, tmp_path):
    """``cluster(count, **env)``: a :class:`Cluster` of ``count`` replicas (not started) on this
    test's database; every replica is killed at the end."""
    made: list[Cluster] = []

    def make(count: int, **env: str) -> Cluster:
        made.append(Cluster.create(simulator, dev_pki, postgres_url, tmp_path, count, **env))
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def _done(c: Cluster, ticket_ids: list[int]) -> bool:
    return signed(c.simulator, ticket_ids) == len(ticket_ids) and not await c.unfinished()


async def _running_job(c: Cluster, ticket_id: int) -> dict[str, Any]:
    rows = [j for j in await c.jobs(ticket_id) if j["state"] == "running"]
    assert len(rows) == 1, rows
    return rows[0]


def _requested(c: Cluster, method: str, path: str) -> bool:
    return any(r.method == method and r.path == path for r in c.simulator.requests)


# -- webhooks spread over the replicas -----------------------------------------------------------


async def test_webhooks_spread_over_three_replicas_give_one_job_archive_and_note_per_ticket(
    simulator, cluster
):
    """Each ticket's webhook reaches two replicas at the same moment with the same delivery id
    (one answers accepted, the other duplicate: one job); every other ticket gets a second
    webhook with another delivery id on a third replica (coalesced, or a follow-up that
    skips). One archive and one note per ticket; ``/jobs`` answers alike on every replica."""
    ids = small_tickets(simulator, 9, 610_000, "61")
    c = cluster(3)
    await c.start()
    r = c.replicas

    async with aiohttp.ClientSession() as session:
        pairs = await asyncio.gather(
            *(
                asyncio.gather(
                    r[i % 3].post(t, f"spread-{t}", session), r[(i + 1) % 3].post(t, f"spread-{t}", session)
                )
                for i, t in enumerate(ids)
            )
        )
        seconds = await asyncio.gather(
            *(r[(i + 2) % 3].post(t, f"spread-{t}-b", session) for i, t in enumerate(ids) if i % 2 == 0)
        )
    for t, pair in zip(ids, pairs, strict=True):
        assert [status for status, _ in pair] == [202, 202], (t, pair)
        assert sorted(answer["status"] for _, answer in pair) == ["accepted", "duplicate"], (t, pair)
    assert all(
        status == 202 and answer["status"] in ("accepted", "coalesced") for status, answer in seconds
    ), seconds

    await wait_for(lambda: _done(c, ids), 120, "every ticket signed and reported")

    archivers: collections.Counter[str] = collections.Counter()
    delivery_jobs = {
        row["delivery_id"]: row["job_id"]
        for row in await c.fetch("SELECT delivery_id, job_id FROM zammad_pdf_archiver.deliveries")
    }
    assert len(delivery_jobs) == len(ids) + len(seconds)
    async with aiohttp.ClientSession() as session:
        for t in ids:
            job_id = assert_archived_once(simulator, c.storage, t, delivery_jobs[f"spread-{t}"])
            jobs = await c.jobs(t)
            assert sum(1 for j in jobs if j["delivery_id"] == f"spread-{t}") == 1, jobs
            assert all(j["state"] == "done" and j["reported"] for j in jobs), jobs
            # A second job only as a follow-up or a later webhook, and it left the ticket alone.
            assert all(j["result"] == "skipped: already_signed" for j in jobs if j["job_id"] != job_id), jobs
            (by,) = c.archived_by(job_id)
            archivers[by] += 1
            status = await c.assert_same_status_everywhere(t, session)
            assert (status["job_id"], status["state"]) == (jobs[-1]["job_id"], "done")
    print(f"\n[replicas] archives by replica: {dict(archivers)}")
    assert len(archivers) >= 2, archivers  # the replicas share the work


# -- SIGKILL: a dead replica's job is reclaimed ---------------------------------------------------


async def test_sigkill_mid_run_the_job_is_reclaimed_by_another_replica_within_the_lease(simulator, cluster):
    """The replica running a ticket's job is SIGKILLed while it fetches the articles: the other
    replica claims the job once the lease has run out (not before: the lease held), runs it
    again, and the ticket ends with one archive and one note."""
    c = cluster(2)
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 120)
    assert (await c.replicas[0].post(4711, "kill-mid-run"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    simulator.clear_faults()  # the dead replica's request stays held; the next run is served
    job = await _running_job(c, 4711)
    victim = c.owner(job["lease_owner"])
    assert victim is not None, job
    (survivor,) = [r for r in c.replicas if r is not victim]
    killed_at = await victim.kill()

    reclaimed = await c.wait_reclaimed(job["job_id"], job["fence"], c.lease_seconds + 15)
    reclaim_seconds = reclaimed["started_at"] - killed_at
    print(
        f"\n[replicas] SIGKILL mid-run: reclaimed {reclaim_seconds:.2f} s after the kill "
        f"(lease {c.lease_seconds:g} s)"
    )
    assert survivor.owns(reclaimed["lease_owner"]), reclaimed
    assert 0.7 * c.lease_seconds <= reclaim_seconds <= c.lease_seconds + RECLAIM_SLACK_SECONDS, (
        reclaim_seconds
    )

    await wait_for(lambda: _done(c, [4711]), 60, "the ticket signed and reported")
    row = await c.job(job["job_id"])
    assert (row["state"], row["attempts"], row["reported"]) == ("done", 2, True)
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])
    assert c.archived_by(job["job_id"]) == [survivor.name]
    assert len(await c.jobs(4711)) == 1

    await victim.start()  # back again: it answers as the survivor does
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"], status["attempts"]) == (job["job_id"], "done", 2)


async def test_sigkill_mid_report_the_report_is_taken_over_and_the_note_is_not_posted_twice(
    simulator, cluster
):
    """The replica is SIGKILLed after its note reached Zammad but before the answer came back
    (the report is undelivered in the store): the other replica takes the report over once the
    lease has run out, finds the note by its job id, and posts no second one."""
    c = cluster(2)
    await c.start()
    simulator.delay("POST", r"^/api/v1/ticket_articles$", 120, after=True)
    assert (await c.replicas[1].post(4711, "kill-mid-report"))[0] == 202
    await wait_for(lambda: len(simulator.notes(4711)) == 1, 60, "the note")
    simulator.clear_faults()
    (job,) = await c.jobs(4711)
    assert (job["state"], job["reported"]) == ("done", False), job
    victim = c.owner(job["lease_owner"])
    assert victim is not None, job
    (survivor,) = [r for r in c.replicas if r is not victim]
    killed_at = await victim.kill()

    reclaimed = await c.wait_reclaimed(job["job_id"], job["fence"], c.lease_seconds + 15)
    reclaim_seconds = time.time() - killed_at
    print(
        f"\n[replicas] SIGKILL mid-report: report taken over {reclaim_seconds:.2f} s after the kill "
        f"(lease {c.lease_seconds:g} s)"
    )
    assert survivor.owns(reclaimed["lease_owner"]) or reclaimed["reported"], reclaimed
    assert 0.7 * c.lease_seconds <= reclaim_seconds <= c.lease_seconds + RECLAIM_SLACK_SECONDS, (
        reclaim_seconds
    )

    await wait_for(lambda: _done(c, [4711]), 60, "the report delivered")
    row = await c.job(job["job_id"])
    assert (row["state"], row["attempts"], row["reported"], row["report_error"]) == ("done", 1, True, None)
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])  # one note
    posts = [r for r in simulator.requests if r.method == "POST" and r.path == "/api/v1/ticket_articles"]
    assert len(posts) == 1
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"], status["reported"]) == (job["job_id"], "done", True)


# -- a frozen replica: alive, but its lease ran out ---------------------------------------------

FREEZE_SECONDS = 10.0
"""How long a replica is SIGSTOPped: twice the lease, time for another replica to take over."""


async def _wake_after_the_freeze(sleeper, job: dict, frozen_at: float) -> None:
    """Thaw ``sleeper`` once its freeze of :data:`FREEZE_SECONDS` is over and wait until it has
    logged about ``job``'s lease (its renewal finds the lease gone), then give it 3 s to do
    whatever it does next."""
    await asyncio.sleep(max(0.0, frozen_at + FREEZE_SECONDS - time.time()))
    sleeper.thaw()
    await wait_for(
        lambda: any(
            rec.get("job_id") == job["job_id"] and "lease" in rec.get("msg", "")
            for rec in sleeper.log_records()
        ),
        30,
        "the sleeper to notice",
    )
    await asyncio.sleep(3)


async def test_a_replica_frozen_mid_run_past_its_lease_writes_nothing_when_it_wakes(simulator, cluster):
    """The replica running a ticket's job is frozen (SIGSTOP: a VM pause, or to the others a
    network cut) while Zammad answers its article fetch; the other replica reclaims the job
    after the lease and archives the ticket. When the frozen replica wakes, its run finds the
    lease gone and must leave the ticket alone: no trigger tag put back on a signed ticket, no
    ``pdf:processing`` left, no second archive or note."""
    c = cluster(2, ZAMMAD_TIMEOUT_SECONDS="30")  # its fetch must not time out while it sleeps
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 2)
    assert (await c.replicas[0].post(4711, "freeze-mid-run"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    job = await _running_job(c, 4711)
    sleeper = c.owner(job["lease_owner"])
    assert sleeper is not None, job
    (other,) = [r for r in c.replicas if r is not sleeper]
    frozen_at = sleeper.freeze()
    simulator.clear_faults()  # the sleeper's fetch is answered after 2 s; the next run's at once

    reclaimed = await c.wait_reclaimed(job["job_id"], job["fence"], c.lease_seconds + 15)
    assert other.owns(reclaimed["lease_owner"]), reclaimed
    await wait_for(lambda: _done(c, [4711]), 60, "the ticket signed and reported by the other replica")
    await _wake_after_the_freeze(sleeper, job, frozen_at)

    row = await c.job(job["job_id"])
    assert (row["state"], row["reported"], row["attempts"]) == ("done", True, 2), row
    assert c.archived_by(job["job_id"]) == [other.name]
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])  # tags exactly signed + the ticket's own
    assert await c.unfinished() == []


async def test_a_replica_frozen_mid_report_past_its_lease_posts_no_second_note(simulator, cluster):
    """The replica delivering a job's report is frozen while Zammad takes its ``pdf:signed``
    tag; the other replica takes the report over after the lease and posts the note. When the
    frozen replica wakes, it must not post the note a second time."""
    c = cluster(2, ZAMMAD_TIMEOUT_SECONDS="30")
    await c.start()
    simulator.delay("POST", r"^/api/v1/tags/add$", 2, match_body="pdf:signed")
    assert (await c.replicas[1].post(4711, "freeze-mid-report"))[0] == 202
    await wait_for(
        lambda: any(r.method == "POST" and b"pdf:signed" in r.body for r in simulator.requests),
        60,
        "the report delivery",
    )
    (job,) = await c.jobs(4711)
    assert (job["state"], job["reported"]) == ("done", False), job
    sleeper = c.owner(job["lease_owner"])
    assert sleeper is not None, job
    (other,) = [r for r in c.replicas if r is not sleeper]
    frozen_at = sleeper.freeze()
    simulator.clear_faults()

    await c.wait_reclaimed(job["job_id"], job["fence"], c.lease_seconds + 15)
    await wait_for(lambda: _done(c, [4711]), 60, "the report delivered by the other replica")
    assert len(simulator.notes(4711)) == 1
    await _wake_after_the_freeze(sleeper, job, frozen_at)

    row = await c.job(job["job_id"])
    assert (row["state"], row["reported"], row["attempts"]) == ("done", True, 1), row
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])  # one note
    assert await c.unfinished() == []


# -- a network cut between one replica and the database -----------------------------------------


async def test_a_replica_cut_off_from_the_database_loses_its_job_and_writes_nothing_twice(simulator, cluster):
    """The replica running a job is cut off from PostgreSQL (it still reaches Zammad and the
    storage): its readiness fails, and once the lease ran out the other replica reclaims the
    job and archives the ticket. The cut-off run goes on, finds that archive and cannot record
    its end; when the network is back it learns the job is no longer its own and records
    nothing. One archive, one note, the tags of a signed ticket, the job done."""
    c = cluster(2, ZAMMAD_TIMEOUT_SECONDS="30")  # the cut-off run's slow fetch must not time out
    cut_off, other = c.replicas
    link = await c.link(cut_off)
    await cut_off.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 8)
    assert (await cut_off.post(4711, "network-cut"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    simulator.clear_faults()
    job = await _running_job(c, 4711)
    assert cut_off.owns(job["lease_owner"]), job
    await other.start()
    cut_at = time.time()
    link.cut()

    async def ready(replica: Replica) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{replica.url}/healthz?deep=true") as resp,
        ):
            return resp.status

    await wait_for(lambda: _ready_is(ready, cut_off, 503), 30, "the cut-off replica to fail its readiness")
    reclaimed = await c.wait_reclaimed(job["job_id"], job["fence"], c.lease_seconds + 15)
    print(
        f"\n[replicas] network cut: reclaimed by {other.name} {reclaimed['started_at'] - cut_at:.2f} s "
        f"after the cut (lease {c.lease_seconds:g} s)"
    )
    assert other.owns(reclaimed["lease_owner"]), reclaimed
    await wait_for(lambda: _done(c, [4711]), 60, "the ticket signed and reported by the other replica")
    # The cut-off run ends meanwhile (its fetch was answered after 8 s) and tries to record it.
    await wait_for(
        lambda: any(rec.get("msg") == "archive stored" for rec in cut_off.log_records()),
        30,
        "the cut-off run to reach its end",
    )
    await asyncio.sleep(2)
    link.mend()
    await wait_for(lambda: _ready_is(ready, cut_off, 200), 30, "the replica ready again")
    await wait_for(
        lambda: any(
            rec.get("job_id") == job["job_id"] and "lease" in rec.get("msg", "")
            for rec in cut_off.log_records()
        ),
        30,
        "the cut-off replica to learn it lost the job",
    )
    await asyncio.sleep(2)

    row = await c.job(job["job_id"])
    assert (row["state"], row["reported"], row["attempts"]) == ("done", True, 2), row
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])
    assert await c.unfinished() == []
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"]) == (job["job_id"], "done")


async def _ready_is(ready: Any, replica: Replica, status: int) -> bool:
    return await ready(replica) == status


# -- a database outage ------------------------------------------------------------------------


async def test_a_database_outage_when_a_run_ends_leaves_no_job_stuck_running(
    simulator, cluster, postgres_server
):
    """PostgreSQL goes down while a replica runs a job (the run goes on: Zammad, render, sign,
    store) and comes back a few seconds after the run tried to record its end, well within the
    lease (20 s here). The job must not stay ``running`` for ever (its replica renewing the
    lease of a run that ended): it ends ``done`` within the lease, the ticket with one archive
    and one note."""
    c = cluster(2, JOB_LEASE_SECONDS="20")
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 2)
    assert (await c.replicas[0].post(4711, "outage-at-finish"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    job = await _running_job(c, 4711)
    runner = c.owner(job["lease_owner"])
    assert runner is not None, job
    await asyncio.to_thread(postgres_server.kill)
    await wait_for(
        lambda: any(rec.get("msg") == "archive stored" for rec in runner.log_records()),
        60,
        "the archive stored while the database is down",
    )
    await asyncio.sleep(1)  # the run has tried to record its end by now
    await asyncio.to_thread(postgres_server.restart)
    back = time.monotonic()

    await wait_for(lambda: _done(c, [4711]), c.lease_seconds + 10, "the job done and reported")
    print(
        f"\n[replicas] database outage at the end of a run: done {time.monotonic() - back:.1f} s after "
        "the database came back"
    )
    row = await c.job(job["job_id"])
    assert (row["state"], row["reported"]) == ("done", True), row
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])


async def test_a_run_end_held_through_a_longer_outage_is_recorded_within_seconds_of_the_database(
    simulator, cluster, postgres_server
):
    """PostgreSQL goes down mid-run and stays down for 8 s after the replica first tried to
    record where the job stands (its end, or giving it back: the lease, 60 s, holds throughout
    and nobody reclaims the job). Once the database is back that is recorded within
    :data:`app.jobs.pool.RECORD_RETRY_MAX_SECONDS` plus slack, and the job ends — not after the
    next step of a backoff that doubled through the outage (8 s here, then 16 s, up to 60 s:
    the job stayed ``running`` that long with the database up; old code: 7.4 s)."""
    c = cluster(1, JOB_LEASE_SECONDS="60")
    await c.start()
    (replica,) = c.replicas
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 1)
    assert (await replica.post(4711, "long-outage-at-finish"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    job = await _running_job(c, 4711)
    await asyncio.to_thread(postgres_server.kill)
    await wait_for(
        lambda: any(
            rec.get("msg") == "job store unavailable; recording the job's outcome again"
            for rec in replica.log_records()
        ),
        60,
        "the run's end held back by the outage",
    )
    await asyncio.sleep(8)
    await asyncio.to_thread(postgres_server.restart)
    back = time.monotonic()

    await wait_for(lambda: _done(c, [4711]), 60, "the job done and reported")
    seconds = time.monotonic() - back
    print(
        f"\n[replicas] run end held through an 8 s outage: done {seconds:.1f} s after the database came back"
    )
    assert seconds < 4.0, seconds
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])


async def test_sigterm_during_a_database_outage_exits_within_the_grace(simulator, cluster, postgres_server):
    """PostgreSQL is down when a replica with a running job gets SIGTERM: the job cannot be
    given back, but the replica still exits (0) within the grace; once the database is back,
    the other replica reclaims the job after the lease and archives the ticket once."""
    c = cluster(2, SHUTDOWN_GRACE_SECONDS="2")
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 120)
    assert (await c.replicas[0].post(4711, "term-in-outage"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    simulator.clear_faults()
    job = await _running_job(c, 4711)
    owner = c.owner(job["lease_owner"])
    assert owner is not None, job
    await asyncio.to_thread(postgres_server.kill)
    rc, seconds = await owner.stop()
    print(
        f"\n[replicas] SIGTERM during a database outage: exit {rc} after {seconds:.2f} s "
        f"(grace {c.grace_seconds:g} s)"
    )
    await asyncio.to_thread(postgres_server.restart)
    assert rc == 0
    assert seconds <= c.grace_seconds + STOP_MARGIN_SECONDS

    await wait_for(lambda: _done(c, [4711]), 2 * c.lease_seconds + 30, "the ticket signed and reported")
    row = await c.job(job["job_id"])
    assert (row["state"], row["reported"]) == ("done", True), row
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])


# -- clocks ------------------------------------------------------------------------------------

SKEWED_CLOCK = Path(__file__).resolve().parent / "skewed_clock"
"""A folder whose ``sitecustomize`` moves ``time.time()`` of a replica (see its docstring)."""


async def test_a_replica_whose_clock_is_off_by_more_than_a_quarter_lease_warns_at_start(simulator, cluster):
    """Leases are written and compared with each replica's own clock: a replica 90 s ahead
    (lease 5 s) sees every other replica's lease as run out and takes their live jobs over.
    It says so in a warning at start, naming the skew; the replica whose clock is right does
    not warn."""
    c = cluster(2)
    skewed, right = c.replicas
    skewed.env["PYTHONPATH"] = os.pathsep.join(
        [str(SKEWED_CLOCK), *filter(None, [skewed.env.get("PYTHONPATH")])]
    )
    skewed.env["FAKE_CLOCK_SKEW_SECONDS"] = "90"
    await c.start()

    def clock_warnings(replica: Replica) -> list[dict[str, Any]]:
        return [
            r for r in replica.log_records() if "clock is" in r.get("msg", "") and r["level"] == "warning"
        ]

    await wait_for(lambda: clock_warnings(skewed), 10, "the skewed replica's clock warning")
    (warning,) = clock_warnings(skewed)
    assert 89 < warning["skew_seconds"] < 91, warning
    assert "ahead of the database server's" in warning["msg"] and "NTP" in warning["msg"], warning
    await asyncio.sleep(c.lease_seconds / 4 + 0.5)  # a second check: still one warning
    assert len(clock_warnings(skewed)) == 1
    assert clock_warnings(right) == []


# -- settings that must agree -------------------------------------------------------------------


async def test_replicas_whose_shared_settings_differ_warn_naming_the_settings(simulator, cluster, tmp_path):
    """The tester's case: one replica with another ``WORKFLOW_TRIGGER_TAG`` (it would end the
    others' jobs ``skipped: trigger_tag_absent``), one with another ``STORAGE_ROOT`` (it would
    write their archives elsewhere). Every replica warns within seconds, naming the groups of
    settings that differ and never their values; the two of the third replica's kind agree
    with each other (same settings, same signing certificate)."""
    c = cluster(4)
    usual, same, other_tag, other_root = c.replicas
    other_tag.env["WORKFLOW_TRIGGER_TAG"] = "pdf:other"
    (tmp_path / "other-root").mkdir()
    other_root.env["STORAGE_ROOT"] = str(tmp_path / "other-root")
    await c.start()

    def settings_warnings(replica: Replica) -> list[dict[str, Any]]:
        return [
            r
            for r in replica.log_records()
            if "run with settings that differ" in r.get("msg", "") and r["level"] == "warning"
        ]

    def latest(replica: Replica) -> dict[str, Any]:
        """The replica's last warning, once it has seen both other kinds (a replica that started
        before some others warned about those it saw then, and warns again when more appear)."""
        found = settings_warnings(replica)
        return found[-1] if found and len(found[-1]["other_fingerprints"]) == 2 else {}

    await wait_for(lambda: all(latest(r) for r in c.replicas), 3 * c.lease_seconds, "every replica's warning")
    counts = [len(settings_warnings(r)) for r in c.replicas]
    warning = latest(usual)
    assert warning["groups"] == ["workflow", "storage"], warning
    assert len(warning["other_fingerprints"]) == 2 and warning["addresses"] == ["127.0.0.1"], warning
    assert "WORKFLOW_TRIGGER_TAG" in warning["msg"] and "STORAGE_ROOT" in warning["msg"], warning
    assert "pdf:other" not in warning["msg"] and "other-root" not in warning["msg"], warning
    assert latest(same)["settings_fingerprint"] == warning["settings_fingerprint"]
    assert warning["settings_fingerprint"] in latest(other_tag)["other_fingerprints"]
    assert latest(other_tag)["groups"] == ["workflow", "storage"]
    assert latest(other_root)["groups"] == ["workflow", "storage"]
    await asyncio.sleep(c.lease_seconds / 4 + 0.5)  # another round: no new warning
    assert [len(settings_warnings(r)) for r in c.replicas] == counts
    names = {r["application_name"] for r in await c.fetch(REPLICA_CONNECTIONS, APPLICATION_PREFIX + "%")}
    assert len(names) == 3 and all(n.startswith("zammad-pdf-archiver/1/") for n in names), names


# -- SIGTERM: finish or give back within the grace ----------------------------------------------


async def test_sigterm_with_a_short_run_finishes_it_before_exiting(simulator, cluster):
    """SIGTERM while a run needs less than ``SHUTDOWN_GRACE_SECONDS``: the replica finishes
    the job and delivers its report, then exits (status 0) within the grace."""
    c = cluster(2, SHUTDOWN_GRACE_SECONDS="8")
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 2)
    assert (await c.replicas[0].post(4711, "term-short"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    job = await _running_job(c, 4711)
    owner = c.owner(job["lease_owner"])
    assert owner is not None, job
    rc, seconds = await owner.stop()
    exited_at = time.time()
    print(
        f"\n[replicas] SIGTERM with a 2 s run left: exit {rc} after {seconds:.2f} s "
        f"(grace {c.grace_seconds:g} s)"
    )
    assert rc == 0
    assert seconds <= c.grace_seconds + STOP_MARGIN_SECONDS

    row = await c.job(job["job_id"])
    assert (row["state"], row["attempts"], row["reported"]) == ("done", 1, True), row
    assert row["finished_at"] <= exited_at
    assert c.archived_by(job["job_id"]) == [owner.name]
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])


async def test_sigterm_with_a_long_run_gives_the_job_back_to_another_replica(simulator, cluster):
    """SIGTERM while a run needs far more than ``SHUTDOWN_GRACE_SECONDS``: the replica exits
    within the grace and gives the job back at once (the other replica claims it well before
    the lease would have run out; the interrupted attempt is not counted), and the job is
    finished there: one archive, one note."""
    c = cluster(2, SHUTDOWN_GRACE_SECONDS="2", JOB_LEASE_SECONDS="20")
    await c.start()
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 120)
    assert (await c.replicas[1].post(4711, "term-long"))[0] == 202
    await wait_for(lambda: _requested(c, "GET", "/api/v1/ticket_articles/by_ticket/4711"), 60, "the run")
    simulator.clear_faults()
    job = await _running_job(c, 4711)
    owner = c.owner(job["lease_owner"])
    assert owner is not None, job
    (other,) = [r for r in c.replicas if r is not owner]
    term_at = time.time()
    rc, seconds = await owner.stop()
    print(
        f"\n[replicas] SIGTERM with a long run: exit {rc} after {seconds:.2f} s (grace {c.grace_seconds:g} s)"
    )
    assert rc == 0
    assert seconds <= c.grace_seconds + STOP_MARGIN_SECONDS

    reclaimed = await c.wait_reclaimed(job["job_id"], job["fence"], 30)
    handover = reclaimed["started_at"] - term_at
    print(
        f"[replicas] given back and claimed by {other.name} {handover:.2f} s after the SIGTERM "
        f"(lease {c.lease_seconds:g} s)"
    )
    assert other.owns(reclaimed["lease_owner"]), reclaimed
    assert handover < c.lease_seconds / 2, handover  # given back, not left to expire

    await wait_for(lambda: _done(c, [4711]), 60, "the ticket signed and reported")
    row = await c.job(job["job_id"])
    assert (row["state"], row["attempts"], row["reported"]) == ("done", 1, True), row
    assert c.archived_by(job["job_id"]) == [other.name]
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])


# -- retries on any replica ---------------------------------------------------------------------


async def test_a_retry_sent_to_one_replica_and_its_transient_failures_retried_on_another(simulator, cluster):
    """``/retry`` is sent to one replica; the ticket's fetch fails twice (503, Transient). The
    replica that ran the first attempt is stopped while the job waits for its retry: the other
    replica runs the later attempts when they are due, and ``/jobs`` answers the same on both
    (the stopped one started again)."""
    c = cluster(2, WORKFLOW_RETRY_BASE_SECONDS="3", WORKFLOW_RETRY_MAX_SECONDS="3")
    await c.start()
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 503, times=2)
    simulator.delay("GET", r"^/api/v1/tickets/4711$", 0.5)  # each attempt runs long enough to be seen
    owners: dict[int, set[str]] = collections.defaultdict(set)  # attempt -> replicas that ran it

    async def watch() -> None:
        while True:
            for j in await c.jobs(4711):
                if j["state"] == "running" and (r := c.owner(j["lease_owner"])) is not None:
                    owners[j["attempts"]].add(r.name)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        assert await c.replicas[0].retry(4711) == (202, {"status": "accepted", "ticket_id": 4711})

        async def waiting_for_retry() -> bool:
            jobs = await c.jobs(4711)
            return len(jobs) == 1 and jobs[0]["state"] == "pending" and jobs[0]["attempts"] == 1

        await wait_for(waiting_for_retry, 60, "the first attempt to fail", interval=0.02)
        (job,) = await c.jobs(4711)
        assert (job["classification"], job["reason"]) == ("Transient", "retry"), job
        assert job["next_attempt_at"] > time.time() - 1
        (first,) = owners[1]
        first_replica = next(r for r in c.replicas if r.name == first)
        (other,) = [r for r in c.replicas if r is not first_replica]
        rc, _ = await first_replica.stop()
        assert rc == 0
        assert (await c.job(job["job_id"]))["state"] == "pending"  # it was waiting, nothing to give back

        await wait_for(lambda: _done(c, [4711]), 60, "the ticket signed and reported")
    finally:
        crashed = watcher.done() and not watcher.cancelled() and watcher.exception()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert not crashed, f"the watcher failed: {crashed!r}"
    row = await c.job(job["job_id"])
    print(f"\n[replicas] retry: attempts by replica {dict(owners)}")
    assert (row["state"], row["attempts"], row["reported"]) == ("done", 3, True), row
    assert owners[2] == {other.name} and owners[3] == {other.name}, owners
    assert c.archived_by(job["job_id"]) == [other.name]
    assert_archived_once(simulator, c.storage, 4711, job["job_id"])
    fetches = [r for r in simulator.requests if r.method == "GET" and r.path == "/api/v1/tickets/4711"]
    assert len(fetches) == 3

    await first_replica.start()
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"], status["attempts"], status["reason"]) == (
        job["job_id"],
        "done",
        3,
        "retry",
    )


async def test_a_dead_job_reads_the_same_everywhere_and_a_retry_on_another_replica_archives_it(
    simulator, cluster
):
    """Zammad fails a ticket's fetch (503) until the job has used its attempts: the job is
    dead, its error report delivered once, and ``/jobs`` says so on every replica. Zammad
    recovers; an operator's ``/retry`` on another replica archives the ticket: one archive,
    the failure note and then the success note."""
    c = cluster(3, WORKFLOW_MAX_ATTEMPTS="2", WORKFLOW_RETRY_BASE_SECONDS="1", WORKFLOW_RETRY_MAX_SECONDS="1")
    await c.start()
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 503)
    assert (await c.replicas[0].post(4711, "dead-then-retry"))[0] == 202

    async def dead_and_reported() -> bool:
        jobs = await c.jobs(4711)
        return len(jobs) == 1 and jobs[0]["state"] == "dead" and jobs[0]["reported"]

    await wait_for(dead_and_reported, 60, "the job dead and its report delivered")
    (dead,) = await c.jobs(4711)
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"], status["attempts"], status["classification"]) == (
        dead["job_id"],
        "dead",
        2,
        "Transient",
    )
    assert [n["subject"] for n in simulator.notes(4711)] == [FAILURE_SUBJECT]
    assert "pdf:error" in simulator.tags(4711)

    simulator.clear_faults()
    assert await c.replicas[2].retry(4711) == (202, {"status": "accepted", "ticket_id": 4711})
    await wait_for(lambda: _done(c, [4711]), 60, "the retry archived and reported")
    jobs = await c.jobs(4711)
    assert [(j["reason"], j["state"], j["result"]) for j in jobs] == [
        ("webhook", "dead", "failed"),
        ("retry", "done", "archived"),
    ], jobs
    number = simulator.ticket(4711)["number"]
    (pdf,) = archives(c.storage, number)
    assert sorted(simulator.tags(4711)) == SIGNED_TAGS
    notes = simulator.notes(4711)
    assert [n["subject"] for n in notes] == [FAILURE_SUBJECT, SUCCESS_SUBJECT]
    assert f"Job: {dead['job_id']}" in notes[0]["body"] and f"Job: {jobs[1]['job_id']}" in notes[1]["body"]
    status = await c.assert_same_status_everywhere(4711)
    assert (status["job_id"], status["state"], status["reason"]) == (jobs[1]["job_id"], "done", "retry")


# -- the soak ----------------------------------------------------------------------------------

SOAK_TICKETS = 150
SOAK_REPEATED = 50
"""Tickets whose two webhooks carry the same delivery id (sent to two replicas at once)."""
SOAK_LOAD_SECONDS = 24.0
"""The webhooks are sent evenly over this time (about 12 a second)."""
SOAK_INCIDENT_SPACING_SECONDS = 5.0
"""Least time between two incidents (kills, restart)."""


@pytest.mark.slow
async def test_soak_three_replicas_two_sigkills_and_a_restart_every_ticket_archived_once(simulator, cluster):
    """Three replicas, 150 tickets, 300 webhooks (each ticket twice; a third of them with the
    same delivery id twice, sent to two replicas at the same moment) spread round-robin, sent
    by a client that resends after a 5xx or a connection error as Zammad does. During the load
    two random replicas are SIGKILLed (and started again) and one is restarted (SIGTERM).

    Every ticket ends ``pdf:signed`` with exactly one archive and one "PDF archived" note;
    nothing is pending, running or undelivered in the database; every dead replica's jobs
    were reclaimed within the lease and a few seconds; the restart exited 0 within the grace.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    ids = small_tickets(simulator, SOAK_TICKETS, 700_000, "7")
    repeated = set(rng.sample(ids, SOAK_REPEATED))
    c = cluster(3)
    started = time.monotonic()
    await c.start()
    startup = time.monotonic() - started

    # What is sent: one event per webhook, the repeated deliveries as one event of two sends.
    events: list[tuple[int, str, int]] = []  # (ticket, delivery id, sends at once)
    for t in ids:
        if t in repeated:
            events.append((t, f"soak-{t}-a", 2))
        else:
            events += [(t, f"soak-{t}-a", 1), (t, f"soak-{t}-b", 1)]
    rng.shuffle(events)
    rotation = itertools.count()

    def next_url() -> str:  # a load balancer: round-robin, the dead ones included (health checks lag)
        return c.replicas[next(rotation) % len(c.replicas)].url

    accepted = 0
    sends = 0
    statuses: collections.Counter[str] = collections.Counter()
    signed_now = lambda: signed(simulator, ids)  # noqa: E731 - a one-line probe for wait_for
    actions = ["kill", "kill", "restart"]
    rng.shuffle(actions)
    while True:  # seconds into the load, far enough apart for a replica to come back in between
        moments = sorted(rng.uniform(0.1, 0.8) * SOAK_LOAD_SECONDS for _ in actions)
        if all(b - a >= SOAK_INCIDENT_SPACING_SECONDS for a, b in itertools.pairwise(moments)):
            break
    incidents: list[dict[str, Any]] = []
    reclaims: list[asyncio.Task[None]] = []
    restarting: set[str] = set()
    interval = SOAK_LOAD_SECONDS / len(events)
    load_started = time.monotonic()

    async def at(seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - load_started)))

    async def poster() -> None:
        nonlocal accepted, sends
        async with aiohttp.ClientSession() as session:

            async def one(ticket_id: int, delivery_id: str) -> None:
                nonlocal accepted, sends
                n, status = await post_until_accepted(session, next_url, ticket_id, delivery_id)
                sends += n
                statuses[status] += 1
                accepted += 1

            async def event(k: int, ticket_id: int, delivery_id: str, times: int) -> None:
                await at(k * interval)  # a steady load, not one burst
                await asyncio.gather(*(one(ticket_id, delivery_id) for _ in range(times)))

            await asyncio.gather(*(event(k, *e) for k, e in enumerate(events)))

    async def reclaim(
        victim: Replica, killed_at: float, held: dict[str, Any], record: dict[str, Any]
    ) -> None:
        row = await c.wait_reclaimed(held["job_id"], held["fence"], c.lease_seconds + 60)
        kind = "run" if held["state"] == "running" else "report"
        when = row["started_at"] if kind == "run" else time.time()
        record["reclaims"].append((kind, round(when - killed_at, 2), c.process_name(row["lease_owner"])))

    async def incident(action: str, moment: float) -> None:
        await at(moment)
        candidates = [r for r in c.live if r.name not in restarting]
        holding = [r for r in candidates if await c.held_by(r)]
        victim = rng.choice(holding or candidates)  # a replica with work in hand, when there is one
        restarting.add(victim.name)
        record: dict[str, Any] = {
            "action": action,
            "replica": f"{victim.name}#{victim.starts}",
            "at": round(moment, 1),
            "progress": (accepted, signed_now()),
            "reclaims": [],
        }
        incidents.append(record)
        if action == "kill":
            killed_at = await victim.kill()
            held = await c.held_by(victim)
            record["held"] = len(held)
            reclaims.extend(asyncio.create_task(reclaim(victim, killed_at, h, record)) for h in held)
            await asyncio.sleep(rng.uniform(0.5, 1.5))  # the orchestrator notices and starts it again
        else:
            record["exit"], record["stop_seconds"] = await victim.stop()
        await victim.start()
        restarting.discard(victim.name)

    await asyncio.gather(poster(), *(incident(a, m) for a, m in zip(actions, moments, strict=True)))
    ingest_seconds = time.monotonic() - load_started
    await wait_for(lambda: _done(c, ids), 240, "every ticket signed and every job reported", interval=0.5)
    done_seconds = time.monotonic() - load_started
    await asyncio.gather(*reclaims)

    context = f"seed {seed}, incidents {incidents}"
    jobs = await c.jobs()
    deliveries = await c.fetch("SELECT delivery_id, job_id FROM zammad_pdf_archiver.deliveries")
    results = collections.Counter(j["result"] for j in jobs)
    reasons = collections.Counter(j["reason"] for j in jobs)
    attempts = collections.Counter(j["attempts"] for j in jobs)
    archive_files = [p for p in c.storage.rglob("*.pdf") if not p.name.startswith(".")]
    notes = sum(len(simulator.notes(t)) for t in ids)
    reclaim_times = [seconds for i in incidents for _, seconds, _ in i["reclaims"]]
    logged = collections.Counter(
        rec.get("msg")
        for r in c.replicas
        for rec in r.log_records()
        if rec.get("level") in ("warning", "error", "critical")
    )
    print(
        f"\n[replicas] soak (seed {seed}): {SOAK_TICKETS} tickets, {accepted} webhooks accepted "
        f"({sends} sends, {sends - accepted} resends), answers {dict(statuses)}; "
        f"start-up {startup:.1f} s, ingest {ingest_seconds:.1f} s "
        f"({accepted / ingest_seconds:.1f} webhooks/s), "
        f"all signed and reported after {done_seconds:.1f} s"
    )
    for i in incidents:
        print(f"[replicas]   {i}")
    print(
        f"[replicas]   reclaim times (s): {sorted(reclaim_times)}; "
        f"jobs {len(jobs)} by reason {dict(reasons)}, "
        f"results {dict(results)}, attempts {dict(attempts)}; archives {len(archive_files)}, notes {notes}, "
        f"delivery ids {len(deliveries)}"
    )
    print(f"[replicas]   warnings and errors logged: {dict(logged)}")

    assert accepted == 2 * SOAK_TICKETS, context
    # No worker met an unexpected error, no report was given up, no run failed.
    assert not {"job handling failed", "report delivery failed", "report given up", "job step failed"} & set(
        logged
    ), (context, logged)
    assert [i["action"] for i in incidents].count("kill") == 2, context
    for i in incidents:
        if i["action"] == "restart":
            assert i["exit"] == 0 and i["stop_seconds"] <= c.grace_seconds + STOP_MARGIN_SECONDS, context
        else:
            assert len(i["reclaims"]) == i["held"], context
    # Under load a reclaim also waits for a free worker: a few seconds more than when idle.
    assert all(seconds <= c.lease_seconds + 4 * RECLAIM_SLACK_SECONDS for seconds in reclaim_times), context
    assert await c.unfinished() == [], context
    assert all(j["state"] == "done" and j["report_error"] is None for j in jobs), context
    assert len(deliveries) == SOAK_TICKETS + (SOAK_TICKETS - SOAK_REPEATED), context
    by_delivery = collections.Counter(j["delivery_id"] for j in jobs if j["delivery_id"])
    assert all(n == 1 for n in by_delivery.values()), context  # a delivery id never made two jobs
    for t in ids:
        job_id = assert_archived_once(simulator, c.storage, t)
        others = [j for j in jobs if j["ticket_id"] == t and j["job_id"] != job_id]
        assert all(j["result"] == "skipped: already_signed" for j in others), (t, others)
    assert len(archive_files) == SOAK_TICKETS and notes == SOAK_TICKETS, context

    async with aiohttp.ClientSession() as session:
        for t in rng.sample(ids, 30):
            await c.assert_same_status_everywhere(t, session)
    for replica in c.replicas:
        rc, seconds = await replica.stop()
        assert rc == 0 and seconds <= c.grace_seconds + STOP_MARGIN_SECONDS, (replica, rc, seconds)
