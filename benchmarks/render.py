"""Benchmark: our ticket layout (app.render.pdf) against ReportLab platypus setting the same text.

Run: ``.venv/bin/python benchmarks/render.py [--sizes 5,50,500,2000]`` (ReportLab comes with
the ``bench`` extra: ``pip install -e '.[bench]'``); ``run(quick)`` gives the rows of
``make bench``. Each ticket has articles of ~1,000
characters of plain text. Prints seconds per ticket for both and the ratio ours / ReportLab
(lower is better; the target is at most 1.0× at 500 articles). Each time is the best of
``--repeat`` runs. Ratios, not absolute times, are the result: they hold across machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.render import patches
from app.render.glyphs import font_set
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from benchmarks.common import Result
from benchmarks.tickets import make_articles

ARCHIVED_AT = datetime(2025, 3, 7, 12, 0, tzinfo=UTC)
TICKET = {"number": "25004711", "title": "Benchmark ticket", "created_at": "2025-03-03T08:00:00Z"}
SIZES = (5, 50, 500, 2000)
TARGET_SIZE = 500
TARGET_RATIO = 1.0


def render_ours(ticket: dict, articles: list[dict]) -> int:
    return render_ticket_pdf(
        ticket, articles, ["bench"], archived_at=ARCHIVED_AT, options=RenderOptions()
    ).page_count


def render_reportlab(ticket: dict, articles: list[dict]) -> int:
    """ReportLab platypus setting the same header lines and bodies in one run (same TTF fonts and sizes)."""
    import io
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    fonts = font_set()
    if "NotoSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("NotoSans", fonts.main[""].path))
        pdfmetrics.registerFont(TTFont("NotoSans-Bold", fonts.main["B"].path))
    heading = ParagraphStyle("h", fontName="NotoSans-Bold", fontSize=10, leading=13)
    field = ParagraphStyle("f", fontName="NotoSans", fontSize=8.5, leading=11.5)
    body = ParagraphStyle("b", fontName="NotoSans", fontSize=9.5, leading=12.6)
    story = [
        Paragraph(
            f"Ticket #{ticket['number']}",
            ParagraphStyle("t", fontName="NotoSans-Bold", fontSize=16, leading=21),
        )
    ]
    for article in articles:
        story.append(Paragraph(escape(f"{article['subject']} · {article['created_at']}"), heading))
        for label in ("from", "to", "subject", "type", "sender"):
            story.append(Paragraph(escape(f"{label}: {article[label]}"), field))
        for paragraph in article["body"].split("\n"):
            story.append(Paragraph(escape(paragraph) or "&nbsp;", body))
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=42, rightMargin=42, topMargin=50, bottomMargin=46)
    doc.build(story)
    return doc.page


def timed(fn, *args, repeat: int = 1) -> tuple[float, int]:
    best, pages = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        pages = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, pages


def measure(sizes: tuple[int, ...], repeat: int) -> list[tuple[int, float, int, float, int]]:
    """``(articles, ours s, pages, ReportLab s, pages)`` per size; best of ``repeat`` up to 500 articles."""
    patches.install()  # as in the render processes
    render_ours(TICKET, make_articles(2))  # warm the per-process font caches for both paths
    render_reportlab(TICKET, make_articles(2))
    rows = []
    for count in sizes:
        articles = make_articles(count)
        runs = repeat if count <= 500 else 1
        ours, ours_pages = timed(render_ours, TICKET, articles, repeat=runs)
        theirs, their_pages = timed(render_reportlab, TICKET, articles, repeat=runs)
        rows.append((count, ours, ours_pages, theirs, their_pages))
    return rows


def run(quick: bool = False) -> list[Result]:
    """Seconds per ticket for ours and the ours/ReportLab ratio per size; the target is at 500 articles."""
    sizes, repeat = ((20, 500), 1) if quick else (SIZES, 3)
    results = []
    for count, ours, ours_pages, theirs, _ in measure(sizes, repeat):
        ratio = ours / theirs
        results.append(Result("render", f"{count} articles: ours, {ours_pages} pages", round(ours, 3), "s"))
        on_target = count == TARGET_SIZE
        results.append(
            Result(
                "render",
                f"{count} articles: ours / ReportLab platypus",
                round(ratio, 2),
                "ratio",
                f"<= {TARGET_RATIO:g}" if on_target else None,
                ratio <= TARGET_RATIO if on_target else None,
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated article counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    args = parser.parse_args(argv)
    print(f"{'articles':>8} {'ours s':>8} {'pages':>6} {'reportlab s':>12} {'pages':>6} {'ours/RL':>8}")
    worst_500 = None
    for count, ours, ours_pages, theirs, their_pages in measure(
        tuple(int(s) for s in args.sizes.split(",")), args.repeat
    ):
        ratio = ours / theirs
        if count == TARGET_SIZE:
            worst_500 = ratio
        print(f"{count:>8} {ours:>8.3f} {ours_pages:>6} {theirs:>12.3f} {their_pages:>6} {ratio:>7.2f}x")
    if worst_500 is not None:
        print(f"500 articles: {worst_500:.2f}x ReportLab (target <= 1.0x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
