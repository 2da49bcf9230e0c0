"""The links route: a ticket's links to other tickets, as ``GET /api/v1/links`` lists them.

Zammad's ``app/controllers/links_controller.rb#index`` and ``app/models/link.rb`` (``Link.list``;
``docs/reference/zammad.md`` §3.8): ``{"links": [...], "assets": {...}}``, the links as seen
from the object asked about, ``assets`` the linked tickets. Links come from
:meth:`~devtools.zammad_simulator.state.SimulatorState.add_link` and
:meth:`~devtools.zammad_simulator.state.SimulatorState.merge_ticket`.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

from aiohttp import web

from devtools.zammad_simulator.responses import json_response, zammad_error
from devtools.zammad_simulator.state import SimulatorState


def add_routes(router: web.UrlDispatcher, state: SimulatorState) -> None:
    """Serve this module's routes from ``state``."""
    router.add_get("/api/v1/links", partial(list_links, state))


async def list_links(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/links?link_object=Ticket&link_object_value={id}``.

    Like Zammad: a ticket without links, or an id no ticket has, answers ``{"links": [],
    "assets": {}}`` (``Link.list`` finds nothing); so does another ``link_object`` (the
    simulator links tickets only). ``assets.Ticket`` holds each linked ticket's columns by id
    string (``number`` a string). Without both parameters the simulator answers 422 (Zammad
    fails on a nil object name in ``Link::Object``; not recorded).
    """
    link_object = request.query.get("link_object")
    raw_value = request.query.get("link_object_value", "")
    if not link_object or not raw_value:
        return zammad_error(422, "Need link_object and link_object_value.")
    if link_object != "Ticket" or not raw_value.isdigit():
        return json_response({"links": [], "assets": {}})
    links = state.links_of(int(raw_value))
    tickets: dict[str, Any] = {}
    for link in links:
        linked = state.tickets.get(link["link_object_value"])
        if linked is not None:
            tickets[str(linked.columns["id"])] = {
                **copy.deepcopy(linked.columns),
                "article_ids": list(linked.article_ids),
            }
    return json_response({"links": links, "assets": {"Ticket": tickets} if tickets else {}})
