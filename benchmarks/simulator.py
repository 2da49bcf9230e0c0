"""The Zammad simulator seeded for benchmarks: fixture ticket 4711 plus N generated tickets.

Run: ``python -m benchmarks.simulator --token T --tickets N --articles M [--first-id ID]
[--mix plain|zammad|zammad-text] [--delay METHOD PATH_REGEX SECONDS]...``.
Like ``python -m devtools.zammad_simulator`` it prints one line
``LISTENING http://127.0.0.1:<port>`` once it accepts connections and serves on loopback
until SIGTERM/SIGINT. Generated tickets are copies of fixture 4711's columns with ids
``ID``, ``ID+1``, …, the tag ``pdf:sign`` and ``M`` articles: with ``--mix plain`` (the
default) plain-text articles of ~1,000 characters (:func:`benchmarks.tickets.make_articles`);
with ``--mix zammad`` the realistic mix (:func:`benchmarks.tickets.make_mixed_ticket`), whose
inline images are served as the attachments they are listed as (seeded bytes, PNG and JPEG)
and whose raw e-mails are written once per article of the pattern and then served as stored
(:attr:`~devtools.zammad_simulator.state.SimulatorState.stored_mail`; Zammad serves the file it
stored). ``--mix zammad-text`` is the same mix without its images (no ``<img>``, no image
attachments; :func:`~benchmarks.tickets.make_mixed_ticket`). ``--delay`` holds matching
requests that long before they are served (:meth:`ZammadSimulator.delay`), e.g. to keep a job
running.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from benchmarks.tickets import make_articles, make_mixed_ticket
from devtools.zammad_simulator import ZammadSimulator
from devtools.zammad_simulator.cli import serve_until_signalled
from devtools.zammad_simulator.mail import article_eml

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "zammad"
FIXTURE_TICKET = 4711
FIRST_TICKET_ID = 100_000
TRIGGER_TAG = "pdf:sign"
MIXES = ("plain", "zammad", "zammad-text")
FIRST_ARTICLE_ID = 10_000_000
FIRST_ATTACHMENT_ID = 50_000_000


class StoredMail(Mapping[int, bytes]):
    """The raw e-mails of generated tickets, each written on first request for one article of
    its kind and then served for every copy of that article (the mails of the first ticket's own
    requests are not kept: a single ticket of 5,000 articles would hold ~85 MB of them).

    Copies differ from their template only in ids, which the mail does not show except in its
    MIME boundary; the boundary of the template's mail is just as valid for the copy.

    Args:
        simulator: whose articles and attachment contents the mails are written from.
        templates: article id → the id of the article whose mail it shares.
    """

    def __init__(self, simulator: ZammadSimulator, templates: dict[int, int]) -> None:
        self._simulator, self._templates = simulator, templates
        self._written: dict[int, bytes] = {}

    def __getitem__(self, article_id: int) -> bytes:
        template = self._templates[article_id]
        mail = self._written.get(template)
        if mail is None:
            mail = article_eml(self._simulator.articles[template], self._simulator.attachment_data)
            if template != article_id:  # kept for the copies; a ticket alone is not held twice
                self._written[template] = mail
        return mail

    def __iter__(self) -> Iterator[int]:
        return iter(self._templates)

    def __len__(self) -> int:
        return len(self._templates)


def seed(
    simulator: ZammadSimulator,
    tickets: int,
    articles: int,
    first_id: int = FIRST_TICKET_ID,
    mix: str = "plain",
) -> list[int]:
    """Add ``tickets`` generated tickets of ``articles`` articles each, of ``mix`` (one of
    :data:`MIXES`); returns their ids.

    Raises:
        ValueError: an unknown ``mix``.
    """
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
    simulator.seed_fixture_ticket(FIXTURES)
    columns = simulator.ticket(FIXTURE_TICKET)
    plain_template = make_articles(articles) if mix == "plain" else []
    templates: dict[int, int] = {}
    ids = []
    for offset in range(tickets):
        ticket_id = first_id + offset
        first_article = FIRST_ARTICLE_ID + offset * articles
        ticket = {
            **columns,
            "id": ticket_id,
            "number": str(25_000_000 + ticket_id),
            "title": f"Benchmark ticket {ticket_id} ({articles} articles)",
        }
        ticket_articles: list[dict[str, Any]]
        if mix == "plain":
            ticket_articles = [{**a, "id": first_article + i} for i, a in enumerate(plain_template)]
        else:
            mixed = make_mixed_ticket(
                articles,
                ticket_id=ticket_id,
                first_id=first_article,
                first_attachment_id=FIRST_ATTACHMENT_ID + offset * articles * 8,
                images=mix == "zammad",
            )
            ticket_articles = mixed.articles
            simulator.attachment_data.update(mixed.images)
            templates.update((first_article + i, FIRST_ARTICLE_ID + i) for i in range(articles))
        ids.append(simulator.add_ticket(ticket, ticket_articles, [TRIGGER_TAG]))
    if templates:
        simulator.stored_mail = StoredMail(simulator, templates)
    return ids


async def _serve(args: argparse.Namespace) -> None:
    simulator = ZammadSimulator(api_token=args.token)
    seed(simulator, args.tickets, args.articles, args.first_id, args.mix)
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
    parser.add_argument("--mix", choices=MIXES, default="plain", help="the generated tickets' articles")
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
