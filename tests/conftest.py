"""End-to-end fixtures: dev PKI, the Zammad simulator, the archiver on a real Hypercorn, and a
real PostgreSQL.

Everything listens on 127.0.0.1. The archiver runs in the test's event loop (Hypercorn's
``serve`` with a shutdown trigger), so a test can look at its runtime as well as at its
HTTP answers. PostgreSQL is Debian's, started by the test run (``tests/postgres_server.py``).

Every test that starts the service (through ``archiver``, a fixture built on ``job_store``,
or ``job_store`` itself) runs once per job-store backend: ``[sqlite]`` (a file in
``STATE_DIR``) and ``[postgres]`` (a fresh database on the test run's server). Tests about one
backend's internals are marked ``@pytest.mark.sqlite_only`` or ``@pytest.mark.postgres_only``
and run on that backend alone (``pytest_generate_tests`` below).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from app.config import Settings, load_settings
from app.jobs.pg_schema import SCHEMA
from app.jobs.store import SQLITE_FILE
from app.main import create_app
from app.observability.logging import JsonFormatter
from devtools.zammad_simulator import ZammadSimulator
from tests import postgres_server as pg

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "zammad"
PFX_PASSWORD = "e2e-pfx-pass-7731"
HMAC_SECRET = "e2e-hmac-secret-5521"
API_TOKEN = "e2e-api-token-9410"
JOB_STORE_BACKENDS = ("sqlite", "postgres")
"""The job-store backends every service test runs on (``JOB_STORE_URL`` unset, or set)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses ``job_store`` (directly or through ``archiver``, ``service``,
    ``make_store``) once per backend, ids ``[sqlite]`` and ``[postgres]``; a test marked
    ``sqlite_only`` or ``postgres_only`` runs on that backend alone."""
    if "job_store" not in metafunc.fixturenames:
        return
    backends = list(JOB_STORE_BACKENDS)
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends.remove("postgres")
    if metafunc.definition.get_closest_marker("postgres_only"):
        backends.remove("sqlite")
    if not backends:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} is marked both sqlite_only and postgres_only")
    metafunc.parametrize("job_store", backends, indirect=True)


@dataclass(frozen=True)
class DevPki:
    folder: Path

    @property
    def root_pem(self) -> Path:
        return self.folder / "root.pem"

    @property
    def signer_pfx(self) -> Path:
        return self.folder / "signer.pfx"


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    out = tmp_path_factory.mktemp("e2e-pki")
    subprocess.run(
        ["bash", str(REPO / "scripts/dev/gen-dev-certs.sh"), str(out)],
        check=True,
        env={**os.environ, "DEV_PFX_PASSWORD": PFX_PASSWORD},
        capture_output=True,
    )
    return DevPki(out)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The root logger's handlers and level as they were before the test: the JSON handlers
    a test's ``configure_logging`` added are removed, the ones it replaced put back."""
    root = logging.getLogger()
    kept, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
    for handler in kept:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def simulator() -> AsyncIterator[ZammadSimulator]:
    sim = ZammadSimulator(api_token=API_TOKEN)
    sim.seed_fixture_ticket(FIXTURES)
    await sim.start()
    yield sim
    await sim.stop()


async def spawn_service(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start ``python -m app serve`` from the checkout with ``env``, in a session of its own (so a
    test can signal it with its render processes), stderr into the file ``log``."""
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "serve",
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout: float) -> bool:
    """Poll ``GET {url}/healthz`` every 50 ms until it answers 200 (``True``), or until
    ``proc`` exits or ``timeout`` seconds pass (``False``)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.returncode is None:
            try:
                async with session.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return True
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningArchiver:
    url: str
    app: Any
    settings: Settings
    storage_root: Path
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def stop(self) -> None:
        """Shut the service down as SIGTERM does (its store closed). A test that starts a
        second service with other settings stops the first: on PostgreSQL both would share
        the database like two replicas, and either could run the other's jobs."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)

    async def ingest(self, payload: dict[str, Any], delivery_id: str | None = None) -> None:
        """POST ``payload`` to ``/ingest`` as Zammad's trigger would (signed with the test HMAC
        secret, ``delivery_id`` as ``X-Zammad-Delivery`` when given); fails unless 202."""
        from devtools.webhook import zammad_webhook

        body, headers = zammad_webhook(payload, HMAC_SECRET, delivery_id=delivery_id)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/ingest", data=body, headers=headers) as resp,
        ):
            assert resp.status == 202, await resp.text()

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no job is queued, running, scheduled or being reported."""
        pool = self.runtime.pool
        deadline = asyncio.get_running_loop().time() + timeout
        await asyncio.sleep(0.01)
        while not pool.idle:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"jobs still running after {timeout} s")
            await asyncio.sleep(0.02)


ArchiverFactory = Callable[..., Awaitable[RunningArchiver]]


@dataclass(frozen=True)
class JobStoreBackend:
    """The job-store backend a service test runs on (the ``job_store`` fixture).

    Attributes:
        name: ``"sqlite"`` or ``"postgres"``.
        state_dir: the ``STATE_DIR`` the test's services use (``tmp_path/state``); the SQLite
            store's file is in it.
        url: ``JOB_STORE_URL`` (a fresh database of this test), ``None`` for SQLite.
        server: the test run's PostgreSQL (``kill()``, ``restart()``, ``pause()``…), ``None``
            for SQLite.
    """

    name: str
    state_dir: Path
    url: str | None = None
    server: pg.PostgresServer | None = None

    def env(self, lease_seconds: float | None = None) -> dict[str, str]:
        """The settings that select this backend: ``{}`` for SQLite; ``JOB_STORE_URL`` (and
        ``JOB_LEASE_SECONDS`` when ``lease_seconds`` is given) for PostgreSQL."""
        if self.url is None:
            return {}
        env = {"JOB_STORE_URL": self.url}
        if lease_seconds is not None:
            env["JOB_LEASE_SECONDS"] = str(lease_seconds)
        return env

    @property
    def secrets(self) -> tuple[str, ...]:
        """Secrets of the backend that must never show in logs or answers (the database
        password)."""
        return (self.server.password,) if self.server is not None else ()

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one SQL statement on the store's own data, from outside the service, and
        return its rows as tuples (a write is committed).

        Written once for both backends: ``?`` placeholders, table names without schema
        (``jobs``, ``deliveries``), ``TRUE``/``FALSE`` for booleans. A boolean column reads
        as ``0``/``1`` on SQLite and ``False``/``True`` on PostgreSQL (equal in Python).
        SQLite: ``STATE_DIR/jobs.sqlite3``; PostgreSQL: a connection of its own with the
        store's schema on the search path.
        """
        if self.url is None:

            def run() -> list[tuple[Any, ...]]:
                conn = sqlite3.connect(self.state_dir / SQLITE_FILE)
                try:
                    found = [tuple(row) for row in conn.execute(sql, args)]
                    conn.commit()
                    return found
                finally:
                    conn.close()

            return await asyncio.to_thread(run)
        numbered = iter(range(1, sql.count("?") + 1))
        conn = await asyncpg.connect(self.url, server_settings={"search_path": SCHEMA})
        try:
            return [
                tuple(row)
                for row in await conn.fetch(re.sub(r"\?", lambda _: f"${next(numbered)}", sql), *args)
            ]
        finally:
            await conn.close()


@pytest.fixture
def job_store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStoreBackend:
    """The job-store backend of this test run (parametrised by ``pytest_generate_tests``:
    ``[sqlite]`` and ``[postgres]``); PostgreSQL's database is fresh for this test."""
    name = getattr(request, "param", "sqlite")
    if name == "postgres":
        return JobStoreBackend(
            name,
            tmp_path / "state",
            request.getfixturevalue("postgres_url"),
            request.getfixturevalue("postgres_server"),
        )
    return JobStoreBackend(name, tmp_path / "state")


@pytest.fixture
async def archiver(
    simulator: ZammadSimulator, dev_pki: DevPki, tmp_path: Path, job_store: JobStoreBackend
) -> AsyncIterator[ArchiverFactory]:
    """A factory: ``await archiver(**env_overrides)`` starts the service and returns it, on
    this test's job-store backend (``job_store``).

    ``wrap`` may wrap the ASGI app (e.g. to count what reaches it) before Hypercorn serves it.
    """
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(wrap: Callable[[Any], Any] | None = None, **overrides: str) -> RunningArchiver:
        storage = tmp_path / "archive"
        storage.mkdir(exist_ok=True)
        port = free_port()
        env = {
            "ZAMMAD_BASE_URL": simulator.base_url or "",
            "ZAMMAD_API_TOKEN": API_TOKEN,
            "ZAMMAD_TIMEOUT_SECONDS": "5",
            "ALLOW_INSECURE_HTTP": "true",
            "WEBHOOK_HMAC_SECRET": HMAC_SECRET,
            "STORAGE_ROOT": str(storage),
            "STATE_DIR": str(job_store.state_dir),
            "SIGNING_ENABLED": "true",
            "SIGNING_PFX_PATH": str(dev_pki.signer_pfx),
            "SIGNING_PFX_PASSWORD": PFX_PASSWORD,
            "WORKERS": "2",
            "RENDER_PROCESSES": "1",
            "SERVER_PORT": str(port),
            "SHUTDOWN_GRACE_SECONDS": "5",
            "HARDENING_RATE_LIMIT_RPS": "0",
            "RECONCILE_INTERVAL_SECONDS": "0",  # no sweep unless a test asks: tests count jobs
            **job_store.env(),
            **overrides,
        }
        settings = load_settings(env)
        app = create_app(settings)
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        stop = asyncio.Event()
        task = asyncio.create_task(serve(wrap(app) if wrap else app, config, shutdown_trigger=stop.wait))
        stops.append((stop, task))
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{url}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if task.done():
                    task.result()
                await asyncio.sleep(0.025)
            else:
                raise AssertionError("archiver did not start")
        backend = type(app.state.runtime.store).__name__
        assert backend == {"sqlite": "SqliteJobStore", "postgres": "PostgresJobStore"}[job_store.name], (
            backend
        )
        return RunningArchiver(url, app, settings, storage, stop, task)

    yield start
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> pg.PostgresServer:
    """One throw-away PostgreSQL for the whole run (Debian's binaries; see tests/postgres_server.py).

    Stopped and removed at the end of the run, also after Ctrl-C or a failure (finalizer, with
    an ``atexit`` hook and a watchdog behind it). Fails (does not skip) when PostgreSQL is not
    installed, naming the install step: a skip would hide it.
    """
    try:
        server = pg.start()
    except pg.PostgresNotInstalled as exc:
        missing = str(exc)
    else:
        request.addfinalizer(server.stop)
        return server
    pytest.fail(missing, pytrace=False)


@pytest.fixture
def postgres_url(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test: ``postgresql://archiver:PW@127.0.0.1:PORT/t_<hex>``.

    The URL carries the superuser's password. After the test the server is brought back if the
    test left it paused or killed, and the database is dropped, ending the connections still
    open to it.
    """
    name = f"t_{secrets.token_hex(8)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.resume()
    if not postgres_server.running:
        postgres_server.restart()
    postgres_server.drop_database(name)
