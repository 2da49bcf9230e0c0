"""PDF/A-3B under veraPDF (the reference validator) for every fixture ticket, in one veraPDF run.

The tickets: the Zammad fixture ticket in each shape the renderer takes (ticket-all, ``?expand=true``,
the webhook's ``ticket``), every body of the e-mail corpus as its own ticket, the demo ticket as
``make demo`` archives it (the simulator's ticket 4711 fetched by :class:`ZammadClient`, its
images and originals collected as the workflow does) and a ticket of the benchmark's plain-text
articles. All are rendered as the service renders them (PDF/A on), then validated together by
:func:`tests.verify.verapdf_many`; the same files must hold no unused font object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.render.cli import extract_articles, extract_ticket
from app.render.images import image_references
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.images import fetch_images
from app.workflow.originals import EmbedPolicy, collect_originals
from app.workflow.ports import EmbeddedFile, OmittedFile
from app.zammad.client import ZammadClient
from benchmarks.tickets import make_articles, make_mixed_ticket
from devtools.zammad_simulator import ZammadSimulator
from tests.verify import verapdf_many

from .email_corpus import CORPUS, PNG_RED
from .helpers import ARCHIVED_AT, FIXTURES, load, write
from .test_email_corpus import article
from .test_fonts_used import font_use

TOKEN = "verapdf-fixtures-token"


def fixture_tickets() -> dict[str, tuple[dict[str, Any], list[dict[str, Any]], list[str]]]:
    """The fixture ticket 4711 as ticket-all output, as ``?expand=true`` and as the webhook's ``ticket``."""
    articles = load("articles-by-ticket.json")
    tags = load("tags.json")["tags"]
    return {
        "fixture-ticket-all": (extract_ticket(load("ticket-all.json")), articles, tags),
        "fixture-ticket-all-articles": (
            extract_ticket(load("ticket-all.json")),
            extract_articles(load("ticket-all.json")),
            tags,
        ),
        "fixture-expand": (load("ticket-expand.json"), articles, tags),
        "fixture-webhook": (extract_ticket(load("webhook-default.json")), articles, tags),
    }


async def demo_ticket() -> tuple[dict[str, Any], list[dict[str, Any]], list[str], dict[int, bytes], Any]:
    """Ticket 4711 as ``make demo`` archives it: from the seeded simulator through the
    service's client, images and originals (default caps) fetched as the workflow does."""
    sim = ZammadSimulator(api_token=TOKEN)
    ticket_id = sim.seed_fixture_ticket(FIXTURES)
    base = await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            zammad = ZammadClient(session, base, TOKEN)
            ticket, ticket_raw = await zammad.get_ticket_raw(ticket_id)
            articles, articles_raw = await zammad.list_articles_raw(ticket_id)
            tags = await zammad.get_tags(ticket_id)
            images = (
                await fetch_images(zammad, image_references(ticket_id, articles), log_context={})
            ).images
            originals = await collect_originals(
                zammad,
                ticket_id,
                ticket_raw=ticket_raw,
                articles_raw=articles_raw,
                articles=articles,
                images=images,
                policy=EmbedPolicy(),
            )
    finally:
        await sim.stop()
    return ticket, articles, tags, images, originals


Render = Callable[[], bytes]


def renders() -> dict[str, Render]:
    """File name → how that ticket is rendered (PDF/A-3B, as the service does)."""
    options = RenderOptions()

    def plain(
        ticket: dict[str, Any],
        articles: list[dict[str, Any]],
        tags: list[str],
        images: dict[int, bytes] | None = None,
        embedded: tuple[EmbeddedFile, ...] = (),
        omitted: tuple[OmittedFile, ...] = (),
    ) -> Render:
        return lambda: (
            render_ticket_pdf(
                ticket,
                articles,
                tags,
                archived_at=ARCHIVED_AT,
                options=options,
                images=images,
                embedded=embedded,
                omitted=omitted,
            ).data
        )

    jobs: dict[str, Render] = {name: plain(*ticket) for name, ticket in fixture_tickets().items()}
    for name, (body, content_type, _) in CORPUS.items():
        jobs[f"corpus-{name}"] = plain(
            {"number": "20", "title": f"Korpus: {name}"}, [article(body, content_type)], [], {501: PNG_RED}
        )

    def demo() -> bytes:
        ticket, articles, tags, images, (embedded, omitted) = asyncio.run(demo_ticket())
        assert embedded and images is not None
        return plain(ticket, articles, tags, images, embedded, omitted)()

    jobs["demo"] = demo
    jobs["benchmark-plain"] = plain(
        {"number": "25000001", "title": "Benchmark: plain-text articles"}, make_articles(20), ["bench"]
    )
    mixed = make_mixed_ticket(20)
    jobs["benchmark-zammad-mix"] = plain(
        {"number": "25004711", "title": "Benchmark: the Zammad mix"}, mixed.articles, ["bench"], mixed.images
    )
    return jobs


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every ticket of :func:`renders` written as ``<name>.pdf``."""
    folder = tmp_path_factory.mktemp("verapdf-fixtures")
    return {name: write(folder, render(), f"{name}.pdf") for name, render in renders().items()}


def test_every_fixture_ticket_is_pdfa_3b_under_verapdf(rendered: dict[str, Path]):
    assert len(rendered) >= len(CORPUS) + 7
    verdicts = verapdf_many(list(rendered.values()), "3b")
    failed = {name: verdicts[path].report for name, path in rendered.items() if not verdicts[path].compliant}
    assert failed == {}, "\n".join(f"{name}: {report}" for name, report in failed.items())


def test_no_fixture_ticket_holds_an_unused_font(rendered: dict[str, Path]):
    unused = {name: font_use(path).unused for name, path in rendered.items()}
    assert {name: fonts for name, fonts in unused.items() if fonts} == {}
