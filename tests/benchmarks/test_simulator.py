"""The benchmark simulator serves the Zammad mix: its articles, inline images and raw e-mails."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from app.render.images import image_references
from benchmarks.simulator import FIRST_TICKET_ID, seed
from benchmarks.tickets import make_mixed_ticket
from devtools.zammad_simulator import ZammadSimulator

TOKEN = "bench-test-token"
AUTH = {"Authorization": f"Token token={TOKEN}"}


@pytest.fixture
async def mixed() -> AsyncIterator[ZammadSimulator]:
    sim = ZammadSimulator(api_token=TOKEN)
    assert seed(sim, 2, 20, mix="zammad") == [FIRST_TICKET_ID, FIRST_TICKET_ID + 1]
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


async def _get(session: aiohttp.ClientSession, sim: ZammadSimulator, path: str) -> tuple[int, bytes]:
    async with session.get(f"{sim.base_url}{path}", headers=AUTH) as resp:
        return resp.status, await resp.read()


async def test_the_second_ticket_serves_its_images_and_mails(mixed: ZammadSimulator) -> None:
    ticket_id = FIRST_TICKET_ID + 1
    expected = make_mixed_ticket(20)
    async with aiohttp.ClientSession() as session:
        status, body = await _get(session, mixed, f"/api/v1/ticket_articles/by_ticket/{ticket_id}")
        assert status == 200
        articles = json.loads(body)
        assert len(articles) == 20 and [a["body"] for a in articles] != [a["body"] for a in expected.articles]
        assert {a["ticket_id"] for a in articles} == {ticket_id}
        refs = image_references(ticket_id, articles)
        assert len(refs) == 6
        served = []
        for ref in refs:
            status, data = await _get(
                session,
                mixed,
                f"/api/v1/ticket_attachment/{ref.ticket_id}/{ref.article_id}/{ref.attachment_id}",
            )
            assert status == 200
            served.append(data)
        assert sorted(map(len, served)) == sorted(map(len, expected.images.values()))
        assert all(d[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0") for d in served)

        first_mail = articles[0]
        status, raw = await _get(session, mixed, f"/api/v1/ticket_article_plain/{first_mail['id']}")
        assert status == 200
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Subject"] == first_mail["subject"]
        assert "image001.png" in [p.get_filename() for p in message.iter_attachments()]
        status, template = await _get(session, mixed, f"/api/v1/ticket_article_plain/{first_mail['id'] - 20}")
        assert status == 200 and template == raw  # the template's stored mail, served for every copy
        note = next(a for a in articles if a["type"] == "note")
        status, raw = await _get(session, mixed, f"/api/v1/ticket_article_plain/{note['id']}")
        assert (status, raw) == (204, b"")


def test_an_unknown_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mix"):
        seed(ZammadSimulator(api_token=TOKEN), 1, 20, mix="html")
