"""Benchmark: our ticket layout (app.render.pdf) against ReportLab platypus setting the same text,
and what each of our replacements of fpdf2 code buys against fpdf2's own.

Run: ``.venv/bin/python benchmarks/render.py [--sizes 5,50,500,2000]`` (ReportLab comes with
the ``bench`` extra: ``pip install -e '.[bench]'``); ``run(quick)`` gives the rows of
``make bench``. Each ticket has articles of ~1,000
characters of plain text (:func:`benchmarks.tickets.make_articles`). Prints seconds per ticket
for both and the ratio ours / ReportLab (lower is better; the target is at most 0.8× at 500
articles). Both run in this warm process (fonts registered and caches filled by a 2-article
render first), so the wall times are net of start-up. Each time is the best of ``--repeat``
runs. Ratios, not absolute times, are the result: they hold across machines.

The *Zammad mix* rows (``--mix``) give the CPU per render of a 20-article ticket of the
realistic mix (:func:`benchmarks.tickets.make_mixed_ticket`: mostly ``text/html`` e-mails as
Outlook, Gmail, Apple Mail and Thunderbird write them, with its 6 inline images handed over
as the workflow does) and of its plain twin (the same visible words as ``text/plain``, the
same attachments, its images drawn as previews), and the ratio HTML / plain (target at most
1.3); for information the same ratio with no image drawn on either side: medians of renders interleaved
round by round, CPU time of this process, no embedded originals. For information, the same
ratio for the articles of each client alone (:data:`MIX_CLIENTS`; a ticket of only those
articles, so the ticket's fixed costs weigh more), and what compressing with ISA-L buys
(:mod:`app.render.deflate`): the mix ticket with its originals (:func:`mix_originals`: raw
e-mails, bodies, the ``by_ticket`` answer, as the e2e job embeds them), zlib / ISA-L.

The *replacement* rows (``--replacements``) put fpdf2's own code back for one of ours at a
time (:data:`REPLACEMENTS`) and give the ratio fpdf2's / ours, measured in one run:

* CPU per render of a 20-article ticket with 21 embedded originals (the e2e ticket's
  shape), medians of renders interleaved round by round, CPU time of this process (waiting
  for a busy CPU does not count). Each variant must give our bytes where it should
  (checked), so a row compares implementations of the same output.
* Peak memory a 2,000-article render (~850 pages) adds to its process (``VmHWM`` after
  minus ``VmRSS`` before), each variant in a fresh process: what the parked pages and the
  PDF written straight into its file save (:mod:`app.render.streams`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.render import document, fontcache, fontoutput, patches, png_passthrough
from app.render import pdf as pdf_module
from app.render.glyphs import font_set
from app.render.metadata import ArchiveInfoProducer
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.render.streams import ParkedPagesProducer
from app.workflow.ports import EmbeddedFile
from benchmarks.common import REPO, Result, print_rows
from benchmarks.tickets import MIX_ARTICLES, MIX_PATTERN, MixedTicket, make_articles, make_mixed_ticket
from devtools.zammad_simulator.mail import article_eml

ARCHIVED_AT = datetime(2025, 3, 7, 12, 0, tzinfo=UTC)
TICKET = {"number": "25004711", "title": "Benchmark ticket", "created_at": "2025-03-03T08:00:00Z"}
SIZES = (5, 50, 500, 2000)
TARGET_SIZE = 500
TARGET_RATIO = 0.8
TARGET_MIX_RATIO = 1.3
REPLACEMENT_ARTICLES = 20
MEMORY_ARTICLES = 2000


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


# -- the Zammad mix against its plain twin ----------------------------------------------------


#: The clients of the mix with a row of their own: row label → kinds of :data:`MIX_PATTERN`.
MIX_CLIENTS = {
    "Outlook": ("outlook", "outlook-web"),
    "Gmail": ("gmail",),
    "Apple Mail": ("apple",),
    "Thunderbird": ("thunderbird",),
}


def measure_mix(rounds: int) -> dict[str, float]:
    """Median CPU seconds per render of the 20-article Zammad mix ticket (``"html"``) and of its
    plain twin (``"plain"``), both with the ticket's images; of both without any image
    (``"html text"``, ``"plain text"``: the image bytes not handed over, so placeholders); and
    of the articles of each client of :data:`MIX_CLIENTS` alone (``"<client> html"``,
    ``"<client> plain"``); and of the HTML ticket with every PNG re-encoded and decoded as
    before :mod:`app.render.png_passthrough` (``"html, PNGs decoded"``) and with fpdf2's own
    object dictionaries and annotation serialising, not :mod:`app.render.patches`'
    (``"html, fpdf2's object dictionaries"``); with its originals, deflated by ISA-L and by zlib
    (``"html, originals"``, ``"html, originals, zlib"``); renders interleaved round by round
    after one warm-up render of each."""
    patches.install()
    ticket = make_mixed_ticket(MIX_ARTICLES)

    def renderer(
        articles: list[dict[str, Any]], images: dict[int, bytes], embedded: tuple[EmbeddedFile, ...] = ()
    ) -> Callable[[], None]:
        def render() -> None:
            render_ticket_pdf(
                TICKET,
                articles,
                ["bench"],
                archived_at=ARCHIVED_AT,
                options=RenderOptions(),
                images=images,
                embedded=embedded,
            )

        return render

    variants = {
        "html": renderer(ticket.articles, ticket.images),
        "plain": renderer(ticket.plain, ticket.images),
        "html text": renderer(ticket.articles, {}),
        "plain text": renderer(ticket.plain, {}),
    }
    html = variants["html"]

    def html_pngs_decoded() -> None:  # every PNG re-encoded by Pillow and decoded by fpdf2, as before
        with mock.patch.object(png_passthrough, "png_raster_info", lambda data: None):
            html()

    variants["html, PNGs decoded"] = html_pngs_decoded

    def html_stock_object_dicts() -> None:  # fpdf2's dir() walk for every object and annotation
        with _stock_object_dicts():
            html()

    variants["html, fpdf2's object dictionaries"] = html_stock_object_dicts
    with_originals = renderer(ticket.articles, ticket.images, mix_originals(ticket))

    def with_originals_zlib() -> None:
        with _stock_deflate():
            with_originals()

    variants["html, originals"] = with_originals
    variants["html, originals, zlib"] = with_originals_zlib
    for client, kinds in MIX_CLIENTS.items():
        chosen = [i for i in range(MIX_ARTICLES) if MIX_PATTERN[i % len(MIX_PATTERN)] in kinds]
        variants[f"{client} html"] = renderer([ticket.articles[i] for i in chosen], ticket.images)
        variants[f"{client} plain"] = renderer([ticket.plain[i] for i in chosen], ticket.images)
    for render in variants.values():
        render()
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, render in variants.items():
            start = time.process_time()
            render()
            cpu[name].append(time.process_time() - start)
    return {name: statistics.median(times) for name, times in cpu.items()}


def mix_originals(ticket: MixedTicket) -> tuple[EmbeddedFile, ...]:
    """What the workflow embeds as originals for the mix ticket, images aside (they are stored
    undeflated): the ``by_ticket`` answer, every body, every e-mail's raw message as the
    simulator serves it (base64 parts and all)."""
    files = [EmbeddedFile("articles.json", orjson.dumps(ticket.articles), "application/json", "Source")]
    for article in ticket.articles:
        html = article["content_type"] == "text/html"
        files.append(
            EmbeddedFile(
                f"{article['id']}-body.{'html' if html else 'txt'}",
                article["body"].encode(),
                article["content_type"],
                "Source",
                article_id=article["id"],
            )
        )
        if article.get("type") == "email":
            raw = article_eml(article, ticket.images)
            files.append(
                EmbeddedFile(
                    f"{article['id']}.eml", raw, "message/rfc822", "Source", article_id=article["id"]
                )
            )
    return tuple(files)


def mix_rows(quick: bool) -> list[Result]:
    """The rows of :func:`measure_mix` (see the module docstring)."""
    cpu = measure_mix(rounds=3 if quick else 15)
    n = MIX_ARTICLES
    ratio = round(cpu["html"] / cpu["plain"], 2)
    rows = [
        Result(
            "render",
            f"Zammad mix, {n} articles: HTML (6 images inline), CPU per render",
            round(cpu["html"] * 1000, 1),
            "ms",
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles: plain twin (same words and images, text/plain), CPU per render",
            round(cpu["plain"] * 1000, 1),
            "ms",
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles: HTML / plain twin, render CPU",
            ratio,
            "ratio",
            f"<= {TARGET_MIX_RATIO:g}",
            ratio <= TARGET_MIX_RATIO,
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles, text alone (no image drawn on either side): HTML / plain twin",
            round(cpu["html text"] / cpu["plain text"], 2),
            "ratio",
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles with its originals (raw e-mails, bodies, articles.json): "
            "zlib / ISA-L deflate (app.render.deflate), render CPU",
            round(cpu["html, originals, zlib"] / cpu["html, originals"], 2),
            "ratio",
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles: fpdf2's object dictionaries and annotations / ours "
            "(app.render.patches), render CPU",
            round(cpu["html, fpdf2's object dictionaries"] / cpu["html"], 2),
            "ratio",
        ),
        Result(
            "render",
            f"Zammad mix, {n} articles: PNGs re-encoded and decoded by fpdf2 / passed through "
            "(app.render.png_passthrough), render CPU",
            round(cpu["html, PNGs decoded"] / cpu["html"], 2),
            "ratio",
        ),
    ]
    for client, kinds in MIX_CLIENTS.items():
        count = sum(MIX_PATTERN[i % len(MIX_PATTERN)] in kinds for i in range(n))
        rows.append(
            Result(
                "render",
                f"Zammad mix, its {count} {client} articles alone: HTML / plain twin, render CPU",
                round(cpu[f"{client} html"] / cpu[f"{client} plain"], 2),
                "ratio",
            )
        )
    return rows


# -- our replacements of fpdf2 code against fpdf2's own ---------------------------------------


@contextlib.contextmanager
def _stock_object_dicts() -> Iterator[None]:
    patches.uninstall_object_dicts()
    try:
        yield
    finally:
        patches.install_object_dicts()


@contextlib.contextmanager
def _stock_deflate() -> Iterator[None]:
    patches.uninstall_deflate()
    try:
        yield
    finally:
        patches.install_deflate()


def _stock_add_font() -> Any:
    def add_font(pdf: Any, family: str, style: str, path: str, index: int = 0) -> None:
        pdf.add_font(family, style, path, collection_font_number=index)

    return mock.patch.object(document, "add_cached_font", add_font)


class _Fpdf2FontOutput(ParkedPagesProducer, ArchiveInfoProducer):
    """The render's output producer with fpdf2's own font objects (no ``ArchiveOutputProducer``)."""


@contextlib.contextmanager
def _stock_subsets() -> Iterator[None]:
    with (
        mock.patch.object(document, "use_tiered_codes", lambda font: False),
        mock.patch.object(pdf_module, "_OutputProducer", _Fpdf2FontOutput),
    ):
        yield


@contextlib.contextmanager
def _stock_text_path() -> Iterator[None]:
    def select_face(pdf: Any, face: Any, size: float) -> None:
        pdf.set_font(face.family, face.style, size)

    def draw_styled_lines_at(pdf: Any, placed: list[tuple[float, float, str, Any]]) -> None:
        for x, top, text, style in placed:
            pdf.draw_line(x, top, text, style)

    with (
        mock.patch.object(document.TicketPdf, "draw_text", document.TicketPdf.text),
        mock.patch.object(document.TicketPdf, "select_face", select_face),
        mock.patch.object(document.TicketPdf, "_draw_plain_lines", lambda *args: False),
        mock.patch.object(document.TicketPdf, "draw_styled_lines_at", draw_styled_lines_at),
    ):
        yield


def _stock_layout_tables() -> Any:
    stock = fontcache._prototype

    def without_pre_drop(path: str, index: int) -> Any:
        return dataclasses.replace(stock(path, index), pre_drop=())

    return mock.patch.object(fontcache, "_prototype", without_pre_drop)


@dataclass(frozen=True)
class Replacement:
    """One of our replacements of fpdf2 code, and the switch that puts fpdf2's back.

    Attributes:
        label: the row is ``"20 plain articles: fpdf2's <label> / ours, CPU"``.
        what: what fpdf2 does instead, and which code of ours it stands for.
        same_bytes: whether fpdf2's code gives our PDF bytes (checked before measuring).
        switch: a context manager factory; fpdf2's code runs while it is entered.
        new_glyphs: measured on renders that each draw a glyph set new to the process (so the
            font output cache misses), against ours on the same kind of render.
    """

    label: str
    what: str
    same_bytes: bool
    switch: Callable[[], Any]
    new_glyphs: bool = False


REPLACEMENTS = (
    Replacement(
        "object dictionaries", "PDFObject._build_obj_dict, for app.render.patches", True, _stock_object_dicts
    ),
    Replacement(
        "zlib",
        "zlib's deflate at level 6 for every stream, for app.render.deflate (ISA-L)",
        False,
        _stock_deflate,
    ),
    Replacement("add_font", "add_font for every document, for app.render.fontcache", True, _stock_add_font),
    Replacement(
        "layout tables",
        "GDEF/GSUB/GPOS decoded before they are dropped, for fontcache's pre-drop",
        True,
        _stock_layout_tables,
        new_glyphs=True,
    ),
    Replacement(
        "subsets",
        "codes by first use, a subset per document, for app.render.fontsubset and fontoutput",
        False,
        _stock_subsets,
    ),
    Replacement(
        "text()",
        "text() and set_font() for each line, for TicketPdf.draw_text and the batched writes "
        "(_draw_plain_lines, draw_styled_lines_at)",
        True,
        _stock_text_path,
    ),
)

#: Greek letters: outside both font tiers, so each pair of them is a glyph set new to the process.
_GREEK = [chr(cp) for cp in (*range(0x391, 0x3A2), *range(0x3A3, 0x3AA), *range(0x3B1, 0x3CA))]


def _replacement_ticket() -> tuple[list[dict[str, Any]], tuple[EmbeddedFile, ...]]:
    articles = make_articles(REPLACEMENT_ARTICLES)
    embedded = (
        EmbeddedFile("articles.json", json.dumps(articles).encode(), "application/json", "Source"),
        *(
            EmbeddedFile(
                f"article-{a['id']}.txt", a["body"].encode(), "text/plain", "Source", article_id=a["id"]
            )
            for a in articles
        ),
    )
    return articles, embedded


def measure_replacements(rounds: int) -> dict[str, float]:
    """Median CPU seconds per render of the 20-article ticket, renders interleaved round by
    round: ``"ours"``, ``"ours, new glyphs"`` (each render adds a glyph set new to the
    process) and one entry per :data:`REPLACEMENTS` label.

    Raises:
        AssertionError: a variant that should give our bytes did not.
    """
    patches.install()
    articles, embedded = _replacement_ticket()
    pairs = iter(range(len(_GREEK) ** 2))

    def new_glyphs() -> str:
        first, second = divmod(next(pairs), len(_GREEK))
        return f" {_GREEK[first]}{_GREEK[second]}"

    def render(glyphs: str = "") -> bytes:
        drawn = [{**articles[0], "body": articles[0]["body"] + glyphs}, *articles[1:]]
        return render_ticket_pdf(
            TICKET, drawn, ["bench"], archived_at=ARCHIVED_AT, options=RenderOptions(), embedded=embedded
        ).data

    ours = render()  # warms the per-process caches
    for variant in REPLACEMENTS:
        glyphs, expected = "", ours
        if variant.new_glyphs:  # both must miss the font output cache
            glyphs = new_glyphs()
            fontoutput.cache_clear()
            expected = render(glyphs)
            fontoutput.cache_clear()
        with variant.switch():
            data = render(glyphs)  # also warms the variant (fpdf2's own paths have caches too)
        same = data == expected
        assert same == variant.same_bytes, (
            f"{variant.label}: bytes {'differ' if variant.same_bytes else 'same'}"
        )
    cpu: dict[str, list[float]] = {"ours": [], "ours, new glyphs": [], **{v.label: [] for v in REPLACEMENTS}}
    for _ in range(rounds):
        for label, fresh, switch in (
            ("ours", False, contextlib.nullcontext),
            ("ours, new glyphs", True, contextlib.nullcontext),
            *((v.label, v.new_glyphs, v.switch) for v in REPLACEMENTS),
        ):
            glyphs = new_glyphs() if fresh else ""
            with switch():
                start = time.process_time()
                render(glyphs)
                cpu[label].append(time.process_time() - start)
    return {label: statistics.median(times) for label, times in cpu.items()}


#: Memory variants ``(label, what runs instead)``; "ours" parks pages and writes into a file.
#: The row is ``"2000 plain articles: RSS added, <label> / ours"``.
MEMORY_VARIANTS = (
    ("pages unparked", "pages kept whole until output(), for ParkedPages"),
    ("output() in memory", "the PDF built in memory, not written into its file, for write_pdf"),
)


def memory_probe(variant: str, count: int) -> int:
    """In a fresh process: KiB of peak RSS a ``count``-article render adds (``VmHWM`` after
    minus ``VmRSS`` before, after a 2-article warm-up render), for ``"ours"`` or a
    :data:`MEMORY_VARIANTS` label."""

    def status(key: str) -> int:
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith(key + ":"))

    patches.install()
    if variant == "pages unparked":
        document.TicketPdf.park_after_pages = 10**9
    render_ticket_pdf(TICKET, make_articles(2), ["bench"], archived_at=ARCHIVED_AT, options=RenderOptions())
    articles = make_articles(count)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    before = status("VmRSS")
    with tempfile.TemporaryDirectory() as folder:
        target = None if variant == "output() in memory" else Path(folder) / "ticket.pdf"
        rendered = render_ticket_pdf(
            TICKET, articles, ["bench"], archived_at=ARCHIVED_AT, options=RenderOptions(), target=target
        )
        del rendered
    return status("VmHWM") - before


def measure_memory(count: int) -> dict[str, int]:
    """KiB of peak RSS added by a ``count``-article render: ``"ours"`` and each memory variant."""
    added = {}
    for variant in ("ours", *(label for label, _ in MEMORY_VARIANTS)):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.render", "--memory-probe", variant, "--sizes", str(count)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            timeout=600,
        )
        added[variant] = int(done.stdout.split()[-1])
    return added


def replacement_rows(quick: bool) -> list[Result]:
    """The rows of :func:`measure_replacements` and :func:`measure_memory` (see the module docstring)."""
    cpu = measure_replacements(rounds=5 if quick else 30)
    n = REPLACEMENT_ARTICLES
    rows = [
        Result("render", f"{n} plain articles: ours, CPU per render", round(cpu["ours"] * 1000, 1), "ms"),
        Result(
            "render",
            f"{n} plain articles, a glyph set new to the process: ours, CPU per render",
            round(cpu["ours, new glyphs"] * 1000, 1),
            "ms",
        ),
    ]
    for variant in REPLACEMENTS:
        ratio = round(cpu[variant.label] / cpu["ours, new glyphs" if variant.new_glyphs else "ours"], 2)
        rows.append(
            Result("render", f"{n} plain articles: fpdf2's {variant.label} / ours, CPU", ratio, "ratio")
        )
    count = 500 if quick else MEMORY_ARTICLES
    added = measure_memory(count)
    ours = max(added["ours"], 1)
    rows.append(
        Result(
            "render", f"{count} plain articles: RSS added by the render, ours", round(ours / 1024, 1), "MiB"
        )
    )
    for label, _ in MEMORY_VARIANTS:
        ratio = round(added[label] / ours, 2)
        rows.append(Result("render", f"{count} plain articles: RSS added, {label} / ours", ratio, "ratio"))
    return rows


def run(quick: bool = False) -> list[Result]:
    """Seconds per ticket for ours and the ours/ReportLab ratio per size; the target is at 500 articles."""
    sizes, repeat = ((20, 500), 1) if quick else (SIZES, 3)
    results = []
    for count, ours, ours_pages, theirs, _ in measure(sizes, repeat):
        ratio = ours / theirs
        results.append(
            Result("render", f"{count} plain articles: ours, {ours_pages} pages, wall", round(ours, 3), "s")
        )
        on_target = count == TARGET_SIZE
        results.append(
            Result(
                "render",
                f"{count} plain articles: ours / ReportLab platypus, wall net of start-up",
                round(ratio, 2),
                "ratio",
                f"<= {TARGET_RATIO:g}" if on_target else None,
                ratio <= TARGET_RATIO if on_target else None,
            )
        )
    return results + mix_rows(quick) + replacement_rows(quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated article counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    parser.add_argument(
        "--replacements",
        action="store_true",
        help="only the rows of our replacements of fpdf2 code (fpdf2's / ours)",
    )
    parser.add_argument(
        "--mix", action="store_true", help="only the rows of the Zammad mix against its plain twin"
    )
    parser.add_argument(
        "--quick", action="store_true", help="with --replacements or --mix: fewer rounds (500 articles)"
    )
    parser.add_argument("--memory-probe", metavar="VARIANT", help=argparse.SUPPRESS)  # measure_memory's child
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(memory_probe(args.memory_probe, int(args.sizes)))
        return 0
    if args.mix:
        print_rows(mix_rows(args.quick))
        return 0
    if args.replacements:
        print_rows(replacement_rows(args.quick))
        for label, what in (*((v.label, v.what) for v in REPLACEMENTS), *MEMORY_VARIANTS):
            print(f"fpdf2's {label}: {what}")
        return 0
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
        print(f"500 articles: {worst_500:.2f}x ReportLab (target <= {TARGET_RATIO:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
