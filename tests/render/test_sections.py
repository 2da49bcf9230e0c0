"""The article sections: articles drawn in runs whose HTML bodies are prepared together."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from app.render import sections
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import OmittedFile

from .helpers import ARCHIVED_AT, body_stream, load, pdftotext, write
from .test_pdf import BERLIN, article


def test_articles_past_one_prepared_run_keep_their_order_numbers_and_bodies(tmp_path):
    count = 2 * sections.PREPARE_AHEAD + 3  # two full runs and a short one
    articles = [
        article(f"<p>Body <b>html{index}</b> words</p>", content_type="text/html", index=index)
        if index % 3
        else article(f"Body plain{index} words", index=index)
        for index in range(1, count + 1)
    ]
    rendered = render_ticket_pdf(
        load("ticket-expand.json"), articles, [], archived_at=ARCHIVED_AT, options=BERLIN
    )
    stream = body_stream(write(tmp_path, rendered.data))
    headings = [int(n) for n in re.findall(rf"Article (\d+) of {count}", stream)]
    assert headings == list(range(1, count + 1))
    words = re.findall(r"Body (?:html|plain)(\d+) words", stream)
    assert [int(n) for n in words] == list(range(1, count + 1))


@pytest.mark.parametrize(
    ("language", "listed", "originals"),
    [
        (
            "en",
            "scan.pdf — application/pdf, 16.0 KiB (16,384 bytes) — not embedded: download failed: "
            "GET answered 404 for ***",
            "article-1-10-scan.pdf — 16.0 KiB (16,384 bytes) as declared by Zammad — download failed: "
            "GET answered 404 for ***",
        ),
        (
            "de",
            "scan.pdf — application/pdf, 16,0 KiB (16.384 Bytes) — nicht eingebettet: download failed: "
            "GET answered 404 for ***",
            "article-1-10-scan.pdf — 16,0 KiB (16.384 Bytes) laut Zammad — download failed: "
            "GET answered 404 for ***",
        ),
    ],
)
def test_an_attachment_whose_download_failed_has_zammads_declared_size_in_both_lists(
    tmp_path, language, listed, originals
):
    scan = {
        "id": 10,
        "filename": "scan.pdf",
        "size": "16384",
        "preferences": {"Mime-Type": "application/pdf"},
    }
    failed = OmittedFile(
        "article-1-10-scan.pdf",
        16384,
        "download failed: GET answered 404 for ***",
        article_id=1,
        attachment_id=10,
        size_declared=True,
    )
    rendered = render_ticket_pdf(
        load("ticket-expand.json"),
        [article("With a scan", attachments=[scan])],
        [],
        archived_at=ARCHIVED_AT,
        options=replace(BERLIN, language=language),
        omitted=[failed],
    )
    text, _ = pdftotext(write(tmp_path, rendered.data))
    flat = " ".join(text.split())
    assert listed in flat
    assert originals in flat


def test_article_fields_keep_their_order_across_a_page_break_inside_the_table(tmp_path):
    cc = [f"cc{n:03d}@example.com" for n in range(300)]  # more lines than the rest of page 1 holds
    scan = {
        "id": 10,
        "filename": "scan.pdf",
        "size": "16384",
        "preferences": {"Mime-Type": "application/pdf"},
    }
    rendered = render_ticket_pdf(
        load("ticket-expand.json"),
        [article("First body", cc=", ".join(cc), attachments=[scan])],
        [],
        archived_at=ARCHIVED_AT,
        options=BERLIN,
    )
    text, _ = pdftotext(write(tmp_path, rendered.data), "-raw")  # content-stream order
    pages = [
        " ".join(
            line
            for line in page.splitlines()
            if not re.match(r"^Ticket #\S+ – |^Archived .* by |^Page \d+ of \d+$", line)
        )
        for page in text.split("\f")
    ]
    fields = (
        "From Tester <t@example.com> To support@example.com Cc "
        + ", ".join(cc)
        + " Subject Subject 1 Time 2025-03-03 09:00:01 +01:00 Type note Sender Agent Visibility Public"
        " Attachments scan.pdf — application/pdf, 16.0 KiB (16,384 bytes) First body"
    )
    assert fields in " ".join(pages)  # each label, then its value, nothing lost or repeated

    def page_of(piece: str) -> int:
        return next(number for number, page in enumerate(pages) if piece in page)

    # The table starts on the article's page and goes on, inside the Cc value, on the next.
    assert page_of("Article 1 of 1") == page_of("From Tester") == page_of("Cc cc000@") == 0
    assert page_of("cc299@") == page_of("Subject Subject 1") == page_of("Attachments scan.pdf") == 1
