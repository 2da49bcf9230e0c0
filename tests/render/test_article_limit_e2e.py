"""PDF_MAX_ARTICLES through the whole service: webhook in, tags and note out (fixture ticket 4711:
4 articles)."""

from __future__ import annotations

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
