"""Several replicas of the service on one PostgreSQL job store, as an operator runs them.

A :class:`Cluster` starts N real service processes (``python -m app serve``, each in its own
process group, as ``tests/e2e/test_durability.py`` does for one) that share one
``JOB_STORE_URL`` (the test's PostgreSQL database), one Zammad simulator and one
``STORAGE_ROOT``; each replica has its own ``STATE_DIR``, port and log file. A replica can be
SIGKILLed (with its render process, as a container kill does), frozen (SIGSTOP) and thawed,
stopped with SIGTERM, started again, or cut off from the database (a :class:`DatabaseLink`
between it and PostgreSQL).

The test also reads the job table itself (asyncpg on the same database, read only): which
replica holds a job's lease (``lease_owner`` is ``host:pid:random``, and the test knows every
pid a replica has had), when a job was claimed (``started_at``, Unix seconds from the same
host's clock), and whether anything is left pending or running at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from app.jobs.pg_schema import SCHEMA
from app.workflow.notes import SUCCESS_SUBJECT
from devtools.webhook import zammad_webhook
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import API_TOKEN, HMAC_SECRET, PFX_PASSWORD, free_port, spawn_service, wait_healthy

ADMIN_TOKEN = "e2e-replicas-admin-4482"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE_TAGS = ["rechnung", "reklamation"]
SIGNED_TAGS = sorted(["pdf:signed", *BASE_TAGS])
HOST = socket.gethostname()
LEASE_SECONDS = 5.0
"""``JOB_LEASE_SECONDS`` of the replicas: short, so that a dead replica's job is reclaimed quickly."""


class DatabaseLink:
    """A TCP relay between one replica and PostgreSQL on 127.0.0.1, which the test can cut
    (a network cut between that replica and the database, as a firewall that rejects: open
    connections are reset, new ones refused) and mend again.

    Attributes:
        port: where the replica connects instead of PostgreSQL's port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, database_url: str) -> str:
        """``database_url`` with this link's port instead of PostgreSQL's."""
        return database_url.replace(f"127.0.0.1:{self.target_port}/", f"127.0.0.1:{self.port}/")

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`mend`."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class Replica:
    """One service process of the cluster: its own port, ``STATE_DIR`` and log file per start
    (``<logs>/<name>-<n>.log``, JSON lines at INFO).

    Attributes:
        name: ``r0``, ``r1``, … (stable across restarts).
        url: ``http://127.0.0.1:<port>`` (the port stays the same across restarts).
        pids: every process id this replica has had, oldest first (lease owners name them).
    """

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = logs / f"state-{name}"
        self.logs = logs
        self.env = {**env, "SERVER_PORT": str(self.port), "STATE_DIR": str(self.state)}
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.pids: list[int] = []

    def __repr__(self) -> str:
        return f"<replica {self.name} pid={self.pid}>"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line of every start of this replica, oldest first."""
        records = []
        for n in range(1, self.starts + 1):
            path = self.logs / f"{self.name}-{n}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
        return records

    def owns(self, lease_owner: str | None) -> bool:
        """Whether ``lease_owner`` (``host:pid:random``) names one of this replica's processes."""
        return lease_owner is not None and any(lease_owner.startswith(f"{HOST}:{pid}:") for pid in self.pids)

    async def start(self, timeout: float = 90) -> None:
        """Start the process and wait until ``/healthz`` answers 200.

        Raises:
            AssertionError: it exited or did not answer within ``timeout`` s (its log tail attached).
        """
        assert not self.alive, f"{self.name} is running already"
        self.starts += 1
        self.proc = await spawn_service(self.env, self.log)
        self.pids.append(self.proc.pid)
        if await wait_healthy(self.url, self.proc, timeout):
            return
        await self.kill()
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    async def kill(self) -> float:
        """SIGKILL the replica's process group (server and render process); the Unix time of
        the kill."""
        at = time.time()
        if not self.alive:
            return at
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()  # `alive` is False from now on; pid and returncode (-9) stay
        return at

    def freeze(self) -> float:
        """SIGSTOP the replica's process group: alive, holding its connections, doing nothing
        (a VM pause, a stalled host; to the others it looks like a network cut). The Unix time."""
        assert self.proc is not None and self.alive
        os.killpg(self.proc.pid, signal.SIGSTOP)
        return time.time()

    def thaw(self) -> None:
        """SIGCONT the process group after :meth:`freeze`."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    async def stop(self, timeout: float = 60) -> tuple[int | None, float]:
        """SIGTERM, wait for the exit (then SIGKILL whatever of the group is left).

        Returns ``(exit status or None when it did not exit within timeout, seconds from the
        SIGTERM to the exit)``.
        """
        if not self.alive:
            return None, 0.0
        assert self.proc is not None
        proc = self.proc
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            rc = None
        seconds = time.monotonic() - started
        # A render process left behind would be a bug too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return rc, seconds

    async def job(self, ticket_id: int, session: aiohttp.ClientSession | None = None) -> dict[str, Any]:
        """``GET /jobs/{ticket_id}`` on this replica (200 expected)."""
        async with _session(session) as s, s.get(f"{self.url}/jobs/{ticket_id}", headers=ADMIN) as resp:
            assert resp.status == 200, (self.name, resp.status, await resp.text())
            return await resp.json()

    async def post(
        self, ticket_id: int, delivery_id: str, session: aiohttp.ClientSession | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One webhook for ``ticket_id`` to this replica; ``(status, JSON answer)``."""
        body, headers = zammad_webhook({"ticket_id": ticket_id}, HMAC_SECRET, delivery_id=delivery_id)
        async with _session(session) as s, s.post(f"{self.url}/ingest", data=body, headers=headers) as r:
            return r.status, await r.json()

    async def retry(self, ticket_id: int, *, force: bool = False) -> tuple[int, dict[str, Any]]:
        """``POST /retry/{ticket_id}`` on this replica with the admin token."""
        query = "?force=true" if force else ""
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{self.url}/retry/{ticket_id}{query}", headers=ADMIN) as r,
        ):
            return r.status, await r.json()


@contextlib.asynccontextmanager
async def _session(session: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    """``session`` itself, or a new session closed at the end."""
    if session is not None:
        yield session
        return
    async with aiohttp.ClientSession() as own:
        yield own


@dataclass
class Cluster:
    """N replicas on one database, one simulator and one storage root.

    Create with :meth:`create`; :meth:`close` (the fixture calls it) kills every replica and
    closes the test's own database connections.
    """

    simulator: ZammadSimulator
    database_url: str
    tmp_path: Path
    env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)
    links: dict[str, DatabaseLink] = field(default_factory=dict)
    _db: asyncpg.Pool | None = None

    @classmethod
    def create(
        cls,
        simulator: ZammadSimulator,
        dev_pki: Any,
        database_url: str,
        tmp_path: Path,
        count: int,
        **env: str,
    ) -> Cluster:
        """``count`` replicas (not started); ``env`` overrides the defaults below."""
        storage = tmp_path / "archive"
        storage.mkdir(exist_ok=True)
        base = {
            **os.environ,
            "ZAMMAD_BASE_URL": simulator.base_url or "",
            "ZAMMAD_API_TOKEN": API_TOKEN,
            "ZAMMAD_TIMEOUT_SECONDS": "5",
            "ALLOW_INSECURE_HTTP": "true",
            "WEBHOOK_HMAC_SECRET": HMAC_SECRET,
            "ADMIN_BEARER_TOKEN": ADMIN_TOKEN,
            "STORAGE_ROOT": str(storage),
            "SIGNING_ENABLED": "true",
            "SIGNING_PFX_PATH": str(dev_pki.signer_pfx),
            "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
            "WORKERS": "2",
            "RENDER_PROCESSES": "1",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "HARDENING_RATE_LIMIT_RPS": "0",
            "WORKFLOW_RETRY_BASE_SECONDS": "1",
            "LOG_LEVEL": "INFO",
            "JOB_STORE_URL": database_url,
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "RECONCILE_INTERVAL_SECONDS": "0",  # no sweep of its own: the tests count jobs
            **env,
        }
        base.pop("CONFIG_PATH", None)
        cluster = cls(simulator, database_url, tmp_path, base)
        cluster.replicas = [Replica(f"r{i}", base, tmp_path) for i in range(count)]
        return cluster

    @property
    def storage(self) -> Path:
        return Path(self.env["STORAGE_ROOT"])

    @property
    def lease_seconds(self) -> float:
        return float(self.env["JOB_LEASE_SECONDS"])

    @property
    def grace_seconds(self) -> float:
        return float(self.env["SHUTDOWN_GRACE_SECONDS"])

    @property
    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    async def start(self) -> None:
        """Start every replica, all at once (they migrate the schema under an advisory lock)."""
        await asyncio.gather(*(r.start() for r in self.replicas))

    async def link(self, replica: Replica) -> DatabaseLink:
        """Put a :class:`DatabaseLink` between ``replica`` (not started yet) and PostgreSQL."""
        assert not replica.alive
        link = DatabaseLink(int(self.database_url.rsplit(":", 1)[1].split("/", 1)[0]))
        await link.start()
        replica.env["JOB_STORE_URL"] = link.url(self.database_url)
        self.links[replica.name] = link
        return link

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.kill()
        for link in self.links.values():
            await link.close()
        if self._db is not None:
            await self._db.close()
            self._db = None

    # -- the database, as the test sees it -----------------------------------------------------
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a query on the test's own connections to the job store's database (a small
        pool: a watcher task may query while the test does)."""
        if self._db is None:
            self._db = await asyncpg.create_pool(self.database_url, min_size=1, max_size=3)
        try:
            return await self._db.fetch(sql, *args)
        except (
            OSError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.AdminShutdownError,
        ):
            # The server was restarted under the pool (a test of a database outage): once more.
            await self._db.expire_connections()
            return await self._db.fetch(sql, *args)

    async def jobs(self, ticket_id: int | None = None) -> list[dict[str, Any]]:
        """Rows of the jobs table (every column), oldest first; of one ticket when given."""
        if ticket_id is None:
            rows = await self.fetch(f"SELECT * FROM {SCHEMA}.jobs ORDER BY created_at")
        else:
            rows = await self.fetch(
                f"SELECT * FROM {SCHEMA}.jobs WHERE ticket_id = $1 ORDER BY created_at", ticket_id
            )
        return [dict(r) for r in rows]

    async def job(self, job_id: str) -> dict[str, Any]:
        (row,) = await self.fetch(f"SELECT * FROM {SCHEMA}.jobs WHERE job_id = $1", job_id)
        return dict(row)

    async def held_by(self, replica: Replica) -> list[dict[str, Any]]:
        """Jobs whose lease one of ``replica``'s processes holds: running jobs and undelivered
        reports (a released job has no ``lease_owner``)."""
        rows = await self.fetch(
            f"SELECT * FROM {SCHEMA}.jobs WHERE lease_owner IS NOT NULL AND "
            "(state = 'running' OR (NOT reported AND state IN ('done', 'failed', 'dead')))"
        )
        return [dict(r) for r in rows if replica.owns(r["lease_owner"])]

    def owner(self, lease_owner: str | None) -> Replica | None:
        """The replica whose process ``lease_owner`` names."""
        return next((r for r in self.replicas if r.owns(lease_owner)), None)

    def process_name(self, lease_owner: str | None) -> str:
        """``r1#2`` for the second start of replica r1 (the process ``lease_owner`` names), or ``?``."""
        for replica in self.replicas:
            for start, pid in enumerate(replica.pids, 1):
                if lease_owner is not None and lease_owner.startswith(f"{HOST}:{pid}:"):
                    return f"{replica.name}#{start}"
        return "?"

    async def unfinished(self) -> list[dict[str, Any]]:
        """Jobs pending or running, or finished with the report not delivered."""
        rows = await self.fetch(
            f"SELECT job_id, ticket_id, state, reported, lease_owner, attempts FROM {SCHEMA}.jobs "
            "WHERE state IN ('pending', 'running') OR NOT reported"
        )
        return [dict(r) for r in rows]

    async def statuses(
        self, ticket_id: int, session: aiohttp.ClientSession | None = None
    ) -> dict[str, dict[str, Any]]:
        """``/jobs/{ticket_id}`` from every live replica, by replica name."""
        answers = await asyncio.gather(*(r.job(ticket_id, session) for r in self.live))
        return {r.name: a for r, a in zip(self.live, answers, strict=True)}

    async def assert_same_status_everywhere(
        self, ticket_id: int, session: aiohttp.ClientSession | None = None
    ) -> dict[str, Any]:
        """``/jobs/{ticket_id}`` answers the same on every live replica; that answer."""
        answers = await self.statuses(ticket_id, session)
        first = next(iter(answers.values()))
        assert all(a == first for a in answers.values()), (ticket_id, answers)
        return first

    def archived_by(self, job_id: str) -> list[str]:
        """Names of the replicas whose logs say they stored ``job_id``'s archive."""
        return [
            r.name
            for r in self.replicas
            if any(
                rec.get("msg") == "archive stored" and rec.get("job_id") == job_id for rec in r.log_records()
            )
        ]

    async def wait_reclaimed(self, job_id: str, fence: int, timeout: float) -> dict[str, Any]:
        """Wait until ``job_id``'s fence has moved past ``fence`` (another claim); its row then."""
        deadline = time.monotonic() + timeout
        while True:
            row = await self.job(job_id)
            if row["fence"] > fence:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not reclaimed within {timeout} s: {row}")
            await asyncio.sleep(0.05)


# -- clients and checks ------------------------------------------------------------------------


async def post_until_accepted(
    session: aiohttp.ClientSession,
    urls: Callable[[], str],
    ticket_id: int,
    delivery_id: str,
    timeout: float = 120,
) -> tuple[int, str]:
    """Zammad's behaviour behind a load balancer, minus its give-up: send the webhook to
    ``urls()`` and resend the same delivery (to the next ``urls()``) after a 5xx, a connection
    error or a timeout, until it is answered 202. Returns ``(sends, final status string)``."""
    body, headers = zammad_webhook({"ticket_id": ticket_id}, HMAC_SECRET, delivery_id=delivery_id)
    deadline = time.monotonic() + timeout
    sends = 0
    while time.monotonic() < deadline:
        sends += 1
        try:
            async with session.post(
                f"{urls()}/ingest", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                answer = await resp.read()
                if resp.status == 202:
                    return sends, json.loads(answer)["status"]
                assert resp.status >= 500, (resp.status, answer)  # a 4xx is a bug, not an outage
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"ticket {ticket_id}: delivery {delivery_id} never accepted")


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` (plain or async) until true; ``AssertionError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def archives(storage: Path, number: str) -> list[Path]:
    """Published PDFs of ticket ``number`` (temporary files excluded)."""
    return sorted(p for p in storage.rglob(f"Ticket-{number}_*.pdf") if not p.name.startswith("."))


def assert_archived_once(
    simulator: ZammadSimulator, storage: Path, ticket_id: int, job_id: str | None = None
) -> str:
    """Exactly one archive with its sidecar, ``pdf:signed`` and no other state tag, exactly one
    note — the success note, naming that file, its SHA-256 and its job. Returns the job id."""
    number = simulator.ticket(ticket_id)["number"]
    files = archives(storage, number)
    assert len(files) == 1, (ticket_id, [str(f) for f in files])
    facts = json.loads(files[0].with_name(files[0].name + ".json").read_text(encoding="utf-8"))
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert facts["sha256"] == digest, ticket_id
    if job_id is not None:
        assert facts["job_id"] == job_id, (ticket_id, facts["job_id"], job_id)
    assert sorted(simulator.tags(ticket_id)) == SIGNED_TAGS, (ticket_id, simulator.tags(ticket_id))
    notes = simulator.notes(ticket_id)
    assert [n["subject"] for n in notes] == [SUCCESS_SUBJECT], (ticket_id, [n["subject"] for n in notes])
    assert digest in notes[0]["body"] and facts["path"] in notes[0]["body"], ticket_id
    assert f"Job: {facts['job_id']}" in notes[0]["body"], ticket_id
    return str(facts["job_id"])


def signed(simulator: ZammadSimulator, ticket_ids: Iterable[int]) -> int:
    """How many of the tickets carry ``pdf:signed`` and no longer ``pdf:processing``."""
    return sum(
        1 for t in ticket_ids if "pdf:signed" in (tags := simulator.tags(t)) and "pdf:processing" not in tags
    )


def small_tickets(simulator: ZammadSimulator, count: int, first_id: int, prefix: str) -> list[int]:
    """``count`` copies of the fixture ticket 4711 with one article each (the phone call), ids
    ``first_id…``, numbers ``<prefix><7 digits>``."""
    return [
        simulator.clone_ticket(4711, first_id + i, number=f"{prefix}{i:07d}", article_ids=[23052])
        for i in range(count)
    ]
