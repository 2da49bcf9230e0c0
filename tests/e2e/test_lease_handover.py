"""A run whose lease another replica took over stops here and leaves the ticket to the new run
(real service in-process, the simulator, a real PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.jobs.pg_schema import SCHEMA

pytestmark = pytest.mark.postgres_only


async def test_a_run_handed_over_to_another_replica_does_not_touch_the_tags(archiver, simulator, job_store):
    service = await archiver()  # on the job_store fixture's PostgreSQL database
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 30)
    await service.ingest({"ticket_id": 4711}, delivery_id="handover-1")
    for _ in range(200):  # the run has started: its tags say so (added first, then the removals)
        tags = simulator.tags(4711)
        if "pdf:processing" in tags and "pdf:sign" not in tags:
            break
        await asyncio.sleep(0.05)
    tags_while_running = sorted(simulator.tags(4711))
    assert "pdf:processing" in tags_while_running and "pdf:sign" not in tags_while_running

    # Another replica reclaims the job (its fence moves on); this replica learns it at its renewal.
    conn = await asyncpg.connect(job_store.url)
    try:
        taken = await conn.execute(
            f"UPDATE {SCHEMA}.jobs SET fence = fence + 1, lease_owner = 'replica-b' "
            "WHERE ticket_id = 4711 AND state = 'running'"
        )
        assert taken == "UPDATE 1"
        pool = service.runtime.pool
        await service.runtime.store.renew_leases()
        for _ in range(100):
            if pool.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.in_flight == 0
        await asyncio.sleep(0.3)  # a revert would have been sent by now
        assert sorted(simulator.tags(4711)) == tags_while_running  # untouched: the new run owns them
        assert simulator.notes(4711) == []
        row = await conn.fetchrow(f"SELECT state, lease_owner FROM {SCHEMA}.jobs WHERE ticket_id = 4711")
        assert (row["state"], row["lease_owner"]) == (
            "running",
            "replica-b",
        )  # nothing written by the old owner
    finally:
        await conn.close()
    simulator.clear_faults()
