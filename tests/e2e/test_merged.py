"""A merged ticket through the whole service: its archive names the ticket it was merged into.

Zammad's ``Ticket#merge_to`` moves the merged ticket's articles to the target, leaves one
article ``merged`` and links the target as the merged ticket's ``parent``
(``docs/reference/zammad.md`` §3.8); the simulator does the same (``merge_ticket``). Fixture
ticket 4711 (number 25004711) is merged into a copy, 4712 (number 25004712).
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from devtools.zammad_simulator import ZammadSimulator
from tests.render.helpers import pdfinfo
from tests.render.helpers import pdftotext as poppler_text
from tests.verify import pdftotext

pytestmark = pytest.mark.sqlite_only  # about the run's fetch and output, not the job store

LINKS = "/api/v1/links"


def merged_4711_into_4712(simulator: ZammadSimulator) -> None:
    simulator.clone_ticket(4711, 4712, number="25004712", tags=[])
    simulator.merge_ticket(4711, 4712)


def the_archive(storage_root: Path) -> tuple[str, dict]:
    """The PDF's text (whitespace folded) and its sidecar."""
    (pdf,) = list(storage_root.rglob("*.pdf"))
    sidecar = json.loads(pdf.with_name(pdf.name + ".json").read_text(encoding="utf-8"))
    return " ".join(pdftotext(pdf).split()), sidecar


def field_row(storage_root: Path, label: str) -> str:
    """The value beside ``label`` in the ticket's fields on page 1 (``pdftotext -layout``)."""
    (pdf,) = list(storage_root.rglob("*.pdf"))
    text, _ = poppler_text(pdf, "-layout", "-l", "1")
    rows = [line.split(label, 1)[1].strip() for line in text.splitlines() if line.strip().startswith(label)]
    assert len(rows) == 1, text
    return rows[0]


def note_text(simulator: ZammadSimulator, ticket_id: int) -> str:
    (note,) = simulator.notes(ticket_id)
    return unescape(re.sub(r"<[^>]+>", " ", note["body"]))


async def test_a_merged_tickets_archive_names_the_ticket_it_was_merged_into(archiver, simulator):
    merged_4711_into_4712(simulator)
    service = await archiver()
    simulator.requests.clear()
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    text, sidecar = the_archive(service.storage_root)
    page_one = text.split("Page 1 of")[0]
    assert "This ticket was merged into #25004712 (ticket id 4712): Zammad moved its articles there." in (
        page_one
    )
    assert field_row(service.storage_root, "Merged into") == "#25004712 (ticket id 4712)"
    assert "Wartungspauschale" not in text  # the articles went to 4712
    assert sidecar["merged_into"] == {"ticket_id": 4712, "ticket_number": "25004712"}
    assert sidecar["articles_total"] == 1  # Zammad's article "merged"
    # What the document says about itself: the subject (XMP dc:description and /Info) and dc:relation.
    (pdf,) = list(service.storage_root.rglob("*.pdf"))
    assert pdfinfo(pdf)["Subject"].endswith(", merged into #25004712 (ticket id 4712)")
    with pdf.open("rb") as stream:
        xmp = PdfFileReader(stream).root["/Metadata"].get_object().data.decode()
    assert "<dc:relation><rdf:Bag><rdf:li>Zammad ticket #25004712 (ticket id 4712)</rdf:li>" in xmp
    assert re.search(r"Merged into:\s*#25004712 \(ticket id 4712\)", note_text(simulator, 4711))
    # One question for the links, as Zammad's API doc asks it.
    asked = [r.query for r in simulator.requests if r.path == LINKS]
    assert asked == [{"link_object": "Ticket", "link_object_value": "4711"}]


async def test_a_merged_ticket_is_archived_in_german_with_the_pointer(archiver, simulator):
    merged_4711_into_4712(simulator)
    service = await archiver(PDF_LANGUAGE="de")
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    text, _ = the_archive(service.storage_root)
    assert "Dieses Ticket wurde in #25004712 (Ticket-ID 4712) zusammengeführt" in text
    # "Zusammengeführt in" is wider than the label column: "Aufgegangen in" fits.
    assert field_row(service.storage_root, "Aufgegangen in") == "#25004712 (Ticket-ID 4712)"
    assert re.search(r"Aufgegangen in:\s*#25004712 \(Ticket-ID 4712\)", note_text(simulator, 4711))


async def test_a_ticket_that_is_not_merged_asks_for_no_links(archiver, simulator):
    service = await archiver()
    simulator.requests.clear()
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    assert [r for r in simulator.requests if r.path == LINKS] == []
    text, sidecar = the_archive(service.storage_root)
    assert sidecar["merged_into"] is None
    assert "merged" not in text.lower()


@pytest.mark.parametrize("status", [403, 404])
async def test_links_refused_leaves_the_target_unknown_and_archives(archiver, simulator, status):
    merged_4711_into_4712(simulator)
    simulator.fail("GET", r"^/api/v1/links$", status)
    service = await archiver()
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    text, sidecar = the_archive(service.storage_root)
    assert field_row(service.storage_root, "Merged into") == "merged; target unknown"
    assert "This ticket was merged; target unknown" in text
    merged_into = sidecar["merged_into"]
    assert (merged_into["ticket_id"], merged_into["ticket_number"]) == (None, None)
    assert merged_into["reason"].startswith(f"GET /api/v1/links answered {status}")
    assert "merged; target unknown (GET /api/v1/links answered" in note_text(simulator, 4711)


async def test_a_merged_ticket_whose_link_is_gone_is_archived_with_the_target_unknown(archiver, simulator):
    merged_4711_into_4712(simulator)
    simulator.links.clear()  # a person removed the link: Zammad answers {"links": [], "assets": {}}
    service = await archiver()
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    _, sidecar = the_archive(service.storage_root)
    assert field_row(service.storage_root, "Merged into") == "merged; target unknown"
    assert sidecar["merged_into"]["reason"].startswith("no parent ticket link")


async def test_links_5xx_is_transient_and_the_retry_archives_with_the_pointer(archiver, simulator):
    merged_4711_into_4712(simulator)
    simulator.fail("GET", r"^/api/v1/links$", 503, times=1)
    service = await archiver(
        WORKFLOW_MAX_ATTEMPTS="2", WORKFLOW_RETRY_BASE_SECONDS="0.1", WORKFLOW_RETRY_MAX_SECONDS="0.1"
    )
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    assert len([r for r in simulator.requests if r.path == LINKS]) == 2
    assert sorted(simulator.tags(4711)) == ["pdf:signed", "rechnung", "reklamation"]
    _, sidecar = the_archive(service.storage_root)
    assert sidecar["merged_into"] == {"ticket_id": 4712, "ticket_number": "25004712"}


async def test_links_5xx_on_the_last_attempt_fails_the_run_as_transient(archiver, simulator):
    merged_4711_into_4712(simulator)
    simulator.fail("GET", r"^/api/v1/links$", 500)
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="1")
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()

    assert list(service.storage_root.rglob("*.pdf")) == []
    assert "pdf:error" in simulator.tags(4711) and "pdf:sign" in simulator.tags(4711)  # trigger kept
    text = note_text(simulator, 4711)
    assert "Transient" in text and "fetch links" in text and "GET /api/v1/links answered 500" in text
