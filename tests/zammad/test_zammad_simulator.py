"""The simulator answers like Zammad (docs/zammad.md §3): raw HTTP checks, state, faults, CLI."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from devtools.zammad_simulator import MASKED_ERROR, ZammadSimulator, tiny_pdf, tiny_png
from devtools.zammad_simulator.mail import article_eml, email_package_eml, simple_eml

from .conftest import FIXTURES, TICKET_ID, TOKEN

AUTH = {"Authorization": f"Token token={TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


def _fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


async def _call(session, sim, method, path, *, headers=AUTH, **kwargs):
    async with session.request(method, sim.base_url + path, headers=headers, **kwargs) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


# -- auth ----------------------------------------------------------------------------------


async def test_no_credentials_is_403_with_x_failure(simulator, session) -> None:
    status, headers, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711", headers={})
    assert status == 403
    assert json.loads(body) == {"error": "Authentication required", "error_human": "Authentication required"}
    assert headers["X-Failure"] == "Authentication required"


async def test_wrong_token_is_401_like_fixture(simulator, session) -> None:
    status, headers, body = await _call(
        session, simulator, "GET", "/api/v1/tickets/4711", headers={"Authorization": "Token token=nope"}
    )
    assert status == 401
    assert json.loads(body) == _fixture("error-401.json")
    assert headers["X-Failure"] == "Can't find User for Token"
    assert headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("header", [f"Token token={TOKEN}", f'Token token="{TOKEN}"', f"Bearer {TOKEN}"])
async def test_accepted_auth_forms(simulator, session, header) -> None:
    status, _, _ = await _call(
        session, simulator, "GET", "/api/v1/tickets/4711", headers={"Authorization": header}
    )
    assert status == 200


async def test_requests_are_recorded_without_authorization(simulator, session) -> None:
    await _call(session, simulator, "GET", "/api/v1/tags?object=Ticket&o_id=4711")
    [recorded] = simulator.requests
    assert (recorded.method, recorded.path) == ("GET", "/api/v1/tags")
    assert recorded.query == {"object": "Ticket", "o_id": "4711"}
    assert all(k.lower() != "authorization" for k in recorded.headers)
    assert TOKEN not in repr(recorded)


# -- tickets -------------------------------------------------------------------------------


async def test_ticket_plain_has_ids_only(simulator, session) -> None:
    status, headers, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711")
    ticket = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert ticket["id"] == 4711 and ticket["number"] == "25004711" and ticket["state_id"] == 2
    assert "article_ids" not in ticket and "state" not in ticket and "group" not in ticket


async def test_ticket_expand_matches_fixture(simulator, session) -> None:
    _, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711?expand=true")
    assert json.loads(body) == _fixture("ticket-expand.json")


async def test_ticket_all_matches_fixture_and_follows_tags(simulator, session) -> None:
    _, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711?all=true")
    assert json.loads(body) == _fixture("ticket-all.json")

    await _call(
        session, simulator, "POST", "/api/v1/tags/add", json={"object": "Ticket", "o_id": 4711, "item": "x"}
    )
    _, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711?all=true")
    assert json.loads(body)["tags"] == ["rechnung", "reklamation", "pdf:sign", "x"]


async def test_missing_ticket_is_404_like_fixture(simulator, session) -> None:
    status, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4712")
    assert status == 404
    assert json.loads(body) == _fixture("error-404.json")


async def test_add_ticket_derives_names(session) -> None:
    sim = ZammadSimulator(api_token=TOKEN)
    sim.add_ticket(
        {
            "id": 9,
            "number": "9",
            "group_id": 1,
            "state_id": 4,
            "priority_id": 3,
            "owner_id": 1,
            "customer_id": 2,
        },
        [{"id": 5, "ticket_id": 9, "type_id": 10, "sender_id": 1, "body": "b", "created_by_id": 3}],
        [" a ", "b", "a"],
        names={"group": "Users"},
    )
    await sim.start()
    try:
        _, _, body = await _call(session, sim, "GET", "/api/v1/tickets/9?expand=true")
        ticket = json.loads(body)
        names = (ticket["group"], ticket["state"], ticket["priority"], ticket["owner"])
        assert names == ("Users", "closed", "3 high", "-")
        assert ticket["article_ids"] == [5]
        _, _, body = await _call(session, sim, "GET", "/api/v1/ticket_articles/5")
        assert json.loads(body)["type"] == "note"
        assert sim.tags(9) == ["a", "b"]
    finally:
        await sim.stop()


# -- articles ------------------------------------------------------------------------------


async def test_articles_by_ticket_and_single(simulator, session) -> None:
    _, _, body = await _call(session, simulator, "GET", "/api/v1/ticket_articles/by_ticket/4711")
    assert json.loads(body) == _fixture("articles-by-ticket.json")
    status, _, body = await _call(session, simulator, "GET", "/api/v1/ticket_articles/23053")
    assert status == 200 and json.loads(body)["internal"] is True
    status, _, body = await _call(session, simulator, "GET", "/api/v1/ticket_articles/99")
    assert status == 404 and json.loads(body)["error"] == "Couldn't find Ticket::Article with 'id'=99"


async def test_create_note_201_increasing_ids_and_listed(simulator, session) -> None:
    note = {
        "ticket_id": 4711,
        "type": "note",
        "internal": True,
        "sender": "Agent",
        "content_type": "text/html",
        "subject": "s",
        "body": "<p>1</p>",
    }
    s1, _, b1 = await _call(session, simulator, "POST", "/api/v1/ticket_articles", json=note)
    s2, _, b2 = await _call(
        session, simulator, "POST", "/api/v1/ticket_articles", json={**note, "body": "<p>2</p>"}
    )
    first, second = json.loads(b1), json.loads(b2)

    assert (s1, s2) == (201, 201)
    assert (first["id"], second["id"]) == (23055, 23056)
    assert first["created_by"] == "pdf-archiver" and first["attachments"] == [] and first["sender"] == "Agent"
    _, _, body = await _call(session, simulator, "GET", "/api/v1/ticket_articles/by_ticket/4711")
    assert [a["id"] for a in json.loads(body)][-2:] == [23055, 23056]
    assert [n["body"] for n in simulator.notes(TICKET_ID)] == ["<p>1</p>", "<p>2</p>"]
    _, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711?expand=true")
    assert json.loads(body)["article_count"] == 6


@pytest.mark.parametrize(
    "payload", [{"ticket_id": 4711}, {"ticket_id": 4711, "body": ""}, {"ticket_id": 4711, "body": " \n "}]
)
async def test_create_note_without_body_is_422(simulator, session, payload) -> None:
    status, _, body = await _call(session, simulator, "POST", "/api/v1/ticket_articles", json=payload)
    assert status == 422
    assert json.loads(body) == _fixture("error-422.json")


async def test_create_note_body_limit(simulator, session) -> None:
    ok = {"ticket_id": 4711, "body": "x" * 1_500_000}
    status, _, _ = await _call(session, simulator, "POST", "/api/v1/ticket_articles", json=ok)
    assert status == 201
    too_long = {**ok, "body": "x" * 1_500_001}
    status, _, body = await _call(session, simulator, "POST", "/api/v1/ticket_articles", json=too_long)
    assert status == 422
    assert json.loads(body)["error"] == "body of article is too large, 1500001 chars - only 1500000 allowed"


async def test_create_note_on_missing_ticket_is_404(simulator, session) -> None:
    payload = {"ticket_id": 1, "body": "b"}
    status, _, _ = await _call(session, simulator, "POST", "/api/v1/ticket_articles", json=payload)
    assert status == 404
    assert simulator.notes(TICKET_ID) == []


# -- tags ----------------------------------------------------------------------------------


async def test_tag_add_remove_status_and_bodies(simulator, session) -> None:
    add = {"object": "Ticket", "o_id": 4711, "item": "  pdf:processing "}
    status, headers, body = await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)
    assert (status, body) == (201, b"true")
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    status, _, body = await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)
    assert (status, body) == (201, b"true")
    assert simulator.tags(TICKET_ID) == ["rechnung", "reklamation", "pdf:sign", "pdf:processing"]

    rm = {"object": "Ticket", "o_id": 4711, "item": "pdf:sign"}
    for _ in range(2):
        status, _, body = await _call(session, simulator, "DELETE", "/api/v1/tags/remove", json=rm)
        assert (status, body) == (200, b"true")
    _, _, body = await _call(session, simulator, "GET", "/api/v1/tags?object=Ticket&o_id=4711")
    assert json.loads(body) == {"tags": ["rechnung", "reklamation", "pdf:processing"]}


async def test_a_tag_change_touches_updated_at_and_a_repeated_one_does_not(simulator, session) -> None:
    # Zammad's ticket touches updated_at on every tag change; the reconciliation sweep's stale
    # rule for pdf:processing reads it.
    before = simulator.ticket(TICKET_ID)["updated_at"]
    add = {"object": "Ticket", "o_id": 4711, "item": "pdf:processing"}
    await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)
    touched = simulator.ticket(TICKET_ID)["updated_at"]
    assert touched > before
    simulator.ticket_record(TICKET_ID).columns["updated_at"] = before
    await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)  # already there: no change
    assert simulator.ticket(TICKET_ID)["updated_at"] == before
    await _call(session, simulator, "DELETE", "/api/v1/tags/remove", json=add)
    assert simulator.ticket(TICKET_ID)["updated_at"] > before


async def test_old_get_tag_routes_do_not_exist(simulator, session) -> None:
    status, _, body = await _call(
        session, simulator, "GET", "/api/v1/tags/add?object=Ticket&o_id=4711&item=x"
    )
    assert status == 404 and "No route matches" in json.loads(body)["error"]
    assert simulator.tags(TICKET_ID) == ["rechnung", "reklamation", "pdf:sign"]


async def test_unknown_route_is_404_json(simulator, session) -> None:
    status, headers, body = await _call(session, simulator, "GET", "/api/v1/nothing", headers={})
    assert status == 404
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body)["error"] == "No route matches [GET] /api/v1/nothing"


# -- attachments and raw mail --------------------------------------------------------------


async def test_attachment_png_pdf_html(simulator, session) -> None:
    inline = "/api/v1/ticket_attachment/4711/23051/91202?view=inline"
    status, headers, png = await _call(session, simulator, "GET", inline)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png)).format == "PNG"

    status, headers, pdf = await _call(
        session, simulator, "GET", "/api/v1/ticket_attachment/4711/23051/91203"
    )
    assert status == 200 and headers["Content-Type"].startswith("application/pdf")
    assert 'filename="Rechnung-2025-0117.pdf"' in headers["Content-Disposition"]
    # The stand-in is as long as the article JSON declares ("size": "183764"), padded after %%EOF.
    assert pdf.startswith(tiny_pdf("Simulated attachment 91203")) and len(pdf) == 183764

    status, headers, html = await _call(
        session, simulator, "GET", "/api/v1/ticket_attachment/4711/23051/91201"
    )
    assert status == 200 and headers["Content-Type"] == "text/html" and html.startswith(b"<html>")
    assert len(html) == 6873  # the size the article JSON declares


def test_tiny_files_are_valid() -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    image = Image.open(io.BytesIO(tiny_png(7)))
    image.load()
    assert image.size == (320, 180) and image.mode == "RGB"
    assert image.getpixel((100, 5)) != image.getpixel((100, 100))  # a title bar over a body
    small = Image.open(io.BytesIO(tiny_png(7, 2, 1)))
    small.load()
    assert small.size == (2, 1)
    reader = PdfFileReader(io.BytesIO(tiny_pdf("hello (world)")), strict=True)
    assert int(reader.root["/Pages"]["/Count"]) == 1


@pytest.mark.parametrize(
    "path, message",
    [
        ("/api/v1/ticket_attachment/4711/23052/91203", "Requested file id is not linked with article_id."),
        ("/api/v1/ticket_attachment/4711/23051/1", "Requested file id is not linked with article_id."),
    ],
)
async def test_attachment_not_in_article_is_403(simulator, session, path, message) -> None:
    status, headers, body = await _call(session, simulator, "GET", path)
    assert status == 403
    assert json.loads(body)["error"] == message and headers["X-Failure"] == message


async def test_attachment_article_of_other_ticket_is_403(simulator, session) -> None:
    simulator.add_ticket({"id": 5000, "number": "5000"}, [], [])
    status, _, body = await _call(session, simulator, "GET", "/api/v1/ticket_attachment/5000/23051/91203")
    assert status == 403
    assert json.loads(body)["error"] == "No access, article_id/ticket_id is not matching."


async def test_article_plain_for_email_and_note(simulator, session) -> None:
    status, headers, raw = await _call(session, simulator, "GET", "/api/v1/ticket_article_plain/23051")
    assert status == 200 and headers["Content-Type"] == "message/rfc822"
    assert "ticket-25004711-23051.eml" in headers["Content-Disposition"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Rechnung 2025-0117: Position 3 doppelt berechnet"
    assert (
        msg["Message-ID"]
        == "<AM9PR07MB7731D1C5E2F0A4B6B3E8C2D9A1@AM9PR07MB7731.eurprd07.prod.outlook.example>"
    )
    assert "Østergaard" in str(msg["Cc"])
    assert [p.get_filename() for p in msg.iter_attachments()] == ["Rechnung-2025-0117.pdf"]

    status, _, raw = await _call(session, simulator, "GET", "/api/v1/ticket_article_plain/23053")
    assert (status, raw) == (204, b"")


async def test_article_plain_serves_a_stored_mail_as_it_is_and_writes_the_others(simulator, session) -> None:
    stored = b"From: a@example.com\r\nSubject: stored\r\n\r\nas Zammad keeps it\r\n"
    simulator.stored_mail = {23051: stored}
    status, headers, raw = await _call(session, simulator, "GET", "/api/v1/ticket_article_plain/23051")
    assert (status, raw) == (200, stored) and headers["Content-Type"] == "message/rfc822"
    simulator.stored_mail = {99: stored}
    status, _, raw = await _call(session, simulator, "GET", "/api/v1/ticket_article_plain/23051")
    assert status == 200 and raw == article_eml(simulator.articles[23051], simulator.attachment_data)
    simulator.stored_mail = {23053: stored}  # a note has no mail, stored or not
    status, _, raw = await _call(session, simulator, "GET", "/api/v1/ticket_article_plain/23053")
    assert (status, raw) == (204, b"")


SIMPLE_BODIES = {
    "7bit": "Short ASCII lines.\nSecond line.",
    "8bit": "Grüße aus Köln.\nKurze Zeilen, äöü ß.",
    "quoted-printable": "Grüße " + "lange Zeile mit Umlauten äöü " * 12 + "\n\nzweiter Absatz",
    "base64": "Ελληνικό κείμενο με πολύ μεγάλες γραμμές " * 6,
    "crlf": "one\r\ntwo\rthree\n",
    "empty": "",
}


@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
@pytest.mark.parametrize("body", list(SIMPLE_BODIES))
@pytest.mark.parametrize(
    "headers",
    [
        {
            "from": "Katrin Vogelsang <k.vogelsang@example.com>",
            "to": "support@example.com",
            "subject": "Message 0",
        },
        {
            "from": "a@b.example",
            "cc": "Jonas Berg <j.berg@mail.example.org>",
            "reply_to": "x@y.example",
            "subject": "Re: [Ticket#1] a (b) c",
        },
        {"from": "Dr. No <no@example.com>", "subject": "dots in names are quoted"},  # email package path
        {"from": "Jörg <j@example.com>", "subject": "=?utf-8?q?encoded?="},  # email package path
        {"from": "a@b.example", "subject": "x" * 80},  # folded: email package path
        {"from": "a..b@example.com", "subject": "not a dot-atom"},  # email package path
        {"from": "a@b.example", "subject": ""},
    ],
)
def test_simple_emails_are_the_bytes_the_email_package_writes(headers, body, content_type) -> None:
    sim = ZammadSimulator()
    article = {
        "id": 7,
        "type": "email",
        "content_type": content_type,
        "created_at": "2025-03-03T08:12:44Z",
        "body": SIMPLE_BODIES[body],
        **headers,
    }
    raw = article_eml(article, sim.attachment_data)
    assert raw == email_package_eml(article, sim.attachment_data)
    fast = simple_eml(article, datetime(2025, 3, 3, 8, 12, 44, tzinfo=UTC)) is not None
    assert fast == (headers["subject"] in ("Message 0", "Re: [Ticket#1] a (b) c"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = SIMPLE_BODIES[body].replace("\r\n", "\n").replace("\r", "\n")
    assert msg.get_content().replace("\r\n", "\n") == (text if text.endswith("\n") else text + "\n")
    assert msg["Subject"] == headers["subject"].replace("=?utf-8?q?encoded?=", "encoded")


def test_the_fast_path_takes_the_benchmark_articles_and_not_attachments() -> None:
    from benchmarks.tickets import make_articles

    when = datetime(2025, 3, 3, tzinfo=UTC)
    assert all(simple_eml(a, when) is not None for a in make_articles(5))
    with_file = {**make_articles(1)[0], "attachments": [{"id": 1, "filename": "a.pdf", "size": 10}]}
    assert simple_eml(with_file, when) is None


# -- faults --------------------------------------------------------------------------------


async def test_fail_times_and_masked_5xx(simulator, session) -> None:
    simulator.fail("get", r"^/api/v1/tickets/4711$", 503, times=2)
    for _ in range(2):
        status, _, body = await _call(session, simulator, "GET", "/api/v1/tickets/4711")
        assert status == 503 and json.loads(body) == {"error": MASKED_ERROR}
    status, _, _ = await _call(session, simulator, "GET", "/api/v1/tickets/4711")
    assert status == 200


async def test_fail_custom_body_and_clear(simulator, session) -> None:
    denied = {"error": "Not authorized", "error_human": "Not authorized"}
    simulator.fail("POST", r"^/api/v1/tags/add$", 403, body=denied)
    add = {"object": "Ticket", "o_id": 4711, "item": "new"}
    status, headers, body = await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)
    assert status == 403 and headers["X-Failure"] == "Not authorized"
    simulator.clear_faults()
    status, _, _ = await _call(session, simulator, "POST", "/api/v1/tags/add", json=add)
    assert status == 201


async def test_delay_and_stop_ends_pending_delay(simulator, session) -> None:
    simulator.delay("GET", r"^/api/v1/tags$", 0.3)
    started = time.monotonic()
    status, _, _ = await _call(session, simulator, "GET", "/api/v1/tags?object=Ticket&o_id=4711")
    assert status == 200 and time.monotonic() - started >= 0.3

    simulator.delay("GET", r"^/api/v1/tickets/", 30)
    pending = asyncio.ensure_future(_call(session, simulator, "GET", "/api/v1/tickets/4711"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await simulator.stop()
    assert time.monotonic() - started < 5
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


# -- CLI -----------------------------------------------------------------------------------


async def test_cli_prints_listening_serves_state_and_stops_on_sigterm(session) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.zammad_simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        "T",
        "--seed",
        str(FIXTURES),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"LISTENING (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        base = match.group(1)
        async with session.get(
            f"{base}/api/v1/tickets/4711", headers={"Authorization": "Token token=T"}
        ) as resp:
            assert resp.status == 200
        async with session.post(
            f"{base}/api/v1/tags/add",
            json={"object": "Ticket", "o_id": 4711, "item": "pdf:processing"},
            headers={"Authorization": "Token token=T"},
        ) as resp:
            assert resp.status == 201
        async with session.get(f"{base}/_sim/state/4711") as resp:
            state = await resp.json()
        assert state == {"tags": ["rechnung", "reklamation", "pdf:sign", "pdf:processing"], "notes": []}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert rest == b""  # exactly one stdout line
