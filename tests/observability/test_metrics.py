"""How jobs go on after a run shows in ``/metrics``: retries, and jobs ended by state."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "zammad_pdf_archiver_"


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as ``{(sample name, sorted labels): value}``."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_retry_and_a_dead_job_are_counted(archiver, simulator) -> None:
    service = await archiver(
        OBSERVABILITY_METRICS_ENABLED="true", WORKFLOW_MAX_ATTEMPTS="2", WORKFLOW_RETRY_BASE_SECONDS="0.2"
    )
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 500)
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    assert (await service.runtime.pool.status(4711))["state"] == "dead"
    samples = await scrape(service.url)
    assert samples[(PREFIX + "job_retries_total", ())] == 1
    ended = {
        state: samples[(PREFIX + "jobs_ended_total", (("state", state),))]
        for state in ("done", "failed", "dead")
    }
    assert ended == {"done": 0, "failed": 0, "dead": 1}
    assert samples[(PREFIX + "jobs_failed_total", (("classification", "Transient"),))] == 2


async def test_no_created_series(archiver) -> None:
    """prometheus-client's ``*_created`` series (one per counter and histogram child) are off."""
    service = await archiver(OBSERVABILITY_METRICS_ENABLED="true")
    await service.ingest({"ticket_id": 4711})  # counts an ingest status, a job and its steps
    await service.wait_idle()
    samples = await scrape(service.url)
    assert samples[(PREFIX + "jobs_processed_total", (("status", "archived"),))] == 1
    assert samples[(PREFIX + "ingest_responses_total", (("status", "202"),))] == 1
    assert [name for name, _ in samples if name.endswith("_created")] == []
