"""The simulator's ``GET /api/v1/tickets/search`` answers as Zammad's does (shapes, paging,
status codes, the tag query, the SQL fallback without Elasticsearch, a throttling proxy)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from devtools.zammad_simulator import MASKED_ERROR, ZammadSimulator
from devtools.zammad_simulator.search import search_behaviour
from devtools.zammad_simulator.tickets import expanded as expanded_ticket

from .conftest import TOKEN

AUTH = {"Authorization": f"Token token={TOKEN}"}


@pytest.fixture
def tickets(simulator: ZammadSimulator) -> ZammadSimulator:
    """4711 (rechnung, reklamation, pdf:sign) plus 5001-5004 with other tags."""
    simulator.clone_ticket(4711, 5001, tags=["pdf:processing"])
    simulator.clone_ticket(4711, 5002, tags=["pdf:sign", "vip"])
    simulator.clone_ticket(4711, 5003, tags=[])
    simulator.clone_ticket(4711, 5004, tags=["pdf:signed"])
    return simulator


async def search(
    sim: ZammadSimulator, session: aiohttp.ClientSession, headers: dict[str, str] | None = None, **params: str
) -> tuple[int, Any, Any]:
    assert sim.base_url is not None
    async with session.get(
        f"{sim.base_url}/api/v1/tickets/search", params=params, headers=AUTH if headers is None else headers
    ) as resp:
        body = await resp.json(content_type=None) if "json" in resp.content_type else await resp.text()
        return resp.status, body, resp.headers


async def ids(sim: ZammadSimulator, session: aiohttp.ClientSession, query: str) -> list[int]:
    status, body, _ = await search(sim, session, query=query, expand="true", sort_by="id", order_by="asc")
    assert status == 200, body
    return [t["id"] for t in body]


async def test_expand_answers_an_array_of_expanded_tickets(tickets, session):
    status, body, headers = await search(tickets, session, query='tags:"pdf:sign"', expand="true")
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert sorted(t["id"] for t in body) == [4711, 5002]
    expanded = expanded_ticket(tickets.ticket_record(4711))
    assert next(t for t in body if t["id"] == 4711) == expanded  # the shape of GET /tickets/{id}?expand
    assert {"state", "group", "owner", "article_ids", "updated_at"} <= set(body[0])
    assert "tags" not in body[0]


async def test_without_expand_ids_count_and_assets(tickets, session):
    status, body, _ = await search(tickets, session, query='tags:"pdf:sign"', per_page="1", sort_by="id")
    assert status == 200
    assert set(body) == {"tickets", "tickets_count", "assets"}
    assert body["tickets_count"] == 2  # all matches, the page holds one
    [ticket_id] = body["tickets"]
    assert list(body["assets"]["Ticket"]) == [str(ticket_id)]
    assert body["assets"]["Ticket"][str(ticket_id)]["article_ids"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('tags:"pdf:sign"', [4711, 5002]),
        ("tags:pdf\\:sign", [4711, 5002]),
        ("tags:pdf\\:processing", [5001]),
        ('tags:"pdf:sign" AND tags:vip', [5002]),
        ('tags:"pdf:sign" tags:vip', [5002]),  # AND is Zammad's default operator
        ('tags:"pdf:processing" OR tags:"pdf:signed"', [5001, 5004]),
        ('tags:"pdf:sign" NOT tags:vip', [4711]),
        ('tags:"pdf:sign" -tags:vip', [4711]),
        ("tags:pdf*", [4711, 5001, 5002, 5004]),
        ("number:5003", [5003]),
        ("state:new", []),
        ("Rechnung", [4711, 5001, 5002, 5003, 5004]),  # bare words: title and articles
        ("*", [4711, 5001, 5002, 5003, 5004]),
        ("nosuchfield:x", []),
    ],
)
async def test_query_syntax(tickets, session, query, expected):
    assert await ids(tickets, session, query) == expected


@pytest.mark.parametrize(
    "query", ["(tags:a OR tags:b)", "updated_at:>now-1h", "updated_at:[1 TO 2]", 'tags:"x']
)
async def test_unsimulated_syntax_is_refused_clearly(tickets, session, query):
    status, body, _ = await search(tickets, session, query=query, expand="true")
    assert status == 400 and body["error"].startswith("zammad simulator:")


async def test_paging_follows_page_and_per_page_and_ends_with_an_empty_page(tickets, session):
    pages = []
    for page in ("1", "2", "3", "4"):
        status, body, _ = await search(
            tickets, session, query="*", expand="true", per_page="2", page=page, sort_by="id", order_by="asc"
        )
        assert status == 200
        pages.append([t["id"] for t in body])
    assert pages == [[4711, 5001], [5002, 5003], [5004], []]
    # ``limit`` is the older name of ``per_page``; ``page`` defaults to 1.
    _, body, _ = await search(tickets, session, query="*", expand="true", limit="3", sort_by="id")
    assert [t["id"] for t in body] == [5004, 5003, 5002]  # order_by defaults to desc


async def test_per_page_is_capped_at_200_and_read_as_ruby_to_i(simulator, session):
    for n in range(1, 260):
        simulator.clone_ticket(4711, 10_000 + n)
    _, body, _ = await search(simulator, session, query="*", expand="true", per_page="1000")
    assert len(body) == 200
    _, body, _ = await search(simulator, session, query="*", expand="true", per_page="7abc")
    assert len(body) == 7
    _, body, _ = await search(simulator, session, query="*", expand="true", per_page="abc")
    assert body == []  # "abc".to_i is 0


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "-1"}, {"per_page": "-5"}])
async def test_a_negative_offset_or_size_is_zammads_masked_500(tickets, session, params):
    status, body, _ = await search(tickets, session, query="*", **params)
    assert (status, body) == (500, {"error": MASKED_ERROR})


async def test_search_needs_the_token_like_every_endpoint(tickets, session):
    status, body, headers = await search(tickets, session, headers={}, query="*")
    assert status == 403 and headers["X-Failure"] == "Authentication required"
    status, _, _ = await search(tickets, session, headers={"Authorization": "Token token=wrong"}, query="*")
    assert status == 401


async def test_without_elasticsearch_zammads_sql_fallback_knows_no_fields(tickets, session):
    search_behaviour(tickets).search_index = False
    assert await ids(tickets, session, 'tags:"pdf:sign"') == []
    assert await ids(tickets, session, "Rechnung*") == [4711, 5001, 5002, 5003, 5004]
    assert await ids(tickets, session, "5003") == [5003]  # the number, LIKE '%…%'


async def test_a_throttling_proxy_answers_429_with_retry_after_then_lets_through(tickets, session):
    search_behaviour(tickets).throttle(2, retry_after="7")
    for _ in range(2):
        status, body, headers = await search(tickets, session, query="*")
        assert (status, headers["Retry-After"]) == (429, "7")
        assert "Too Many Requests" in body
    status, _, _ = await search(tickets, session, query="*")
    assert status == 200


async def test_the_search_route_does_not_shadow_get_ticket(tickets, session):
    assert tickets.base_url is not None
    async with session.get(f"{tickets.base_url}/api/v1/tickets/5002", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["id"] == 5002
    assert [r.path for r in tickets.requests] == ["/api/v1/tickets/5002"]
