"""The e-mail corpus: every body renders, no exception escapes, sampled visible words reach the PDF."""

from __future__ import annotations

import re

import pytest

from app.render import html_body
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .email_corpus import CORPUS, PNG_RED
from .helpers import ARCHIVED_AT, pdftotext, write

CID_ATTACHMENT = {
    "id": 501,
    "filename": "image001.png",
    "size": 120,
    "preferences": {"Content-ID": "<image001.png@01DB8C3A.5A9E1F20>", "Mime-Type": "image/png"},
}


def article(body: str, content_type: str) -> dict:
    return {
        "id": 77,
        "from": "Kunde <k@example.com>",
        "to": "support@example.com",
        "subject": "Korpus",
        "type": "email",
        "sender": "Customer",
        "internal": False,
        "content_type": content_type,
        "created_at": "2025-03-03T08:00:00Z",
        "body": body,
        "attachments": [CID_ATTACHMENT],
    }


def visible(text: str) -> str:
    text = "\n".join(
        line
        for line in text.splitlines()
        if not re.match(r"^(Ticket #1 – |Archived .* by |Page \d+ of \d+$)", line)
    )
    return "".join(text.split()).translate(dict.fromkeys(range(0x202A, 0x202F)))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_body_renders_with_its_words(tmp_path, name, monkeypatch):
    body, content_type, words = CORPUS[name]
    fallbacks = []
    original = html_body.html_to_text
    monkeypatch.setattr(html_body, "html_to_text", lambda html: fallbacks.append(html) or original(html))
    rendered = render_ticket_pdf(
        {"number": "1", "title": "Korpus"},
        [article(body, content_type)],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images={501: PNG_RED},
    )
    text, stderr = pdftotext(write(tmp_path, rendered.data))
    assert "No font" not in stderr and "Syntax Error" not in stderr
    flat = visible(text)
    for word in words:
        assert "".join(word.split()) in flat, word
    assert "<script" not in text and "alert(" not in text and "@font-face" not in text and "<!--" not in text
    assert fallbacks == [], name  # our layout takes every body: the text fallback is for the unforeseen


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40
    assert len(CORPUS["huge-body-200kb"][0].encode()) >= 200_000
    assert max(len(line) for line in CORPUS["single-line-50000"][0].splitlines()) >= 50_000
