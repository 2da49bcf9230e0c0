"""What the job-store tests share: a settable clock, replicas of the PostgreSQL store, a scripted
job runner, and small helpers that keep the tests typed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from app.errors import ZammadApiError
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import Admission, JobRecord, JobRequest, OutcomeStatus
from app.jobs.store import JobStore
from app.workflow.archive import ArchiveOutcome
from app.workflow.classify import classify
from app.workflow.ports import Guard
from app.workflow.report import Report, UndeliverableReport

REPORT = {"add": ["pdf:signed"], "remove": [], "subject": "PDF archived", "body_html": "b"}
"""A report as the workflow hands it to ``finish`` (tags and note)."""
AT = "2026-12-07T10:00:00+00:00"
"""An archive time (``archived_at``) for ``start`` and claims."""


class Clock:
    """A settable clock (Unix seconds) shared by the stores of a test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replica(url: str, clock: Callable[[], float] | None = None, **kw: Any) -> PostgresJobStore:
    """A PostgreSQL store on ``url`` (one replica) on ``clock`` (default: a new :class:`Clock`):
    TTL 3600 s, 100 pending at most, a lease of 60 s, unless ``ttl``, ``max_pending`` or
    ``lease`` say otherwise."""
    return PostgresJobStore(
        url,
        delivery_ttl_seconds=kw.pop("ttl", 3600),
        max_pending=kw.pop("max_pending", 100),
        lease_seconds=kw.pop("lease", 60),
        clock=clock or Clock(),
        **kw,
    )


async def opened(*stores: JobStore) -> None:
    await asyncio.gather(*(s.open() for s in stores))


async def closed(*stores: JobStore) -> None:
    await asyncio.gather(*(s.close() for s in stores))


def job_of(admission: Admission) -> str:
    """The job id of an admission that has one (every status but ``full``)."""
    assert admission.job_id is not None, admission
    return admission.job_id


async def new_job(store: JobStore, ticket_id: int, **kw: Any) -> str:
    """Accept a request for ``ticket_id`` (``JobRequest`` keywords in ``kw``); its job id."""
    return job_of(await store.accept(JobRequest(ticket_id, **kw)))


async def record_of(store: JobStore, job_id: str) -> JobRecord:
    """The job's record, which must exist."""
    record = await store.get(job_id)
    assert record is not None, job_id
    return record


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` every 10 ms until it holds or ``seconds`` pass (the caller asserts)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - a condition of many objects, polled
        await asyncio.sleep(0.01)


class FakeRunner:
    """Outcomes scripted per ticket (``"ok"``, ``"transient"``, ``"permanent"`` per attempt);
    records runs and deliveries; ``gate`` holds runs while cleared."""

    def __init__(
        self, script: dict[int, list[str]], *, deliver_failures: int = 0, undeliverable: bool = False
    ) -> None:
        self.script = script
        self.runs: list[tuple[int, int]] = []
        self.delivered: list[tuple[int, str]] = []
        self.active: set[int] = set()
        self.overlap = False
        self.deliver_failures = deliver_failures
        self.undeliverable = undeliverable
        self.fresh: list[bool] = []  # the ``fresh`` flag of each delivery attempt
        self.gate = asyncio.Event()
        self.gate.set()

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        if job.ticket_id in self.active:
            self.overlap = True
        self.active.add(job.ticket_id)
        try:
            await self.gate.wait()
            await asyncio.sleep(0.01)
            self.runs.append((job.ticket_id, job.attempts))
            steps = self.script.get(job.ticket_id, ["ok"])
            kind = steps[min(job.attempts, len(steps)) - 1]
        finally:
            self.active.discard(job.ticket_id)
        if kind == "ok":
            return ArchiveOutcome(OutcomeStatus.ARCHIVED, started=True)
        status = 503 if kind == "transient" else 404
        return ArchiveOutcome(
            OutcomeStatus.FAILED,
            "fetch ticket",
            started=True,
            failure=classify(ZammadApiError("x", status=status)),
        )

    def report(self, job: JobRecord, outcome: ArchiveOutcome, *, gave_up: bool) -> Report | None:
        return Report(
            ("pdf:signed",) if outcome.status == OutcomeStatus.ARCHIVED else ("pdf:error",),
            (),
            "dead" if gave_up else str(outcome.status),
            "",
        )

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        self.fresh.append(fresh)
        if self.undeliverable:
            raise UndeliverableReport("ticket gone")
        if self.deliver_failures:
            self.deliver_failures -= 1
            raise ZammadApiError("down", status=503)
        self.delivered.append((job.ticket_id, report.subject))


class GuardedRunner(FakeRunner):
    """Waits at its gates, then awaits the pool's guard before each write to the ticket (as the
    workflow does) and records the writes it made."""

    def __init__(self) -> None:
        super().__init__({})
        self.writes: list[str] = []
        self.deliver_gate = asyncio.Event()
        self.delivering = False

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        self.active.add(job.ticket_id)
        try:
            await self.gate.wait()
            if guard is not None:
                await guard()
            self.writes.append(f"start {job.ticket_id}")
            return ArchiveOutcome(OutcomeStatus.ARCHIVED, started=True)
        finally:
            self.active.discard(job.ticket_id)

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        self.delivering = True
        await self.deliver_gate.wait()
        if guard is not None:
            await guard()
        self.writes.append(f"note {job.ticket_id}")


def stall(store: PostgresJobStore) -> None:
    """The replica stops renewing its leases, as if it died or froze."""
    assert store._maintainer is not None
    store._maintainer.cancel()


class HeldCloseProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL that passes bytes both ways but holds
    back the server's close until :meth:`release_close`.

    It stretches a real window to a test's length: a server that ends a session sends its
    ``FATAL`` message before it closes the socket, and until the client sees the close its
    connection looks open. ``url`` is ``server_url`` with the proxy's port.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._closes = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> HeldCloseProxy:
        target = urlsplit(self.server_url)
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._target = (target.hostname or "127.0.0.1", target.port or 5432)
        self.url = target._replace(netloc=target.netloc.replace(f":{target.port}", f":{port}")).geturl()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release_close()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def release_close(self) -> None:
        """Let the server's closes through (now and from now on)."""
        self._closes.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:  # the server is down: the client sees its connection refused as a close
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                if hold:
                    await self._closes.wait()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pump(reader, up_writer, hold=False)),
            asyncio.create_task(pump(up_reader, writer, hold=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
