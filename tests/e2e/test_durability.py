"""Accepted means archived: crashes, a flapping Zammad, duplicate webhooks and failing error
tags all end with exactly one archive, one state tag and one note per ticket.

The crash tests run the service as a subprocess (``python -m app serve``) in its own process
group, killed with SIGKILL (the render process with it, as a container kill does) and
started again on the same ``STATE_DIR``, ``STORAGE_ROOT`` and port. The simulator runs in the
test's event loop.

Every test runs on both job-store backends (``[sqlite]``, ``[postgres]``: see
``tests/conftest.py``). On PostgreSQL the restarted service is another replica as far as the
store knows: it takes over the killed one's jobs and reports once their leases run out, so the
subprocess runs with ``JOB_LEASE_SECONDS=4`` (the minimum).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.workflow.notes import FAILURE_SUBJECT, SUCCESS_SUBJECT
from devtools.webhook import zammad_webhook
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import (
    API_TOKEN,
    HMAC_SECRET,
    PFX_PASSWORD,
    JobStoreBackend,
    free_port,
    spawn_service,
    wait_healthy,
)
from tests.e2e.replicas import post_until_accepted

ADMIN_TOKEN = "e2e-durability-admin-7120"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE_TAGS = ["rechnung", "reklamation"]
SIGNED_TAGS = sorted(["pdf:signed", *BASE_TAGS])
LEASE_SECONDS = 4
"""``JOB_LEASE_SECONDS`` of the subprocess on PostgreSQL: a killed service's jobs are taken
over by the next start within 4 s."""


# -- the service as a process that can be killed ---------------------------------------------------


class Service:
    """``python -m app serve`` on a fixed port, state folder and storage root, on the test's
    job-store backend.

    Each start gets its own log file (``tmp_path/service-<n>.log``), shown when a start fails.
    """

    def __init__(
        self, simulator: ZammadSimulator, tmp_path: Path, dev_pki: Any, job_store: JobStoreBackend, **env: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage = tmp_path / "archive"
        self.storage.mkdir(exist_ok=True)
        self.state = job_store.state_dir
        self.logs = tmp_path
        self.env = {
            **os.environ,
            "ZAMMAD_BASE_URL": simulator.base_url or "",
            "ZAMMAD_API_TOKEN": API_TOKEN,
            "ZAMMAD_TIMEOUT_SECONDS": "5",
            "ALLOW_INSECURE_HTTP": "true",
            "WEBHOOK_HMAC_SECRET": HMAC_SECRET,
            "ADMIN_BEARER_TOKEN": ADMIN_TOKEN,
            "STORAGE_ROOT": str(self.storage),
            "STATE_DIR": str(self.state),
            "SIGNING_ENABLED": "true",
            "SIGNING_PFX_PATH": str(dev_pki.signer_pfx),
            "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
            "SERVER_PORT": str(self.port),
            "WORKERS": "2",
            "RENDER_PROCESSES": "1",
            "SHUTDOWN_GRACE_SECONDS": "10",
            "HARDENING_RATE_LIMIT_RPS": "0",
            "WORKFLOW_RETRY_BASE_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
            "RECONCILE_INTERVAL_SECONDS": "0",  # no sweep of its own: the tests count jobs
            **job_store.env(lease_seconds=LEASE_SECONDS),
            **env,
        }
        self.env.pop("CONFIG_PATH", None)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.logs / f"service-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        self.proc = await spawn_service(self.env, self.log)
        if await wait_healthy(self.url, self.proc, 60):
            return
        await self.kill()
        raise AssertionError(f"service did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    async def kill(self) -> None:
        """SIGKILL the service's process group (server and render process)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait (then make sure nothing of the group is left); the exit code."""
        if self.proc is None:
            return None
        proc = self.proc
        proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            rc = None
        await self.kill()
        return rc

    async def job(self, ticket_id: int) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/jobs/{ticket_id}", headers=ADMIN) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.fixture
async def service(simulator, tmp_path, dev_pki, job_store):
    """A factory for :class:`Service` on the test's job-store backend; every service is
    killed at the end."""
    made: list[Service] = []

    def make(**env: str) -> Service:
        made.append(Service(simulator, tmp_path, dev_pki, job_store, **env))
        return made[-1]

    yield make
    for svc in made:
        await svc.kill()


# -- helpers ---------------------------------------------------------------------------------


async def post(url: str, ticket_id: int, delivery_id: str) -> tuple[int, dict[str, Any]]:
    body, headers = zammad_webhook({"ticket_id": ticket_id}, HMAC_SECRET, delivery_id=delivery_id)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/ingest", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await _call(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _call(predicate: Callable[[], Any]) -> Any:
    result = predicate()
    return await result if asyncio.iscoroutine(result) else result


def archives(storage: Path, number: str) -> list[Path]:
    """Published PDFs of ticket ``number`` (temporary files excluded)."""
    return sorted(p for p in storage.rglob(f"Ticket-{number}_*.pdf") if not p.name.startswith("."))


def sidecar(pdf: Path) -> dict[str, Any]:
    return json.loads(pdf.with_name(pdf.name + ".json").read_text(encoding="utf-8"))


def assert_archived_once(
    simulator: ZammadSimulator, storage: Path, ticket_id: int, job_id: str | None = None
) -> None:
    """Exactly one archive with its sidecar, ``pdf:signed`` and no other state tag, exactly one
    note — the success note, naming that file and its SHA-256."""
    number = simulator.ticket(ticket_id)["number"]
    files = archives(storage, number)
    assert len(files) == 1, (ticket_id, [str(f) for f in files])
    facts = sidecar(files[0])
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert facts["sha256"] == digest
    if job_id is not None:
        assert facts["job_id"] == job_id
    assert sorted(simulator.tags(ticket_id)) == SIGNED_TAGS, (ticket_id, simulator.tags(ticket_id))
    notes = simulator.notes(ticket_id)
    assert [n["subject"] for n in notes] == [SUCCESS_SUBJECT], (ticket_id, [n["subject"] for n in notes])
    assert digest in notes[0]["body"] and facts["path"] in notes[0]["body"]
    assert f"Job: {facts['job_id']}" in notes[0]["body"]


async def rewind_to_running(job_store: JobStoreBackend, job_id: str) -> None:
    """Put a finished, unreported job back to the state it had a moment before
    ``store.finish`` committed: running, no result, no report. On PostgreSQL the job keeps
    the lease (owner, fence, expiry) the killed service held: the next start takes it over
    once that lease has run out, as after a kill at that moment."""
    rows = await job_store.rows("SELECT state, reported FROM jobs WHERE job_id=?", job_id)
    assert rows == [("done", 0)], rows
    await job_store.rows(
        "UPDATE jobs SET state='running', result=NULL, report=NULL, reported=TRUE, output_path=NULL, "
        "sha256=NULL, finished_at=NULL WHERE job_id=?",
        job_id,
    )


# -- crash test --------------------------------------------------------------------------------

CRASH_TICKETS = 300
CRASH_KILLS = 3


@pytest.mark.slow
async def test_sigkill_three_times_under_load_leaves_exactly_one_archive_per_ticket(simulator, service):
    """300 webhooks under load; the service is SIGKILLed at 3 random moments and restarted.
    Every accepted ticket ends with exactly one archive, ``pdf:signed`` and one success note."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    # One article per ticket (the fixture's phone call): the run is the same, the layout shorter.
    ids = [
        simulator.clone_ticket(4711, 200_000 + i, number=f"9{i:07d}", article_ids=[23052])
        for i in range(CRASH_TICKETS)
    ]
    svc = service()
    await svc.start()

    accepted: set[int] = set()
    resends = 0
    signed = lambda: sum("pdf:signed" in simulator.tags(t) for t in ids)  # noqa: E731 - a one-line probe for wait_for
    # A moment is a point of progress (webhooks accepted + tickets signed, 0..600) plus a
    # random pause: kills land during ingest, archive runs and report delivery alike.
    moments = sorted(rng.sample(range(20, 2 * CRASH_TICKETS - 20), CRASH_KILLS))
    kills: list[tuple[int, int]] = []

    async def poster() -> None:
        gate = asyncio.Semaphore(8)
        async with aiohttp.ClientSession() as session:

            async def one(ticket_id: int) -> None:
                nonlocal resends
                async with gate:
                    resends += (
                        await post_until_accepted(session, lambda: svc.url, ticket_id, f"crash-{ticket_id}")
                    )[0] - 1
                    accepted.add(ticket_id)
                    await asyncio.sleep(0.05)  # about as fast as the workers archive: load, not a burst

            await asyncio.gather(*(one(t) for t in ids))

    async def killer() -> None:
        for moment in moments:
            await wait_for(
                lambda moment=moment: len(accepted) + signed() >= moment, 180, f"progress {moment}"
            )
            await asyncio.sleep(rng.uniform(0, 0.3))
            kills.append((len(accepted), signed()))
            await svc.kill()
            await asyncio.sleep(rng.uniform(0, 0.5))
            await svc.start()

    started = time.monotonic()
    await asyncio.gather(poster(), killer())
    await wait_for(
        lambda: signed() == CRASH_TICKETS and all("pdf:processing" not in simulator.tags(t) for t in ids),
        240,
        "every ticket signed",
    )

    async def all_reported() -> bool:
        for ticket_id in ids:
            job = await svc.job(ticket_id)
            if job["state"] != "done" or not job["reported"]:
                return False
        return True

    await wait_for(all_reported, 120, "every job done and reported")
    assert await svc.stop() == 0
    context = (
        f"seed {seed}, kills at (accepted, signed) {kills}, resends {resends}, "
        f"{time.monotonic() - started:.1f} s"
    )
    assert len(kills) == CRASH_KILLS, context
    assert accepted == set(ids), context
    for ticket_id in ids:
        assert_archived_once(simulator, svc.storage, ticket_id)
    stray = [
        p
        for p in svc.storage.rglob("*.pdf")
        if not p.name.startswith(".") and not p.name.startswith("Ticket-9")
    ]
    assert stray == [], context


# -- one archive and one note when a kill hits between two steps --------------------------------------


@pytest.mark.parametrize("sidecar_written", [True, False], ids=["after-sidecar", "before-sidecar"])
async def test_a_job_killed_after_publishing_rerun_keeps_one_archive(
    simulator, service, job_store, sidecar_written
):
    """The kill lands after the PDF was published (with or without its completion marker)
    but before the job was finished in the store: the resumed job re-runs, and must not
    write ``_v2``."""
    svc = service()
    # The success tag never gets through: the job is finished and stuck delivering its report.
    simulator.fail("POST", r"^/api/v1/tags/add$", 503, match_body="pdf:signed")
    await svc.start()
    assert (await post(svc.url, 4711, "kill-after-publish"))[0] == 202
    await wait_for(
        lambda: any(r.method == "POST" and b"pdf:signed" in r.body for r in simulator.requests),
        120,
        "the report delivery",
    )
    await svc.kill()
    first = archives(svc.storage, "25004711")
    assert len(first) == 1
    job_id = sidecar(first[0])["job_id"]
    first_bytes = first[0].read_bytes()
    # The state a moment earlier: the job still running, tags still pdf:processing, no note.
    await rewind_to_running(job_store, job_id)
    if not sidecar_written:
        first[0].with_name(first[0].name + ".json").unlink()
    assert sorted(simulator.tags(4711)) == sorted(["pdf:processing", *BASE_TAGS])
    simulator.clear_faults()

    await svc.start()
    await wait_for(lambda: "pdf:signed" in simulator.tags(4711), 120, "pdf:signed")
    await wait_for(_reported(svc, 4711), 60, "the report")
    job = await svc.job(4711)
    assert await svc.stop() == 0

    assert (job["job_id"], job["state"], job["attempts"]) == (job_id, "done", 2)
    assert_archived_once(simulator, svc.storage, 4711, job_id)
    (pdf,) = archives(svc.storage, "25004711")
    assert pdf == first[0]
    if sidecar_written:
        assert pdf.read_bytes() == first_bytes  # the finished archive was kept as it was
    assert job["output_path"] == sidecar(pdf)["path"]


def _reported_in(service: Any, ticket_id: int) -> Callable[[], Any]:
    async def check() -> bool:
        job = await service.runtime.store.latest(ticket_id)
        return job is not None and job.state == "done" and job.reported

    return check


def _reported(svc: Service, ticket_id: int) -> Callable[[], Any]:
    async def check() -> bool:
        job = await svc.job(ticket_id)
        return job["state"] == "done" and job["reported"]

    return check


async def test_killed_after_posting_the_note_it_is_not_posted_again(simulator, service, job_store):
    """The note reached Zammad but its answer did not reach the service (killed): the
    delivery is redone at the next start, and finds the note by its job id."""
    svc = service()
    simulator.delay("POST", r"^/api/v1/ticket_articles$", 60, after=True)
    await svc.start()
    assert (await post(svc.url, 4711, "kill-after-note"))[0] == 202
    await wait_for(lambda: len(simulator.notes(4711)) == 1, 120, "the note")
    await svc.kill()
    simulator.clear_faults()
    job_before = await job_store.rows("SELECT job_id, state, reported FROM jobs")
    assert [(s, r) for _, s, r in job_before] == [("done", 0)]  # the outbox still holds the report

    await svc.start()
    await wait_for(_reported(svc, 4711), 60, "the report")
    assert await svc.stop() == 0
    assert_archived_once(simulator, svc.storage, 4711, job_before[0][0])
    articles_listed = [r for r in simulator.requests if r.path == "/api/v1/ticket_articles/by_ticket/4711"]
    # The fetch and the check after the restart; the first post, a fresh report's, needs none.
    assert len(articles_listed) >= 2


async def test_a_job_store_restored_from_an_older_backup_posts_no_second_note(simulator, service, job_store):
    """The operator restores a backup of the job store taken while a forced re-archive waited
    for its retry; the job had finished since (its archive and note are there). The restored
    job runs again, finds its archive by its job id and writes none, and must find its note
    too: its report is not the first delivery of that note."""
    svc = service()
    await svc.start()
    assert (await post(svc.url, 4711, "before-the-backup"))[0] == 202
    await wait_for(_reported(svc, 4711), 120, "the first archive")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{svc.url}/retry/4711?force=true", headers=ADMIN) as resp,
    ):
        assert resp.status == 202, await resp.text()
    await wait_for(lambda: len(simulator.notes(4711)) == 2, 120, "the forced archive's note")
    await wait_for(_reported(svc, 4711), 60, "its report")
    forced = (await svc.job(4711))["job_id"]
    assert await svc.stop() == 0
    files = archives(svc.storage, "25004711")
    assert len(files) == 2
    # What the backup holds: the forced job waiting for its second attempt, due by now.
    await job_store.rows(
        "UPDATE jobs SET state='pending', next_attempt_at=?, result=NULL, report=NULL, reported=TRUE, "
        "output_path=NULL, sha256=NULL, started_at=NULL, finished_at=NULL WHERE job_id=?",
        time.time(),
        forced,
    )

    await svc.start()
    await wait_for(_reported(svc, 4711), 120, "the restored job's report")
    job = await svc.job(4711)
    assert await svc.stop() == 0

    assert (job["job_id"], job["state"], job["result"]) == (forced, "done", "archived")
    assert archives(svc.storage, "25004711") == files
    notes = simulator.notes(4711)
    assert [n["subject"] for n in notes] == [SUCCESS_SUBJECT, SUCCESS_SUBJECT]
    assert sum(f"Job: {forced}" in n["body"] for n in notes) == 1
    assert sorted(simulator.tags(4711)) == SIGNED_TAGS


async def test_a_note_whose_answer_was_lost_is_not_posted_again(archiver, simulator):
    """The note's post reached Zammad but its answer timed out: before posting again, the
    delivery looks for the note by its job id, finds it and stops (one note, not one per try)."""
    service = await archiver(ZAMMAD_TIMEOUT_SECONDS="0.5")
    simulator.delay("POST", r"^/api/v1/ticket_articles$", 2, after=True)
    assert (await post(service.url, 4711, "lost-note-answer"))[0] == 202
    await wait_for(_reported_in(service, 4711), 60, "the report")
    posts = [r for r in simulator.requests if r.method == "POST" and r.path == "/api/v1/ticket_articles"]
    assert len(posts) == 1
    assert_archived_once(simulator, service.storage_root, 4711)


# -- a flapping Zammad ----------------------------------------------------------------------------

FLAP_SECONDS = 30
FLAP_TICKETS = 20


@pytest.mark.slow
async def test_zammad_flapping_every_ticket_archived_within_the_retry_budget(archiver, simulator):
    """Every second Zammad API call answers 503 for 30 s. With the default 5 attempts and a
    backoff whose shortest total (0.5 × (5 + 10 + 20 + 40) s = 37.5 s) outlasts the outage,
    every ticket is archived once Zammad recovers: none dead, one archive, one note."""
    ids = [simulator.clone_ticket(4711, 300_000 + i, number=f"8{i:07d}") for i in range(FLAP_TICKETS)]
    service = await archiver(
        ADMIN_BEARER_TOKEN=ADMIN_TOKEN,
        WORKFLOW_MAX_ATTEMPTS="5",
        WORKFLOW_RETRY_BASE_SECONDS="5",
        WORKFLOW_RETRY_MAX_SECONDS="40",
    )
    simulator.fail("*", r"^/api/v1/", 503, every=2)
    flap_started = time.monotonic()
    for ticket_id in ids:
        assert (await post(service.url, ticket_id, f"flap-{ticket_id}"))[0] == 202
    await asyncio.sleep(FLAP_SECONDS - (time.monotonic() - flap_started))
    calls_in_outage = sum(1 for r in simulator.requests if r.path.startswith("/api/v1/"))
    simulator.clear_faults()
    await service.wait_idle(timeout=90)

    pool = service.runtime.pool
    jobs = [await pool.status(t) for t in ids]
    assert [j["state"] for j in jobs] == ["done"] * FLAP_TICKETS, [
        (j["state"], j["last_error"]) for j in jobs
    ]
    attempts = [j["attempts"] for j in jobs]
    assert max(attempts) >= 2 and all(1 <= a <= 5 for a in attempts), attempts  # retried, within the budget
    assert calls_in_outage >= 4 * FLAP_TICKETS  # every job tried (and failed) during the outage
    for ticket_id, job in zip(ids, jobs, strict=True):
        assert_archived_once(simulator, service.storage_root, ticket_id, job["job_id"])


# -- duplicate and simultaneous webhooks ----------------------------------------------------------


async def test_the_same_delivery_twice_and_two_deliveries_at_once_give_one_archive(archiver, simulator):
    simulator.clone_ticket(4711, 5001)
    simulator.clone_ticket(4711, 5002)
    service = await archiver(ADMIN_BEARER_TOKEN=ADMIN_TOKEN)
    # The same delivery id twice (Zammad's retry after a lost answer), also at the same moment.
    first = await post(service.url, 5001, "same-delivery")
    again = await asyncio.gather(*(post(service.url, 5001, "same-delivery") for _ in range(2)))
    assert first == (202, {"status": "accepted", "ticket_id": 5001})
    assert again == [(202, {"status": "duplicate", "ticket_id": 5001})] * 2
    # Two different delivery ids for one ticket at the same moment (a trigger firing twice).
    both = await asyncio.gather(post(service.url, 5002, "one"), post(service.url, 5002, "two"))
    assert [b[0] for b in both] == [202, 202]
    await service.wait_idle()

    store = service.runtime.store
    for ticket_id in (5001, 5002):
        job = await store.latest(ticket_id)
        assert_archived_once(simulator, service.storage_root, ticket_id, job.job_id)
    runs = [r for r in simulator.requests if r.method == "GET" and r.path == "/api/v1/tickets/5002"]
    assert len(runs) == 1  # coalesced into one job, not two runs


async def test_webhooks_during_a_run_give_one_follow_up_that_skips(archiver, simulator, job_store):
    """Webhooks for a ticket that is being archived are coalesced into one follow-up run,
    not run in parallel; the follow-up sees ``pdf:signed`` and leaves the ticket alone."""
    simulator.delay("GET", r"^/api/v1/ticket_articles/by_ticket/4711$", 1.0)
    service = await archiver(ADMIN_BEARER_TOKEN=ADMIN_TOKEN)
    assert (await post(service.url, 4711, "first"))[0] == 202
    await wait_for(lambda: "pdf:processing" in simulator.tags(4711), 30, "the run")
    answers = await asyncio.gather(*(post(service.url, 4711, f"during-{i}") for i in range(3)))
    assert [a[0] for a in answers] == [202] * 3
    await service.wait_idle()

    store = service.runtime.store
    latest = await store.latest(4711)
    assert (latest.reason, latest.state, latest.result) == ("follow_up", "done", "skipped: already_signed")
    jobs = await job_store.rows("SELECT job_id FROM jobs ORDER BY created_at")
    assert len(jobs) == 2
    assert_archived_once(simulator, service.storage_root, 4711, jobs[0][0])


# -- the error path --------------------------------------------------------------------------------


async def test_a_failing_error_tag_write_is_retried_until_the_ticket_shows_pdf_error(archiver, simulator):
    """A Permanent failure (403 on the ticket); then writing ``pdf:error`` fails 5 times in a
    row (more than one delivery's 3 tries): the report is retried until the ticket has it."""
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 403)
    simulator.fail("POST", r"^/api/v1/tags/add$", 503, match_body="pdf:error", times=5)
    service = await archiver(ADMIN_BEARER_TOKEN=ADMIN_TOKEN)
    assert (await post(service.url, 4711, "error-path"))[0] == 202
    await service.wait_idle(timeout=30)

    error_writes = [r for r in simulator.requests if r.path == "/api/v1/tags/add" and b"pdf:error" in r.body]
    assert len(error_writes) == 6
    assert sorted(simulator.tags(4711)) == sorted(["pdf:error", *BASE_TAGS])
    assert [n["subject"] for n in simulator.notes(4711)] == [FAILURE_SUBJECT]
    job = await service.runtime.pool.status(4711)
    assert (job["state"], job["reported"], job["classification"]) == ("failed", True, "Permanent")
    assert archives(service.storage_root, "25004711") == []
