"""Tag routes: list a ticket's tags, add one, remove one (all idempotent).

Zammad's ``config/routes/tag.rb`` and ``app/controllers/tags_controller.rb``
(``docs/reference/zammad.md`` §3.2): add is ``POST`` (201 ``true``), remove is ``DELETE``
with a JSON body (200 ``true``); only ``object=Ticket`` is simulated.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from devtools.zammad_simulator.responses import json_response, request_json, zammad_error
from devtools.zammad_simulator.state import SimulatorState, TicketRecord, now


def add_routes(router: web.UrlDispatcher, state: SimulatorState) -> None:
    """Serve this module's routes from ``state``."""
    router.add_get("/api/v1/tags", partial(list_tags, state))
    router.add_post("/api/v1/tags/add", partial(add_tag, state))
    router.add_delete("/api/v1/tags/remove", partial(remove_tag, state))


async def list_tags(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/tags?object=Ticket&o_id={id}`` → ``{"tags": [...]}``."""
    ticket = _tag_target(state, dict(request.query))
    if isinstance(ticket, web.Response):
        return ticket
    return json_response({"tags": list(ticket.tags)})


async def add_tag(state: SimulatorState, request: web.Request) -> web.Response:
    """``POST /api/v1/tags/add`` → 201 ``true``; idempotent; the item is stripped."""
    target = _tag_change(state, request)
    if isinstance(target, web.Response):
        return target
    ticket, item = target
    if item not in ticket.tags:
        ticket.tags.append(item)
        ticket.columns["updated_at"] = now()  # Zammad touches the ticket on every tag change
    return json_response(True, status=201)


async def remove_tag(state: SimulatorState, request: web.Request) -> web.Response:
    """``DELETE /api/v1/tags/remove`` with a JSON body → 200 ``true``; idempotent."""
    target = _tag_change(state, request)
    if isinstance(target, web.Response):
        return target
    ticket, item = target
    if item in ticket.tags:
        ticket.tags.remove(item)
        ticket.columns["updated_at"] = now()
    return json_response(True, status=200)


def _tag_change(state: SimulatorState, request: web.Request) -> tuple[TicketRecord, str] | web.Response:
    """The ticket and stripped item of a tag add/remove (query and JSON body merged), or the
    error Zammad answers."""
    body = request_json(request)
    params: dict[str, Any] = {**request.query, **(body if isinstance(body, dict) else {})}
    ticket = _tag_target(state, params)
    if isinstance(ticket, web.Response):
        return ticket
    item = str(params.get("item") or "").strip()
    if not item:
        return zammad_error(422, "Need 'item' param.")
    return ticket, item


def _tag_target(state: SimulatorState, params: dict[str, Any]) -> TicketRecord | web.Response:
    if params.get("object") != "Ticket":
        return zammad_error(422, f"Invalid object '{params.get('object')}', only Ticket is simulated")
    if params.get("o_id") in (None, ""):
        return zammad_error(404, "Couldn't find Ticket without an ID")
    return state.lookup_ticket(str(params["o_id"]))
