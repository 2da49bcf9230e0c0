"""The PostgreSQL job store down or stuck, under a live service (real Hypercorn, a real
PostgreSQL killed or frozen by the test, the Zammad simulator).

With the database gone, ``/ingest`` answers 503 ``job_store_unavailable`` with ``Retry-After``
(never a 500, never a 202 that was not committed), readiness names ``job_store``, ``/jobs``
answers 503 in the error shape, and once the database is back the service recovers by itself:
Zammad's resend of the same delivery is accepted and archived. A database that hangs for a
while (``pause()``) delays answers; every webhook is then answered 202 or 503, and every 202'd
ticket is archived.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET, JobStoreBackend, RunningArchiver
from tests.e2e.test_durability import assert_archived_once, wait_for

pytestmark = pytest.mark.postgres_only

ADMIN_TOKEN = "e2e-outage-admin-3307"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def call(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def ingest(
    service: RunningArchiver, ticket_id: int, delivery_id: str
) -> tuple[int, dict[str, str], Any]:
    body, headers = zammad_webhook({"ticket_id": ticket_id}, HMAC_SECRET, delivery_id=delivery_id)
    return await call("POST", f"{service.url}/ingest", body=body, headers=headers)


def assert_job_store_unavailable(answer: tuple[int, dict[str, str], Any]) -> None:
    status, headers, payload = answer
    assert status == 503, answer
    assert payload["error"] == "job_store_unavailable" and payload["detail"], payload
    assert int(headers["Retry-After"]) > 0, headers


async def readiness(service: RunningArchiver) -> tuple[int, Any]:
    status, _, payload = await call("GET", f"{service.url}/healthz?deep=true")
    return status, payload


async def test_database_down_503_not_ready_then_back_by_itself(
    archiver, simulator, job_store: JobStoreBackend
):
    service = await archiver(ADMIN_BEARER_TOKEN=ADMIN_TOKEN)
    assert (await readiness(service))[0] == 200
    server = job_store.server
    assert server is not None

    server.kill()
    # Zammad sends, and resends: every answer is a 503 in the error shape, none a 202 or 500.
    answers = [await ingest(service, 4711, "outage-4711") for _ in range(3)]
    for answer in answers:
        assert_job_store_unavailable(answer)
    # Readiness names the job store (the failed admissions and the claimer's polls say so).
    status, payload = await readiness(service)
    assert status == 503 and payload["error"] == "not_ready", payload
    assert "job_store" in payload["detail"], payload
    assert payload["checks"]["job_store"].startswith("fail: the PostgreSQL job store is unreachable"), payload
    assert server.password not in str(payload)
    # The job status cannot be read: 503 in the error shape, not a 500.
    status, headers, payload = await call("GET", f"{service.url}/jobs/4711", headers=ADMIN)
    assert_job_store_unavailable((status, headers, payload))
    # Liveness is not readiness: the process is fine.
    assert (await call("GET", f"{service.url}/healthz"))[0] == 200
    # Still down a few claimer polls later: nothing was accepted, the ticket was not touched.
    await asyncio.sleep(1.5)
    assert_job_store_unavailable(await ingest(service, 4711, "outage-4711"))
    assert sorted(simulator.tags(4711)) == ["pdf:sign", "rechnung", "reklamation"]

    server.restart()
    # No restart of the service: readiness comes back by itself ...
    await wait_for(lambda: _ready(service), 20, "readiness after the database came back")
    # ... and Zammad's next resend of the same delivery is accepted (nothing of it was on record).
    status, _, payload = await ingest(service, 4711, "outage-4711")
    assert (status, payload) == (202, {"status": "accepted", "ticket_id": 4711})
    await wait_for(lambda: "pdf:signed" in simulator.tags(4711), 60, "pdf:signed")
    await service.wait_idle()
    assert_archived_once(simulator, service.storage_root, 4711)
    status, _, payload = await call("GET", f"{service.url}/jobs/4711", headers=ADMIN)
    assert status == 200 and (payload["state"], payload["reported"], payload["attempts"]) == ("done", True, 1)


async def _ready(service: RunningArchiver) -> bool:
    return (await readiness(service))[0] == 200


PAUSE_TICKETS = 12
PAUSE_SECONDS = 2.0


async def test_database_paused_while_webhooks_arrive_every_202_is_archived(
    archiver, simulator, job_store: JobStoreBackend
):
    """The database hangs (SIGSTOP) for 2 s while webhooks keep coming: each is answered 202 or
    503 (never a 500), and every ticket answered 202 ends archived once with ``pdf:signed``;
    a 503'd one is accepted on Zammad's resend."""
    ids = [
        simulator.clone_ticket(4711, 400_000 + i, number=f"7{i:07d}", article_ids=[23052])
        for i in range(PAUSE_TICKETS)
    ]
    service = await archiver(ADMIN_BEARER_TOKEN=ADMIN_TOKEN)
    server = job_store.server
    assert server is not None
    answers: dict[int, tuple[int, dict[str, str], Any]] = {}
    waited: dict[int, float] = {}

    async def send(ticket_id: int, at: float) -> None:
        await asyncio.sleep(at)
        sent = time.monotonic()
        answers[ticket_id] = await ingest(service, ticket_id, f"pause-{ticket_id}")
        waited[ticket_id] = time.monotonic() - sent

    async def freeze() -> float:
        await asyncio.sleep(0.5)
        began = time.monotonic()
        server.pause()
        try:
            await asyncio.sleep(PAUSE_SECONDS)
        finally:
            server.resume()
        return time.monotonic() - began

    # Webhooks every 0.25 s from 0 to 2.75 s: before, during and after the pause (0.5-2.5 s).
    *_, frozen = await asyncio.gather(*(send(t, 0.25 * i) for i, t in enumerate(ids)), freeze())
    assert frozen >= PAUSE_SECONDS
    seen = {t: (answers[t][0], round(waited[t], 2)) for t in ids}  # (status, seconds) per ticket
    assert max(waited.values()) >= 1.0, seen  # webhooks did wait for the frozen database

    statuses = {t: a[0] for t, a in answers.items()}
    assert set(statuses.values()) <= {202, 503}, seen
    for ticket_id, answer in answers.items():
        if answer[0] == 202:
            assert answer[2] == {"status": "accepted", "ticket_id": ticket_id}, answer
        else:
            assert_job_store_unavailable(answer)
    accepted = [t for t, s in statuses.items() if s == 202]
    assert accepted, statuses  # at least the webhooks before and after the pause got through
    for ticket_id in ids:  # Zammad resends what was refused
        if statuses[ticket_id] != 202:
            await wait_for(lambda t=ticket_id: _accepted(service, t), 30, f"ticket {ticket_id} accepted")
    await wait_for(lambda: all("pdf:signed" in simulator.tags(t) for t in ids), 120, "every ticket signed")
    await service.wait_idle()
    for ticket_id in ids:
        assert_archived_once(simulator, service.storage_root, ticket_id)
    assert (await readiness(service))[0] == 200


async def _accepted(service: RunningArchiver, ticket_id: int) -> bool:
    return (await ingest(service, ticket_id, f"pause-{ticket_id}"))[0] == 202
