"""Articles parsed one at a time from the ``by_ticket`` answer: the same articles as a whole parse."""

from __future__ import annotations

import json
import pickle

import orjson
import pytest

from app.zammad import articles as articles_module
from app.zammad.articles import LazyArticles, lazy_articles, split_articles

ARTICLES = [
    {
        "id": 11,
        "type": "email",
        "content_type": "text/html",
        "body": '<p>Grüße {"a": [1, {"b": 2}]}, {"x": "}"} }, {</p> \\"quoted\\" 😀',
        "attachments": [
            {"id": 1, "filename": "a.png", "preferences": {"Content-ID": "<a@b>"}},
            {"id": 2, "filename": "}],[{", "preferences": {}},
        ],
    },
    {"id": 12, "type": "note", "body": "}]", "attachments": []},
    {"id": 13, "type": "phone", "body": "", "attachments": [], "nested": {"deep": [{"x": {}}, {}]}},
]


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(ARTICLES),  # as orjson writes it (the simulator)
        json.dumps(ARTICLES).encode(),  # ", " and ": " separators
        json.dumps(ARTICLES, indent=2).encode() + b"\n",  # pretty, with a final newline
        json.dumps(ARTICLES, ensure_ascii=True).encode(),  # \\u escapes
    ],
)
def test_split_articles_gives_what_a_whole_parse_gives(raw: bytes):
    lazy = split_articles(raw)
    assert lazy is not None
    assert len(lazy) == 3
    assert list(lazy) == orjson.loads(raw)
    assert lazy[-1] == ARTICLES[2] and lazy[0:2] == ARTICLES[:2]


def test_each_read_is_a_fresh_parse():
    lazy = split_articles(orjson.dumps(ARTICLES))
    assert lazy is not None
    lazy[0]["id"] = 99
    assert lazy[0]["id"] == 11
    with pytest.raises(IndexError):
        lazy[3]


def test_pickled_it_is_the_plain_list():
    lazy = split_articles(orjson.dumps(ARTICLES))
    assert pickle.loads(pickle.dumps(lazy)) == ARTICLES


@pytest.mark.parametrize("raw", [b"[]", b" [ ]\n"])
def test_an_empty_answer_has_no_articles(raw: bytes):
    lazy = split_articles(raw)
    assert isinstance(lazy, LazyArticles) and list(lazy) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b"[1, 2]",
        b'[{"id": 1}, 2]',
        b'[{"id": 1}, {"id": 2}',  # cut short
        b'[{"id": 1}, {"id": 2,}]',  # broken element
        b'[{"id": 1}] trailing',
        b"<html>Bad gateway</html>",
    ],
)
def test_anything_else_is_left_to_a_whole_parse(raw: bytes):
    assert split_articles(raw) is None


def test_a_body_full_of_brace_commas_gives_up_instead_of_searching_forever():
    raw = orjson.dumps([{"id": 1, "body": '{"a": 1}, {"b": 2}, ' * 3000}, {"id": 2}])
    assert split_articles(raw) is None
    fine = orjson.dumps([{"id": 1, "body": '{"a": 1}, ' * 3}, {"id": 2}])
    assert split_articles(fine) is not None


def test_only_a_big_answer_is_read_one_article_at_a_time(monkeypatch: pytest.MonkeyPatch):
    raw = orjson.dumps(ARTICLES)
    assert lazy_articles(raw) is None  # parsed whole by the caller, once
    monkeypatch.setattr(articles_module, "LAZY_ARTICLES_FROM_BYTES", len(raw))
    lazy = lazy_articles(raw)
    assert isinstance(lazy, LazyArticles) and list(lazy) == ARTICLES
    assert lazy_articles(b'{"not": "a list"}' + b" " * len(raw)) is None  # does not split: whole parse
