"""ZammadClient against the simulator: every method, the error mapping, and token hygiene."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
import pytest
from aiohttp import web

from app.errors import ZammadApiError, ZammadMaintenance, ZammadUnauthorized
from app.workflow.classify import Classification, classify
from app.zammad import articles as articles_module
from app.zammad.articles import LazyArticles
from app.zammad.client import PREALLOCATE_FROM_BYTES, ZammadClient, refuses_credentials
from devtools.zammad_simulator import ZammadSimulator

from .conftest import FIXTURES, TICKET_ID, TOKEN


def _fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 (a free port) while the block runs: its base URL,
    ``http://127.0.0.1:PORT`` (no trailing slash)."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _assert_no_token(*texts: object) -> None:
    for text in texts:
        assert TOKEN not in str(text)
        assert TOKEN not in repr(text)


# -- reads -------------------------------------------------------------------------------


async def test_get_ticket_returns_expanded_ticket(client: ZammadClient, simulator: ZammadSimulator) -> None:
    ticket = await client.get_ticket(TICKET_ID)

    assert ticket == _fixture("ticket-expand.json")
    [request] = simulator.requests
    assert (request.method, request.path, request.query) == (
        "GET",
        "/api/v1/tickets/4711",
        {"expand": "true"},
    )
    assert request.headers["Accept"] == "application/json"


async def test_requests_carry_token_auth_header(session: aiohttp.ClientSession) -> None:
    seen: list[str | None] = []

    sim = ZammadSimulator(api_token=TOKEN)
    sim.seed_fixture_ticket(FIXTURES)
    app = sim.make_app()

    @web.middleware
    async def spy(request, handler):
        seen.append(request.headers.get("Authorization"))
        return await handler(request)

    app.middlewares.insert(0, spy)
    async with served(app) as base_url:
        await ZammadClient(session, f"{base_url}/", TOKEN).get_tags(TICKET_ID)
    assert seen == [f"Token token={TOKEN}"]


async def test_get_tags(client: ZammadClient, simulator: ZammadSimulator) -> None:
    assert await client.get_tags(TICKET_ID) == _fixture("tags.json")["tags"]
    [request] = simulator.requests
    assert (request.method, request.path) == ("GET", "/api/v1/tags")
    assert request.query == {"object": "Ticket", "o_id": "4711"}


async def test_list_articles(client: ZammadClient) -> None:
    articles = await client.list_articles(TICKET_ID)

    assert articles == _fixture("articles-by-ticket.json")
    assert [a["id"] for a in articles] == [23051, 23052, 23053, 23054]


# -- tag writes ----------------------------------------------------------------------------


async def test_add_tag_posts_json_and_is_idempotent(client: ZammadClient, simulator: ZammadSimulator) -> None:
    await client.add_tag(TICKET_ID, "pdf:processing")
    await client.add_tag(TICKET_ID, "pdf:processing")

    assert simulator.tags(TICKET_ID) == ["rechnung", "reklamation", "pdf:sign", "pdf:processing"]
    assert await client.get_tags(TICKET_ID) == simulator.tags(TICKET_ID)
    first = simulator.requests[0]
    assert (first.method, first.path) == ("POST", "/api/v1/tags/add")
    assert first.json == {"object": "Ticket", "o_id": 4711, "item": "pdf:processing"}
    assert first.headers["Content-Type"].startswith("application/json")


async def test_remove_tag_sends_delete_with_json_body_and_is_idempotent(
    client: ZammadClient, simulator: ZammadSimulator
) -> None:
    await client.remove_tag(TICKET_ID, "pdf:sign")
    await client.remove_tag(TICKET_ID, "pdf:sign")  # already gone: still fine

    assert simulator.tags(TICKET_ID) == ["rechnung", "reklamation"]
    assert [(r.method, r.path) for r in simulator.requests] == [("DELETE", "/api/v1/tags/remove")] * 2
    assert simulator.requests[0].json == {"object": "Ticket", "o_id": 4711, "item": "pdf:sign"}
    assert simulator.requests[0].query == {}  # the body carries the parameters, not the query


async def test_tag_on_missing_ticket_is_404(client: ZammadClient) -> None:
    with pytest.raises(ZammadApiError) as info:
        await client.add_tag(4712, "pdf:processing")
    assert info.value.status == 404
    assert info.value.method == "POST"
    assert info.value.path == "/api/v1/tags/add"


# -- notes ---------------------------------------------------------------------------------


async def test_create_internal_note(client: ZammadClient, simulator: ZammadSimulator) -> None:
    note = await client.create_internal_note(TICKET_ID, subject="PDF-Archiv erstellt", body_html="<p>ok</p>")

    assert note["id"] == 23055
    assert note["ticket_id"] == TICKET_ID
    assert (note["type"], note["sender"], note["internal"]) == ("note", "Agent", True)
    assert (note["content_type"], note["subject"], note["body"]) == (
        "text/html",
        "PDF-Archiv erstellt",
        "<p>ok</p>",
    )
    assert note["created_by"] == "pdf-archiver"
    assert note["attachments"] == []
    assert set(note) == set(_fixture("note-created.json"))
    [request] = simulator.requests
    assert (request.method, request.path) == ("POST", "/api/v1/ticket_articles")
    assert request.json == {
        "ticket_id": 4711,
        "type": "note",
        "internal": True,
        "sender": "Agent",
        "content_type": "text/html",
        "subject": "PDF-Archiv erstellt",
        "body": "<p>ok</p>",
    }
    assert simulator.notes(TICKET_ID) == [note]
    assert [a["id"] for a in await client.list_articles(TICKET_ID)][-1] == 23055


async def test_note_without_body_is_422(client: ZammadClient, simulator: ZammadSimulator) -> None:
    with pytest.raises(ZammadApiError) as info:
        await client.create_internal_note(TICKET_ID, subject="x", body_html="")

    assert info.value.status == 422
    assert (
        str(info.value) == "POST /api/v1/ticket_articles answered 422: Need at least an 'article body' field."
    )
    assert simulator.notes(TICKET_ID) == []


async def test_list_articles_containing_parses_only_when_the_text_is_there(client: ZammadClient) -> None:
    everything = await client.list_articles(TICKET_ID)
    marker = str(everything[0]["id"])  # in the answer as "id":23050 (and in the article's own JSON)
    assert await client.list_articles(TICKET_ID, containing=marker) == everything
    assert await client.list_articles(TICKET_ID, containing="Job: 0123456789abcdef") == []
    # text a JSON encoder might escape is looked for after a full parse: the articles come back
    assert await client.list_articles(TICKET_ID, containing='"quoted"') == everything


async def test_list_articles_containing_still_refuses_a_non_array(
    client: ZammadClient, simulator: ZammadSimulator
) -> None:
    simulator.fail("GET", r"^/api/v1/ticket_articles/by_ticket/", 200, times=1)  # a JSON object, not an array
    with pytest.raises(ZammadApiError):
        await client.list_articles(TICKET_ID, containing="Job: 0123456789abcdef")


# -- attachments ---------------------------------------------------------------------------


async def test_get_attachment_bytes(client: ZammadClient) -> None:
    png = await client.get_attachment(TICKET_ID, 23051, 91202)  # inline image, hidden from attachments[]
    pdf = await client.get_attachment(TICKET_ID, 23051, 91203)

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


async def test_get_attachment_not_in_article_is_403(client: ZammadClient) -> None:
    with pytest.raises(ZammadApiError) as info:
        await client.get_attachment(TICKET_ID, 23052, 91203)
    assert info.value.status == 403
    assert "Requested file id is not linked with article_id." in str(info.value)


# -- errors --------------------------------------------------------------------------------


async def test_wrong_token_is_401_without_leaking_it(simulator: ZammadSimulator, session) -> None:
    wrong = "wr0ng-" + TOKEN[::-1]
    client = ZammadClient(session, simulator.base_url, wrong)

    with pytest.raises(ZammadApiError) as info:
        await client.get_ticket(TICKET_ID)

    err = info.value
    assert err.status == 401
    assert (err.method, err.path) == ("GET", "/api/v1/tickets/4711")
    assert "Can't find User for Token" in str(err)
    assert wrong not in str(err) and wrong not in repr(err) and wrong not in repr(client)


# Zammad 6.x/7.x (app/controllers/application_controller/authenticates.rb): what it answers
# when the token is refused, and 403s that are about one ticket, not the token.
_EXPIRED = {"error": "Not authorized (token expired)!", "error_human": "Not authorized (token expired)!"}


async def test_every_refusal_of_the_token_is_transient_zammad_unauthorized(
    simulator: ZammadSimulator, session
) -> None:
    """A wrong or deleted token (the simulator's own check: 401), an expired one (Zammad's body,
    injected), token access switched off in Zammad (the simulator's setting: 403): each raises
    ZammadUnauthorized, Transient ``zammad_unauthorized``, quoting Zammad's text, not the token."""
    wrong = "wr0ng-" + TOKEN[::-1]
    refused: list[ZammadApiError] = []

    async def refusal(call) -> None:
        with pytest.raises(ZammadUnauthorized) as info:
            await call
        refused.append(info.value)

    await refusal(ZammadClient(session, simulator.base_url, wrong).get_tags(TICKET_ID))
    client = ZammadClient(session, simulator.base_url, TOKEN)
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 401, body=_EXPIRED, times=1)
    await refusal(client.get_ticket(TICKET_ID))
    simulator.api_token_access = False
    await refusal(client.create_internal_note(TICKET_ID, subject="s", body_html="<p>b</p>"))

    assert [(e.status, e.method, e.path) for e in refused] == [
        (401, "GET", "/api/v1/tags"),
        (401, "GET", "/api/v1/tickets/4711"),
        (403, "POST", "/api/v1/ticket_articles"),
    ]
    assert [str(e).split(": ", 1)[1] for e in refused] == [
        "Can't find User for Token",
        "Not authorized (token expired)!",
        "API token access disabled!",
    ]
    for err in refused:
        failure = classify(err)
        assert (failure.classification, failure.code) == (Classification.TRANSIENT, "zammad_unauthorized")
        assert failure.cause == str(err)
        assert wrong not in str(err) and TOKEN not in str(err) and TOKEN not in repr(err)
    assert simulator.notes(TICKET_ID) == []


async def test_a_403_about_one_ticket_stays_permanent(
    client: ZammadClient, simulator: ZammadSimulator
) -> None:
    """No access to the ticket's group (Pundit's ``Not authorized``), an attachment not in its
    article, a tag the user may not create: a plain ZammadApiError, Permanent."""
    not_authorized = {"error": "Not authorized", "error_human": "Not authorized"}
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 403, body=not_authorized, times=1)
    simulator.fail("POST", r"^/api/v1/tags/add$", 403, body=not_authorized)
    errors = []
    for call in (
        client.get_ticket(TICKET_ID),
        client.get_attachment(TICKET_ID, 23052, 91203),
        client.add_tag(TICKET_ID, "pdf:new"),
    ):
        with pytest.raises(ZammadApiError) as info:
            await call
        errors.append(info.value)
    assert [(e.status, type(e)) for e in errors] == [(403, ZammadApiError)] * 3
    assert {classify(e).classification for e in errors} == {Classification.PERMANENT}
    assert {classify(e).code for e in errors} == {"zammad_api_error"}
    assert client.credentials_refused is None


async def test_maintenance_mode_is_transient_zammad_maintenance(
    client: ZammadClient, simulator: ZammadSimulator
) -> None:
    """Zammad in maintenance mode answers every non-admin 403 ``Maintenance mode enabled!``
    (reference §3.6: transient): ZammadMaintenance, Transient, not a refusal of the token."""
    maintenance = {"error": "Maintenance mode enabled!", "error_human": "Maintenance mode enabled!"}
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 403, body=maintenance, times=1)
    with pytest.raises(ZammadMaintenance) as info:
        await client.get_ticket(TICKET_ID)
    failure = classify(info.value)
    assert (failure.classification, failure.code) == (Classification.TRANSIENT, "zammad_maintenance")
    assert str(info.value) == "GET /api/v1/tickets/4711 answered 403: Maintenance mode enabled!"
    assert client.credentials_refused is None
    assert (await client.get_ticket(TICKET_ID))["id"] == TICKET_ID  # the maintenance ended


@pytest.mark.parametrize(
    ("status", "detail", "refused"),
    [
        (401, "Can't find User for Token", True),
        (401, "Not authorized (token expired)!", True),
        (401, "Invalid BasicAuth credentials", True),  # an inactive user
        (401, "'<html>401 Authorization Required</html>'", True),  # a proxy's page
        (401, "API token access disabled!", True),  # older Zammad versions answered 401
        (403, "API token access disabled!", True),
        (403, "api token access disabled", True),
        (403, "Not authorized", False),
        (403, "Authentication required", True),  # no credentials arrived: a proxy dropped them
        (403, "Maintenance mode enabled!", False),
        (403, "No access, article_id/ticket_id is not matching.", False),
        (404, "Couldn't find Ticket with 'id'=4711", False),
        (422, "API token access disabled!", False),  # creating a token, not using one
        (500, "Error ID AbC123xy: Please contact your administrator.", False),
    ],
)
def test_which_answers_refuse_the_token(status: int, detail: str, refused: bool) -> None:
    assert refuses_credentials(status, detail) is refused


async def test_credentials_refused_is_set_by_a_refusal_and_cleared_by_the_next_2xx(
    client: ZammadClient, simulator: ZammadSimulator
) -> None:
    assert client.credentials_refused is None
    await client.get_tags(TICKET_ID)
    assert client.credentials_refused is None

    simulator.api_token = "rotated-" + TOKEN  # the token was deleted and a new one made
    with pytest.raises(ZammadUnauthorized):
        await client.get_tags(TICKET_ID)
    assert client.credentials_refused == "GET /api/v1/tags answered 401: Can't find User for Token"
    # Other failures say nothing about the token: the refusal stands.
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 503, times=1)
    with pytest.raises(ZammadApiError):
        await client.get_ticket(TICKET_ID)
    assert client.credentials_refused is not None

    simulator.api_token = TOKEN
    await client.get_tags(TICKET_ID)
    assert client.credentials_refused is None


async def test_missing_ticket_is_404(client: ZammadClient) -> None:
    with pytest.raises(ZammadApiError) as info:
        await client.get_ticket(4712)

    assert info.value.status == 404
    assert str(info.value) == "GET /api/v1/tickets/4712 answered 404: Couldn't find Ticket with 'id'=4712"


async def test_injected_500_then_recovery(client: ZammadClient, simulator: ZammadSimulator) -> None:
    simulator.fail("GET", r"^/api/v1/ticket_articles/by_ticket/", 500, times=1)

    with pytest.raises(ZammadApiError) as info:
        await client.list_articles(TICKET_ID)
    assert info.value.status == 500
    assert "Error ID AbC123xy: Please contact your administrator." in str(info.value)

    assert len(await client.list_articles(TICKET_ID)) == 4  # the fault fired once


async def test_non_json_error_body_becomes_excerpt(client: ZammadClient, simulator: ZammadSimulator) -> None:
    simulator.fail("*", r"^/api/v1/tags$", 502, text="<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000)

    with pytest.raises(ZammadApiError) as info:
        await client.get_tags(TICKET_ID)

    message = str(info.value)
    assert info.value.status == 502
    assert message.startswith("GET /api/v1/tags answered 502: ")
    assert "502 Bad Gateway" in message
    assert "<h1>" not in message
    assert len(message) < 300


async def test_2xx_that_is_not_json_is_an_error(client: ZammadClient, simulator: ZammadSimulator) -> None:
    simulator.fail("GET", r"^/api/v1/tickets/4711$", 200, text="<html>login page</html>")

    with pytest.raises(ZammadApiError) as info:
        await client.get_ticket(TICKET_ID)
    assert info.value.status == 200
    assert "not JSON" in str(info.value)


async def test_2xx_cut_short_is_transient_and_quotes_no_ticket_data(session: aiohttp.ClientSession) -> None:
    """A 200 ``by_ticket`` body cut in half (its Content-Length matching the cut body) is a
    transfer glitch: Transient, and the message (which goes into logs and notes) names length,
    Content-Type and where parsing stopped, but quotes nothing of the body (customer names)."""
    whole = (FIXTURES / "articles-by-ticket.json").read_bytes()
    cut = whole[: len(whole) // 2]

    async def by_ticket(request: web.Request) -> web.Response:
        return web.Response(body=cut, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/ticket_articles/by_ticket/{id}", by_ticket)
    async with served(app) as base_url:
        client = ZammadClient(session, base_url, TOKEN)
        calls = (
            client.list_articles,
            client.list_articles_raw,
            partial(client.list_articles, containing="Job: j-1"),
        )
        for call in calls:
            with pytest.raises(ZammadApiError) as info:
                await call(TICKET_ID)
            message = str(info.value)
            assert info.value.status == 200
            assert classify(info.value).transient
            assert "Vogelsang" not in message and "muehlenbach" not in message and "23051" not in message
            assert f"({len(cut)} bytes, Content-Type application/json" in message
            assert "parsing stopped at byte" in message and "unexpected end of data" in message
            _assert_no_token(message)


async def test_2xx_with_wrong_shape_is_an_error(client: ZammadClient, simulator: ZammadSimulator) -> None:
    simulator.fail("GET", r"^/api/v1/tags$", 200, body={"error": "nope"})

    with pytest.raises(ZammadApiError) as info:
        await client.get_tags(TICKET_ID)
    assert info.value.status == 200
    assert "tags" in str(info.value)


async def test_timeout_has_no_status(simulator: ZammadSimulator, session) -> None:
    client = ZammadClient(session, simulator.base_url, TOKEN, timeout_seconds=0.2)
    simulator.delay("GET", r"^/api/v1/tickets/", 3.0)

    with pytest.raises(ZammadApiError) as info:
        await client.get_ticket(TICKET_ID)

    assert info.value.status is None
    assert str(info.value) == "GET /api/v1/tickets/4711 failed: timed out after 0.2 s"


async def test_connection_refused_has_no_status(session) -> None:
    with socket.socket() as sock:  # find a port, then free it: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ZammadClient(session, f"http://127.0.0.1:{port}", TOKEN, timeout_seconds=2.0)

    with pytest.raises(ZammadApiError) as info:
        await client.get_tags(TICKET_ID)

    assert info.value.status is None
    assert (info.value.method, info.value.path) == ("GET", "/api/v1/tags")
    assert f"cannot connect to 127.0.0.1:{port}" in str(info.value)


async def test_session_is_left_open(client: ZammadClient, session: aiohttp.ClientSession) -> None:
    await client.get_tags(TICKET_ID)
    assert not session.closed


# -- token hygiene -------------------------------------------------------------------------


async def test_repr_hides_token(client: ZammadClient, simulator: ZammadSimulator) -> None:
    text = repr(client)
    assert TOKEN not in text
    assert "***" in text and simulator.base_url in text


async def test_no_error_message_contains_the_token(simulator: ZammadSimulator, session) -> None:
    client = ZammadClient(session, simulator.base_url, TOKEN, timeout_seconds=0.3)
    errors: list[ZammadApiError] = []

    async def collect(coro) -> None:
        with pytest.raises(ZammadApiError) as info:
            await coro
        errors.append(info.value)

    # A server (or proxy) that echoes the token back must not get it into our messages.
    simulator.fail("GET", r"^/api/v1/tickets/1$", 401, body={"error": f"Token {TOKEN} is unknown"})
    simulator.fail("GET", r"^/api/v1/tickets/2$", 502, text=f"<p>upstream said: token={TOKEN}</p>")
    simulator.fail("GET", r"^/api/v1/tickets/3$", 500)
    simulator.delay("GET", r"^/api/v1/tickets/5$", 3.0)
    await collect(client.get_ticket(1))
    await collect(client.get_ticket(2))
    await collect(client.get_ticket(3))
    await collect(client.get_ticket(4712))
    await collect(client.get_ticket(5))
    await collect(client.create_internal_note(TICKET_ID, subject="s", body_html=" "))
    await collect(client.get_attachment(TICKET_ID, 23052, 1))
    await collect(ZammadClient(session, simulator.base_url, TOKEN + "x").get_tags(TICKET_ID))
    await collect(ZammadClient(session, "http://127.0.0.1:1", TOKEN).get_tags(TICKET_ID))

    assert [e.status for e in errors] == [401, 502, 500, 404, None, 422, 403, 401, None]
    assert "[redacted]" in str(errors[0]) and "[redacted]" in str(errors[1])
    for err in errors:
        _assert_no_token(err, err.args, err.method, err.path)


@pytest.mark.parametrize("bad", [0, -1, True, "4711", 4711.0])
async def test_rejects_non_id_arguments(client: ZammadClient, simulator: ZammadSimulator, bad) -> None:
    with pytest.raises(ValueError):
        await client.get_ticket(bad)
    assert simulator.requests == []


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        ZammadClient(None, "http://z", "", timeout_seconds=1)  # type: ignore[arg-type]  # a bad argument on purpose
    with pytest.raises(ValueError):
        ZammadClient(None, "http://z", TOKEN, timeout_seconds=0)  # type: ignore[arg-type]  # a bad argument on purpose
    with pytest.raises(ValueError) as info:
        ZammadClient(None, "", TOKEN)  # type: ignore[arg-type]  # a bad argument on purpose
    assert TOKEN not in str(info.value)


async def test_redirect_is_not_followed(simulator: ZammadSimulator, session) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(simulator.base_url + request.path_qs)

    app = web.Application()
    app.router.add_get("/{tail:.*}", moved)
    async with served(app) as base_url:
        with pytest.raises(ZammadApiError) as info:
            await ZammadClient(session, base_url, TOKEN).get_ticket(TICKET_ID)
    assert info.value.status == 302
    assert simulator.requests == []  # the token never travelled to the redirect target


async def test_big_answers_arrive_whole_declared_compressed_or_cut_short(
    session: aiohttp.ClientSession,
) -> None:
    """An answer of PREALLOCATE_FROM_BYTES or more is read into one buffer of its declared
    size; a compressed one (decoded size unknown) as before; one cut short is a ZammadApiError."""
    big = os.urandom(PREALLOCATE_FROM_BYTES + 12345)

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(body=big, content_type="message/rfc822")

    async def packed(request: web.Request) -> web.StreamResponse:
        text = b"Received: from mx.example.org\r\n" * 60_000  # 1.8 MB, compresses well
        return web.Response(body=gzip.compress(text), headers={"Content-Encoding": "gzip"})

    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(big))})
        await response.prepare(request)
        await response.write(big[: len(big) // 2])
        request.transport.close()  # the connection drops halfway
        return response

    app = web.Application()
    app.router.add_get("/api/v1/ticket_article_plain/1", plain)
    app.router.add_get("/api/v1/ticket_article_plain/2", packed)
    app.router.add_get("/api/v1/ticket_article_plain/3", short)
    async with served(app) as base_url:
        client = ZammadClient(session, f"{base_url}/", TOKEN)
        assert await client.get_article_plain(1) == big
        assert await client.get_article_plain(2) == b"Received: from mx.example.org\r\n" * 60_000
        with pytest.raises(ZammadApiError, match="failed") as cut:
            await client.get_article_plain(3)
        assert cut.value.status is None


async def test_a_small_by_ticket_answer_is_parsed_whole_a_big_one_one_article_at_a_time(
    client: ZammadClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    articles, raw = await client.list_articles_raw(TICKET_ID)
    assert type(articles) is list and articles == json.loads(raw) and len(raw) < 1024 * 1024
    monkeypatch.setattr(articles_module, "LAZY_ARTICLES_FROM_BYTES", len(raw))
    lazy, raw_again = await client.list_articles_raw(TICKET_ID)
    assert isinstance(lazy, LazyArticles) and list(lazy) == articles and raw_again == raw


@pytest.mark.parametrize("prefix", ["", "/", "/zammad", "/zammad/", "/help%20desk"])
async def test_every_request_goes_below_the_base_urls_path(
    session: aiohttp.ClientSession, prefix: str
) -> None:
    """The base URL's own path (Zammad behind a reverse proxy's sub-path) stays in front of
    every API path, query strings encoded as before."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.json_response({"tags": []} if "/tags" in request.path else [])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with served(app) as base_url:
        client = ZammadClient(session, f"{base_url}{prefix}", TOKEN)
        await client.get_tags(7)
        await client.get_attachment(7, 8, 9)
        await client.add_tag(7, "pdf:sign")
        async for _ in client.search_tickets('tags:"pdf:sign" ä', per_page=5):
            pass
    base = prefix.rstrip("/")
    assert seen == [
        f"{base}/api/v1/tags?object=Ticket&o_id=7",
        f"{base}/api/v1/ticket_attachment/7/8/9",
        f"{base}/api/v1/tags/add",
        f"{base}/api/v1/tickets/search?query=tags:%22pdf:sign%22+%C3%A4&expand=true&page=1"
        "&per_page=5&sort_by=id&order_by=asc",
    ]
