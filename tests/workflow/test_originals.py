"""The originals embedded in the PDF: which, in what order, and why one is left out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.errors import ZammadApiError
from app.workflow.originals import EmbedPolicy, collect_originals, fetch_all, safe_name
from tests.workflow.fakes import FakeZammad

TICKET = 4711


def attachment(att_id: int, size: int | str | None, filename: str = "f.bin", mime: str = "") -> dict:
    return {
        "id": att_id,
        "filename": filename,
        "size": size,
        "preferences": {"Mime-Type": mime} if mime else {},
    }


async def collect(zammad: FakeZammad, articles: list[dict], *, images=None, policy=None, redact=lambda s: s):
    return await collect_originals(
        zammad,
        TICKET,
        ticket_raw=b'{"id": 4711}',
        articles_raw=b"[]",
        articles=articles,
        images=images or {},
        policy=policy or EmbedPolicy(),
        redact=redact,
    )


async def test_api_answers_bodies_mails_and_attachments_in_order():
    zammad = FakeZammad()
    zammad.plain[1] = b"From: kunde@example.org\r\n\r\nHallo"
    zammad.attachments[(TICKET, 1, 10)] = b"%PDF-1.7 invoice"
    articles = [
        {
            "id": 1,
            "type": "email",
            "content_type": "text/html",
            "body": "<p>Hallo</p>",
            "attachments": [attachment(10, "16", "Rechnung 1/2.pdf", "application/pdf; name=x")],
        },
        {"id": 2, "type": "note", "content_type": "text/plain", "body": "intern"},
    ]
    files, omitted = await collect(zammad, articles)
    assert [(f.name, f.mime_type, f.relationship) for f in files] == [
        ("ticket.json", "application/json", "Source"),
        ("articles.json", "application/json", "Source"),
        ("article-1-body.html", "text/html", "Source"),
        ("article-2-body.txt", "text/plain", "Source"),
        ("article-1.eml", "message/rfc822", "Source"),
        ("article-1-10-Rechnung 1_2.pdf", "application/pdf", "Data"),
    ]
    assert files[-1].data == b"%PDF-1.7 invoice" and files[-1].attachment_id == 10
    assert omitted == ()


async def test_with_a_spool_every_fetched_original_waits_in_a_file(tmp_path):
    """Bodies, raw e-mails and attachments go to files in the spool as they arrive (``data``
    empty, ``path`` set, the bytes exactly as fetched); the API answers stay in memory."""
    zammad = FakeZammad()
    zammad.plain[1] = b"From: kunde@example.org\r\n\r\nHallo"
    zammad.attachments[(TICKET, 1, 10)] = b"%PDF-1.7 invoice"
    articles = [
        {"id": 1, "type": "email", "content_type": "text/html", "body": "<p>Grüße</p>"},
        {"id": 2, "type": "email", "body": "leer"},  # no raw e-mail: omitted, no file kept
    ]
    articles[0]["attachments"] = [attachment(10, "16", "r.pdf", "application/pdf")]
    files, omitted = await collect_originals(
        zammad,
        TICKET,
        ticket_raw=b'{"id": 4711}',
        articles_raw=b"[]",
        articles=articles,
        images={},
        policy=EmbedPolicy(),
        spool=tmp_path,
    )
    assert [(f.name, f.path is not None) for f in files] == [
        ("ticket.json", False),
        ("articles.json", False),
        ("article-1-body.html", True),
        ("article-2-body.txt", True),
        ("article-1.eml", True),
        ("article-1-10-r.pdf", True),
    ]
    spooled = [f for f in files if f.path is not None]
    assert all(f.data == b"" and f.path is not None and Path(f.path).parent == tmp_path for f in spooled)
    assert [f.content() for f in spooled] == [
        "<p>Grüße</p>".encode(),
        b"leer",
        b"From: kunde@example.org\r\n\r\nHallo",
        b"%PDF-1.7 invoice",
    ]
    assert [o.name for o in omitted] == ["article-2.eml"]


async def test_caps_leave_files_out_with_the_reason():
    zammad = FakeZammad()
    for att_id in (10, 11, 12, 13):
        zammad.attachments[(TICKET, 1, att_id)] = b"x" * 6
    zammad.attachments[(TICKET, 1, 14)] = b"x" * 50  # declares no size, is big
    zammad.attachments[(TICKET, 1, 15)] = b"x" * 50  # declared small: not what was stored
    articles = [
        {
            "id": 1,
            "type": "note",
            "attachments": [
                attachment(10, "6"),
                attachment(11, 20),  # over max_bytes
                attachment(12, "6"),
                attachment(13, 6),  # 6 + 6 + 6 > total_max_bytes
                attachment(10, "6"),  # the same attachment again
                attachment(14, None),
                attachment(15, "1"),
            ],
        }
    ]
    files, omitted = await collect(zammad, articles, policy=EmbedPolicy(max_bytes=10, total_max_bytes=13))
    assert [f.attachment_id for f in files if f.attachment_id] == [10, 12]
    assert [(o.attachment_id, o.size, o.size_declared, o.reason) for o in omitted] == [
        (11, 20, True, "larger than PDF_EMBED_MAX_BYTES (10)"),
        (13, 6, True, "over PDF_EMBED_TOTAL_MAX_BYTES (13) for the ticket"),
        (14, 50, False, "larger than PDF_EMBED_MAX_BYTES (10)"),  # counted: it was downloaded
        (15, 1, True, "download failed: got 50 bytes, Zammad declares 1"),
    ]


async def test_a_negative_declared_size_is_unknown_and_does_not_lower_the_total():
    zammad = FakeZammad()
    for att_id in (10, 11, 12, 13):
        zammad.attachments[(TICKET, 1, att_id)] = b"x" * 6
    articles = [
        {
            "id": 1,
            "type": "note",
            "attachments": [attachment(10, "-100"), attachment(11, 6), attachment(12, 6), attachment(13, 6)],
        }
    ]
    files, omitted = await collect(zammad, articles, policy=EmbedPolicy(max_bytes=10, total_max_bytes=13))
    assert [f.attachment_id for f in files if f.attachment_id] == [10, 11, 12]
    assert [(o.attachment_id, o.size, o.size_declared) for o in omitted] == [(13, 6, True)]


async def test_a_failed_download_is_an_omission_with_a_redacted_cause():
    zammad = FakeZammad()
    zammad.fail("get_article_plain", ZammadApiError("GET answered 500 for tok-1", status=500))
    zammad.fail("get_attachment", ZammadApiError("GET answered 403 for tok-1", status=403))
    articles = [
        {"id": 1, "type": "email", "attachments": [attachment(10, "3")]},
        {"id": 2, "type": "email"},  # Zammad holds no raw mail for it
    ]
    files, omitted = await collect(zammad, articles, redact=lambda s: s.replace("tok-1", "***"))
    assert [f.name for f in files] == ["ticket.json", "articles.json"]
    # The attachment's size is the one Zammad declares (as in the article's attachment list);
    # the raw e-mail has no declared size.
    assert [(o.name, o.size, o.size_declared, o.reason) for o in omitted] == [
        ("article-1.eml", None, False, "download failed: GET answered 500 for ***"),
        ("article-2.eml", 0, False, "Zammad holds no raw e-mail for this article"),
        ("article-1-10-f.bin", 3, True, "download failed: GET answered 403 for ***"),
    ]


def body_copy(att_id: int) -> dict:
    """Zammad's ``message.html`` copy of a mail's HTML part, as its e-mail parser lists it."""
    return {
        "id": att_id,
        "filename": "message.html",
        "size": "25",
        "preferences": {"content-alternative": True, "original-format": True, "Mime-Type": "text/html"},
    }


async def test_zammads_copy_of_the_html_part_is_embedded_only_when_the_raw_mail_is_not():
    """The raw e-mail holds the HTML part as received: its copy is not downloaded again for
    an article whose raw e-mail is embedded, and is kept (the only original HTML) for one whose
    raw e-mail failed or does not exist. Neither is an omission."""
    zammad = FakeZammad()
    zammad.plain[1] = b"From: kunde@example.org\r\n\r\n<p>Hallo</p>"
    for aid in (1, 2, 3):
        zammad.attachments[(TICKET, aid, aid * 10)] = b"<html><p>Hallo</p></html>"
        zammad.attachments[(TICKET, aid, aid * 10 + 1)] = b"%PDF-1.7"
    articles = [
        {"id": aid, "type": "email", "attachments": [body_copy(aid * 10), attachment(aid * 10 + 1, "8")]}
        for aid in (1, 2, 3)
    ]
    zammad.plain[3] = b""  # Zammad holds no raw e-mail for article 3; article 2's download fails
    real = zammad.get_article_plain

    async def plain(article_id: int) -> bytes:
        if article_id == 2:
            raise ZammadApiError("GET answered 500", status=500)
        return await real(article_id)

    zammad.get_article_plain = plain  # type: ignore[method-assign]
    files, omitted = await collect(zammad, articles)
    assert [f.name for f in files if f.name.endswith((".eml", ".html", ".bin"))] == [
        "article-1.eml",
        "article-1-11-f.bin",
        "article-2-20-message.html",
        "article-2-21-f.bin",
        "article-3-30-message.html",
        "article-3-31-f.bin",
    ]
    assert [o.name for o in omitted] == ["article-2.eml", "article-3.eml"]
    downloaded = [c[1:] for c in zammad.calls if c[0] == "get_attachment"]
    assert (TICKET, 1, 10) not in downloaded and (TICKET, 2, 20) in downloaded


async def test_another_alternative_of_the_body_is_embedded_beside_the_raw_mail():
    """Only the copy of the original HTML part (``original-format``) is left to the raw e-mail;
    another ``content-alternative`` part (a calendar invitation) is embedded as before."""
    zammad = FakeZammad()
    zammad.plain[1] = b"From: kunde@example.org\r\n\r\nTermin"
    zammad.attachments[(TICKET, 1, 10)] = b"BEGIN:VCALENDAR"
    invite = {
        "id": 10,
        "filename": "invite.ics",
        "size": "15",
        "preferences": {"content-alternative": True, "Mime-Type": "text/calendar"},
    }
    files, omitted = await collect(zammad, [{"id": 1, "type": "email", "attachments": [invite]}])
    assert [f.name for f in files][-2:] == ["article-1.eml", "article-1-10-invite.ics"]
    assert omitted == ()


async def test_an_image_fetched_for_the_layout_is_not_downloaded_again():
    zammad = FakeZammad()
    articles = [{"id": 1, "type": "note", "attachments": [attachment(10, "3", "a.png", "image/png")]}]
    files, _ = await collect(zammad, articles, images={10: b"PNG"})
    assert files[-1].data == b"PNG" and not [c for c in zammad.calls if c[0] == "get_attachment"]


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a/b\\c:d.pdf", "a_b_c_d.pdf"),
        ("  ..  ", "file"),
        ("x\x00y\n.txt", "x_y_.txt"),
        ("n" * 200, "n" * 120),
    ],
)
def test_safe_names(name, safe):
    assert safe_name(name) == safe


async def test_fetch_all_keeps_order_and_failures_in_place_a_few_at_a_time():
    running = 0
    most = 0

    def call(index: int):
        async def run() -> bytes:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.001 * (7 - index % 7))  # finish out of order
            running -= 1
            if index % 5 == 0:
                raise OSError(f"no {index}")
            return str(index).encode()

        return run

    results = await fetch_all([call(i) for i in range(40)], 4)
    assert most == 4
    for index, result in enumerate(results):
        if index % 5 == 0:
            assert isinstance(result, OSError) and str(result) == f"no {index}"
        else:
            assert result == str(index).encode()
    assert await fetch_all([], 4) == []
