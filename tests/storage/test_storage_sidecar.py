"""The ``<file>.pdf.json`` sidecar: written after the PDF, atomically, as the completion marker."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.errors import StorageError
from app.storage.store import ArchiveStore
from app.workflow.ports import TicketSnapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zammad" / "ticket-expand.json"
ARCHIVED_AT = datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
RUN = {
    "ticket_id": 4711,
    "ticket_number": "25004711",
    "articles_included": 4,
    "articles_total": 4,
    "template": "default",
    "pades_level": "B-LTA",
    "signer_subject": "CN=Dev Archive Signer",
    "signer_cert_sha256": "ab" * 32,
    "timestamp": datetime(2025, 3, 6, 13, 20, 6, tzinfo=UTC),
    "timestamp_authority": "CN=Test TSA",
    "service_version": "1.0",
    "delivery_id": "d-1",
    "sha256": "forged",
    "path": "../forged",
}


async def test_sidecar_holds_run_facts_and_the_file_facts(root: Path, snapshot: TicketSnapshot) -> None:
    stored = await ArchiveStore(root).store(snapshot, PDF, sidecar=RUN)

    sidecar = stored.path.with_name(stored.path.name + ".json")
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["sha256"] == hashlib.sha256(PDF).hexdigest() == stored.sha256  # the store's facts win
    assert data["path"] == stored.relative_path and data["size"] == len(PDF)
    assert data["timestamp"] == "2025-03-06T13:20:06+00:00"
    assert data["path_template"] == "{group}/{created_year}/Ticket-{number}_{archived_at}.pdf"
    for key in (
        "ticket_id",
        "ticket_number",
        "articles_included",
        "articles_total",
        "template",
        "pades_level",
        "signer_subject",
        "signer_cert_sha256",
        "timestamp_authority",
        "service_version",
        "delivery_id",
    ):
        assert data[key] == RUN[key], key
    assert sorted(p.name for p in sidecar.parent.iterdir()) == [
        stored.path.name,
        sidecar.name,
    ]  # no temp left


async def test_each_version_gets_its_own_sidecar(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    first = await store.store(snapshot, PDF, sidecar=RUN)
    second = await store.store(snapshot, PDF + b"2", sidecar=RUN)

    one = json.loads(first.path.with_name(first.path.name + ".json").read_text())
    two = json.loads(second.path.with_name(second.path.name + ".json").read_text())
    assert second.path.name.endswith("_v2.pdf")
    assert (one["path"], one["size"]) == (first.relative_path, len(PDF))
    assert (two["path"], two["size"]) == (second.relative_path, len(PDF) + 1)


async def test_sidecar_is_written_after_the_pdf(root: Path, snapshot: TicketSnapshot, monkeypatch) -> None:
    order: list[str] = []
    real_link, real_replace = os.link, os.replace
    monkeypatch.setattr(os, "link", lambda src, dst, **kw: (order.append(dst), real_link(src, dst, **kw))[1])
    monkeypatch.setattr(
        os, "replace", lambda src, dst, **kw: (order.append(dst), real_replace(src, dst, **kw))[1]
    )

    await ArchiveStore(root).store(snapshot, PDF, sidecar=RUN)

    assert [name.rsplit(".", 2)[-2:] for name in order] == [
        ["Ticket-25004711_20250306T132005Z", "pdf"],
        ["pdf", "json"],
    ]


async def test_failed_sidecar_write_leaves_the_pdf_without_marker(
    root: Path, snapshot: TicketSnapshot, monkeypatch
) -> None:
    real_replace = os.replace

    def no_space(src, dst, **kw):
        if str(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", no_space)

    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF, sidecar=RUN)

    assert info.value.errno == errno.ENOSPC and ".pdf.json" in str(info.value)
    files = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert files == ["Ticket-25004711_20250306T132005Z.pdf"]  # temp file removed, no marker


async def test_without_sidecar_mapping_no_sidecar_is_written(root: Path, snapshot: TicketSnapshot) -> None:
    stored = await ArchiveStore(root).store(snapshot, PDF)

    assert not stored.path.with_name(stored.path.name + ".json").exists()


async def test_unserialisable_sidecar_is_a_storage_error(root: Path, snapshot: TicketSnapshot) -> None:
    with pytest.raises(StorageError, match="sidecar"):
        await ArchiveStore(root).store(snapshot, PDF, sidecar={"bad": object()})
