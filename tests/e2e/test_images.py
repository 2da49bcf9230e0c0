"""The layout's images through the service: a passing fault while downloading an inline image is
retried, never a placeholder in a signed archive; an image Zammad refuses for good is a
placeholder that the note and the sidecar name.

Ticket 4711's article 23051 shows a screenshot in its HTML body
(``/api/v1/ticket_attachment/4711/23051/91202``), which Zammad's API hides from the article's
attachment list (so no original of it is embedded: originals on or off, only the layout
downloads it).
"""

from __future__ import annotations

import json
import re
import subprocess
from html import unescape
from pathlib import Path

from tests.verify import pdftotext

INLINE_PATH = r"^/api/v1/ticket_attachment/4711/23051/91202$"
PLACEHOLDER = "[image: image-91202]"
NO_PAUSE = {"WORKFLOW_RETRY_BASE_SECONDS": "0", "WORKFLOW_RETRY_MAX_SECONDS": "0"}


async def archive_4711(service) -> tuple[Path, dict]:
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    (sidecar,) = service.storage_root.rglob("*.pdf.json")
    return Path(str(sidecar).removesuffix(".json")), json.loads(sidecar.read_text())


def images_in(pdf: Path) -> int:
    """How many images poppler's ``pdfimages -list`` finds in the PDF."""
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True)
    return sum(line.split()[2] == "image" for line in listing.stdout.splitlines()[2:])


def note_fields(simulator) -> dict[str, str]:
    (note,) = simulator.notes(4711)
    return {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note["body"])}


def image_requests(simulator) -> int:
    return sum(r.path == "/api/v1/ticket_attachment/4711/23051/91202" for r in simulator.requests)


async def test_a_503_on_an_inline_image_is_retried_and_the_archive_shows_the_image(archiver, simulator):
    simulator.fail("GET", INLINE_PATH, 503, times=1)
    service = await archiver(PDF_EMBED_ORIGINALS="false", WORKFLOW_MAX_ATTEMPTS="3", **NO_PAUSE)
    pdf, sidecar = await archive_4711(service)
    assert image_requests(simulator) == 2  # the first attempt failed Transient and was retried
    assert sidecar["placeholder_images"] == []
    assert images_in(pdf) == 1 and PLACEHOLDER not in pdftotext(pdf)
    assert "pdf:signed" in simulator.tags(4711)
    assert "Images shown as placeholders" not in note_fields(simulator)


async def test_an_inline_image_that_stays_unavailable_ends_the_job_dead_not_signed(archiver, simulator):
    simulator.fail("GET", INLINE_PATH, 503)
    service = await archiver(PDF_EMBED_ORIGINALS="false", WORKFLOW_MAX_ATTEMPTS="2", **NO_PAUSE)
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    assert list(service.storage_root.rglob("*.pdf")) == []
    assert image_requests(simulator) == 2
    tags = simulator.tags(4711)
    assert "pdf:signed" not in tags and {"pdf:error", "pdf:sign"} <= set(tags)  # the sweep runs it later
    fields = note_fields(simulator)
    assert (fields["Classification"], fields["Step"]) == ("Transient", "fetch images")
    assert "answered 503" in fields["Cause"]


async def test_a_404_on_an_inline_image_is_a_placeholder_named_in_the_note_and_sidecar(archiver, simulator):
    simulator.fail("GET", INLINE_PATH, 404)
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="3", **NO_PAUSE)
    pdf, sidecar = await archive_4711(service)
    assert image_requests(simulator) == 1  # gone for good: not retried
    cause = "GET /api/v1/ticket_attachment/4711/23051/91202 answered 404: Couldn't find the requested record"
    assert sidecar["placeholder_images"] == [
        {
            "name": "image-91202",
            "article_id": 23051,
            "attachment_id": 91202,
            "classification": "Permanent",
            "code": "zammad_api_error",
            "cause": cause,
        }
    ]
    assert images_in(pdf) == 0 and PLACEHOLDER in pdftotext(pdf)
    assert "pdf:signed" in simulator.tags(4711)
    assert note_fields(simulator)["Images shown as placeholders"] == f"1: image-91202 (Permanent: {cause})"
