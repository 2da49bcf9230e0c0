"""Ticket fields crafted to leave the storage root land inside it; a planted symlink is not followed."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from devtools.webhook import zammad_webhook
from tests.conftest import FIXTURES, HMAC_SECRET
from tests.e2e.test_archive_flow import note_fields, post

TEMPLATE = "{group}/{organization}/{customer}/{title}/{number}-{archived_at}.pdf"
CRAFTED_ID = 4712
CRAFTED = {
    "group": "../../etc",
    "organization": "C:\\x",
    "customer": "/abs",
    "title": "CON",
    "number": "a\x00b" + "ü" * 500 + "...",
}


def add_crafted_ticket(simulator, **fields: str) -> int:
    everything = json.loads((FIXTURES / "ticket-all.json").read_text())
    ticket = copy.deepcopy(everything["assets"]["Ticket"][str(everything["ticket_id"])])
    ticket.update(id=CRAFTED_ID, number=fields["number"], title=fields["title"])
    articles = json.loads((FIXTURES / "articles-by-ticket.json").read_text())[:1]
    articles = [{**a, "id": 990001, "attachments": []} for a in articles]
    names = {"group": fields["group"], "organization": fields["organization"], "customer": fields["customer"]}
    return simulator.add_ticket(ticket, articles, ["pdf:sign"], names=names)


async def archive(service, simulator) -> dict[str, str]:
    body, headers = zammad_webhook({"ticket_id": CRAFTED_ID}, HMAC_SECRET)
    assert (await post(f"{service.url}/ingest", body, headers))[0] == 202
    await service.wait_idle()
    notes = simulator.notes(CRAFTED_ID)
    assert len(notes) == 1, notes
    return note_fields(notes[0])


def files_under(top: Path) -> set[Path]:
    return {p for p in top.rglob("*") if p.is_file()}


async def test_crafted_fields_land_inside_the_root(archiver, simulator, tmp_path: Path) -> None:
    add_crafted_ticket(simulator, **CRAFTED)
    service = await archiver(STORAGE_PATH_TEMPLATE=TEMPLATE, WORKFLOW_MAX_ATTEMPTS="1")

    fields = await archive(service, simulator)

    assert "pdf:signed" in simulator.tags(CRAFTED_ID), fields
    root = service.storage_root.resolve()
    (pdf,) = [p for p in root.rglob("*.pdf")]
    relative = pdf.relative_to(root)
    assert fields["Path"] == relative.as_posix()
    parts = relative.parts
    assert len(parts) == 5 and parts[:4] == ("_.._etc", "C_x", "_abs", "_CON"), parts
    assert parts[4].startswith("a_b") and parts[4].endswith(".pdf") and len(parts[4].encode()) <= 120
    assert not any(part.endswith((".", " ")) or "\x00" in part for part in parts)
    assert Path(os.path.realpath(pdf)).is_relative_to(root)
    written_outside = {p for p in files_under(tmp_path) - files_under(root) if ".pdf" in p.name}
    assert written_outside == set()  # nothing beside the root (the job store's files are not archives)
    assert not Path("/abs").exists() and not list(Path("/etc").glob("*.pdf*"))


async def test_symlink_planted_inside_the_root_is_not_followed(archiver, simulator, tmp_path: Path) -> None:
    add_crafted_ticket(simulator, **{**CRAFTED, "group": "Kundenservice"})
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "archive"
    root.mkdir()
    (root / "Kundenservice").symlink_to(outside, target_is_directory=True)
    service = await archiver(STORAGE_PATH_TEMPLATE=TEMPLATE, WORKFLOW_MAX_ATTEMPTS="1")

    fields = await archive(service, simulator)

    assert list(outside.rglob("*")) == []
    assert list(root.rglob("*.pdf")) == []
    assert sorted(simulator.tags(CRAFTED_ID)) == ["pdf:error"]
    assert fields["Classification"] == "Permanent" and "symlink" in fields["Cause"], fields
