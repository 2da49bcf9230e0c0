"""One archive per job: a job that runs again after a crash finds its own archive (or its
interrupted publish) instead of writing ``_v2``."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from app.storage.store import ArchiveStore
from app.workflow.ports import TicketSnapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zammad" / "ticket-expand.json"
ARCHIVED_AT = datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)
FOLDER = "Kundenservice/2025"
NAME = "Ticket-25004711_20250306T132005Z"
FIRST = b"%PDF-1.7\nfirst attempt\n%%EOF\n"
AGAIN = b"%PDF-1.7\nsecond attempt, other bytes (new signature time)\n%%EOF\n"


def visible(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sidecar_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))


async def test_the_same_job_again_gets_its_finished_archive_back(
    root: Path, snapshot: TicketSnapshot
) -> None:
    store = ArchiveStore(root)
    first = await store.store(snapshot, FIRST, sidecar={"job_id": "job-a"})
    again = await ArchiveStore(root).store(snapshot, AGAIN, sidecar={"job_id": "job-a"})  # a new process

    assert again == first
    assert again.already_stored and not first.already_stored  # its note may be on the ticket
    assert first.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert first.path.read_bytes() == FIRST  # untouched; the note names these bytes
    assert again.sha256 == hashlib.sha256(FIRST).hexdigest() and again.size == len(FIRST)
    assert visible(root) == [f"{FOLDER}/{NAME}.pdf", f"{FOLDER}/{NAME}.pdf.json"]


async def test_another_job_still_gets_a_new_version(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    a = await store.store(snapshot, FIRST, sidecar={"job_id": "job-a"})
    b = await store.store(snapshot, AGAIN, sidecar={"job_id": "job-b"})
    b_again = await store.store(snapshot, FIRST, sidecar={"job_id": "job-b"})

    assert a.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert b.relative_path == f"{FOLDER}/{NAME}_v2.pdf" == b_again.relative_path
    assert b_again.sha256 == hashlib.sha256(AGAIN).hexdigest()
    assert sidecar_of(a.path)["job_id"] == "job-a" and sidecar_of(b.path)["job_id"] == "job-b"
    assert len(visible(root)) == 4


async def test_an_interrupted_publish_of_the_job_is_replaced(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    first = await store.store(snapshot, FIRST, sidecar={"job_id": "job-a"})
    first.path.with_name(first.path.name + ".json").unlink()  # killed before the completion marker

    again = await store.store(snapshot, AGAIN, sidecar={"job_id": "job-a"})

    assert again.relative_path == first.relative_path
    assert again.path.read_bytes() == AGAIN
    assert sidecar_of(again.path)["sha256"] == hashlib.sha256(AGAIN).hexdigest() == again.sha256
    assert visible(root) == [f"{FOLDER}/{NAME}.pdf", f"{FOLDER}/{NAME}.pdf.json"]


async def test_an_interrupted_publish_behind_another_jobs_archive_is_replaced(
    root: Path, snapshot: TicketSnapshot
) -> None:
    store = ArchiveStore(root)
    await store.store(snapshot, FIRST, sidecar={"job_id": "job-a"})
    b = await store.store(snapshot, FIRST, sidecar={"job_id": "job-b"})
    b.path.with_name(b.path.name + ".json").unlink()

    again = await store.store(snapshot, AGAIN, sidecar={"job_id": "job-b"})

    assert again.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert again.path.read_bytes() == AGAIN
    assert len(visible(root)) == 4


async def test_a_sidecar_less_file_older_than_the_job_is_never_replaced(
    root: Path, snapshot: TicketSnapshot
) -> None:
    legacy = root / FOLDER / f"{NAME}.pdf"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"written by a version without sidecars")
    day_before = ARCHIVED_AT.timestamp() - 86400
    os.utime(legacy, (day_before, day_before))

    stored = await ArchiveStore(root).store(snapshot, AGAIN, sidecar={"job_id": "job-a"})

    assert stored.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert legacy.read_bytes() == b"written by a version without sidecars"


async def test_a_file_that_does_not_match_its_sidecar_is_left_alone(
    root: Path, snapshot: TicketSnapshot
) -> None:
    store = ArchiveStore(root)
    first = await store.store(snapshot, FIRST, sidecar={"job_id": "job-a"})
    first.path.write_bytes(b"changed after archiving")

    again = await store.store(snapshot, AGAIN, sidecar={"job_id": "job-a"})

    assert again.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert first.path.read_bytes() == b"changed after archiving"


async def test_a_symlink_at_the_name_is_not_taken_for_the_job(
    root: Path, tmp_path: Path, snapshot: TicketSnapshot
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (root / FOLDER).mkdir(parents=True)
    (root / FOLDER / f"{NAME}.pdf").symlink_to(victim)

    stored = await ArchiveStore(root).store(snapshot, AGAIN, sidecar={"job_id": "job-a"})

    assert stored.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert victim.read_bytes() == b"precious"


async def test_without_a_job_id_every_call_is_a_new_version(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    one = await store.store(snapshot, FIRST, sidecar={"ticket_id": 4711})
    two = await store.store(snapshot, FIRST, sidecar={"ticket_id": 4711})
    assert (one.relative_path, two.relative_path) == (f"{FOLDER}/{NAME}.pdf", f"{FOLDER}/{NAME}_v2.pdf")


def big_sidecar(job_id: str, originals: int) -> dict:
    """A sidecar as the service writes it for a ticket of ``originals`` embedded originals
    (one line of ``embedded_files`` each: ~130 bytes; 10,000 of them are over 1 MiB)."""
    embedded = [
        {"name": f"article-{n}/body.txt", "sha256": hashlib.sha256(str(n).encode()).hexdigest(), "size": 2280}
        for n in range(originals)
    ]
    return {"job_id": job_id, "embedded_files": embedded}


async def test_a_ticket_with_ten_thousand_originals_finds_its_archive_again(
    root: Path, snapshot: TicketSnapshot
) -> None:
    """Its sidecar is over 1 MiB: the store wrote it, and must read it back, or the job run
    again after a crash takes its own archive for another's and writes ``_v2``."""
    first = await ArchiveStore(root).store(snapshot, FIRST, sidecar=big_sidecar("job-big", 10_000))
    assert first.path.with_name(first.path.name + ".json").stat().st_size > 1 << 20

    again = await ArchiveStore(root).store(snapshot, AGAIN, sidecar=big_sidecar("job-big", 10_000))

    assert again == first and again.already_stored
    assert visible(root) == [f"{FOLDER}/{NAME}.pdf", f"{FOLDER}/{NAME}.pdf.json"]
