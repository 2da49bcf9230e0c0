"""The reconciliation sweep in a live service and on the command line, against the Zammad
simulator and both job stores: tickets whose webhook was lost are archived without one."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from app.jobs.store import SQLITE_FILE
from app.reconcile.decisions import Finding, ReconcileReason
from app.zammad.client import ZammadClient
from tests.conftest import API_TOKEN, REPO, JobStoreBackend

TAG = ReconcileReason.TRIGGER_TAG


async def eventually(check: Callable[[], Awaitable[bool] | bool]) -> None:
    """Poll ``check`` every 50 ms until it is true (the caller bounds it with ``asyncio.timeout``)."""
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.05)


def searches(simulator) -> list[str]:
    return [r.query["query"] for r in simulator.requests if r.path == "/api/v1/tickets/search"]


async def jobs_of(job_store: JobStoreBackend, ticket_id: int) -> list[tuple]:
    return await job_store.rows(
        "SELECT state, reason, delivery_id FROM jobs WHERE ticket_id = ? ORDER BY created_at", ticket_id
    )


async def test_lost_webhooks_and_stale_processing_are_archived_by_the_sweep(archiver, simulator, job_store):
    # 4711 carries pdf:sign, but its webhook never came; 5001 was left in pdf:processing (its
    # updated_at is of 2025) by a run that no job in our store knows of.
    simulator.clone_ticket(4711, 5001, tags=["pdf:processing"])
    service = await archiver(RECONCILE_INTERVAL_SECONDS="0.5", OBSERVABILITY_METRICS_ENABLED="true")

    async with asyncio.timeout(60):
        await eventually(lambda: all("pdf:signed" in simulator.tags(t) for t in (4711, 5001)))
    await service.wait_idle()
    assert not any(r.path.startswith("/ingest") for r in simulator.requests)
    assert searches(simulator)[:2] == ['tags:"pdf:sign"', 'tags:"pdf:processing"']
    for ticket_id in (4711, 5001):
        [(state, reason, delivery_id)] = await jobs_of(job_store, ticket_id)
        assert (state, reason) == ("done", "reconcile")
        assert delivery_id.startswith(f"reconcile:{ticket_id}:")
        [note] = simulator.notes(ticket_id)
        assert delivery_id in note["body"]  # the note says where the job came from
    assert len(list(service.storage_root.rglob("*.pdf"))) == 2

    # Later sweeps find nothing more to do.
    passes = len(searches(simulator))
    async with asyncio.timeout(30):
        await eventually(lambda: len(searches(simulator)) >= passes + 4)
    assert len(await jobs_of(job_store, 4711)) == 1

    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as resp:
        metrics = await resp.text()
    assert 'zammad_pdf_archiver_reconcile_tickets_total{reason="trigger_tag"} 1.0' in metrics
    assert 'zammad_pdf_archiver_reconcile_tickets_total{reason="stale_processing"} 1.0' in metrics
    assert 'zammad_pdf_archiver_reconcile_runs_total{status="completed"}' in metrics
    assert "zammad_pdf_archiver_reconcile_last_run_timestamp_seconds 0.0" not in metrics


async def test_a_signed_ticket_with_the_trigger_tag_is_not_queued_on_every_sweep(
    archiver, simulator, job_store
):
    # pdf:signed added by hand next to pdf:sign: the gate skips it without a write, so the
    # trigger tag stays and every sweep finds it again.
    simulator.clone_ticket(4711, 5002, tags=["pdf:signed", "pdf:sign"])
    await archiver(RECONCILE_INTERVAL_SECONDS="0.3")
    async with asyncio.timeout(30):
        await eventually(lambda: len(searches(simulator)) >= 2 * 6)  # six sweeps
    [(state, reason, _)] = await jobs_of(job_store, 5002)
    assert (state, reason) == ("done", "reconcile")
    [(result,)] = await job_store.rows("SELECT result FROM jobs WHERE ticket_id = ?", 5002)
    assert result == "skipped: already_signed"
    assert simulator.tags(5002) == ["pdf:signed", "pdf:sign"] and simulator.notes(5002) == []

    # Removing pdf:signed (to archive it again) changes the ticket: the next sweep queues it.
    async with aiohttp.ClientSession() as session:
        await ZammadClient(session, simulator.base_url, API_TOKEN, timeout_seconds=5).remove_tag(
            5002, "pdf:signed"
        )
    async with asyncio.timeout(60):
        await eventually(lambda: "pdf:signed" in simulator.tags(5002))
    assert len(await jobs_of(job_store, 5002)) == 2


async def test_a_ticket_that_failed_before_its_run_started_is_not_queued_on_every_sweep(
    archiver, simulator, job_store
):
    # Zammad refuses to read 5004's tags (403: Permanent) before the run changed any tag: the
    # report adds pdf:error and a note and leaves pdf:sign, so every sweep finds the ticket again.
    simulator.clone_ticket(4711, 5004, tags=["pdf:sign"])
    simulator.fail("GET", r"^/api/v1/tags$", 403, match_body=r"o_id=5004(&|$)")
    await archiver(RECONCILE_INTERVAL_SECONDS="0.3")
    async with asyncio.timeout(30):
        await eventually(lambda: len(searches(simulator)) >= 2 * 6)  # six sweeps
    jobs = [row[:2] for row in await jobs_of(job_store, 5004)]
    assert (jobs, len(simulator.notes(5004))) == ([("failed", "reconcile")], 1)
    assert simulator.tags(5004) == ["pdf:sign", "pdf:error"]

    # An agent fixed the cause and removed pdf:error, two minutes after the note (the store's
    # delivery time is moved back: the sweep takes a change within a minute of the report for
    # the report's own writes). That change is a request: the next sweep queues the ticket once.
    await job_store.rows("UPDATE jobs SET updated_at = updated_at - 120 WHERE ticket_id = ?", 5004)
    async with aiohttp.ClientSession() as session:
        await ZammadClient(session, simulator.base_url, API_TOKEN, timeout_seconds=5).remove_tag(
            5004, "pdf:error"
        )
    async with asyncio.timeout(60):
        await eventually(lambda: len(simulator.notes(5004)) == 2)
    passes = len(searches(simulator))
    async with asyncio.timeout(30):
        await eventually(lambda: len(searches(simulator)) >= passes + 2 * 6)  # six more sweeps
    jobs = [row[:2] for row in await jobs_of(job_store, 5004)]
    assert (jobs, len(simulator.notes(5004))) == ([("failed", "reconcile")] * 2, 2)


async def test_a_ticket_with_a_running_job_is_not_queued_again(archiver, simulator, job_store):
    service = await archiver(RECONCILE_INTERVAL_SECONDS="0")  # passes only when the test asks
    simulator.delay("GET", r"^/api/v1/tickets/4711$", 3.0)  # the run holds after tagging pdf:processing
    await service.ingest({"ticket_id": 4711}, delivery_id="d-4711")
    async with asyncio.timeout(30):
        await eventually(lambda: "pdf:processing" in simulator.tags(4711))
    # The tag change touched updated_at, as Zammad does: that alone keeps the ticket out.
    report = await service.app.state.reconciler.run_once()
    assert report.queue == []
    [skip] = report.skipped
    assert (skip.ticket_id, skip.reason) == (4711, ReconcileReason.STALE_PROCESSING)
    assert skip.why.startswith("changed ") and skip.why.endswith("(stale after 900 s)"), skip.why
    # Long ago, as if the run had stalled past the stale time: only the running job stands in the way.
    simulator.ticket_record(4711).columns["updated_at"] = "2025-03-03T08:12:44.000Z"
    report = await service.app.state.reconciler.run_once()
    assert report.queue == []
    [skip] = report.skipped
    assert (skip.ticket_id, skip.reason, skip.why) == (4711, ReconcileReason.STALE_PROCESSING, "job running")
    await service.wait_idle()
    assert [row[:2] for row in await jobs_of(job_store, 4711)] == [("done", "webhook")]


async def test_a_dry_run_in_the_service_queues_nothing(archiver, simulator, job_store):
    service = await archiver(RECONCILE_INTERVAL_SECONDS="0")
    tags_before = simulator.tags(4711)
    report = await service.app.state.reconciler.run_once(dry_run=True)
    assert report.queue == [Finding(4711, TAG)] and report.admissions == {}
    await asyncio.sleep(0.3)
    assert await jobs_of(job_store, 4711) == []
    assert simulator.tags(4711) == tags_before and service.runtime.pool.idle


# -- python -m app reconcile -------------------------------------------------------------------


async def cli(simulator, job_store: JobStoreBackend, *args: str) -> tuple[int, str, str]:
    """Run ``python -m app reconcile`` with the settings of the test's services."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ZAMMAD_BASE_URL": simulator.base_url,
        "ZAMMAD_API_TOKEN": API_TOKEN,
        "ALLOW_INSECURE_HTTP": "true",
        "STATE_DIR": str(job_store.state_dir),
        **job_store.env(),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "reconcile",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_dry_run_lists_what_it_would_queue_and_queues_nothing(simulator, job_store):
    status, out, err = await cli(simulator, job_store, "--dry-run")
    assert status == 0, err
    assert 'searched tags:"pdf:sign": 1 ticket(s)' in out
    assert any(line.split()[:4] == ["would", "queue", "ticket", "4711"] for line in out.splitlines()), out
    assert "1 to queue (dry run: none queued)" in out
    if job_store.name == "sqlite":  # no store before it: a dry run creates none
        assert not (job_store.state_dir / SQLITE_FILE).exists()
    else:
        assert await jobs_of(job_store, 4711) == []


async def test_cli_queues_and_the_service_archives(archiver, simulator, job_store):
    service = None
    if job_store.name == "postgres":  # replicas run: they take the job at once
        service = await archiver(RECONCILE_INTERVAL_SECONDS="0")
    status, out, err = await cli(simulator, job_store)
    assert status == 0, err
    [line] = [line for line in out.splitlines() if "4711" in line]
    assert line.split()[:4] == ["queued", "ticket", "4711", "trigger_tag"], out
    if service is None:  # SQLite: recorded while the service was stopped; it runs at the start
        assert "the jobs run when the service starts" in out
        assert [row[:2] for row in await jobs_of(job_store, 4711)] == [("pending", "reconcile")]
        service = await archiver(RECONCILE_INTERVAL_SECONDS="0")
    async with asyncio.timeout(60):
        await eventually(lambda: "pdf:signed" in simulator.tags(4711))
    await service.wait_idle()
    [(state, reason, delivery_id)] = await jobs_of(job_store, 4711)
    assert (state, reason) == ("done", "reconcile") and delivery_id.startswith("reconcile:4711:")


@pytest.mark.sqlite_only
async def test_cli_leaves_a_running_services_sqlite_store_alone(simulator, job_store):
    job_store.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(job_store.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `python -m app serve` holds it
    try:
        status, out, err = await cli(simulator, job_store)
        assert status == 2 and "holds its SQLite job store" in err and "--dry-run" in err
        status, out, err = await cli(simulator, job_store, "--dry-run")
        assert status == 0, err
        assert "the service holds the job store" in out
        assert any(line.split()[:4] == ["would", "queue", "ticket", "4711"] for line in out.splitlines())
        assert not (job_store.state_dir / "jobs.sqlite3").exists()  # never opened
    finally:
        os.close(fd)


async def test_cli_reports_a_failing_search(simulator, job_store):
    simulator.fail("GET", r"^/api/v1/tickets/search$", 401)
    status, out, err = await cli(simulator, job_store)
    assert status == 1
    assert "Zammad's ticket search failed" in err and "401" in err
    assert API_TOKEN not in out + err
