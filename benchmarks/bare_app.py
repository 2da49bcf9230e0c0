"""The baseline for ``benchmarks/ingest.py``: one bare Starlette route doing the same HMAC
check and JSON parse as ``/ingest``, on the same Hypercorn, with nothing else.

Run: ``python -m benchmarks.bare_app PORT SECRET``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.webhook import signature_ok


def make_app(secret: bytes) -> Starlette:
    async def ingest(request: Request) -> Response:
        body = await request.body()
        if not signature_ok(body, request.headers.get("x-hub-signature"), secret):
            return Response(b'{"error":"forbidden"}', 403, media_type="application/json")
        payload = orjson.loads(body)
        return Response(orjson.dumps({"status": "accepted", "ticket_id": payload["ticket_id"]}), 202,
                        media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/ingest", ingest, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2].encode()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(make_app(secret), config, shutdown_trigger=stop.wait)

    asyncio.run(run())


if __name__ == "__main__":
    main()
