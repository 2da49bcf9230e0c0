"""Generated ticket content for the benchmarks: plain-text articles of a chosen size.

Shared by the render benchmark (article dicts handed to the layout) and the seeded
simulator (the same dicts served over ``/api/v1/ticket_articles/by_ticket``). Seeded, so
every run lays out the same words.
"""

from __future__ import annotations

import random

WORDS = [
    "Rechnung",
    "Position",
    "doppelt",
    "berechnet",
    "Gutschrift",
    "Kundin",
    "Mühlenbach",
    "Grüßen",
    "außerdem",
    "Prüfung",
    "bitte",
    "senden",
    "korrigierte",
    "Wartungspauschale",
    "Buchhaltung",
    "Ansprechpartner",
    "Zahlung",
    "zurückgestellt",
    "the",
    "invoice",
    "was",
    "charged",
    "twice",
    "please",
    "send",
    "a",
    "corrected",
    "credit",
    "note",
    "as",
    "soon",
    "as",
    "possible",
]
ARTICLE_CHARS = 1000
"""Characters of body text per generated article (paragraphs of about 300)."""


def make_articles(
    count: int, chars: int = ARTICLE_CHARS, seed: int = 4711, first_id: int = 1000
) -> list[dict]:
    """``count`` plain-text articles of about ``chars`` characters, in paragraphs of ~300.

    Ids run from ``first_id``; every fifth article is internal (the render benchmark's figures
    depend on this content: change it and old figures are no longer comparable). The dicts
    carry the keys the layout reads and Zammad's ``by_ticket`` answer has (``type``/``sender``
    names and ids).
    """
    rng = random.Random(seed)
    articles = []
    for index in range(count):
        paragraphs, length, current = [], 0, []
        while length < chars:
            word = rng.choice(WORDS)
            current.append(word)
            length += len(word) + 1
            if len(" ".join(current)) > 300:
                paragraphs.append(" ".join(current))
                current = []
        paragraphs.append(" ".join(current))
        articles.append(
            {
                "id": first_id + index,
                "from": "Katrin Vogelsang <k.vogelsang@example.com>",
                "to": "support@example.com",
                "subject": f"Message {index}",
                "type": "email",
                "type_id": 1,
                "sender": "Customer",
                "sender_id": 2,
                "internal": index % 5 == 0,
                "content_type": "text/plain",
                "created_at": f"2025-03-03T08:{index // 60 % 60:02d}:{index % 60:02d}Z",
                "body": "\n\n".join(paragraphs),
                "attachments": [],
            }
        )
    return articles
