"""The archive's language (PDF_LANGUAGE, PDF_LANGUAGE_BY_GROUP): labels, dates, /Lang and XMP dc:language."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import EmbeddedFile, RenderedPdf
from tests.verify import verapdf

from .helpers import ARCHIVED_AT, load, pdfinfo_xmp, pdftotext, write

#: What a German archive of the fixture ticket shows (3 of its 4 articles, one original embedded).
GERMAN = [
    "Ticketnummer 25004711",
    "Gruppe Kundenservice",
    "Erstellt 03.03.2025 09:12:44 MEZ",  # 08:12:44Z in Europe/Berlin, winter time
    "Archiviert 07.03.2025 13:00:00 MEZ",
    "3 von 4 Artikeln enthalten: dieses PDF enthält nur die ältesten 3 Artikel",
    "Die eingebetteten Originale sind die dieser 3 Artikel.",
    "Originale nur der 3 Artikel in diesem PDF (der ältesten; PDF_MAX_ARTICLES=3).",
    "Artikel 3 von 4 enthalten",
    "Artikel 1 von 3",
    "Öffentlich",
    "Intern (für den Kunden nicht sichtbar)",
    "Betreff",
    "Absender",
    "Sichtbarkeit",
    "Anhänge",
    "Seite 1 von",
    "Archiviert am 07.03.2025 13:00:00 MEZ von zammad-pdf-archiver",
    "Originale",
    "Eingebettet (1)",
    "1 Datei in dieses PDF eingebettet (2 Bytes)",
    "179,5 KiB (183.764 Bytes)",
]
#: The same places in English; none may remain in a German archive.
ENGLISH = [
    "Ticket number 25004711",
    "Group Kundenservice",
    "Created 2025-03-03 09:12:44 +01:00",
    "Archived 2025-03-07 13:00:00 +01:00",
    "3 of 4 articles included: this PDF holds the oldest 3 articles only",
    "The originals embedded are those of these 3 articles.",
    "Article originals of the 3 articles in this PDF only (the oldest; PDF_MAX_ARTICLES=3).",
    "Article 1 of 3",
    "Internal (not visible to the customer)",
    "Subject",
    "Visibility",
    "Page 1 of",
    "Archived 2025-03-07 13:00:00 +01:00 by zammad-pdf-archiver",
    "Embedded (1)",
    "1 file embedded in this PDF (2 bytes)",
    "179.5 KiB (183,764 bytes)",
]


def render(**options) -> RenderedPdf:
    return render_ticket_pdf(
        load("ticket-expand.json"),
        load("articles-by-ticket.json"),
        ["rechnung"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(
            timezone="Europe/Berlin", max_articles=3, limit_mode="cap_and_continue", **options
        ),
        embedded=(EmbeddedFile("ticket.json", b"{}", "application/json", "Source", "ticket.json"),),
    )


def words(path: Path) -> str:
    text, stderr = pdftotext(path, "-raw")  # content-stream order: a label next to its value
    assert "Syntax Error" not in stderr, stderr
    return " ".join(text.split())


def catalog_lang(data: bytes) -> str:
    return str(PdfFileReader(io.BytesIO(data)).root["/Lang"])


@pytest.fixture(scope="module")
def german(tmp_path_factory) -> tuple[RenderedPdf, Path]:
    rendered = render(language="de")
    return rendered, write(tmp_path_factory.mktemp("de"), rendered.data, "de.pdf")


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> tuple[RenderedPdf, Path]:
    rendered = render()
    return rendered, write(tmp_path_factory.mktemp("en"), rendered.data, "en.pdf")


def test_a_german_archive_shows_german_labels_and_dates(german):
    rendered, path = german
    text = words(path)
    assert [label for label in GERMAN if label not in text] == []
    assert [label for label in ENGLISH if label in text] == []
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", text)  # no ISO times left
    assert rendered.language == "de"


def test_an_english_archive_is_unchanged(english):
    rendered, path = english
    text = words(path)
    assert [label for label in ENGLISH if label not in text] == []
    assert [label for label in GERMAN if label in text] == []
    assert rendered.language == "en"


def test_lang_and_xmp_dc_language_follow_the_language(german, english):
    for (rendered, path), tag in ((german, "de"), (english, "en")):
        assert catalog_lang(rendered.data) == tag
        assert pdfinfo_xmp(path)["language"] == tag
    plain = render(language="de", pdfa=False).data
    assert catalog_lang(plain) == "de"


def test_the_group_chooses_the_language(tmp_path: Path):
    by_group = render(language="en", language_by_group=(("Kundenservice", "de"), ("Support", "en")))
    assert by_group.language == "de"
    assert "Ticketnummer 25004711" in words(write(tmp_path, by_group.data))
    other = render(language="de", language_by_group=(("Support", "en"),))
    assert other.language == "de"
    assert render(language="de", language_by_group=(("Kundenservice", "en"),)).language == "en"


def test_unknown_languages_are_refused():
    with pytest.raises(ValueError, match="language: unknown language 'fr'"):
        RenderOptions(language="fr")
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        RenderOptions(language_by_group=(("Support", "xx"),))


def test_a_german_archive_passes_verapdf_pdfa_3b(german):
    _, path = german
    done = verapdf(path)
    assert done.returncode == 0 and done.stdout.startswith("PASS"), done.stdout + done.stderr


async def test_one_render_process_serves_both_languages(tmp_path: Path):
    """The language travels with each render request (options + the ticket's group), so one
    process renders a German and an English ticket one after the other."""
    from app.render.pool import ProcessPoolRenderer
    from app.workflow.ports import TicketSnapshot

    pool = ProcessPoolRenderer(RenderOptions(language_by_group=(("Buchhaltung", "de"),)), processes=1)
    try:
        results = []
        for group in ("Buchhaltung", "Support", "Buchhaltung"):
            ticket = {"number": "7", "title": group, "group": group, "created_at": "2025-03-03T08:00:00Z"}
            snapshot = TicketSnapshot(ticket, [], [], ARCHIVED_AT)
            results.append(await pool.render(snapshot))
    finally:
        pool.close()
    assert [r.language for r in results] == ["de", "en", "de"]
    texts = [words(write(tmp_path, r.data, f"{n}.pdf")) for n, r in enumerate(results)]
    assert "Ticketnummer 7" in texts[0] and "Ticket number 7" in texts[1] and "Ticketnummer 7" in texts[2]


def _with_placeholders() -> tuple[dict, list[dict]]:
    """The fixture ticket with a boolean custom attribute, an attachment without a file name and
    an HTML body whose image cannot be drawn (no source)."""
    ticket = {**load("ticket-expand.json"), "vip_customer": True}
    articles = load("articles-by-ticket.json")
    first = {**articles[0], "body": "<p>Siehe Bild: <img alt=''></p>", "content_type": "text/html"}
    first["attachments"] = [
        {**first["attachments"][1], "filename": ""},
        *first["attachments"][:1],
    ]
    return ticket, [first, *articles[1:]]


@pytest.mark.parametrize(
    ("language", "shown", "absent"),
    [
        ("de", ["[Bild: ohne Quelle]", "Vip customer ja", "(ohne Namen)"], ["[image:", "(no name)"]),
        ("en", ["[image: no source]", "Vip customer yes", "(no name)"], ["[Bild:", "(ohne Namen)"]),
    ],
)
def test_placeholders_and_yes_no_follow_the_language(tmp_path: Path, language, shown, absent):
    ticket, articles = _with_placeholders()
    rendered = render_ticket_pdf(
        ticket,
        articles,
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(timezone="Europe/Berlin", language=language),
    )
    text = words(write(tmp_path, rendered.data, f"{language}.pdf"))
    for phrase in shown:
        assert phrase in text, (phrase, text[:2000])
    for phrase in absent:
        assert phrase not in text, phrase
