"""A ticket's links and a merge: the simulator answers ``GET /api/v1/links`` like Zammad's
``LinksController#index`` / ``Link.list`` and merges like ``Ticket#merge_to``
(``docs/reference/zammad.md`` §3.8); the client reads it; the workflow finds a merged ticket's
target and classifies a failure as every other."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import ZammadApiError
from app.workflow.merged import find_merge_target, merge_target
from app.workflow.ports import MergedInto
from app.zammad.client import ZammadClient
from devtools.zammad_simulator import ZammadSimulator

from .conftest import TICKET_ID, TOKEN

AUTH = {"Authorization": f"Token token={TOKEN}"}


async def links_answer(session, sim: ZammadSimulator, query: str) -> tuple[int, Any]:
    async with session.get(f"{sim.base_url}/api/v1/links?{query}", headers=AUTH) as resp:
        return resp.status, await resp.json(content_type=None)


def merged(simulator: ZammadSimulator) -> None:
    """Ticket 4711 merged into its copy 4712 (number 25004712)."""
    simulator.clone_ticket(TICKET_ID, 4712, number="25004712", tags=[])
    simulator.merge_ticket(TICKET_ID, 4712)


# -- the simulator -------------------------------------------------------------------------


async def test_a_ticket_without_links_answers_an_empty_list(simulator, session):
    status, body = await links_answer(session, simulator, f"link_object=Ticket&link_object_value={TICKET_ID}")
    assert (status, body) == (200, {"links": [], "assets": {}})
    # An id no ticket has: Link.list finds nothing either.
    status, body = await links_answer(session, simulator, "link_object=Ticket&link_object_value=999999")
    assert (status, body) == (200, {"links": [], "assets": {}})


async def test_a_merge_links_the_target_as_parent_of_the_merged_ticket(simulator, session):
    merged(simulator)
    status, body = await links_answer(session, simulator, f"link_object=Ticket&link_object_value={TICKET_ID}")
    assert status == 200
    assert body["links"] == [{"link_type": "parent", "link_object": "Ticket", "link_object_value": 4712}]
    target = body["assets"]["Ticket"]["4712"]
    assert (target["id"], target["number"]) == (4712, "25004712")
    # Seen from the target, the merged ticket is its child (Link.list maps the type).
    status, body = await links_answer(session, simulator, "link_object=Ticket&link_object_value=4712")
    assert body["links"] == [{"link_type": "child", "link_object": "Ticket", "link_object_value": TICKET_ID}]
    assert body["assets"]["Ticket"][str(TICKET_ID)]["number"] == "25004711"


async def test_a_merge_moves_the_articles_and_leaves_one_public_note_merged(simulator, session):
    before = list(simulator.tickets[TICKET_ID].article_ids)
    merged(simulator)
    source, target = simulator.tickets[TICKET_ID], simulator.tickets[4712]
    assert set(before) <= set(target.article_ids)
    (left,) = [simulator.articles[a] for a in source.article_ids]
    assert (left["body"], left["type"], left["sender"], left["internal"]) == (
        "merged",
        "note",
        "Agent",
        False,
    )
    assert (source.columns["state_id"], source.names["state"], source.columns["owner_id"]) == (5, "merged", 1)
    async with session.get(f"{simulator.base_url}/api/v1/tickets/{TICKET_ID}?expand=true", headers=AUTH) as r:
        ticket = await r.json()
    assert (ticket["state_id"], ticket["state"], ticket["article_ids"]) == (5, "merged", [left["id"]])


async def test_a_merge_moves_the_merged_tickets_links_and_a_second_merge_moves_the_parent(simulator):
    simulator.clone_ticket(TICKET_ID, 4712, number="25004712", tags=[])
    simulator.clone_ticket(TICKET_ID, 4713, number="25004713", tags=[])
    simulator.clone_ticket(TICKET_ID, 4714, number="25004714", tags=[])
    simulator.add_link("normal", TICKET_ID, 4714)
    simulator.merge_ticket(TICKET_ID, 4712)
    assert simulator.links_of(4714) == [
        {"link_type": "normal", "link_object": "Ticket", "link_object_value": 4712}
    ]
    # 4712 merged into 4713: the parent link of 4711 moves with 4712's links (Zammad's update_all).
    simulator.merge_ticket(4712, 4713)
    assert {"link_type": "parent", "link_object": "Ticket", "link_object_value": 4713} in simulator.links_of(
        TICKET_ID
    )
    with pytest.raises(ValueError, match="already merged"):
        simulator.merge_ticket(4714, 4712)


async def test_links_without_their_parameters_are_refused(simulator, session):
    status, body = await links_answer(session, simulator, "link_object=Ticket")
    assert status == 422 and body["error"]


# -- the client ----------------------------------------------------------------------------


async def test_the_client_asks_for_a_tickets_links(simulator, client: ZammadClient):
    merged(simulator)
    answer = await client.get_links(TICKET_ID)
    assert answer["links"] == [{"link_type": "parent", "link_object": "Ticket", "link_object_value": 4712}]
    assert simulator.requests[-1].query == {"link_object": "Ticket", "link_object_value": str(TICKET_ID)}


async def test_a_links_answer_of_another_shape_is_an_error(simulator, client: ZammadClient):
    simulator.fail("GET", r"^/api/v1/links$", 200, text="[]")
    with pytest.raises(ZammadApiError, match="where .* was expected"):
        await client.get_links(TICKET_ID)


# -- finding the target ----------------------------------------------------------------------


async def test_the_target_of_a_merged_ticket_is_found(simulator, client: ZammadClient):
    merged(simulator)
    assert await find_merge_target(client, TICKET_ID) == MergedInto(4712, "25004712")


@pytest.mark.parametrize("status", [403, 404, 422])
async def test_a_permanent_links_failure_leaves_the_target_unknown(simulator, client: ZammadClient, status):
    merged(simulator)
    simulator.fail("GET", r"^/api/v1/links$", status)
    found = await find_merge_target(client, TICKET_ID, redact=lambda s: f"{s} (redacted)")
    assert not found.known and found.number is None
    assert found.reason.startswith(f"GET /api/v1/links answered {status}: ")
    assert found.reason.endswith(" (redacted)")  # the cause passed through the redaction


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401])
async def test_a_transient_links_failure_is_raised(simulator, client: ZammadClient, status):
    merged(simulator)
    simulator.fail("GET", r"^/api/v1/links$", status)
    with pytest.raises(ZammadApiError) as raised:
        await find_merge_target(client, TICKET_ID)
    assert raised.value.status == status


async def test_no_answer_from_the_links_endpoint_is_raised(simulator, client: ZammadClient):
    merged(simulator)
    await simulator.stop()
    with pytest.raises(ZammadApiError) as raised:
        await find_merge_target(client, TICKET_ID)
    assert raised.value.status is None


def test_the_target_is_read_from_the_one_parent_ticket_link():
    answer = {
        "links": [
            {"link_type": "normal", "link_object": "Ticket", "link_object_value": 7},
            {"link_type": "child", "link_object": "Ticket", "link_object_value": 8},
            {
                "link_type": "parent",
                "link_object": "KnowledgeBase::Answer::Translation",
                "link_object_value": 9,
            },
            {"link_type": "parent", "link_object": "Ticket", "link_object_value": 12},
        ],
        "assets": {"Ticket": {"12": {"id": 12, "number": "25000012"}}},
    }
    assert merge_target(answer) == MergedInto(12, "25000012")
    # Without the ticket in assets: the id only.
    assert merge_target({**answer, "assets": {}}) == MergedInto(12, None)


def test_several_or_no_parent_links_leave_the_target_unknown():
    two = {
        "links": [
            {"link_type": "parent", "link_object": "Ticket", "link_object_value": 12},
            {"link_type": "parent", "link_object": "Ticket", "link_object_value": 13},
        ],
        "assets": {},
    }
    found = merge_target(two)
    assert not found.known and found.reason == "2 parent ticket links (ticket ids 12, 13)"
    nothing: list[dict[str, Any]] = [
        {"links": [], "assets": {}},
        {},
        {"links": "x"},
        {"links": [None, {"link_type": "parent"}]},
    ]
    for answer in nothing:
        found = merge_target(answer)
        assert not found.known and found.reason.startswith("no parent ticket link"), answer
