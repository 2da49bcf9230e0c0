"""Zammad refuses the service's API token for a while: the tickets of that outage are archived
by themselves once the token works again, without an operator retrying each one.

The refusals are Zammad's own (``app/controllers/application_controller/authenticates.rb``): the
simulator checks the token on every request, so a token deleted in Zammad (the simulator's
accepted token changed: 401 ``Can't find User for Token``) and Zammad's setting "API token
access" switched off (403 ``API token access disabled!``) come from its real authentication
path; an expired token (401 ``Not authorized (token expired)!``) is injected with Zammad's body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from html import unescape

import aiohttp
import pytest

from tests.conftest import API_TOKEN, JobStoreBackend

EXPIRED = "Not authorized (token expired)!"


def break_token(simulator, kind: str) -> str:
    """Make Zammad refuse the service's token; return the text Zammad answers with."""
    if kind == "deleted":
        simulator.api_token = "a-new-token-the-service-does-not-know"
        return "401: Can't find User for Token"
    if kind == "expired":
        simulator.fail("*", r"^/api/v1/", 401, body={"error": EXPIRED, "error_human": EXPIRED})
        return f"401: {EXPIRED}"
    simulator.api_token_access = False
    return "403: API token access disabled!"


def mend_token(simulator) -> None:
    simulator.api_token = API_TOKEN
    simulator.api_token_access = True
    simulator.clear_faults()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` every 50 ms until it is true (the caller bounds it with ``asyncio.timeout``)."""
    while True:
        if await check():
            return
        await asyncio.sleep(0.05)


async def refused_gauge(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    [line] = [x for x in text.splitlines() if x.startswith("zammad_pdf_archiver_zammad_credentials_refused ")]
    return line.split()[1]


@pytest.mark.parametrize("kind", ["deleted", "expired", "access_disabled"])
async def test_jobs_during_a_token_outage_are_retried_and_archived_once_it_works(archiver, simulator, kind):
    service = await archiver(
        WORKFLOW_MAX_ATTEMPTS="50",
        WORKFLOW_RETRY_BASE_SECONDS="0.1",
        WORKFLOW_RETRY_MAX_SECONDS="0.3",
        OBSERVABILITY_METRICS_ENABLED="true",
    )
    assert await refused_gauge(service.url) == "0.0"
    answer = break_token(simulator, kind)
    await service.ingest({"ticket_id": 4711})

    seen: dict = {}

    async def retried_twice() -> bool:
        # Read once and kept: with retries 0.3 s apart a second read may find the next attempt running.
        status = await service.runtime.pool.status(4711)
        waiting = status["attempts"] >= 3 and status["state"] != "running"
        if waiting or status["state"] not in ("pending", "running"):
            seen.update(status)
            return True
        return False

    async with asyncio.timeout(30):
        await eventually(retried_twice)
    status = seen
    # Not failed Permanent: waiting for its next attempt, nothing written to the ticket.
    assert (status["state"], status["classification"]) == ("pending", "Transient")
    assert status["last_step"] == "fetch tags"
    assert status["last_error"] == f"GET /api/v1/tags answered {answer}"
    assert API_TOKEN not in str(status)
    assert sorted(simulator.tags(4711)) == ["pdf:sign", "rechnung", "reklamation"]
    assert simulator.notes(4711) == []
    assert await refused_gauge(service.url) == "1.0"

    mend_token(simulator)
    await service.wait_idle()
    status = await service.runtime.pool.status(4711)
    assert (status["state"], status["result"]) == ("done", "archived")
    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    [note] = simulator.notes(4711)
    assert note["body"].startswith("<p><b>PDF archived</b></p>")
    assert len(list(service.storage_root.rglob("*.pdf"))) == 1
    assert await refused_gauge(service.url) == "0.0"


async def test_a_job_that_gave_up_during_a_token_outage_is_archived_by_the_sweep_once_it_works(
    archiver, simulator, job_store: JobStoreBackend
):
    # Two attempts, both refused: the job ends dead the Transient way. Its report (pdf:error and
    # a note) cannot be written while the token is refused; it is delivered once it works, and
    # the sweep queues the ticket again RECONCILE_STALE_SECONDS after the job gave up.
    service = await archiver(
        WORKFLOW_MAX_ATTEMPTS="2",
        WORKFLOW_RETRY_BASE_SECONDS="0.1",
        RECONCILE_INTERVAL_SECONDS="0.3",
        RECONCILE_STALE_SECONDS="1",
    )
    break_token(simulator, "deleted")
    await service.ingest({"ticket_id": 4711})

    async def dead() -> bool:
        return (await service.runtime.pool.status(4711))["state"] not in ("pending", "running")

    async with asyncio.timeout(30):
        await eventually(dead)
    status = await service.runtime.pool.status(4711)
    assert (status["state"], status["classification"], status["attempts"]) == ("dead", "Transient", 2)

    async def report_refused_three_times() -> bool:
        return sum(r.path == "/api/v1/tags/add" for r in simulator.requests) >= 3

    async with asyncio.timeout(30):
        await eventually(report_refused_three_times)
    assert not (await service.runtime.pool.status(4711))["reported"]
    assert sorted(simulator.tags(4711)) == ["pdf:sign", "rechnung", "reklamation"]
    assert simulator.notes(4711) == []

    mend_token(simulator)

    async def signed() -> bool:
        return "pdf:signed" in simulator.tags(4711)

    async with asyncio.timeout(60):
        await eventually(signed)
    await service.wait_idle()
    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    gave_up, archived = simulator.notes(4711)
    text = unescape(gave_up["body"])
    assert "Transient, gave up after 2 attempts" in text
    assert "Code: zammad_unauthorized" in text and "Can't find User for Token" in text
    assert archived["body"].startswith("<p><b>PDF archived</b></p>")
    jobs = await job_store.rows(
        "SELECT state, reason FROM jobs WHERE ticket_id = ? ORDER BY created_at", 4711
    )
    assert jobs == [("dead", "webhook"), ("done", "reconcile")]
    assert len(list(service.storage_root.rglob("*.pdf"))) == 1
