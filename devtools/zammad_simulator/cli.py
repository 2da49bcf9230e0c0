"""``python -m devtools.zammad_simulator``: serve a simulator until SIGTERM or SIGINT.

Prints exactly one line ``LISTENING http://<host>:<port>`` on stdout once it accepts
connections (scripts and tests wait for it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from devtools.zammad_simulator.server import ZammadSimulator


async def serve_until_signalled(simulator: ZammadSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
    """Start ``simulator``, print its ``LISTENING`` line, and serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base_url = await simulator.start(host, port)
    sys.stdout.write(f"LISTENING {base_url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, seed the simulator, serve; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.zammad_simulator",
        description="A stateful Zammad REST API simulator for tests and the demo.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--token", default="test-token", help="the API token to accept")
    parser.add_argument("--seed", metavar="FIXTURES_DIR", help="load ticket 4711 from these fixtures")
    args = parser.parse_args(argv)
    simulator = ZammadSimulator(api_token=args.token)
    if args.seed:
        simulator.seed_fixture_ticket(Path(args.seed))
    asyncio.run(serve_until_signalled(simulator, args.host, args.port))
    return 0
