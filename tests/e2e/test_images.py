"""The layout's images through the service: a passing fault while downloading an inline image is
retried, not a placeholder in a signed archive, until the ticket has been failing to archive for
WORKFLOW_DOWNLOAD_GIVE_UP_HOURS (across the sweep's new jobs): then the job's last attempt gives
up on it, a placeholder; an image Zammad refuses for good, or serves as bytes the layout cannot
decode, is a placeholder at once. The note and the sidecar name every placeholder.

Ticket 4711's article 23051 shows a screenshot in its HTML body
(``/api/v1/ticket_attachment/4711/23051/91202``), which Zammad's API hides from the article's
attachment list (so no original of it is embedded: originals on or off, only the layout
downloads it).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import time
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


DAY_AND_AN_HOUR = 25 * 3600


async def jobs_of_4711(job_store) -> list[tuple]:
    return await job_store.rows(
        "SELECT state, reason FROM jobs WHERE ticket_id = ? ORDER BY created_at", 4711
    )


async def sweep(service) -> None:
    """One pass of the reconciliation sweep (as every RECONCILE_INTERVAL_SECONDS), then the jobs it queued."""
    # RECONCILE_STALE_SECONDS (0.01 s) since the dead job ended, and a new second: the pass's
    # delivery id, reconcile:<ticket>:<unix seconds>, would be a duplicate of the last pass's.
    await asyncio.sleep(1.05 - time.time() % 1)
    report = await service.app.state.reconciler.run_once()
    assert [finding.ticket_id for finding in report.queue] == [4711], report.lines()
    await service.wait_idle()


async def test_an_inline_image_zammad_never_serves_again_is_a_placeholder_after_the_give_up_time(
    archiver, simulator, job_store
):
    # Zammad answers 500 for good: the image's file is missing from its storage backend.
    simulator.fail("GET", INLINE_PATH, 500)
    service = await archiver(
        PDF_EMBED_ORIGINALS="false", WORKFLOW_MAX_ATTEMPTS="2", RECONCILE_STALE_SECONDS="0.01", **NO_PAUSE
    )
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    # Within WORKFLOW_DOWNLOAD_GIVE_UP_HOURS (24 h by default): the job and the one the sweep queues
    # again (a new job) end dead, nothing archived, the trigger tag back each time.
    await sweep(service)
    assert await jobs_of_4711(job_store) == [("dead", "webhook"), ("dead", "reconcile")]
    assert list(service.storage_root.rglob("*.pdf")) == [] and image_requests(simulator) == 4
    assert {"pdf:error", "pdf:sign"} <= set(simulator.tags(4711))

    # The ticket's first failing job was queued 25 h ago (the later job is recent): the next job
    # the sweep queues fails its first attempt and gives up on the image on its last.
    await job_store.rows(
        "UPDATE jobs SET created_at = created_at - ? WHERE ticket_id = ? AND reason = 'webhook'",
        DAY_AND_AN_HOUR,
        4711,
    )
    await sweep(service)
    assert await jobs_of_4711(job_store) == [
        ("dead", "webhook"),
        ("dead", "reconcile"),
        ("done", "reconcile"),
    ]
    assert image_requests(simulator) == 6
    (sidecar_path,) = service.storage_root.rglob("*.pdf.json")
    pdf = Path(str(sidecar_path).removesuffix(".json"))
    (placeholder,) = json.loads(sidecar_path.read_text())["placeholder_images"]
    given_up = (
        "download failed for 25 h over 6 attempts, given up after 24 h (WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): "
    )
    cause = placeholder.pop("cause")
    assert placeholder == {
        "name": "image-91202",
        "article_id": 23051,
        "attachment_id": 91202,
        "classification": "Transient",
        "code": "zammad_api_error",
    }
    assert cause.startswith(given_up + "GET /api/v1/ticket_attachment/4711/23051/91202 answered 500"), cause
    assert images_in(pdf) == 0 and PLACEHOLDER in pdftotext(pdf)
    tags = simulator.tags(4711)
    assert "pdf:signed" in tags and "pdf:sign" not in tags and "pdf:error" not in tags
    note = simulator.notes(4711)[-1]["body"]
    fields = {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note)}
    assert fields["Images shown as placeholders"] == f"1: image-91202 (Transient: {cause})"


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


def cut_jpeg() -> bytes:
    """A real 320×180 baseline JPEG cut after half its bytes (a broken upload)."""
    from PIL import Image

    out = io.BytesIO()
    Image.radial_gradient("L").resize((320, 180)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()[: out.tell() // 2]


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Session expired</body></html>"


def add_image(simulator, attachment_id: int, filename: str, data: bytes, mime: str = "image/png") -> None:
    """Article 23052 gets the image attachment ``filename`` (previewed under it), served as ``data``."""
    simulator.articles[23052].setdefault("attachments", []).append(
        {
            "id": attachment_id,
            "filename": filename,
            "size": str(len(data)),
            "preferences": {"Mime-Type": mime},
        }
    )
    simulator.attachment_data[attachment_id] = data


async def test_images_served_as_undecodable_bytes_are_placeholders_named_in_the_note_and_sidecar(
    archiver, simulator
):
    # Downloaded whole, but no image: a cut JPEG inline in the body; an SVG, a login page and an
    # empty file served as image/png under the next article; beside them one Zammad refuses (404).
    jpeg = cut_jpeg()
    simulator.attachment_data[91202] = jpeg
    add_image(simulator, 91301, "diagramm.png", SVG)
    add_image(simulator, 91302, "portal.png", LOGIN_PAGE)
    add_image(simulator, 91303, "leer.png", b"")
    add_image(simulator, 91304, "weg.png", b"gone")
    simulator.fail("GET", r"^/api/v1/ticket_attachment/4711/23052/91304$", 404)
    service = await archiver(PDF_EMBED_ORIGINALS="false", **NO_PAUSE)
    pdf, sidecar = await archive_4711(service)
    assert "pdf:signed" in simulator.tags(4711)
    entries = sidecar["placeholder_images"]
    keys = ("name", "article_id", "attachment_id", "classification", "code")
    facts = [tuple(e[k] for k in keys) for e in entries]
    assert facts == [
        ("weg.png", 23052, 91304, "Permanent", "zammad_api_error"),  # the downloads' first
        ("image-91202", 23051, 91202, "Permanent", "image_undecodable"),  # then as the layout met them
        ("diagramm.png", 23052, 91301, "Permanent", "image_undecodable"),
        ("portal.png", 23052, 91302, "Permanent", "image_undecodable"),
        ("leer.png", 23052, 91303, "Permanent", "image_undecodable"),
    ]
    causes = [e["cause"] for e in entries[1:]]
    assert causes[0].startswith(f"downloaded ({len(jpeg)} bytes) but cannot be drawn: not a readable image: ")
    assert "truncated" in causes[0]
    unknown = "but cannot be drawn: not a readable image: no image format Pillow knows"
    assert causes[1:] == [
        f"downloaded ({len(SVG)} bytes) {unknown}",
        f"downloaded ({len(LOGIN_PAGE)} bytes) {unknown}",
        f"downloaded (0 bytes) {unknown}",
    ]
    listed = note_fields(simulator)["Images shown as placeholders"]
    gone = "GET /api/v1/ticket_attachment/4711/23052/91304 answered 404"
    assert listed.startswith(f"5: weg.png (Permanent: {gone}")
    for entry in entries[1:]:
        assert f"{entry['name']} (Permanent: {entry['cause']})" in listed
    text = pdftotext(pdf)
    assert images_in(pdf) == 0 and PLACEHOLDER in text
    for name in ("diagramm.png", "portal.png", "leer.png"):
        assert f"[image: {name}] (not available)" in text
