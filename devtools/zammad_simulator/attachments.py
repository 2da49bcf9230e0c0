"""Attachment and raw-mail routes: an attachment's bytes, and an article's stored e-mail.

Zammad's ``TicketArticlesController#attachment`` and ``#article_plain``
(``docs/reference/zammad.md`` §3.2, §4).
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from devtools.zammad_simulator.mail import article_eml
from devtools.zammad_simulator.responses import content_disposition, zammad_error
from devtools.zammad_simulator.state import SimulatorState


def add_routes(router: web.UrlDispatcher, state: SimulatorState) -> None:
    """Serve this module's routes from ``state``."""
    router.add_get("/api/v1/ticket_attachment/{ticket_id}/{article_id}/{id}", partial(get_attachment, state))
    router.add_get("/api/v1/ticket_article_plain/{id}", partial(article_plain, state))


async def get_attachment(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/ticket_attachment/{t}/{a}/{id}``: the bytes (posted, or generated and
    typed from the stored preferences); 403 when the article is not in the ticket or the file
    not in the article."""
    ticket = state.lookup_ticket(request.match_info["ticket_id"])
    if isinstance(ticket, web.Response):
        return ticket
    article = state.lookup_article(request.match_info["article_id"])
    if isinstance(article, web.Response):
        return article
    if article["ticket_id"] != ticket.columns["id"]:
        return zammad_error(403, "No access, article_id/ticket_id is not matching.")
    wanted = request.match_info["id"]
    entries = list(article.get("attachments", [])) + state.hidden_attachments.get(article["id"], [])
    entry = next((e for e in entries if str(e.get("id")) == wanted), None)
    if entry is None:
        return zammad_error(403, "Requested file id is not linked with article_id.")
    preferences = entry.get("preferences") or {}
    content_type = (
        preferences.get("Content-Type") or preferences.get("Mime-Type") or "application/octet-stream"
    )
    data = state.attachment_bytes(entry)
    disposition = request.query.get("disposition", "inline")
    if disposition not in ("inline", "attachment"):
        return zammad_error(
            403, f"Invalid disposition {disposition} requested. Only inline, attachment are valid."
        )
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": content_disposition(disposition, str(entry.get("filename") or "file")),
        },
    )


async def article_plain(state: SimulatorState, request: web.Request) -> web.Response:
    """``GET /api/v1/ticket_article_plain/{id}``: the e-mail article's stored message
    (:attr:`SimulatorState.stored_mail`) or one generated from it
    (:func:`~devtools.zammad_simulator.mail.article_eml`); other articles have no stored mail
    and get an empty 204 ([inferred] §3.2)."""
    article = state.lookup_article(request.match_info["id"])
    if isinstance(article, web.Response):
        return article
    if article.get("type") != "email":
        return web.Response(status=204)
    ticket = state.tickets[article["ticket_id"]]
    filename = f"ticket-{ticket.columns.get('number', ticket.columns['id'])}-{article['id']}.eml"
    stored = state.stored_mail.get(article["id"])
    return web.Response(
        body=stored if stored is not None else article_eml(article, state.attachment_data),
        headers={
            "Content-Type": "message/rfc822",
            "Content-Disposition": content_disposition("inline", filename),
        },
    )
