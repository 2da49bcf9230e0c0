"""``python -m app audit --manifest`` against tampering that the archives alone do not show: the
manifest removed, cut short or restarted, archives copied or renamed, sidecars edited."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from app.errors import StorageError
from app.storage import manifest_repair
from app.storage.manifest import ArchiveManifest
from app.storage.store import ArchiveStore
from tests.audit.archives import ARCHIVED_AT, snapshot
from tests.audit.conftest import ArchiveRoot
from tests.audit.test_cli import audit, audit_json, codes, results


def edit_sidecar(sidecar: Path, /, **changes: object) -> None:
    fields = json.loads(sidecar.read_text())
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    sidecar.write_text(json.dumps(fields))


def test_the_store_says_in_the_sidecar_that_the_archive_is_in_the_manifest(archive_root: ArchiveRoot) -> None:
    assert json.loads(archive_root.sidecar(0).read_text())["manifest"] is True


def test_a_removed_manifest_fails_the_archives_entered_in_it(archive_root: ArchiveRoot) -> None:
    shutil.rmtree(archive_root.root / "_manifest")

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    assert set(results(document).values()) == {"not_in_manifest"}
    assert len(document["files"]) == 3


def test_a_manifest_cut_to_a_few_bytes_fails_the_archives_entered_in_it(archive_root: ArchiveRoot) -> None:
    (day_file,) = (archive_root.root / "_manifest").glob("*.jsonl")
    day_file.write_bytes(day_file.read_bytes()[:5])

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    assert set(results(document).values()) == {"not_in_manifest"}


def test_a_manifest_restarted_after_archives_were_entered_fails_them(
    archive_root: ArchiveRoot, signed_pdfs: list[bytes]
) -> None:
    """The manifest moved aside; the service archives one more ticket and starts a new chain."""
    (archive_root.root / "_manifest").rename(archive_root.root.parent / "manifest.aside")
    store = ArchiveStore(
        archive_root.root, fsync=False, manifest=ArchiveManifest(archive_root.root, fsync=False)
    )
    when = ARCHIVED_AT + timedelta(days=30)
    sidecar = {"ticket_id": 31900, "job_id": "job-31900", "archived_at": when.isoformat(), "signed": True}
    new = asyncio.run(store.store(snapshot(31900, when), signed_pdfs[0], sidecar=sidecar))

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1 and document["manifest"]["ok"] is True  # the new chain holds
    found = results(document)
    assert found.pop(new.relative_path) == "ok"
    assert set(found.values()) == {"not_in_manifest"} and len(found) == 3


def test_archives_from_before_the_manifest_stay_ok_without_one(archive_root: ArchiveRoot) -> None:
    shutil.rmtree(archive_root.root / "_manifest")
    for index in range(3):
        edit_sidecar(archive_root.sidecar(index), manifest=None)  # written before the key existed

    status, document = audit_json(archive_root, "--manifest")

    assert status == 0 and set(results(document).values()) == {"ok"}


def test_a_copied_archive_with_an_edited_sidecar_is_reported(archive_root: ArchiveRoot) -> None:
    source = archive_root.stored[0]
    copy = archive_root.root / "Elsewhere" / "Ticket-9999_20200101T000000Z.pdf"
    copy.parent.mkdir()
    shutil.copy(source.path, copy)
    shutil.copy(archive_root.sidecar(0), f"{copy}.json")
    edit_sidecar(Path(f"{copy}.json"), archived_at="2020-01-01T00:00:00+00:00", ticket_id=9999)
    relative = "Elsewhere/Ticket-9999_20200101T000000Z.pdf"

    status, document = audit_json(archive_root)
    assert status == 1 and codes(document, relative) == {"hash_mismatch"}  # not where its sidecar says

    status, document = audit_json(archive_root, "--manifest")
    assert status == 1 and codes(document, relative) == {"hash_mismatch", "not_in_manifest"}
    assert results(document)[source.relative_path] == "ok"


def test_a_copy_whose_sidecar_hides_everything_is_found_by_its_sha256(archive_root: ArchiveRoot) -> None:
    """Path, date and the manifest key edited: the manifest still records the bytes elsewhere."""
    source = archive_root.stored[1]
    copy = archive_root.root / "Old" / "Ticket-9999.pdf"
    copy.parent.mkdir()
    shutil.copy(source.path, copy)
    shutil.copy(archive_root.sidecar(1), f"{copy}.json")
    edit_sidecar(
        Path(f"{copy}.json"),
        archived_at="2020-01-01T00:00:00+00:00",
        path="Old/Ticket-9999.pdf",
        manifest=None,
    )

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    assert codes(document, "Old/Ticket-9999.pdf") == {"not_in_manifest"}
    (item,) = [f for f in document["files"] if f["path"] == "Old/Ticket-9999.pdf"]
    assert "another path" in item["problems"][0]["detail"]


def test_an_edited_ticket_id_in_a_sidecar_is_a_manifest_mismatch(archive_root: ArchiveRoot) -> None:
    edit_sidecar(archive_root.sidecar(2), ticket_id=9999)

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    assert codes(document, archive_root.stored[2].relative_path) == {"manifest_mismatch"}


@pytest.mark.parametrize(
    "changes", [{"ticket_number": "99999999"}, {"job_id": "0" * 32}, {"ticket_number": None}]
)
def test_an_edited_ticket_number_or_job_id_in_a_sidecar_is_a_manifest_mismatch(
    archive_root: ArchiveRoot, changes: dict[str, object]
) -> None:
    """The runbook tells operators to look archives up by the sidecar's job id and ticket
    number; the manifest line records both, so an edit of either is found like one of ticket_id."""
    edit_sidecar(archive_root.sidecar(2), **changes)

    status, document = audit_json(archive_root, "--manifest")

    assert status == 1
    assert codes(document, archive_root.stored[2].relative_path) == {"manifest_mismatch"}
    assert set(results(document).values()) == {"ok", "manifest_mismatch"}


def test_a_folder_of_the_root_audited_as_its_own_root_is_ok(archive_root: ArchiveRoot) -> None:
    group = archive_root.root / archive_root.stored[0].relative_path.split("/")[0]
    part = ArchiveRoot(group, archive_root.stored, archive_root.trust)

    status, document = audit_json(part)

    assert status == 0 and len(document["files"]) == 3


def test_an_archive_whose_line_failed_gets_it_recorded_after_the_repair(
    archive_root: ArchiveRoot, signed_pdfs: list[bytes]
) -> None:
    """Runbook 6.13: a day file ending in a line that is not a manifest line stops the writers
    after the archive was published; once that line is removed, manifest_repair records it."""
    (day_file,) = (archive_root.root / "_manifest").glob("*.jsonl")
    good = day_file.read_bytes()
    day_file.write_bytes(good + b"not a manifest line\n")
    store = ArchiveStore(
        archive_root.root, fsync=False, manifest=ArchiveManifest(archive_root.root, fsync=False)
    )
    sidecar = {
        "ticket_id": 31901,
        "job_id": "job-31901",
        "archived_at": ARCHIVED_AT.isoformat(),
        "signed": True,
    }
    with pytest.raises(StorageError):
        asyncio.run(store.store(snapshot(31901), signed_pdfs[0], sidecar=sidecar))
    (published,) = archive_root.root.glob("Support/*/Ticket-31901_*.pdf")
    relative = published.relative_to(archive_root.root).as_posix()
    day_file.write_bytes(good)  # the runbook's cut
    status, document = audit_json(archive_root, "--manifest")
    assert status == 1 and results(document)[relative] == "not_in_manifest"

    assert manifest_repair.main([str(archive_root.root), relative]) == 0
    assert manifest_repair.main([str(archive_root.root), relative]) == 0  # found, not recorded twice

    status, document = audit_json(archive_root, "--manifest")
    assert status == 0 and set(results(document).values()) == {"ok"}
    assert len(day_file.read_bytes().splitlines()) == 4


def test_manifest_repair_records_no_archive_its_sidecar_does_not_describe(archive_root: ArchiveRoot) -> None:
    shutil.rmtree(archive_root.root / "_manifest")
    relative = archive_root.stored[0].relative_path
    archive_root.stored[0].path.write_bytes(b"%PDF-1.7 replaced")

    assert manifest_repair.main([str(archive_root.root), relative]) == 1
    assert not (archive_root.root / "_manifest").exists()


def test_an_archive_moved_with_its_sidecar_fails_without_the_manifest_too(archive_root: ArchiveRoot) -> None:
    source = archive_root.stored[0]  # Support/2026/Ticket-…pdf
    assert source.relative_path.startswith("Support/2026/")
    moved = archive_root.root / "2026" / source.path.name
    moved.parent.mkdir()
    source.path.rename(moved)
    archive_root.sidecar(0).rename(f"{moved}.json")
    relative = f"2026/{source.path.name}"

    status, document = audit_json(archive_root)

    assert status == 1 and results(document)[relative] == "hash_mismatch"
    assert "a copied, renamed or moved archive" in json.dumps(document)


def test_a_group_folder_audited_as_root_is_ok_and_a_move_inside_it_is_not(
    archive_root: ArchiveRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_ROOT", raising=False)
    group = archive_root.root / "Support"
    status, out, _ = audit("--root", str(group), "--trust", str(archive_root.trust), "--json", "--jobs", "2")
    assert status == 0 and set(results(json.loads(out)).values()) == {"ok"}

    source = archive_root.stored[1]
    source.path.rename(group / source.path.name)  # Support/2026/T.pdf -> Support/T.pdf
    archive_root.sidecar(1).rename(group / f"{source.path.name}.json")
    status, out, _ = audit("--root", str(group), "--trust", str(archive_root.trust), "--json", "--jobs", "1")
    assert status == 1 and results(json.loads(out))[source.path.name] == "hash_mismatch"
