"""End-to-end tests of render_ticket_pdf, checked through poppler (pdftotext, pdfinfo) and qpdf."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.errors import RenderError
from app.render.document import MARGIN
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import RenderedPdf
from benchmarks.tickets import make_articles

from .helpers import ARCHIVED_AT, body_stream, load, pdfinfo, pdfinfo_xmp, pdftotext, render_bodies, write

REPO = Path(__file__).resolve().parents[2]
BERLIN = RenderOptions(timezone="Europe/Berlin")


def render(ticket=None, articles=None, tags=None, options=BERLIN) -> RenderedPdf:
    return render_ticket_pdf(
        load("ticket-expand.json") if ticket is None else ticket,
        load("articles-by-ticket.json") if articles is None else articles,
        load("tags.json")["tags"] if tags is None else tags,
        archived_at=ARCHIVED_AT,
        options=options,
    )


def article(body: str, *, content_type: str = "text/plain", index: int = 1, **extra) -> dict:
    return {
        "id": index,
        "from": "Tester <t@example.com>",
        "to": "support@example.com",
        "subject": f"Subject {index}",
        "type": "note",
        "sender": "Agent",
        "internal": False,
        "content_type": content_type,
        "created_at": f"2025-03-03T08:00:{index:02d}Z",
        "body": body,
        **extra,
    }


@pytest.fixture(scope="module")
def fixture_pdf(tmp_path_factory) -> tuple[RenderedPdf, Path, str]:
    rendered = render()
    path = write(tmp_path_factory.mktemp("pdf"), rendered.data)
    text, stderr = pdftotext(path)
    assert "Syntax Error" not in stderr and "No font" not in stderr
    return rendered, path, " ".join(text.split())  # line breaks depend on the layout, words do not


def test_fixture_ticket_header_and_every_article_body(fixture_pdf):
    rendered, _, text = fixture_pdf
    for expected in (
        "25004711",
        "Rechnung 2025-0117: Position 3 doppelt berechnet",
        "Mühlenbach Logistik GmbH",
        "Kundenservice",
        "2 normal",
        "rechnung, reklamation, pdf:sign",
        "2025-03-03 09:12:44 +01:00",  # created_at 08:12:44Z shown in Europe/Berlin with its offset
        "2025-03-07 13:00:00 +01:00",  # archived_at
        # article 1 (HTML), 2 (plain), 3 (internal HTML note), 4 (HTML reply with quote)
        "Mit freundlichen Grüßen",
        "Wartungspauschale Q1",
        "Einkauf · Mühlenbach Logistik GmbH",
        "Rückruf erbeten bis Mittwoch",
        "bitte der Kundin antworten",
        "versehentlich doppelt berechnet",
        "Jonas Østergaard",
    ):
        assert expected in text, expected
    assert rendered.articles_included == rendered.articles_total == 4
    assert rendered.missing_glyphs == 0


def test_articles_are_drawn_oldest_first_even_when_given_newest_first(tmp_path):
    rendered = render(articles=list(reversed(load("articles-by-ticket.json"))))
    text = " ".join(pdftotext(write(tmp_path, rendered.data))[0].split())
    positions = [
        text.index(word)
        for word in ("Wartungspauschale", "Rückruf erbeten", "bitte der Kundin", "versehentlich")
    ]
    assert positions == sorted(positions)


def test_internal_and_public_articles_are_marked(fixture_pdf):
    _, _, text = fixture_pdf
    assert text.count("Internal (not visible to the customer)") == 1
    assert re.search(r"Visibility\s+Public", text) or text.count("Public") >= 3
    note_at = text.index("bitte der Kundin antworten")
    assert text.rfind("Internal", 0, note_at) > text.rfind("Article 2 of 4", 0, note_at)


def test_attachments_listed_without_message_html(fixture_pdf):
    _, _, text = fixture_pdf
    assert "Rechnung-2025-0117.pdf" in text
    assert "application/pdf" in text and "183,764 bytes" in text
    assert "message.html" not in text


def test_metadata_outline_and_page_numbers(fixture_pdf):
    rendered, path, text = fixture_pdf
    assert int(pdfinfo(path)["Pages"]) == rendered.page_count
    meta = pdfinfo_xmp(
        path
    )  # PDF/A: the XMP (the Info dictionary equal to it: tests/render/test_metadata.py)
    assert meta["title"] == "Ticket #25004711: Rechnung 2025-0117: Position 3 doppelt berechnet"
    assert meta["creator"] == "zammad-pdf-archiver"
    assert meta["Keywords"] == "rechnung, reklamation, pdf:sign"
    assert meta["CreatorTool"].startswith("zammad-pdf-archiver")
    assert meta["CreateDate"] == meta["ModifyDate"] == meta["MetadataDate"] == "2025-03-07T12:00:00+00:00"
    assert f"Page 1 of {rendered.page_count}" in text
    assert f"Page {rendered.page_count} of {rendered.page_count}" in text
    assert "{nb}" not in text
    outline = json.loads(
        subprocess.run(
            ["qpdf", "--json", "--json-key=outlines", str(path)], capture_output=True, check=True
        ).stdout
    )
    titles = [entry["title"] for entry in outline["outlines"]]
    assert len(titles) == 4 and titles[0].startswith("#1 ") and titles[3].startswith("#4 ")


def test_without_pdfa_the_metadata_goes_to_the_info_dictionary(tmp_path):
    rendered = render(options=RenderOptions(timezone="Europe/Berlin", pdfa=False))
    path = write(tmp_path, rendered.data)
    info = pdfinfo(path)
    assert rendered.pdfa is None and info["Metadata Stream"] == "no"
    assert info["Title"] == "Ticket #25004711: Rechnung 2025-0117: Position 3 doppelt berechnet"
    assert info["Author"] == "zammad-pdf-archiver"
    assert info["Keywords"] == "rechnung, reklamation, pdf:sign"
    assert info["Creator"].startswith("zammad-pdf-archiver")
    assert "2025" in info["CreationDate"] and "12:00:00" in info["CreationDate"]
    assert render(options=RenderOptions(timezone="Europe/Berlin", pdfa=False)).data == rendered.data


def test_header_repeats_ticket_number_on_every_page(tmp_path):
    rendered = render(articles=[article("Zeile mit Text. " * 40 + "\n", index=i) for i in range(1, 30)])
    assert rendered.page_count >= 3
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert text.count("Ticket #25004711 – ") == rendered.page_count
    assert f"Page {rendered.page_count} of {rendered.page_count}" in text


def test_webhook_ticket_with_nested_objects(tmp_path):
    ticket = load("webhook-default.json")["ticket"]
    text, _ = pdftotext(write(tmp_path, render(ticket=ticket).data))
    assert "Katrin Vogelsang <k.vogelsang@muehlenbach-logistik.example>" in text
    assert "Kundenservice" in text and "2 normal" in text and "Mühlenbach Logistik GmbH" in text
    assert "{'" not in text  # no dict repr leaked


def test_greek_and_cyrillic_round_trip(tmp_path):
    greek = "Καλημέρα σας, το τιμολόγιο χρεώθηκε δύο φορές."
    cyrillic = "Здравствуйте! Счёт выставлен дважды, пожалуйста исправьте."
    rendered = render(
        articles=[article(greek, index=1), article(f"<p>{cyrillic}</p>", content_type="text/html", index=2)]
    )
    text, stderr = pdftotext(write(tmp_path, rendered.data))
    assert greek in text and cyrillic in text
    assert rendered.missing_glyphs == 0 and "No font" not in stderr


def test_missing_glyphs_become_visible_placeholders(tmp_path):
    rendered = render(articles=[article("alpha \U00010000 beta \ue000 gamma", index=1)])
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert "[U+10000]" in text and "[U+E000]" in text
    assert "alpha" in text and "gamma" in text
    assert rendered.missing_glyphs == 2


def test_same_input_gives_identical_bytes():
    first, second = render(), render()
    assert hashlib.sha256(first.data).hexdigest() == hashlib.sha256(second.data).hexdigest()


def test_same_input_gives_identical_bytes_in_another_process():
    expected = hashlib.sha256(render().data).hexdigest()
    time.sleep(1.0)  # a different wall-clock second, so any leaked "now" (second resolution) shows
    script = (
        "import hashlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from app.render import patches\n"
        "patches.install()\n"
        "from tests.render.test_pdf import render\n"
        "print(hashlib.sha256(render().data).hexdigest())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == expected


def test_archive_time_changes_the_bytes():
    other = render_ticket_pdf(
        load("ticket-expand.json"),
        load("articles-by-ticket.json"),
        [],
        archived_at=ARCHIVED_AT.replace(minute=1),
        options=BERLIN,
    )
    assert other.data != render(tags=[]).data


def test_single_line_of_50000_characters(tmp_path):
    line = "".join(f"Z{i:05d}" for i in range(50_000 // 6)) + "END"
    rendered = render(articles=[article(line, index=1)])
    assert rendered.page_count >= 2
    assert line in body_stream(write(tmp_path, rendered.data))


def test_body_of_200_kilobytes(tmp_path):
    words = [f"wort{i:06d}" for i in range(200_000 // 11)]
    body = "\n\n".join(" ".join(words[i : i + 120]) for i in range(0, len(words), 120))
    assert len(body.encode()) >= 200_000
    rendered = render(articles=[article(body, index=1)])
    text, _ = pdftotext(write(tmp_path, rendered.data))
    for word in (words[0], words[len(words) // 2], words[-1]):
        assert word in text
    assert int(pdfinfo(tmp_path / "out.pdf")["Pages"]) == rendered.page_count > 30


def test_odd_bodies_do_not_fail(tmp_path):
    odd = [
        article(None, index=1),
        article("", index=2),
        article(
            "<table><tr><td><table><tr><td>nested</td></tr></table></td></tr>",
            content_type="text/html",
            index=3,
        ),
        article("ctrl\x00\x07chars\r\nand\ttabs\u00adsoft", index=4),
        article("lone \ud800 surrogate", index=5),
        article(12345, index=6),
    ]
    rendered = render(articles=odd)
    text, stderr = pdftotext(write(tmp_path, rendered.data))
    assert "nested" in text and "[U+0000]" in text and "[U+D800]" in text and "12345" in text
    assert "and tabssoft" in text  # tab expanded to the next 4-column stop, soft hyphen removed
    assert rendered.missing_glyphs == 3  # \x00, \x07, \ud800


def test_no_articles_renders_the_header_only(tmp_path):
    rendered = render(articles=[])
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert "25004711" in text and rendered.articles_total == 0 and rendered.page_count == 1


@pytest.mark.parametrize(
    ("ticket", "articles", "tags"),
    [
        (["not", "a", "dict"], [], []),
        ({"number": "1"}, "nope", []),
        ({"number": "1"}, [1, 2], []),
        ({"number": "1"}, [], None),
    ],
)
def test_unrenderable_input_raises_render_error(ticket, articles, tags):
    with pytest.raises(RenderError):
        render_ticket_pdf(ticket, articles, tags, archived_at=ARCHIVED_AT, options=BERLIN)


def test_options_and_result_are_picklable():
    rendered = render()
    assert pickle.loads(pickle.dumps(rendered)) == rendered
    assert pickle.loads(pickle.dumps(BERLIN)) == BERLIN


@pytest.mark.parametrize("field", [{"template": "fancy"}, {"timezone": "Mars/Olympus"}])
def test_bad_options_are_refused(field):
    with pytest.raises(ValueError, match=next(iter(field))):
        RenderOptions(**field)


def test_every_page_of_a_long_ticket_ends_with_its_footer_right_aligned(tmp_path):
    """Footers are drawn once the page count is known, also on parked pages (over 32)."""
    articles = make_articles(120)
    rendered = render_ticket_pdf(
        {"number": "25004711", "title": "Lang"},
        articles,
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
    )
    pages = rendered.page_count
    assert pages > 40  # pages parked (app.render.streams) from the 33rd on
    path = tmp_path / "long.pdf"
    path.write_bytes(rendered.data)
    text, _ = pdftotext(path)
    for number, page in enumerate(text.split("\f")[:pages], start=1):
        lines = [line for line in page.splitlines() if line.strip()]
        assert lines[-1] == f"Page {number} of {pages}", (number, lines[-3:])
        assert lines[-2].startswith("Archived ") and "by zammad-pdf-archiver" in lines[-2]
    boxes, _ = pdftotext(path, "-bbox")
    width = float(pdfinfo(path)["Page size"].split()[0])
    page_blocks = boxes.split("<page ")[1:]
    assert len(page_blocks) == pages
    for block in page_blocks:  # the last word drawn on a page: the page count, at the rule's right end
        *_, (right, word) = re.findall(
            r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>([^<]*)</word>', block
        )
        assert word == str(pages) and abs(float(right) - (width - MARGIN)) < 0.5, (word, right)


def test_a_body_keeps_the_text_nb_in_braces_also_where_fpdf2_draws_it(tmp_path):
    """fpdf2 replaces its page-count alias "{nb}" in the text it draws (here: a shaped
    right-to-left paragraph); the footers need no alias, so a body's "{nb}" stays text."""
    path = write(tmp_path, render_bodies("مرحبا {nb} بالعالم", "Plain {nb} text"))
    text, _ = pdftotext(path)
    assert "Plain {nb} text" in text
    rtl = next(line for line in text.splitlines() if "بالعالم" in line)
    assert "nb" in rtl and "1" not in rtl, rtl  # pdftotext gives it in visual order: "}nb{"
