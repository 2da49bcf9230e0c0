"""The whole archiver as subprocesses for the end-to-end benchmarks: simulator, service, certs.

:class:`Stack` starts the seeded Zammad simulator (``python -m benchmarks.simulator``) and the
service (``python -m app serve``) on free loopback ports, with local storage, a fresh job
store and, when signing is on, the dev certificates of ``scripts/dev/gen-dev-certs.sh``
(made once per benchmark run, in a temporary folder). It sends signed webhooks, waits for
tickets to end ``pdf:signed`` (bounded in time), and reads the CPU time and memory of every
process it started from ``/proc``. Everything listens on and talks to 127.0.0.1 only.

With ``replicas`` > 1 (and ``JOB_STORE_URL`` in ``env``) it starts that many services on one
shared job store and storage root, each with its own port and ``STATE_DIR``, and spreads the
webhooks over them in turn, as a load balancer would; :meth:`Stack.kill_replica` SIGKILLs one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.common import REPO, free_port, stop, wait_http
from devtools.webhook import zammad_webhook

TOKEN = "bench-token"
SECRET = "bench-secret"
PFX_PASSWORD = "changeit"
POST_CONCURRENCY = 8
POLL_SECONDS = 0.05
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_certs: Path | None = None


def dev_certs() -> Path:
    """A folder with ``signer.pfx`` (password :data:`PFX_PASSWORD`), made once per process."""
    global _certs
    if _certs is None:
        folder = Path(tempfile.mkdtemp(prefix="bench-certs-"))
        atexit.register(shutil.rmtree, folder, True)
        subprocess.run(
            ["bash", str(REPO / "scripts/dev/gen-dev-certs.sh"), str(folder)],
            check=True,
            env={**os.environ, "DEV_PFX_PASSWORD": PFX_PASSWORD},
            stdout=subprocess.DEVNULL,
        )
        _certs = folder
    return _certs


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/*/stat``), ``pid`` first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(sorted(children.get(current, [])))
    return tree


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of one process (0 when it is gone); with ``reaped``, plus
    those of its children that ended and were waited for (``cutime``/``cstime``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of one process in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


@dataclass
class StepProfile:
    """Summed wall seconds of finished jobs, in all and by step, from the service's ``/metrics``.

    Counters only grow: subtract an earlier profile (``after - before``) to get one window.
    """

    jobs: float
    job_seconds: float
    step_seconds: dict[str, float]
    step_counts: dict[str, float]

    def __sub__(self, other: StepProfile) -> StepProfile:
        return StepProfile(
            self.jobs - other.jobs,
            self.job_seconds - other.job_seconds,
            {k: v - other.step_seconds.get(k, 0.0) for k, v in self.step_seconds.items()},
            {k: v - other.step_counts.get(k, 0.0) for k, v in self.step_counts.items()},
        )

    def mean_ms(self, step: str | None = None) -> float:
        """Mean milliseconds of one job (``step=None``) or of one step."""
        if step is None:
            return 1000 * self.job_seconds / self.jobs if self.jobs else 0.0
        count = self.step_counts.get(step, 0.0)
        return 1000 * self.step_seconds.get(step, 0.0) / count if count else 0.0


class Stack:
    """Simulator + service, started on ``__enter__`` and stopped on ``__exit__``.

    Args:
        tickets, articles: generated tickets in the simulator and articles per ticket.
        mix: their articles: ``"plain"``, ``"zammad"`` (the realistic mix) or
            ``"zammad-text"`` (the mix without its images; :func:`benchmarks.simulator.seed`).
        workers: ``WORKERS`` of the service.
        signing: sign with the dev PFX (``SIGNING_ENABLED``).
        env: further settings for the service.
        replicas: services on one job store (``env`` must hold ``JOB_STORE_URL`` for more than
            one); :attr:`service` and :attr:`url` are the first one's.
        simulator_args: further arguments of ``python -m benchmarks.simulator`` (``--delay``).
    """

    def __init__(
        self,
        *,
        tickets: int,
        articles: int,
        mix: str = "plain",
        workers: int = 2,
        signing: bool = True,
        env: dict[str, str] | None = None,
        replicas: int = 1,
        simulator_args: Sequence[str] = (),
    ) -> None:
        self.tickets, self.articles, self.workers, self.signing = tickets, articles, workers, signing
        self.mix = mix
        self.extra_env = env or {}
        self.replicas = replicas
        self.simulator_args = list(simulator_args)
        self.ticket_ids = [100_000 + i for i in range(tickets)]
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-stack-")
        self.root = Path(self._tmp.name)
        self.storage = self.root / "archive"
        self.sim: subprocess.Popen[bytes] | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.services: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.sim_url = ""
        self.url = ""
        self.urls: list[str] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self._start_simulator()
            self._start_service()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in (*self.services, self.sim):
            if proc is not None and proc.poll() is None:
                stop(proc)
        self._tmp.cleanup()

    def _start_simulator(self) -> None:
        args = [
            sys.executable,
            "-m",
            "benchmarks.simulator",
            "--token",
            TOKEN,
            "--tickets",
            str(self.tickets),
            "--articles",
            str(self.articles),
            "--mix",
            self.mix,
            *self.simulator_args,
        ]
        with open(self.root / "simulator.log", "wb") as log:
            self.sim = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=log)
        assert self.sim.stdout is not None
        ready, _, _ = select.select([self.sim.stdout], [], [], 120)
        line = self.sim.stdout.readline() if ready else b""
        match = re.match(rb"LISTENING (\S+)", line)
        if not match:
            raise RuntimeError(f"simulator did not start: {line!r} {self.log_tail('simulator.log')}")
        self.sim_url = match.group(1).decode()

    def _start_service(self) -> None:
        self.storage.mkdir()
        for index in range(self.replicas):
            self._start_replica(index)
        self.service, self.url = self.services[0], self.urls[0]

    def _log_name(self, index: int) -> str:
        return "service.log" if index == 0 else f"service-{index}.log"

    def _start_replica(self, index: int) -> None:
        port = free_port()
        state = self.root / ("state" if self.replicas == 1 else f"state-{index}")
        env = {
            **os.environ,
            "ZAMMAD_BASE_URL": self.sim_url,
            "ZAMMAD_API_TOKEN": TOKEN,
            "ALLOW_INSECURE_HTTP": "true",
            "WEBHOOK_HMAC_SECRET": SECRET,
            "STORAGE_ROOT": str(self.storage),
            "STATE_DIR": str(state),
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port),
            "WORKERS": str(self.workers),
            "SIGNING_ENABLED": "true" if self.signing else "false",
            "OBSERVABILITY_METRICS_ENABLED": "true",
            "SHUTDOWN_GRACE_SECONDS": "0",
            "LOG_LEVEL": "INFO",
            # Webhooks come from one address far faster than Zammad sends them.
            "HARDENING_RATE_LIMIT_RPS": "1000000000",
            "HARDENING_RATE_LIMIT_BURST": "1000000000",
            **self.extra_env,
        }
        if self.signing:
            certs = dev_certs()
            env.update(SIGNING_PFX_PATH=str(certs / "signer.pfx"), SIGNING_PFX_PASSWORD=PFX_PASSWORD)
        env.pop("CONFIG_PATH", None)
        with open(self.root / self._log_name(index), "wb") as log:
            service = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.services.append(service)
        self.urls.append(f"http://127.0.0.1:{port}")
        try:
            wait_http(f"{self.urls[-1]}/healthz", service, timeout=60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.log_tail(self._log_name(index))}") from None

    def kill_replica(self, index: int) -> None:
        """SIGKILL replica ``index`` and every process under it (its render processes), as a
        container kill or a power cut would; wait until it is gone."""
        proc = self.services[index]
        for pid in process_tree(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        self.killed.add(index)

    def live_urls(self) -> list[str]:
        """The URLs of the replicas not killed."""
        return [url for index, url in enumerate(self.urls) if index not in self.killed]

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of ``simulator.log`` or ``service.log``, for error messages."""
        try:
            return " | ".join((self.root / name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- driving ---------------------------------------------------------------------

    async def post(self, ticket_ids: list[int], replica: int | None = None) -> int:
        """Send one signed webhook per ticket (:data:`POST_CONCURRENCY` at a time), to the
        replicas in turn (or all to ``replica``); returns non-202s."""
        bad = 0
        urls = self.live_urls() if replica is None else [self.urls[replica]]
        queue = [(ticket_id, urls[i % len(urls)]) for i, ticket_id in enumerate(ticket_ids)][::-1]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def sender() -> None:
                nonlocal bad
                while queue:
                    ticket_id, url = queue.pop()
                    body, headers = zammad_webhook({"ticket_id": ticket_id}, SECRET)
                    async with session.post(f"{url}/ingest", data=body, headers=headers) as resp:
                        await resp.read()
                        bad += resp.status != 202

            await asyncio.gather(*(sender() for _ in range(POST_CONCURRENCY)))
        return bad

    def pdf_count(self) -> int:
        """Published PDFs under the storage root (temporary files excluded)."""
        return sum(1 for p in self.storage.rglob("*.pdf") if not p.name.startswith("."))

    async def done_so_far(self) -> tuple[int, float]:
        """PDFs under the storage root and jobs finished (``/metrics``) now: what
        :meth:`wait_signed` subtracts when tickets were archived before (a warm-up)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            return self.pdf_count(), await self._jobs_finished(session)

    async def wait_signed(
        self, ticket_ids: list[int], within_seconds: float, *, before: tuple[int, float] = (0, 0.0)
    ) -> tuple[float, list[int]]:
        """Wait until every ticket ends ``pdf:signed`` with its note, or ``within_seconds`` pass.

        Watches the storage root (cheap, every :data:`POLL_SECONDS`) and, once a second, the
        count of finished jobs in ``/metrics``; when all PDFs are there or all jobs finished
        (counted from ``before``, :meth:`done_so_far` read before the tickets were posted),
        asks the simulator's ``/_sim/state`` for the tickets not yet done. Returns the
        ``time.perf_counter()`` when the last one was seen done, and the tickets that were
        not done in time or ended ``pdf:error``.
        """
        stored_before, finished_before = before
        deadline = time.perf_counter() + within_seconds
        pending = set(ticket_ids)
        failed: set[int] = set()
        next_metrics = 0.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while pending and time.perf_counter() < deadline:
                for index, service in enumerate(self.services):
                    if index not in self.killed and service.poll() is not None:
                        raise RuntimeError(f"the service exited: {self.log_tail(self._log_name(index))}")
                finished = self.pdf_count() - stored_before >= len(ticket_ids)
                if not finished and time.perf_counter() >= next_metrics:
                    next_metrics = time.perf_counter() + 1.0
                    finished = await self._jobs_finished(session) - finished_before >= len(ticket_ids)
                if finished:
                    done, errored = await self._check(session, pending)
                    pending -= done | errored
                    failed |= errored
                if pending:
                    await asyncio.sleep(POLL_SECONDS)
        return time.perf_counter(), sorted(pending | failed)

    async def _jobs_finished(self, session: aiohttp.ClientSession) -> float:
        finished = 0.0
        for url in self.live_urls():
            async with session.get(f"{url}/metrics") as resp:
                text = await resp.text()
            finished += sum(
                float(m)
                for m in re.findall(
                    r"^zammad_pdf_archiver_jobs_processed_total\{[^}]*\} ([\d.e+-]+)$", text, re.MULTILINE
                )
            )
        return finished

    async def _check(self, session: aiohttp.ClientSession, ticket_ids: set[int]) -> tuple[set[int], set[int]]:
        """Of ``ticket_ids``, those that ended ``pdf:signed`` and those that ended ``pdf:error``."""
        done: set[int] = set()
        errored: set[int] = set()
        for ticket_id in sorted(ticket_ids):
            async with session.get(f"{self.sim_url}/_sim/state/{ticket_id}") as resp:
                state = await resp.json()
            tags = state["tags"]
            if "pdf:processing" in tags or not state["notes"]:
                continue
            if "pdf:signed" in tags:
                done.add(ticket_id)
            elif "pdf:error" in tags:
                errored.add(ticket_id)
        return done, errored

    # -- measuring -------------------------------------------------------------------

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: ``service`` (main process; of all live replicas together),
        ``render`` (its descendants, also the render processes already replaced), ``simulator``."""
        assert self.service is not None and self.sim is not None
        service = render = 0.0
        for index, proc in enumerate(self.services):
            if index in self.killed:
                continue
            tree = process_tree(proc.pid)
            service += cpu_seconds(tree[0])
            render += sum(cpu_seconds(p, reaped=True) for p in tree[1:])
        return {"service": service, "render": render, "simulator": cpu_seconds(self.sim.pid)}

    async def profile(self) -> StepProfile:
        """Job and step (``fetch``, ``render``, ``sign``, ``store``) durations so far, from ``/metrics``."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.url}/metrics") as resp,
        ):
            text = await resp.text()

        def value(name: str, labels: str = "") -> float:
            match = re.search(
                rf"^zammad_pdf_archiver_{name}{re.escape(labels)} ([\d.e+-]+)$", text, re.MULTILINE
            )
            return float(match.group(1)) if match else 0.0

        steps = ("fetch", "render", "sign", "store")
        return StepProfile(
            value("job_duration_seconds_count"),
            value("job_duration_seconds_sum"),
            {s: value("step_duration_seconds_sum", f'{{step="{s}"}}') for s in steps},
            {s: value("step_duration_seconds_count", f'{{step="{s}"}}') for s in steps},
        )
