"""HTML bodies on the page (app.render.html_layout): line breaking over styled spans, tables,
fonts only when drawn, links as annotations, nothing past the margin; checked with poppler."""

from __future__ import annotations

import re
import subprocess

import pytest

from app.render.document import MARGIN
from app.render.html import html_to_text
from tests.verify import verapdf

from .helpers import pdftotext, write
from .test_html_blocks import MENU_LAYOUTS, MENU_WORDS
from .test_html_body import render_html

A4_WIDTH = 595.28


@pytest.mark.parametrize("layout", sorted(MENU_LAYOUTS))
def test_adjacent_cells_never_run_together(tmp_path, layout):
    html = MENU_LAYOUTS[layout]
    text, _ = pdftotext(write(tmp_path, render_html(html).data))
    words = text.split()
    for word in MENU_WORDS:
        assert word in words, (layout, words)
    assert "ПрофильСообщения" not in text and "СообщенияКонтакты" not in text
    fallback = html_to_text(html).split()  # the text the body falls back to
    assert all(any(word in token for token in fallback) for word in MENU_WORDS)
    assert not any("ПрофильСообщения" in token or "СообщенияКонтакты" in token for token in fallback)


def fonts_of(path) -> str:
    return subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout


def test_the_mono_face_is_added_only_when_a_mono_glyph_is_drawn(tmp_path):
    without = fonts_of(write(tmp_path, render_html("<p>Kein <b>Code</b> hier</p>").data, "without.pdf"))
    assert "Mono" not in without
    with_code = fonts_of(write(tmp_path, render_html("<p>Mit <code>var = 1</code></p>").data, "with.pdf"))
    assert "Mono" in with_code


def test_pre_keeps_its_spaces_and_long_lines_stay_inside_the_margin(tmp_path):
    long = "x" * 400
    path = write(tmp_path, render_html(f"<pre>a    b\n  c\n{long}</pre><p>{'y' * 3000}</p>").data)
    text, _ = pdftotext(path, "-layout")
    assert "a    b" in text
    assert "".join(text.split()).count("x") >= 400 and "".join(text.split()).count("y") >= 3000
    bbox, _ = pdftotext(path, "-bbox")
    right_edges = [float(x) for x in re.findall(r'xMax="([\d.]+)"', bbox)]
    assert right_edges and max(right_edges) <= A4_WIDTH - MARGIN + 1


def test_links_become_printable_uri_annotations_and_keep_their_target_visible(tmp_path):
    rendered = render_html('<p>Siehe <a href="https://example.com/docs">Dokumentation</a> dort.</p>')
    path = write(tmp_path, rendered.data)
    text, _ = pdftotext(path)
    assert "Dokumentation (https://example.com/docs) dort." in " ".join(text.split())
    objects = subprocess.run(
        ["qpdf", "--qdf", "--object-streams=disable", str(path), "-"], capture_output=True, check=True
    ).stdout
    annotation = re.search(rb"/Subtype /Link.*?>>", objects, re.S) or re.search(
        rb"<<[^<]*?/URI[^>]*>>", objects
    )
    assert b"/URI (https://example.com/docs)" in objects and annotation is not None
    assert re.search(rb"/F 4\b", objects)  # the Print flag (PDF/A)


def test_a_link_target_too_long_for_pdfa_stays_visible_text_without_an_annotation(tmp_path):
    """A link of 40,000 characters became a /URI string over the 32,767 bytes PDF/A allows
    (ISO 19005-3 §6.1.13): veraPDF failed the archive. It stays visible beside its words; only
    the annotation is left out, links of ordinary length keep theirs."""
    target = "https://example.com/" + "q" * 40_000
    rendered = render_html(f'<p><a href="{target}">lang</a> und <a href="https://example.com/k">kurz</a></p>')
    path = write(tmp_path, rendered.data)
    assert "".join(pdftotext(path, "-raw")[0].split()).count("q" * 1000) >= 1
    objects = subprocess.run(
        ["qpdf", "--qdf", "--object-streams=disable", str(path), "-"], capture_output=True, check=True
    ).stdout
    assert re.findall(rb"/URI \((.{0,40})", objects) == [b"https://example.com/k)"]
    verdict = verapdf(path, "3b")
    assert verdict.returncode == 0 and verdict.stdout.startswith("PASS"), verdict.stdout


def test_a_table_too_wide_for_the_page_draws_each_row_as_a_readable_line(tmp_path):
    """300 columns (50,000 in a hostile mail) gave each column less than a character's width:
    the cells' characters were drawn over each other, and poppler read 549 of 50,000. Each row
    becomes a paragraph of its cells, apart; a table that fits keeps its grid."""
    header = "".join(f"<th>h{i}</th>" for i in range(300))
    cells = "".join(f"<td>c{i}</td>" for i in range(300))
    rendered = render_html(f"<table><tr>{header}</tr><tr>{cells}</tr></table><p>Ende</p>")
    text = " ".join(pdftotext(write(tmp_path, rendered.data))[0].split())
    assert "h0 | h1 | h2 |" in text and "c0 | c1 | c2 |" in text
    assert all(f"c{i} |" in text for i in range(299)) and "c299 Ende" in text


def test_a_table_row_taller_than_a_page_continues_on_the_next(tmp_path):
    rendered = render_html(
        "<table><tr><td>" + "Riesenzelle " * 4000 + "</td><td>klein</td></tr></table><p>Ende</p>"
    )
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert rendered.page_count > 2
    assert text.count("Riesenzelle") == 4000 and "klein" in text and "Ende" in text


def test_lists_quotes_and_headings_draw_every_word(tmp_path):
    html = (
        "<h1>Titel</h1><ol start='7'><li>sieben</li><li>acht<ul><li>innen</li></ul></li></ol>"
        "<blockquote>zitiert<blockquote>tiefer</blockquote></blockquote><hr><p><u>unter</u> <s>weg</s></p>"
    )
    text, _ = pdftotext(write(tmp_path, render_html(html).data))
    flat = " ".join(text.split())
    for words in ("Titel", "7. sieben", "8. acht", "• innen", "zitiert", "tiefer", "unter weg"):
        assert words in flat, words


@pytest.mark.parametrize(
    "html",
    [
        "<b>" * 3000 + "Tiefer Text" + "</b>" * 3000,
        "<div>" * 600 + "<script>alert(1)</script>Tiefer Text" + "</div>" * 600,
        "<blockquote>" * 250 + "Tiefer Text" + "</blockquote>" * 250,
    ],
    ids=["bold-3000", "div-600-script", "quote-250"],
)
def test_nesting_deeper_than_the_parser_takes_keeps_the_words(tmp_path, html):
    text, _ = pdftotext(write(tmp_path, render_html(html).data))
    assert "Tiefer Text" in " ".join(text.split()) and "alert" not in text
    fallback = " ".join(html_to_text(html).split())
    assert "Tiefer Text" in fallback and "alert" not in fallback


def test_text_is_written_in_reading_order_across_styles_and_list_markers(tmp_path):
    html = (
        '<p>Siehe <a href="https://example.com/x">Verweis</a> und <b>fett</b> <i>schräg</i> Ende</p>'
        "<ul><li>erster Punkt</li><li>zweiter Punkt</li></ul><blockquote>Zitat</blockquote><p>Schluss</p>"
        "<p>Aufruf <code>run(1)</code> fertig</p>"
    )
    raw, _ = pdftotext(write(tmp_path, render_html(html).data), "-raw")  # content-stream order
    flat = " ".join(raw.split())
    assert "Siehe Verweis (https://example.com/x) und fett schräg Ende" in flat
    assert "• erster Punkt • zweiter Punkt Zitat Schluss Aufruf run(1) fertig" in flat


def test_a_quote_bar_is_one_line_per_page_beside_all_its_blocks():
    from app.render.document import TicketPdf
    from app.render.glyphs import font_set
    from app.render.html import prepare_tree
    from app.render.html_blocks import body_blocks
    from app.render.html_layout import draw_blocks
    from app.render.templates import TEMPLATES

    pdf = TicketPdf(font_set(), TEMPLATES["default"])
    pdf.add_page()
    body = "<p>davor</p><blockquote><p>eins</p><p>zwei</p><ul><li>drei</li></ul><p>vier</p></blockquote>"
    tree = prepare_tree(body, resolve=lambda src: None, label=str, max_width=pdf.epw, max_height=500)
    top = pdf.y
    draw_blocks(pdf, body_blocks(tree))
    contents = bytes(pdf.pages[1].contents).decode("latin-1")
    x = f"{(MARGIN + 1.5) * pdf.k:.2f}"  # the first quote level's bar
    bars = re.findall(rf"^{x} ([\d.]+) m {x} ([\d.]+) l S$", contents, re.M)
    assert len(bars) == 1, bars
    (start, end), leading = bars[0], TEMPLATES["default"].body.leading
    assert float(start) - float(end) >= 4 * leading  # beside the four paragraphs and the gaps
    assert float(start) < (pdf.h - top) * pdf.k - leading  # not beside "davor"


def word_boxes(path) -> list[tuple[float, float, float, str]]:
    """``(xMin, yMin, xMax, word)`` of every word poppler finds, in its order."""
    bbox, _ = pdftotext(path, "-bbox")
    return [
        (float(x0), float(y0), float(x1), word)
        for x0, y0, x1, word in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', bbox
        )
    ]


def test_a_shaped_paragraph_starts_at_the_same_edge_as_the_others(tmp_path):
    # Devanagari and an emoji ZWJ sequence take fpdf2's multi_cell, whose cell margin (a tenth of
    # the page margin) pushed them 2.83 pt right of every other paragraph.
    html = "<p>Gewöhnlich links</p><p>Namaste नमस्ते friend</p><p>Familie 👨\u200d👩\u200d👧 hier</p>"
    starts = {word: x0 for x0, _, _, word in word_boxes(write(tmp_path, render_html(html).data))}
    assert starts["Gewöhnlich"] == pytest.approx(MARGIN, abs=0.05)
    assert starts["Namaste"] == pytest.approx(MARGIN, abs=0.05)
    assert starts["Familie"] == pytest.approx(MARGIN, abs=0.05)


def test_a_shaped_right_to_left_paragraph_ends_at_the_right_margin(tmp_path):
    boxes = word_boxes(write(tmp_path, render_html("<p>שלום עולם</p>").data))
    body = [x1 for _, y0, x1, _ in boxes if y0 > 300 and y0 < 780]
    assert max(body) == pytest.approx(A4_WIDTH - MARGIN, abs=0.6)


def test_a_list_item_with_shaped_text_keeps_its_marker_in_the_hanging_indent(tmp_path):
    # The marker went into the item's text: drawn where the other items' text starts, the text
    # pushed right of theirs.
    html = (
        "<ul><li>Erster Punkt</li><li>Zweiter नमस्ते Punkt</li></ul>"
        "<ol><li>eins</li><li>zwei 👨\u200d👩\u200d👧</li></ol>"
    )
    boxes = word_boxes(write(tmp_path, render_html(html).data))
    starts = {word: x0 for x0, _, _, word in boxes}
    bullets = [x0 for x0, _, _, word in boxes if word == "•"]
    assert len(bullets) == 2 and bullets[0] == pytest.approx(bullets[1], abs=0.05)
    assert starts["Zweiter"] == pytest.approx(starts["Erster"], abs=0.05)
    assert starts["2."] == pytest.approx(starts["1."], abs=0.05)
    assert starts["zwei"] == pytest.approx(starts["eins"], abs=0.05)


def test_a_quoted_shaped_paragraph_across_a_page_break_has_its_bar_on_both_pages():
    # write_complex breaks pages inside fpdf2's multi_cell; the bar was drawn only when the
    # paragraph ended on the page it started on, so a long quoted Arabic paragraph had none.
    from app.render.document import TicketPdf
    from app.render.glyphs import font_set
    from app.render.html import prepare_tree
    from app.render.html_blocks import body_blocks
    from app.render.html_layout import draw_blocks
    from app.render.templates import TEMPLATES

    pdf = TicketPdf(font_set(), TEMPLATES["default"])
    pdf.add_page()
    arabic = "هذا نص عربي طويل للاختبار يتكرر عدة مرات حتى يلتف عبر عدة أسطر. " * 120
    body = f"<p>davor</p><blockquote><p>eins</p><p>{arabic}</p><p>Ende</p></blockquote>"
    tree = prepare_tree(body, resolve=lambda src: None, label=str, max_width=pdf.epw, max_height=500)
    draw_blocks(pdf, body_blocks(tree))
    assert pdf.page == 2
    x = f"{(MARGIN + 1.5) * pdf.k:.2f}"
    leading = TEMPLATES["default"].body.leading
    first, second = (
        re.findall(rf"^{x} ([\d.]+) m {x} ([\d.]+) l S$", pdf.pages[n].contents.decode("latin-1"), re.M)
        for n in (1, 2)
    )
    assert len(first) == 1 and len(second) == 1, (first, second)
    assert float(first[0][1]) < (pdf.h - pdf.page_break_trigger) * pdf.k + 2 * leading  # down to the page end
    assert float(second[0][0]) >= (pdf.h - pdf.t_margin) * pdf.k - 1  # from the page's top
    assert float(second[0][1]) <= (pdf.h - pdf.y) * pdf.k + 1  # beside "Ende" too
