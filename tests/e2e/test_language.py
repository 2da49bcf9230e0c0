"""A German archive end to end: PDF_LANGUAGE=de through a live service and the simulator."""

from __future__ import annotations

import hashlib

import pytest

from devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET
from tests.e2e.test_archive_flow import note_fields, post
from tests.verify import pdfsig, pdftotext

pytestmark = pytest.mark.sqlite_only  # about the language, not the job store


async def test_a_german_archive_and_its_note_through_the_service(archiver, simulator):
    service = await archiver(PDF_LANGUAGE="de")
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
    assert (await post(f"{service.url}/ingest", body, headers))[0] == 202
    await service.wait_idle()

    (pdf,) = service.storage_root.rglob("*.pdf")
    assert "Signature is Valid." in pdfsig(pdf)
    text = " ".join(pdftotext(pdf).split())
    for german in ("Ticketnummer", "Gruppe", "Betreff", "Seite 1 von", "Archiviert am"):
        assert german in text, german
    for english in ("Ticket number", "Subject", "Page 1 of"):
        assert english not in text, english

    (note,) = simulator.notes(4711)
    assert note["body"].startswith("<p><b>PDF archiviert</b></p>"), note["body"][:200]
    fields = note_fields(note)
    assert fields["Pfad"] == pdf.relative_to(service.storage_root).as_posix()
    assert fields["SHA-256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()


async def test_a_german_failure_note_through_the_service(archiver, simulator):
    service = await archiver(PDF_LANGUAGE="de")
    simulator.fail(
        "GET", r"^/api/v1/tickets/4711$", 404, body={"error": "Couldn't find Ticket with 'id'=4711"}
    )
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
    assert (await post(f"{service.url}/ingest", body, headers))[0] == 202
    await service.wait_idle()

    assert "pdf:error" in simulator.tags(4711)
    (note,) = simulator.notes(4711)
    assert "PDF-Archivierungsfehler" in note["body"], note["body"][:300]
    fields = note_fields(note)
    # The class keeps its standard term (logs, metrics and the runbook use it); the label is German.
    assert fields["Einstufung"] == "Permanent" and "Couldn't find Ticket" in fields["Ursache"]
