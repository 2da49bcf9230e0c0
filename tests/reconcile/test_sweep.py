"""One reconciliation pass with real parts: the Zammad simulator's search, the real client, and a
real job store (SQLite file or PostgreSQL, ``[sqlite]``/``[postgres]``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from app.errors import ZammadApiError
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRequest
from app.jobs.sqlite import SqliteJobStore
from app.jobs.store import JobStore
from app.observability.metrics import Metrics
from app.reconcile.decisions import Finding, ReconcileReason
from app.reconcile.sweep import Reconciler, tag_query
from app.zammad.client import ZammadClient
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import API_TOKEN, JobStoreBackend

TAG = ReconcileReason.TRIGGER_TAG
STALE = ReconcileReason.STALE_PROCESSING


def make_store(job_store: JobStoreBackend, max_pending: int = 100) -> JobStore:
    if job_store.url is None:
        return SqliteJobStore(
            job_store.state_dir / "jobs.sqlite3", delivery_ttl_seconds=3600, max_pending=max_pending
        )
    return PostgresJobStore(job_store.url, delivery_ttl_seconds=3600, max_pending=max_pending)


@pytest.fixture
async def zammad(simulator: ZammadSimulator) -> AsyncIterator[ZammadClient]:
    assert simulator.base_url is not None
    async with aiohttp.ClientSession() as session:
        yield ZammadClient(session, simulator.base_url, API_TOKEN, timeout_seconds=5)


def reconciler(zammad: ZammadClient, store: JobStore, **kw) -> Reconciler:
    return Reconciler(
        zammad,
        store,
        store.accept_many,
        trigger_tag="pdf:sign",
        stale_seconds=900,
        page_pause_seconds=0,
        **kw,
    )


def searches(sim: ZammadSimulator) -> list[str]:
    return [r.query["query"] for r in sim.requests if r.path == "/api/v1/tickets/search"]


async def test_a_pass_queues_lost_tickets_as_a_webhook_would(simulator, zammad, job_store):
    # 4711 carries pdf:sign (its webhook was lost); 5001 was left in pdf:processing long ago
    # (the simulator's updated_at is of 2025); 5002 is signed; 5003 has a pending job already.
    simulator.clone_ticket(4711, 5001, tags=["pdf:processing"])
    simulator.clone_ticket(4711, 5002, tags=["pdf:signed"])
    simulator.clone_ticket(4711, 5003, tags=["pdf:sign"])
    store = make_store(job_store)
    await store.open()
    try:
        pending = await store.accept(JobRequest(5003, delivery_id="webhook-5003"))
        report = await reconciler(zammad, store).run_once()

        assert searches(simulator) == [tag_query("pdf:sign"), tag_query("pdf:processing")]
        assert searches(simulator) == ['tags:"pdf:sign"', 'tags:"pdf:processing"']
        assert report.queue == [Finding(4711, TAG), Finding(5001, STALE)]
        assert [(s.ticket_id, s.why) for s in report.skipped] == [(5003, "job pending")]
        stamp = int(report.started_at)
        for ticket_id in (4711, 5001):
            job = await store.latest(ticket_id)
            assert job is not None and report.admissions[ticket_id].job_id == job.job_id
            assert (job.state, job.reason, job.delivery_id) == (
                "pending",
                "reconcile",
                f"reconcile:{ticket_id}:{stamp}",
            )
        assert (await store.latest(5003)).job_id == pending.job_id
        assert report.queued() == {TAG: 1, STALE: 1}

        # The next pass: 4711's job is pending now (skipped); 5001 is still stale in Zammad, and
        # its request merges into the pending job (the store's per-ticket rule), no new job.
        later = int(report.started_at) + 300
        again = await reconciler(zammad, store, clock=lambda: later + 0.1).run_once()
        assert [f.ticket_id for f in again.queue] == [5001]
        assert (again.admissions[5001].status, again.admissions[5001].new) == ("coalesced", False)
        assert again.queued() == {TAG: 0, STALE: 0}  # no new job: not counted
        assert again.lines()[-1] == "1 to queue (0 new jobs), 0 deferred, 2 skipped"  # 4711, 5003
        # A pass in the same second as another (two replicas, the command line) brings the same
        # delivery ids: the store answers them as duplicates.
        twin = await reconciler(zammad, store, clock=lambda: later + 0.6).run_once()
        assert twin.admissions[5001].status == "duplicate"
        assert len(await store.latest_jobs([4711, 5001, 5003])) == 3
        assert store.pending_count == 3
    finally:
        await store.close()


async def test_a_dry_run_queues_nothing(simulator, zammad, job_store):
    store = make_store(job_store)
    await store.open()
    try:
        report = await reconciler(zammad, store).run_once(dry_run=True)
        assert report.queue == [Finding(4711, TAG)] and report.admissions == {}
        assert await store.latest(4711) is None
        assert "would queue" in report.lines()[2] and "4711" in report.lines()[2]
        assert report.lines()[-1] == "1 to queue (dry run: none queued), 0 deferred, 0 skipped"
    finally:
        await store.close()


async def test_the_sweep_leaves_a_tenth_of_the_queue_to_webhooks(simulator, zammad, job_store):
    for n in range(1, 12):
        simulator.clone_ticket(4711, 5000 + n, tags=["pdf:sign"])
    store = make_store(job_store, max_pending=10)
    await store.open()
    try:
        report = await reconciler(zammad, store).run_once()
        assert len(report.queue) == 12
        assert len(report.admissions) == 9  # 10 places, one kept for webhooks
        assert [f.ticket_id for f in report.deferred] == [5009, 5010, 5011]
        assert store.pending_count == 9
        assert any(line.startswith("deferred") and "5011" in line for line in report.lines())
        # A webhook still gets in.
        assert (await store.accept(JobRequest(9999, delivery_id="w"))).status == "accepted"
    finally:
        await store.close()


async def test_turns_are_counted_in_the_metrics(simulator, zammad, job_store):
    store = make_store(job_store)
    metrics = Metrics()
    await store.open()
    try:
        sweeper = reconciler(zammad, store, metrics=metrics, interval_seconds=300)
        assert await sweeper.sweep() is not None
        simulator.fail("GET", r"^/api/v1/tickets/search$", 500, times=1)
        with pytest.raises(ZammadApiError):
            await sweeper.sweep(min_interval_seconds=0)
        text = metrics.exposition()[0].decode()
        assert 'zammad_pdf_archiver_reconcile_runs_total{status="completed"} 1.0' in text
        assert 'zammad_pdf_archiver_reconcile_runs_total{status="failed"} 1.0' in text
        assert 'zammad_pdf_archiver_reconcile_tickets_total{reason="trigger_tag"} 1.0' in text
        assert 'zammad_pdf_archiver_reconcile_tickets_total{reason="stale_processing"} 0.0' in text
        last = metrics.reconcile_last_run_timestamp_seconds._value.get()
        assert last > 1.7e9
    finally:
        await store.close()


@pytest.mark.postgres_only
async def test_two_replicas_do_not_both_sweep(simulator, zammad, job_store):
    a, b = make_store(job_store), make_store(job_store)
    await asyncio.gather(a.open(), b.open())
    try:
        simulator.delay("GET", r"^/api/v1/tickets/search$", 0.3)  # the passes overlap
        metrics_a, metrics_b = Metrics(), Metrics()
        reports = await asyncio.gather(
            reconciler(zammad, a, metrics=metrics_a, interval_seconds=300).sweep(),
            reconciler(zammad, b, metrics=metrics_b, interval_seconds=300).sweep(),
        )
        assert sum(r is not None for r in reports) == 1
        assert len(searches(simulator)) == 2  # one pass: two searches, one page each
        # Within half an interval of that pass, neither replica sweeps again.
        assert await reconciler(zammad, b, interval_seconds=300).sweep() is None
        job = await a.latest(4711)
        assert job is not None and job.reason == "reconcile"
        skipped = [m.reconcile_runs_total.labels("skipped")._value.get() for m in (metrics_a, metrics_b)]
        assert sorted(skipped) == [0, 1]
    finally:
        await asyncio.gather(a.close(), b.close())
