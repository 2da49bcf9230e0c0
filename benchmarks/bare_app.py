"""The baseline for ``benchmarks/ingest.py``: one bare Starlette route doing the same HMAC
check and JSON parse as ``/ingest``, on the same Hypercorn, with nothing else.

With ``--batched`` the route also waits, like ``/ingest`` waits for its group commit, for a
future that is resolved on the event loop's next turn together with those of every other
request of that turn — the hand-off alone, without SQL, fsync or thread. It shows what
answering in batches costs on this benchmark by itself.

Run: ``python -m benchmarks.bare_app PORT SECRET [--batched]``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING, cast

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.webhook import signature_ok

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework


class _Batch:
    """Futures answered together on the loop's next turn (the job store's group commit, minus the work)."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.waiting:
            loop.call_soon(self._release)
        self.waiting.append(future)
        await future

    def _release(self) -> None:
        batch, self.waiting = self.waiting, []
        for future in batch:
            future.set_result(None)


def make_app(secret: bytes, *, batched: bool = False) -> Starlette:
    batch = _Batch() if batched else None

    async def ingest(request: Request) -> Response:
        body = await request.body()
        if batch is not None:
            await batch.wait()
        if not signature_ok(body, request.headers.get("x-hub-signature"), secret):
            return Response(b'{"error":"forbidden"}', 403, media_type="application/json")
        payload = orjson.loads(body)
        return Response(
            orjson.dumps({"status": "accepted", "ticket_id": payload["ticket_id"]}),
            202,
            media_type="application/json",
        )

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/ingest", ingest, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2].encode()
    batched = "--batched" in sys.argv[3:]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Starlette types ASGI messages as plain mappings, Hypercorn as TypedDicts: the same protocol.
        app = cast("ASGIFramework", make_app(secret, batched=batched))
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(run())


if __name__ == "__main__":
    main()
