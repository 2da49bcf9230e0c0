"""The benchmark tickets: the Zammad mix is what its docstring says, and its plain twin has the same words."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from lxml import etree, html

from app.render.images import image_references
from benchmarks import mailers
from benchmarks.tickets import MIX_ARTICLES, MIX_VISIBLE_CHARS, make_mixed_ticket, visible_chars

_MARKERS = re.compile(r"^(?:-|--|\d+\.)$")
"""List markers and signature dashes: drawn by the layout, not words of the text."""


def _html_words(body: str) -> list[str]:
    root = html.fromstring(body)
    for element in root.iter(etree.Comment, "style", "script", "head"):
        if element.getparent() is not None:
            element.drop_tree()
    return [w for w in " ".join(root.itertext()).split() if not _MARKERS.match(w)]


def _plain_words(body: str) -> list[str]:
    return [w for w in body.split() if not _MARKERS.match(w)]


@pytest.fixture(scope="module")
def ticket():
    return make_mixed_ticket(MIX_ARTICLES, ticket_id=123, first_id=7000, first_attachment_id=900_000)


def test_the_mix_has_the_documented_shares(ticket) -> None:
    kinds = Counter((a["type"], a["content_type"]) for a in ticket.articles)
    assert kinds == {
        ("email", "text/html"): 15,
        ("email", "text/plain"): 1,
        ("phone", "text/plain"): 1,
        ("phone", "text/html"): 1,
        ("note", "text/plain"): 1,
        ("note", "text/html"): 1,
    }
    bodies = [a["body"] for a in ticket.articles if a["content_type"] == "text/html"]
    assert sum("MsoNormal" in b or "divRplyFwdMsg" in b for b in bodies) == 5
    assert sum("divRplyFwdMsg" in b for b in bodies) == 2
    assert sum('<div dir="ltr">' in b and "gmail" in b for b in bodies) == 4
    assert sum("-webkit-nbsp-mode" in b for b in bodies) == 3
    assert sum("moz-cite-prefix" in b for b in bodies) == 3
    assert sum('<pre class="moz-quote-pre"' in b for b in bodies) == 1
    assert sum("gmail_signature" in b and "<table" in b and "Forwarded message" in b for b in bodies) == 1
    assert round(visible_chars(ticket.plain)) == MIX_VISIBLE_CHARS


def test_inline_images_are_listed_and_found_by_the_renderer(ticket) -> None:
    sources = [s for a in ticket.articles for s in re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', a["body"])]
    assert sum(s.startswith("cid:") for s in sources) == 4
    urls = [s for s in sources if s.startswith("/api/v1/ticket_attachment/123/")]
    assert len(urls) == 2 and all(s.endswith("?view=inline") for s in urls)
    refs = image_references(123, ticket.articles)
    assert {r.attachment_id for r in refs} == set(ticket.images) and len(ticket.images) == 6
    for article in ticket.articles:
        for attachment in article["attachments"]:
            if attachment["id"] in ticket.images:
                assert attachment["preferences"]["Content-Disposition"] == "inline"
                assert attachment["size"] == str(len(ticket.images[attachment["id"]]))


def test_the_plain_twin_has_the_same_visible_words(ticket) -> None:
    for article, twin in zip(ticket.articles, ticket.plain, strict=True):
        assert twin["content_type"] == "text/plain"
        assert twin["attachments"] == [a for a in article["attachments"] if a["filename"] != "message.html"]
        words = _plain_words(twin["body"])
        assert len(words) > 60
        if article["content_type"] == "text/html":
            assert _html_words(article["body"]) == words, article["id"]
        else:
            assert article["body"] == twin["body"]


def test_same_seed_same_words_whatever_the_ids(ticket) -> None:
    other = make_mixed_ticket(MIX_ARTICLES, ticket_id=9, first_id=1, first_attachment_id=1)
    assert [a["body"] for a in other.plain] == [a["body"] for a in ticket.plain]
    assert [len(b) for b in other.images.values()] == [len(b) for b in ticket.images.values()]


def test_every_writer_keeps_every_word() -> None:
    message = mailers.Message(
        greeting="Hallo Welt,",
        paragraphs=("Erster Absatz mit Wörtern.", "Zweiter & <letzter> Absatz."),
        closing="Gruß",
        signature=("Anna Beispiel", "www.beispiel.example"),
        items=("eins zwei", "drei"),
        table=(("Kopf", "Wert"), ("a b", "1,00 €")),
        quote=mailers.Quote(("Von: X <x@example.com>", "Gesendet: heute"), ("Alter Text hier.",)),
        links={"www.beispiel.example": "https://www.beispiel.example/"},
    )
    expected = _plain_words(mailers.plain(message))
    assert expected == mailers.visible_words(message)
    for write in (mailers.outlook, mailers.gmail, mailers.apple_mail, mailers.thunderbird):
        assert _html_words(write(message)) == expected, write.__name__
    assert _html_words(mailers.outlook(message, web=True)) == expected
