"""Ticket and article routes: read a ticket (plain, ``?expand=true``, ``?all=true``), its
articles, one article, and create an article (the archiver's internal note).

Zammad's ``config/routes/ticket.rb``, ``app/controllers/{tickets,ticket_articles}_controller.rb``
(``docs/reference/zammad.md`` §3.2–3.4).
"""

from __future__ import annotations

import base64
import binascii
import copy
from functools import partial
from typing import Any

from aiohttp import web

from devtools.zammad_simulator.responses import json_response, request_json, truthy, zammad_error
from devtools.zammad_simulator.state import (
    ARTICLE_TYPE_IDS,
    SENDER_IDS,
    SimulatorState,
    TicketRecord,
    now,
)

MAX_ARTICLE_BODY_CHARS = 1_500_000
"""Longest article body Zammad accepts through the API (``Ticket::Article#check_body``)."""

_ARTICLE_NAME_KEYS = ("type", "sender", "created_by", "updated_by", "origin_by", "time_unit")
"""Keys that exist only in rendered articles, not in ``?all=true`` ``TicketArticle`` assets."""


def add_routes(router: web.UrlDispatcher, state: SimulatorState) -> None:
    """Serve this module's routes from ``state``."""
    router.add_get("/api/v1/tickets/{id}", partial(get_ticket, state))
    router.add_get("/api/v1/ticket_articles/by_ticket/{id}", partial(articles_by_ticket, state))
    router.add_get("/api/v1/ticket_articles/{id}", partial(get_article, state))
    router.add_post("/api/v1/ticket_articles", partial(create_article, state))


async def get_ticket(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/tickets/{id}``: columns; ``?expand=true`` adds names and
    ``article_ids``; ``?all=true`` the ``ticket-all.json`` shape (§3.2, §3.3)."""
    ticket = state.lookup_ticket(request.match_info["id"])
    if isinstance(ticket, web.Response):
        return ticket
    if truthy(request.query.get("expand")):
        return json_response(expanded(ticket))
    if truthy(request.query.get("all")):
        return json_response(_all(state, ticket))
    return json_response(ticket.columns)


def expanded(ticket: TicketRecord) -> dict[str, Any]:
    """A ticket as ``GET /tickets/{id}?expand=true`` answers it (columns, names, ``article_ids``)."""
    data = {
        **ticket.columns,
        **ticket.names,
        "article_ids": list(ticket.article_ids),
        "ticket_time_accounting_ids": list(ticket.time_accounting_ids),
    }
    return dict(sorted(data.items()))


def _all(state: SimulatorState, ticket: TicketRecord) -> dict[str, Any]:
    ticket_id = ticket.columns["id"]
    record = {
        **copy.deepcopy(ticket.columns),
        "article_ids": list(ticket.article_ids),
        "ticket_time_accounting_ids": list(ticket.time_accounting_ids),
    }
    assets: dict[str, Any] = {"Ticket": {str(ticket_id): record}}
    assets.update(copy.deepcopy(ticket.all_extras.get("assets", {})))
    assets["TicketArticle"] = {
        str(a): {k: v for k, v in copy.deepcopy(state.articles[a]).items() if k not in _ARTICLE_NAME_KEYS}
        for a in ticket.article_ids
    }
    extras = ticket.all_extras
    return {
        "ticket_id": ticket_id,
        "ticket_article_ids": list(ticket.article_ids),
        "assets": assets,
        "links": copy.deepcopy(extras.get("links", [])),
        "tags": list(ticket.tags),
        "mentions": copy.deepcopy(extras.get("mentions", [])),
        "time_accountings": copy.deepcopy(extras.get("time_accountings", [])),
        "form_meta": copy.deepcopy(extras.get("form_meta", {})),
    }


async def articles_by_ticket(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/ticket_articles/by_ticket/{id}``: every article, not paginated."""
    ticket = state.lookup_ticket(request.match_info["id"])
    if isinstance(ticket, web.Response):
        return ticket
    return json_response([state.articles[a] for a in ticket.article_ids])


async def get_article(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/ticket_articles/{id}``."""
    article = state.lookup_article(request.match_info["id"])
    if isinstance(article, web.Response):
        return article
    return json_response(article)


async def create_article(state: SimulatorState, request: web.Request) -> web.Response:
    """``POST /api/v1/ticket_articles`` (§3.4): 201 + the article; 422 without a body or
    with one over 1,500,000 chars (``Ticket::Article#check_body``)."""
    params = request_json(request)
    if not isinstance(params, dict):
        params = {}
    if params.get("ticket_id") in (None, ""):
        return zammad_error(404, "Couldn't find Ticket without an ID")
    ticket = state.lookup_ticket(str(params["ticket_id"]))
    if isinstance(ticket, web.Response):
        return ticket
    body = params.get("body")
    if body is None or not str(body).strip():
        return zammad_error(422, "Need at least an 'article body' field.")
    body = str(body)
    if len(body) > MAX_ARTICLE_BODY_CHARS:
        return zammad_error(
            422,
            f"body of article is too large, {len(body)} chars - only {MAX_ARTICLE_BODY_CHARS} allowed",
        )
    type_name = params.get("type") or "note"
    sender_name = params.get("sender") or "Agent"
    if type_name not in ARTICLE_TYPE_IDS:
        return zammad_error(422, f"Unable to find Ticket::Article::Type with name '{type_name}'")
    if sender_name not in SENDER_IDS:
        return zammad_error(422, f"Unable to find Ticket::Article::Sender with name '{sender_name}'")
    attachments = _decode_attachments(state, params.get("attachments"))
    if isinstance(attachments, web.Response):
        return attachments
    created = now()
    article_id = max(state.articles, default=0) + 1
    article = {
        "id": article_id,
        "ticket_id": ticket.columns["id"],
        "type_id": ARTICLE_TYPE_IDS[type_name],
        "sender_id": SENDER_IDS[sender_name],
        "from": params.get("from") or state.user_name,
        "to": params.get("to"),
        "cc": params.get("cc"),
        "subject": params.get("subject"),
        "reply_to": None,
        "message_id": None,
        "message_id_md5": None,
        "in_reply_to": None,
        "content_type": params.get("content_type") or "text/plain",
        "references": None,
        "body": body,
        "internal": bool(params.get("internal", False)),
        "preferences": {},
        "updated_by_id": state.user_id,
        "created_by_id": state.user_id,
        "origin_by_id": None,
        "created_at": created,
        "updated_at": created,
        "detected_language": None,
        "type": type_name,
        "sender": sender_name,
        "created_by": state.user_login,
        "updated_by": state.user_login,
        "attachments": attachments,
        "time_unit": None,
    }
    state.articles[article_id] = article
    state.hidden_attachments[article_id] = []
    state.created_article_ids.add(article_id)
    ticket.article_ids.append(article_id)
    # Creating an article is a ticket update (§3.4, §5).
    ticket.columns["article_count"] = len(ticket.article_ids)
    ticket.columns["updated_at"] = created
    ticket.columns["updated_by_id"] = state.user_id
    ticket.names["updated_by"] = state.user_login
    return json_response(copy.deepcopy(article), status=201)


def _decode_attachments(state: SimulatorState, raw: Any) -> list[dict[str, Any]] | web.Response:
    """``attachments: [{"filename", "data" (base64), "mime-type"}]``; 422 on a missing key
    or bad base64 (§3.4)."""
    if not raw:
        return []
    if not isinstance(raw, list):
        return zammad_error(422, "Attachments need to be an array")
    result = []
    next_id = max(state.all_attachment_ids(), default=0) + 1
    for item in raw:
        if not isinstance(item, dict) or not all(item.get(k) for k in ("filename", "data", "mime-type")):
            return zammad_error(422, "Attachment needs 'filename', 'data' and 'mime-type' params.")
        try:
            data = base64.b64decode(str(item["data"]), validate=True)
        except (binascii.Error, ValueError):
            return zammad_error(422, "Invalid base64 for attachment with index '0'")
        state.attachment_data[next_id] = data
        result.append(
            {
                "id": next_id,
                "filename": item["filename"],
                "size": str(len(data)),
                "preferences": {"Content-Type": item["mime-type"], "Mime-Type": item["mime-type"]},
            }
        )
        next_id += 1
    return result
