"""The article sections: articles drawn in runs whose HTML bodies are prepared together."""

from __future__ import annotations

import re

from app.render import sections
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, body_stream, load, write
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
