"""ZammadClient.search_tickets against the simulator: paging, the pause between pages, 429/503
with Retry-After, and the failures it reports."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.errors import ZammadApiError
from app.zammad import client as client_module
from app.zammad.client import SEARCH_MAX_WAITS, ZammadClient, _retry_after
from devtools.zammad_simulator import ZammadSimulator
from devtools.zammad_simulator.search import search_behaviour

from .conftest import TOKEN

QUERY = 'tags:"pdf:sign"'


@pytest.fixture
def tagged(simulator: ZammadSimulator) -> ZammadSimulator:
    """Seven tickets with the trigger tag (4711 and 5001-5006), two without."""
    for n in range(1, 7):
        simulator.clone_ticket(4711, 5000 + n, tags=["pdf:sign"])
    simulator.clone_ticket(4711, 6001, tags=["pdf:signed"])
    simulator.clone_ticket(4711, 6002, tags=[])
    return simulator


def searches(sim: ZammadSimulator) -> list[dict[str, str]]:
    return [r.query for r in sim.requests if r.path == "/api/v1/tickets/search"]


async def found(client: ZammadClient, query: str = QUERY, **kw) -> list[int]:
    return [ticket["id"] async for ticket in client.search_tickets(query, **kw)]


async def test_reads_every_page_sorted_by_id_with_expanded_tickets(client, tagged):
    assert await found(client, per_page=3, pause_seconds=0) == [4711, 5001, 5002, 5003, 5004, 5005, 5006]
    pages = searches(tagged)
    assert [p["page"] for p in pages] == ["1", "2", "3"]  # the third page is short: the end
    assert pages[0] == {
        "query": QUERY,
        "expand": "true",
        "page": "1",
        "per_page": "3",
        "sort_by": "id",
        "order_by": "asc",
    }


async def test_a_full_last_page_costs_one_empty_page(client, tagged):
    assert len(await found(client, per_page=7, pause_seconds=0)) == 7
    assert [p["page"] for p in searches(tagged)] == ["1", "2"]


async def test_pauses_between_pages_not_before_the_first(client, tagged):
    started = time.monotonic()
    await found(client, per_page=3, pause_seconds=0.2)
    assert time.monotonic() - started >= 0.4  # two pauses for three pages


async def test_stops_after_max_pages(client, tagged, caplog):
    assert await found(client, per_page=2, pause_seconds=0, max_pages=2) == [4711, 5001, 5002, 5003]
    assert len(searches(tagged)) == 2
    assert "stopped after 2 pages" in caplog.text


async def test_a_429_is_asked_again_after_its_retry_after(client, tagged):
    # 3 s: longer than the 2 s pause the client would choose without the header.
    search_behaviour(tagged).throttle(1, retry_after="3")
    started = time.monotonic()
    assert len(await found(client, pause_seconds=0)) == 7
    assert time.monotonic() - started >= 3.0
    assert len(searches(tagged)) == 2


async def test_a_503_without_retry_after_waits_a_doubling_pause(client, tagged, monkeypatch):
    monkeypatch.setattr(client_module, "SEARCH_MAX_WAIT_SECONDS", 0.05)  # keep the test short
    search_behaviour(tagged).throttle(2, status=503, retry_after=None)
    assert len(await found(client, pause_seconds=0)) == 7
    assert len(searches(tagged)) == 3


async def test_gives_up_when_throttling_lasts(client, tagged):
    search_behaviour(tagged).throttle(100, retry_after="0")
    with pytest.raises(ZammadApiError) as caught:
        await found(client, pause_seconds=0)
    assert caught.value.status == 429 and caught.value.retry_after == 0.0
    assert len(searches(tagged)) == 1 + SEARCH_MAX_WAITS
    assert TOKEN not in str(caught.value)


async def test_other_errors_are_not_asked_again(client, tagged):
    tagged.fail("GET", r"^/api/v1/tickets/search$", 500, times=1)
    with pytest.raises(ZammadApiError) as caught:
        await found(client)
    assert caught.value.status == 500 and caught.value.retry_after is None
    assert len(searches(tagged)) == 1


async def test_an_answer_that_is_not_an_array_is_an_error(client, tagged):
    tagged.fail("GET", r"^/api/v1/tickets/search$", 200, body={"tickets": [4711]}, times=1)
    with pytest.raises(ZammadApiError, match="array of tickets"):
        await found(client)


@pytest.mark.parametrize(("kw", "match"), [({"per_page": 0}, "per_page"), ({"per_page": 201}, "per_page")])
async def test_out_of_range_arguments(client, kw, match):
    with pytest.raises(ValueError, match=match):
        await found(client, **kw)


def test_retry_after_values():
    assert _retry_after("120") == 120.0
    assert _retry_after(None) is None and _retry_after(" ") is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after(later) or 0) <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert _retry_after(earlier) == 0.0
