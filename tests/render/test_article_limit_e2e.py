"""PDF_MAX_ARTICLES through the whole service: webhook in, tags and note out (fixture ticket 4711:
4 articles, 23051 and 23054 e-mails, 23051 with an attached PDF)."""

from __future__ import annotations

import json
import re
from html import unescape

from tests.verify import pdftotext


async def trigger(service) -> None:
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()


def note_text(note: dict) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", note["body"]))


async def test_fail_mode_is_a_permanent_error_that_says_what_to_change(archiver, simulator):
    service = await archiver(PDF_MAX_ARTICLES="2")  # PDF_ARTICLE_LIMIT_MODE defaults to fail
    await trigger(service)
    assert sorted(simulator.tags(4711)) == [
        "pdf:error",
        "rechnung",
        "reklamation",
    ]  # Permanent: no pdf:sign again
    notes = simulator.notes(4711)
    assert len(notes) == 1 and notes[0]["body"].startswith("<p><b>PDF archiver error</b></p>")
    text = note_text(notes[0])
    assert "Permanent" in text and "ticket has 4 articles" in text and "PDF_MAX_ARTICLES=2" in text
    assert "PDF_ARTICLE_LIMIT_MODE=cap_and_continue" in text
    assert list(service.storage_root.rglob("*.pdf")) == []


async def test_cap_and_continue_archives_the_first_articles_and_says_so(archiver, simulator):
    service = await archiver(PDF_MAX_ARTICLES="2", PDF_ARTICLE_LIMIT_MODE="cap_and_continue")
    await trigger(service)
    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    notes = simulator.notes(4711)
    assert len(notes) == 1 and notes[0]["body"].startswith("<p><b>PDF archived</b></p>")
    assert re.search(r"Articles:\s*2 of 4", note_text(notes[0]))
    pdfs = list(service.storage_root.rglob("*.pdf"))
    assert len(pdfs) == 1
    text = " ".join(pdftotext(pdfs[0]).split())
    page_one = text.split("Page 1 of")[0]
    assert "2 of 4 articles included" in page_one
    assert "Wartungspauschale" in text and "Rückruf erbeten" in text  # articles 1 and 2 (oldest first)
    assert "versehentlich doppelt berechnet" not in text  # article 4 left out


async def test_cap_and_continue_embeds_and_fetches_the_included_articles_originals_only(archiver, simulator):
    service = await archiver(PDF_MAX_ARTICLES="2", PDF_ARTICLE_LIMIT_MODE="cap_and_continue")
    await trigger(service)
    (pdf,) = list(service.storage_root.rglob("*.pdf"))
    sidecar = json.loads(pdf.with_name(pdf.name + ".json").read_text(encoding="utf-8"))
    assert [f["name"] for f in sidecar["embedded_files"]] == [
        "ticket.json",
        "articles.json",  # Zammad's answer whole: all 4 articles
        "article-23051-body.html",
        "article-23052-body.txt",
        "article-23051.eml",
        "article-23051-91203-Rechnung-2025-0117.pdf",
    ]
    paths = [r.path for r in simulator.requests]
    assert "/api/v1/ticket_article_plain/23051" in paths
    assert not [p for p in paths if "23053" in p or "23054" in p]  # nothing of the articles left out

    text = " ".join(pdftotext(pdf).split())
    page_one = text.split("Page 1 of")[0]
    assert "this PDF holds the oldest 2 articles only (PDF_MAX_ARTICLES=2)" in page_one
    assert "The originals embedded are those of these 2 articles; articles.json lists all 4." in page_one
    assert (
        "Article originals of the 2 articles in this PDF only (the oldest; PDF_MAX_ARTICLES=2); "
        "articles.json is Zammad's answer for all 4." in text
    )
    assert "article-23054" not in text and "article-23053" not in text
    (note,) = simulator.notes(4711)
    assert re.search(
        r"Originals embedded:\s*6 files \(PDF/A-3 associated files\), of the 2 articles in the PDF; "
        r"articles.json lists all 4",
        note_text(note),
    )
