"""The service's ASGI application called in-process, for instruction counts per ``/ingest``.

``python -m benchmarks.app_instructions [VARIANT]`` builds the application as ``serve`` does
(``create_app``, lifespan started, the job store in memory), optionally with one hand-written
piece swapped back for the library's (:mod:`benchmarks.library_variants`), and answers
signed webhooks called straight through its middleware chain: no server, no sockets, no load
generator. It talks to its parent (:mod:`benchmarks.ingest_cpu`, which runs it under
callgrind) by lines: it prints ``READY`` once warm and waits; on ``GO`` it answers
:data:`WAVES` waves of :data:`WAVE` concurrent webhooks (the group commit sees the same
batches every time), prints ``DONE <requests>`` and waits; ``EXIT`` ends it.

The workload is the same in every run and nothing waits on time, so the instructions counted
between ``GO`` and ``DONE`` repeat closely whatever else the machine does, unlike a server
under a load generator, whose batch sizes follow the machine's timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

WAVE = 32
"""Webhooks in flight at once (as ``benchmarks/ingest.py``'s 32 connections)."""
WAVES = 64
"""Waves counted (2,048 webhooks)."""
WARM_UP_WAVES = 8
SECRET = b"bench-secret"
BODY = b'{"ticket_id":4711,"ticket_number":"25004711"}'
SIGNATURE = ("sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()).encode()


def _settings(storage: Path) -> Any:
    from app.config import load_settings

    return load_settings(
        {
            "ZAMMAD_BASE_URL": "http://127.0.0.1:9",  # a closed port: jobs fail fast and coalesce
            "ZAMMAD_API_TOKEN": "bench-token",
            "ZAMMAD_TIMEOUT_SECONDS": "1",
            "ALLOW_INSECURE_HTTP": "true",
            "WEBHOOK_HMAC_SECRET": SECRET.decode(),
            "STORAGE_ROOT": str(storage),
            "STATE_DIR": str(storage / "state"),
            "STATE_DURABLE": "false",
            "SIGNING_ENABLED": "false",
            "WORKERS": "2",
            "RENDER_PROCESSES": "1",
            "SHUTDOWN_GRACE_SECONDS": "0",
            # The one job (every webhook is for ticket 4711) fails during the warm-up and waits
            # an hour for its retry: no job runs while instructions are counted.
            "WORKFLOW_RETRY_BASE_SECONDS": "3600",
            "WORKFLOW_RETRY_MAX_SECONDS": "3600",
            "HARDENING_RATE_LIMIT_RPS": "1000000000",
            "HARDENING_RATE_LIMIT_BURST": "1000000000",
            "LOG_LEVEL": "INFO",
        }
    )


async def _webhook(app: Any, number: int) -> int:
    """One signed ``POST /ingest`` through the application; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ingest",
        "raw_path": b"/ingest",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(BODY)).encode()),
            (b"x-hub-signature", SIGNATURE),
            (b"x-zammad-delivery", f"bench-{number}".encode()),
        ],
        "client": ("127.0.0.1", 40000 + number % 20000),
        "server": ("127.0.0.1", 8080),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _waves(app: Any, first: int, waves: int) -> int:
    """``waves`` waves of :data:`WAVE` concurrent webhooks; the count of non-202 answers."""
    bad = 0
    for wave in range(waves):
        base = first + wave * WAVE
        statuses = await asyncio.gather(*(_webhook(app, base + i) for i in range(WAVE)))
        bad += sum(1 for s in statuses if s != 202)
    return bad


async def _run(variant: str | None) -> None:
    if variant is not None:
        from benchmarks.library_variants import VARIANTS

        VARIANTS[variant]()
    from app.main import create_app

    loop = asyncio.get_running_loop()

    async def line() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    with tempfile.TemporaryDirectory(prefix="app-instructions-") as tmp:
        app = create_app(_settings(Path(tmp)))
        async with app.router.lifespan_context(app):
            bad = await _waves(app, 0, WARM_UP_WAVES)
            pool = app.state.runtime.pool
            for _ in range(600):  # the job's one attempt ends (its retry is an hour away)
                if pool.in_flight == 0:
                    break
                await asyncio.sleep(0.1)
            print("READY", flush=True)
            if await line() != "GO":
                return
            bad += await _waves(app, WARM_UP_WAVES * WAVE, WAVES)
            print(f"DONE {WAVES * WAVE} {bad}", flush=True)
            await line()  # EXIT


def main(argv: list[str]) -> int:
    variant = argv[0] if argv else None
    os.environ.pop("CONFIG_PATH", None)
    asyncio.run(_run(variant))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
