"""The Zammad simulator seeded for benchmarks: fixture ticket 4711 plus N generated tickets.

Run: ``python -m benchmarks.simulator --token T --tickets N --articles M [--first-id ID]
[--delay METHOD PATH_REGEX SECONDS]...``.
Like ``python -m devtools.zammad_simulator`` it prints one line
``LISTENING http://127.0.0.1:<port>`` once it accepts connections and serves on loopback
until SIGTERM/SIGINT. Generated tickets are copies of fixture 4711's columns with ids
``ID``, ``ID+1``, …, the tag ``pdf:sign`` and ``M`` plain-text articles of ~1,000 characters
(:func:`benchmarks.tickets.make_articles`). ``--delay`` holds matching requests that long
before they are served (:meth:`ZammadSimulator.delay`), e.g. to keep a job running.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from benchmarks.tickets import make_articles
from devtools.zammad_simulator import ZammadSimulator
from devtools.zammad_simulator.cli import serve_until_signalled

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "zammad"
FIXTURE_TICKET = 4711
FIRST_TICKET_ID = 100_000
TRIGGER_TAG = "pdf:sign"


def seed(
    simulator: ZammadSimulator, tickets: int, articles: int, first_id: int = FIRST_TICKET_ID
) -> list[int]:
    """Add ``tickets`` generated tickets of ``articles`` articles each; returns their ids."""
    simulator.seed_fixture_ticket(FIXTURES)
    columns = simulator.ticket(FIXTURE_TICKET)
    template = make_articles(articles)
    ids = []
    next_article_id = 10_000_000
    for offset in range(tickets):
        ticket_id = first_id + offset
        ticket = {
            **columns,
            "id": ticket_id,
            "number": str(25_000_000 + ticket_id),
            "title": f"Benchmark ticket {ticket_id} ({articles} articles)",
        }
        ticket_articles = [{**a, "id": next_article_id + i} for i, a in enumerate(template)]
        next_article_id += len(template)
        ids.append(simulator.add_ticket(ticket, ticket_articles, [TRIGGER_TAG]))
    return ids


async def _serve(args: argparse.Namespace) -> None:
    simulator = ZammadSimulator(api_token=args.token)
    seed(simulator, args.tickets, args.articles, args.first_id)
    for method, path_regex, seconds in args.delay or ():
        simulator.delay(method, path_regex, float(seconds))
    await serve_until_signalled(simulator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--token", default="bench-token", help="the API token to accept")
    parser.add_argument("--tickets", type=int, default=0, help="generated tickets besides 4711")
    parser.add_argument("--articles", type=int, default=20, help="articles per generated ticket")
    parser.add_argument(
        "--first-id", type=int, default=FIRST_TICKET_ID, help="id of the first generated ticket"
    )
    parser.add_argument(
        "--delay",
        nargs=3,
        action="append",
        metavar=("METHOD", "PATH_REGEX", "SECONDS"),
        help="hold matching requests SECONDS before serving them (repeatable)",
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
