"""Benchmark: our plain-text layout (app.render.pdf) against fpdf2's multi_cell on the same text.

Run: ``.venv/bin/python benchmarks/render.py [--sizes 5,50,500]``. Prints seconds per ticket
and the ratio multi_cell / ours (higher = ours faster). Ratios, not absolute times, are the
result: they hold across machines. Takes well under two minutes for the default sizes.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fpdf import FPDF  # noqa: E402

from app.render.glyphs import CHAIN_FILES, FONT_DIR  # noqa: E402
from app.render.options import RenderOptions  # noqa: E402
from app.render.pdf import render_ticket_pdf  # noqa: E402

WORDS = (
    "Rechnung Position doppelt berechnet Gutschrift Kundin Mühlenbach Grüßen außerdem Prüfung "
    "bitte senden korrigierte Wartungspauschale Buchhaltung Ansprechpartner Zahlung zurückgestellt "
    "the invoice was charged twice please send a corrected credit note as soon as possible"
).split()
ARCHIVED_AT = datetime(2025, 3, 7, 12, 0, tzinfo=timezone.utc)


def make_articles(count: int, chars: int = 1000, seed: int = 4711) -> list[dict]:
    """``count`` plain-text articles of about ``chars`` characters, in paragraphs of ~300."""
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
                "id": 1000 + index,
                "from": "Katrin Vogelsang <k.vogelsang@example.com>",
                "to": "support@example.com",
                "subject": f"Message {index}",
                "type": "email",
                "sender": "Customer",
                "internal": index % 5 == 0,
                "content_type": "text/plain",
                "created_at": f"2025-03-03T08:{index // 60 % 60:02d}:{index % 60:02d}Z",
                "body": "\n\n".join(paragraphs),
            }
        )
    return articles


def render_ours(ticket: dict, articles: list[dict]) -> int:
    return render_ticket_pdf(ticket, articles, ["bench"], archived_at=ARCHIVED_AT, options=RenderOptions()).page_count


def render_multi_cell(ticket: dict, articles: list[dict]) -> int:
    """The naive path: the same header lines and bodies through ``multi_cell`` (same fonts and sizes)."""
    pdf = FPDF(unit="pt", format="A4")
    for style, chain in CHAIN_FILES.items():
        family, name = chain[0]
        pdf.add_font(family, style, str(FONT_DIR / name))
    pdf.set_margins(42, 50, 42)
    pdf.set_auto_page_break(True, margin=46)
    pdf.add_page()
    pdf.set_font("NotoSans", "B", 16)
    pdf.multi_cell(0, 21, f"Ticket #{ticket['number']}", new_x="LMARGIN", new_y="NEXT")
    for article in articles:
        pdf.set_font("NotoSans", "B", 10)
        pdf.multi_cell(0, 13, f"{article['subject']} · {article['created_at']}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("NotoSans", "", 8.5)
        for label in ("from", "to", "subject", "type", "sender"):
            pdf.multi_cell(0, 11.5, f"{label}: {article[label]}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("NotoSans", "", 9.5)
        pdf.multi_cell(0, 12.6, article["body"], new_x="LMARGIN", new_y="NEXT")
    pdf.output()
    return pdf.pages_count


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    pages = fn(*args)
    return time.perf_counter() - start, pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,50,500", help="comma-separated article counts")
    args = parser.parse_args(argv)
    ticket = {"number": "25004711", "title": "Benchmark ticket", "created_at": "2025-03-03T08:00:00Z"}
    render_ours(ticket, make_articles(2))  # warm the per-process font caches for both paths
    print(f"{'articles':>8} {'ours s':>8} {'pages':>6} {'multi_cell s':>13} {'pages':>6} {'ratio':>6}")
    for count in (int(s) for s in args.sizes.split(",")):
        articles = make_articles(count)
        ours, ours_pages = timed(render_ours, ticket, articles)
        naive, naive_pages = timed(render_multi_cell, ticket, articles)
        print(f"{count:>8} {ours:>8.3f} {ours_pages:>6} {naive:>13.3f} {naive_pages:>6} {naive / ours:>5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
