"""The internal notes: what they say, escaped."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.errors import ZammadApiError
from app.workflow.classify import classify
from app.workflow.notes import MAX_OMISSIONS_LISTED, failure_note, success_note
from app.workflow.ports import ImagePlaceholder, RenderedPdf, SignedPdf, StoredArchive


def test_success_note_names_path_checksum_signer_and_escapes_html():
    stored = StoredArchive(Path("/srv/a/<b>.pdf"), "a/<b>.pdf", "ab" * 32, 1234)
    signed = SignedPdf(b"", True, "B-B", "CN=Archiver", "cd" * 32)
    rendered = RenderedPdf(b"", 3, 4, 4)
    note = success_note(stored, signed, rendered, job_id="job1", delivery_id="d1")
    assert note.subject == "PDF archived"
    assert note.body_html.startswith("<p><b>PDF archived</b></p>")
    assert "a/&lt;b&gt;.pdf" in note.body_html and "<b>.pdf" not in note.body_html
    assert "ab" * 32 in note.body_html and "CN=Archiver" in note.body_html and "job1" in note.body_html


def test_unsigned_success_note_says_so():
    note = success_note(
        StoredArchive(Path("/x"), "x", "0" * 64, 1),
        SignedPdf(b"", False),
        RenderedPdf(b"", 1, 1, 1),
        job_id="j",
        delivery_id=None,
    )
    assert "not signed" in note.body_html


def test_failure_note_gives_classification_and_cause():
    failure = classify(ZammadApiError("GET /api/v1/tickets/4711 answered 500", status=500))
    note = failure_note(failure, job_id="j1", delivery_id=None, step="fetch ticket")
    assert note.subject == "PDF archiver error"
    assert (
        "Transient" in note.body_html
        and "answered 500" in note.body_html
        and "fetch ticket" in note.body_html
    )
    permanent = failure_note(
        classify(ZammadApiError("gone", status=404)), job_id="j", delivery_id=None, step="s"
    )
    assert "Permanent" in permanent.body_html


def test_datetime_in_signed_note():
    ts = datetime(2025, 3, 6, 13, 20, 11, tzinfo=UTC)
    note = success_note(
        StoredArchive(Path("/x"), "x", "0" * 64, 1),
        SignedPdf(b"", True, "B-T", "CN=A", None, ts),
        RenderedPdf(b"", 1, 1, 1),
        job_id="j",
        delivery_id=None,
    )
    assert "2025-03-06T13:20:11+00:00" in note.body_html and "B-T" in note.body_html


@pytest.mark.parametrize("language", ["en", "de"])
def test_signature_timestamp_is_utc_to_the_second_whatever_the_tsa_gives(language: str):
    # openssl's TSA gives whole seconds, others (certomancer's, many public ones) microseconds;
    # a genTime in another offset is the same instant.
    given = (
        datetime(2025, 3, 6, 13, 20, 11, tzinfo=UTC),
        datetime(2025, 3, 6, 13, 20, 11, 984610, tzinfo=UTC),
        datetime(2025, 3, 6, 14, 20, 11, 500000, tzinfo=timezone(timedelta(hours=1))),
    )
    bodies = [
        success_note(
            StoredArchive(Path("/x"), "x", "0" * 64, 1),
            SignedPdf(b"", True, level, "CN=A", None, ts, "CN=TSA"),
            RenderedPdf(b"", 1, 1, 1, language=language),
            job_id="j",
            delivery_id=None,
        ).body_html
        for ts, level in zip(given, ("B-T", "B-LTA", "B-LTA"), strict=True)
    ]

    word = {"en": "timestamp", "de": "Zeitstempel"}[language]
    for body in bodies:
        assert f", {word} 2025-03-06T13:20:11+00:00 " in body, body


def test_success_note_is_written_in_the_archives_language():
    stored = StoredArchive(Path("/x"), "x", "0" * 64, 2048)
    signed = SignedPdf(b"", True, "B-T", "CN=A", None, datetime(2025, 3, 6, 13, 20, 11, tzinfo=UTC), "TSA")
    rendered = RenderedPdf(b"", 5, 3, 4, missing_glyphs=2, missing_scripts=("CJK",), language="de")
    note = success_note(stored, signed, rendered, job_id="j", delivery_id="d")
    assert note.subject == "PDF archiviert"
    assert note.body_html.startswith("<p><b>PDF archiviert</b></p>")
    for german in (
        "Pfad: x",
        "Größe: 2048 Bytes, 5 Seiten",
        "Signatur: PAdES B-T von CN=A, Zeitstempel 2025-03-06T13:20:11+00:00 von TSA",
        "Artikel: 3 von 4",
        "Warnung: nur 3 von 4 Artikeln sind im PDF",
        "2 Zeichen (CJK) hatten keine Schrift",
        "Job: j",
        "Zustellung: d",
    ):
        assert german in note.body_html, german
    for english in ("Path", "Size", "bytes", "Signature", "Warning", "Delivery", " of "):
        assert english not in note.body_html, english
    unsigned = success_note(stored, SignedPdf(b"", False), rendered, job_id="j", delivery_id=None)
    assert "nicht signiert (SIGNING_ENABLED=false)" in unsigned.body_html


def test_failure_note_in_german():
    failure = classify(ZammadApiError("GET /api/v1/tickets/4711 answered 500", status=500))
    note = failure_note(failure, job_id="j1", delivery_id="d1", step="fetch ticket", language="de")
    assert note.subject == "PDF-Archivierungsfehler"
    assert "Vorübergehend: der Auslöser-Tag wurde behalten" in note.body_html
    assert (
        "Schritt: fetch ticket" in note.body_html
        and "Ursache: GET /api/v1/tickets/4711 answered 500" in note.body_html
    )
    assert "Versuche: 1" in note.body_html and "Zustellung: d1" in note.body_html
    assert "Transient" not in note.body_html.replace(failure.classification.value, "")
    gave_up = failure_note(
        failure, job_id="j", delivery_id=None, step="s", attempts=5, gave_up=True, language="de"
    )
    assert (
        "nach 5 Versuchen aufgegeben" in gave_up.body_html and "POST /retry/{ticket_id}" in gave_up.body_html
    )
    permanent = failure_note(
        classify(ZammadApiError("gone", status=404)), job_id="j", delivery_id=None, step="s", language="de"
    )
    assert "Dauerhaft: der Auslöser-Tag wurde entfernt" in permanent.body_html
    english = failure_note(failure, job_id="j", delivery_id=None, step="s", attempts=5, gave_up=True)
    assert "gave up after 5 attempts" in english.body_html and "POST /retry/{ticket_id}" in english.body_html


def test_missing_glyphs_warning_agrees_with_its_count():
    stored = StoredArchive(Path("/x"), "x", "0" * 64, 1)
    one = RenderedPdf(b"", 1, 1, 1, missing_glyphs=1, missing_scripts=("Unassigned",))
    two = RenderedPdf(b"", 1, 1, 1, missing_glyphs=2, missing_scripts=("Unassigned",))
    notes = {
        (rendered.missing_glyphs, language): success_note(
            stored, SignedPdf(b"", False), replace(rendered, language=language), job_id="j", delivery_id=None
        ).body_html
        for rendered in (one, two)
        for language in ("en", "de")
    }
    assert "1 character (Unassigned) had no font and is shown as a placeholder" in notes[1, "en"]
    assert "2 characters (Unassigned) had no font and are shown as placeholders" in notes[2, "en"]
    assert "1 Zeichen (Unassigned) hatte keine Schrift und ist als Platzhalter" in notes[1, "de"]
    assert "2 Zeichen (Unassigned) hatten keine Schrift und sind als Platzhalter" in notes[2, "de"]


def test_a_capped_archives_note_says_whose_originals_are_embedded():
    stored = StoredArchive(Path("/x"), "x", "0" * 64, 1)
    whole = (("ticket.json", "a" * 64, 2), ("articles.json", "b" * 64, 9), ("article-1.eml", "c" * 64, 5))
    capped = RenderedPdf(b"", 1, 2, 8, embedded=whole)

    def body(rendered: RenderedPdf, language: str = "en") -> str:
        return success_note(
            stored, SignedPdf(b"", False), replace(rendered, language=language), job_id="j", delivery_id=None
        ).body_html

    assert (
        "Originals embedded: 3 files (PDF/A-3 associated files), of the 2 articles in the PDF; "
        "articles.json lists all 8" in body(capped)
    )
    assert "der 2 Artikel im PDF; articles.json listet alle 8" in body(capped, "de")
    without_json = replace(capped, embedded=(whole[0], whole[2]))
    assert "2 files (PDF/A-3 associated files), of the 2 articles in the PDF<" in body(without_json)
    assert "of the" not in body(replace(capped, articles_included=8))  # not capped: no such words


@pytest.mark.parametrize(
    ("language", "label", "more"),
    [
        ("en", "Images shown as placeholders", "and 2 more"),
        ("de", "Bilder als Platzhalter gezeigt", "und 2 weitere"),
    ],
)
def test_images_shown_as_placeholders_are_named_with_their_cause_escaped(
    language: str, label: str, more: str
):
    placeholders = [
        ImagePlaceholder(f"<bild-{i}>.png", 1, 100 + i, "Permanent", "zammad_api_error", f"answered 404 #{i}")
        for i in range(MAX_OMISSIONS_LISTED + 2)
    ]
    note = success_note(
        StoredArchive(Path("/x"), "x", "0" * 64, 1),
        SignedPdf(b"", False),
        RenderedPdf(b"", 1, 1, 1, language=language),
        job_id="j",
        delivery_id=None,
        placeholders=placeholders,
    )
    (row,) = [line for line in note.body_html.split("<li>") if line.startswith(f"{label}: ")]
    assert row.startswith(f"{label}: 12: &lt;bild-0&gt;.png (Permanent: answered 404 #0); &lt;bild-1&gt;.png")
    assert "bild-9" in row and "bild-10" not in row and row.endswith(f"; {more}</li>")
    assert (
        "placeholder"
        not in success_note(
            StoredArchive(Path("/x"), "x", "0" * 64, 1),
            SignedPdf(b"", False),
            RenderedPdf(b"", 1, 1, 1),
            job_id="j",
            delivery_id=None,
        ).body_html.lower()
    )
