"""Worker pool: one job per ticket, coalescing, bounded queue, shutdown; delivery-id cache."""

from __future__ import annotations

import asyncio

from app.jobs.dedupe import DeliveryIdCache
from app.jobs.pool import Job, SubmitResult, WorkerPool


async def test_one_job_per_ticket_and_follow_up():
    running: dict[int, int] = {}
    peak: dict[int, int] = {}
    runs: list[int] = []
    release = asyncio.Event()

    async def handler(job: Job) -> str:
        running[job.ticket_id] = running.get(job.ticket_id, 0) + 1
        peak[job.ticket_id] = max(peak.get(job.ticket_id, 0), running[job.ticket_id])
        await release.wait()
        runs.append(job.ticket_id)
        running[job.ticket_id] -= 1
        return "done"

    pool = WorkerPool(handler, workers=4, max_queue=10)
    pool.start()
    assert pool.submit(Job(1)) is SubmitResult.QUEUED
    assert pool.submit(Job(1)) is SubmitResult.COALESCED  # still queued
    await asyncio.sleep(0.01)
    assert pool.status(1)["state"] == "running"
    assert pool.submit(Job(1)) is SubmitResult.COALESCED  # becomes the follow-up
    assert pool.submit(Job(1)) is SubmitResult.COALESCED  # merged into the follow-up
    assert pool.submit(Job(2)) is SubmitResult.QUEUED
    release.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(runs) == 3 and pool.in_flight == 0:
            break
    assert sorted(runs) == [1, 1, 2]
    assert peak == {1: 1, 2: 1}
    assert pool.status(1)["last"]["status"] == "done"
    await pool.stop(1)


async def test_bounded_queue_and_shutdown_refusal():
    gate = asyncio.Event()

    async def handler(job: Job) -> None:
        await gate.wait()

    pool = WorkerPool(handler, workers=1, max_queue=2)
    pool.start()
    assert pool.submit(Job(1)) is SubmitResult.QUEUED
    await asyncio.sleep(0.01)  # job 1 running
    assert pool.submit(Job(2)) is SubmitResult.QUEUED
    assert pool.submit(Job(3)) is SubmitResult.QUEUED
    assert pool.submit(Job(4)) is SubmitResult.FULL
    assert pool.saturated
    stop = asyncio.create_task(pool.stop(0.05))
    await asyncio.sleep(0)
    assert pool.submit(Job(5)) is SubmitResult.SHUTTING_DOWN
    await stop
    assert pool.in_flight == 0


async def test_handler_exception_does_not_kill_the_worker():
    calls: list[int] = []

    async def handler(job: Job) -> None:
        calls.append(job.ticket_id)
        if job.ticket_id == 1:
            raise RuntimeError("bug")

    pool = WorkerPool(handler, workers=1, max_queue=5)
    pool.start()
    pool.submit(Job(1))
    pool.submit(Job(2))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if calls == [1, 2] and pool.in_flight == 0:
            break
    assert calls == [1, 2]
    assert pool.status(1)["last"]["status"] == "failed"
    await pool.stop(0)


def test_delivery_id_cache_ttl_and_bound():
    now = [0.0]
    cache = DeliveryIdCache(10, max_entries=3, clock=lambda: now[0])
    assert not cache.seen("a")
    cache.claim("a")
    assert cache.seen("a") and cache.hits == 1
    now[0] = 10.5
    assert not cache.seen("a")
    for key in "bcde":
        cache.claim(key)
    assert len(cache) == 3 and not cache.seen("b") and cache.seen("e")
