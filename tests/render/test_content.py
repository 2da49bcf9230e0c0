"""Field text, times, article order, attachments and bodies, before layout."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from app.render.content import (
    article_order,
    body_text,
    display_name,
    format_time,
    kept_articles,
    kept_positions,
    ticket_field,
    visible_attachments,
)

from .helpers import load


def test_display_name_accepts_strings_and_objects():
    assert display_name("Kundenservice") == "Kundenservice"
    assert display_name({"name": "2 normal", "id": 2}) == "2 normal"
    assert (
        display_name({"login": "kv", "firstname": "Katrin", "lastname": "Vogelsang", "email": "k@x.example"})
        == "Katrin Vogelsang <k@x.example>"
    )
    assert display_name({"login": "kv", "firstname": "", "lastname": "", "email": ""}) == "kv"
    assert display_name(None) == ""


def test_ticket_field_falls_back_to_id():
    assert ticket_field({"state_id": 2}, "state") == "(id 2)"
    assert ticket_field({"state": "open", "state_id": 2}, "state") == "open"


def test_times_are_shown_in_the_zone_with_offset():
    assert format_time("2025-03-03T08:12:44.031Z", ZoneInfo("Europe/Berlin")) == "2025-03-03 09:12:44 +01:00"
    assert format_time("2025-07-03T08:12:44Z", ZoneInfo("Europe/Berlin")) == "2025-07-03 10:12:44 +02:00"
    assert format_time("2025-03-03T08:12:44Z", ZoneInfo("UTC")) == "2025-03-03 08:12:44 +00:00"
    assert format_time("yesterday", ZoneInfo("UTC")) == "yesterday"
    assert format_time("2025-03-03T08:12:44Z", ZoneInfo("Asia/Kolkata")) == "2025-03-03 13:42:44 +05:30"


@pytest.mark.parametrize(
    ("zone", "when", "german"),
    [
        ("Europe/Berlin", "2025-03-03T08:12:44Z", "03.03.2025 09:12:44 MEZ"),
        ("Europe/Berlin", "2025-07-03T08:12:44Z", "03.07.2025 10:12:44 MESZ"),
        ("UTC", "2025-03-03T08:12:44Z", "03.03.2025 08:12:44 UTC"),
        # "IST" would be India's, Ireland's or Israel's: every zone but MEZ/MESZ/UTC by its offset.
        ("Asia/Kolkata", "2025-03-03T08:12:44Z", "03.03.2025 13:42:44 UTC+05:30"),
        ("Europe/Dublin", "2025-07-03T08:12:44Z", "03.07.2025 09:12:44 UTC+01:00"),
        ("Asia/Jerusalem", "2025-03-03T08:12:44Z", "03.03.2025 10:12:44 UTC+02:00"),
        ("America/New_York", "2025-03-03T08:12:44Z", "03.03.2025 03:12:44 UTC-05:00"),
        ("Asia/Dubai", "2025-03-03T08:12:44Z", "03.03.2025 12:12:44 UTC+04:00"),  # tzname "+04"
    ],
)
def test_german_times_name_only_unambiguous_zones(zone: str, when: str, german: str) -> None:
    assert format_time(when, ZoneInfo(zone), "de") == german


def test_articles_sorted_by_creation_then_id():
    articles = [
        {"id": 3, "created_at": "2025-03-03T10:00:00Z"},
        {"id": 2, "created_at": "2025-03-03T09:00:00Z"},
        {"id": 1, "created_at": "2025-03-03T09:00:00Z"},
        {"id": 4, "created_at": None},
    ]
    assert [articles[i]["id"] for i in article_order(articles)] == [1, 2, 3, 4]
    assert article_order(articles) == [2, 1, 0, 3]  # the order as positions
    with pytest.raises(TypeError, match="article 1 is a list"):
        article_order([{"id": 1}, []])


def test_a_capped_archive_keeps_the_oldest_articles_oldest_first():
    articles = [
        {"id": 3, "created_at": "2025-03-03T10:00:00Z"},
        {"id": 2, "created_at": "2025-03-03T09:00:00Z"},
        {"id": 1, "created_at": "2025-03-03T09:00:00Z"},
        {"id": 4, "created_at": None},
    ]
    assert kept_positions(articles, 2) == [2, 1]
    assert kept_positions(articles, 0) == kept_positions(articles, 4) == [2, 1, 0, 3]
    kept = kept_articles(articles, 3)
    assert [a["id"] for a in kept] == [1, 2, 3] and len(kept) == 3
    assert kept[0] is articles[2] and [a["id"] for a in kept[1:]] == [2, 3]
    assert kept_articles(articles, 0) is articles and kept_articles(articles, 4) is articles


def test_attachments_skip_the_message_html_pseudo_attachment():
    first = load("articles-by-ticket.json")[0]
    listed = visible_attachments(first)
    assert [a.filename for a in listed] == ["Rechnung-2025-0117.pdf"]
    assert listed[0].content_type == "application/pdf"
    assert listed[0].size == "179.5 KiB (183,764 bytes)"


def test_html_body_becomes_text_with_links_and_plain_keeps_line_breaks():
    html = {
        "content_type": "text/html",
        "body": '<div>Hallo</div><div><a href="https://x.example/a">Link</a></div>',
    }
    assert body_text(html) == "Hallo\n[Link](https://x.example/a)"
    plain = {"content_type": "text/plain", "body": "eins\nzwei\n\ndrei\n"}
    assert body_text(plain) == "eins\nzwei\n\ndrei"


def test_quoted_html_is_indented():
    html = {
        "content_type": "text/html",
        "body": "<div>Antwort</div><blockquote type=cite><div>Zitat</div></blockquote>",
    }
    assert body_text(html).splitlines() == ["Antwort", "    Zitat"]


@pytest.mark.parametrize(
    ("language", "shown"),
    [("en", "1880-01-01 00:53:28 +00:53:28"), ("de", "01.01.1880 00:53:28 UTC+00:53:28")],
)
def test_a_local_mean_time_offset_keeps_its_seconds_apart(language: str, shown: str) -> None:
    # Berlin's zone before 1893 is LMT, +00:53:28: %z gives +005328, which printed as +00:5328.
    assert format_time("1880-01-01T00:00:00Z", ZoneInfo("Europe/Berlin"), language) == shown
