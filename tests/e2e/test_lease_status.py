"""A dead replica's job as the survivor shows it: ``/jobs`` names the lease's holder and its
expiry and marks it expired once it ran out; ``jobs_reclaimed_total`` counts the takeover (real
service in-process on a real Hypercorn, the simulator, a real PostgreSQL; the dead replica is a
second job store on the same database that claims a job and stops renewing, as a SIGKILL leaves
it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.http.openapi import OPENAPI
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import JobRequest
from tests.jobs.support import AT, stall

pytestmark = pytest.mark.postgres_only

ADMIN = {"Authorization": "Bearer lease-status-admin-4711"}
DEAD_LEASE_SECONDS = 2.0
"""The dead replica's ``JOB_LEASE_SECONDS``: short, so that its lease runs out within the test."""


JOB_STATUS = OPENAPI["components"]["schemas"]["JobStatus"]


async def get_json(url: str) -> dict[str, Any]:
    """``GET /jobs/…`` as the operator; the answer's fields are the API description's (the
    schemathesis run of ``tests/http`` checks the SQLite service's only: it has no lease)."""
    async with aiohttp.ClientSession() as session, session.get(url, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
    assert set(JOB_STATUS["required"]) <= set(answer) <= set(JOB_STATUS["properties"]), answer
    if "lease" in answer:
        lease = JOB_STATUS["properties"]["lease"]
        assert set(answer["lease"]) == set(lease["required"]) == set(lease["properties"])
    return answer


async def reclaimed(url: str) -> dict[str, float]:
    """``jobs_reclaimed_total`` by ``kind`` from the service's ``/metrics``."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "zammad_pdf_archiver_jobs_reclaimed_total"
    }


async def until(check: Any, seconds: float) -> Any:
    """Await ``check()`` every 50 ms until it returns something true (returned) or ``seconds``
    pass (the last answer is returned)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await check()
        if answer or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def test_jobs_shows_a_dead_replicas_lease_expired_and_the_survivor_counts_its_reclaim(
    archiver, simulator, job_store
):
    simulator.add_ticket(
        {"id": 4712, "number": "25004712", "title": "Zweite", "group_id": 1, "state_id": 2, "priority_id": 2},
        [
            {
                "id": 47121,
                "content_type": "text/plain",
                "body": "Rechnung bitte korrigieren",
                "internal": False,
            }
        ],
        ["pdf:sign"],
    )
    # One worker, kept busy by ticket 4711 for 8 s (Zammad timeout 20 s): no reclaim at once.
    service = await archiver(
        WORKERS="1",
        ZAMMAD_TIMEOUT_SECONDS="20",
        ADMIN_BEARER_TOKEN=ADMIN["Authorization"][7:],
        OBSERVABILITY_METRICS_ENABLED="true",
    )
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 8)
    await service.ingest({"ticket_id": 4711}, delivery_id="lease-status-1")

    async def running_here() -> bool:
        return service.runtime.pool.in_flight == 1

    assert await until(running_here, 10)
    own = await get_json(f"{service.url}/jobs/4711")
    assert own["state"] == "running" and own["in_flight"] is True
    assert own["lease"]["owner"] == service.runtime.store.leases.owner and own["lease"]["expired"] is False
    assert own["lease"]["expires_at"] > time.time()

    dead = PostgresJobStore(
        job_store.url, delivery_ttl_seconds=3600, max_pending=100, lease_seconds=DEAD_LEASE_SECONDS
    )
    await dead.open()
    try:
        job = (await dead.accept(JobRequest(4712))).job_id
        assert job is not None
        claimed = await dead.start(job, AT)
        assert claimed is not None and claimed.started_at is not None
        stall(dead)  # killed: no more renewals
        expires_at = claimed.started_at + DEAD_LEASE_SECONDS

        live = await get_json(f"{service.url}/jobs/4712")
        assert (live["state"], live["in_flight"]) == ("running", True)
        assert live["lease"] == {"owner": dead.leases.owner, "expires_at": expires_at, "expired": False}

        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.3)
        orphaned = await get_json(f"{service.url}/jobs/4712")
        assert orphaned["state"] == "running"  # not reclaimed yet: the survivor's worker is busy
        assert orphaned["lease"] == {"owner": dead.leases.owner, "expires_at": expires_at, "expired": True}
        assert await reclaimed(service.url) == {"run": 0, "report": 0}

        # 4711 ends, the worker is free: the survivor reclaims 4712, runs and reports it.
        async def reported() -> dict[str, Any] | None:
            status = await get_json(f"{service.url}/jobs/4712")
            return status if status["state"] == "done" and status["reported"] else None

        done = await until(reported, 60)
        assert done and done["state"] == "done" and done["attempts"] == 2 and "lease" not in done
        assert await reclaimed(service.url) == {"run": 1, "report": 0}
        assert "pdf:signed" in simulator.tags(4712)
    finally:
        await dead.close()
    simulator.clear_faults()
