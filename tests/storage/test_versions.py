"""New archive versions: names, the newest version of each archive, the atomic publish beside the old one."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from datetime import date
from pathlib import Path, PurePosixPath

import pytest

from app.errors import StorageError
from app.storage.versions import NewVersion, archive_families, lta_version_name, read_sidecar

DAY = date(2026, 12, 7)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ticket-1_20250306T132005Z.pdf", "Ticket-1_20250306T132005Z.lta-20261207.pdf"),
        ("Ticket-1_20250306T132005Z_v2.pdf", "Ticket-1_20250306T132005Z_v2.lta-20261207.pdf"),
        ("Ticket-1.lta-20251201.pdf", "Ticket-1.lta-20261207.pdf"),
        ("Ticket-1.lta-20251201_v3.pdf", "Ticket-1.lta-20261207.pdf"),
        ("Rechnung März.PDF", "Rechnung März.lta-20261207.PDF"),
    ],
)
def test_lta_version_name_keeps_the_base_and_moves_the_date(name: str, expected: str) -> None:
    assert lta_version_name(name, DAY) == expected


def test_lta_version_name_refuses_what_is_no_pdf() -> None:
    with pytest.raises(ValueError, match="not a PDF name"):
        lta_version_name("Ticket-1.pdf.json", DAY)


def touch(path: Path, data: bytes = b"%PDF-1.7\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_families_group_versions_newest_last_and_skip_what_is_no_archive(root: Path, tmp_path: Path) -> None:
    folder = root / "Kundenservice" / "2025"
    for name in (
        "A.pdf",
        "A.pdf.json",
        "A.lta-20261207.pdf",
        "A.lta-20261207_v2.pdf",
        "A.lta-20251201.pdf",
        "A_v2.pdf",
        ".A.lta-20270101.pdf.0123.tmp",
        "notes.txt",
    ):
        touch(folder / name)
    touch(root / "_manifest" / "2026-12-07.pdf")
    touch(root / ".hidden" / "B.pdf")
    touch(tmp_path / "elsewhere" / "C.pdf")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    os.symlink(folder / "A.pdf", folder / "D.pdf")

    families = list(archive_families(root))

    assert [(str(f.folder), f.versions) for f in families] == [
        (
            "Kundenservice/2025",
            ("A.pdf", "A.lta-20251201.pdf", "A.lta-20261207.pdf", "A.lta-20261207_v2.pdf"),
        ),
        ("Kundenservice/2025", ("A_v2.pdf",)),
    ]
    assert families[0].newest_relative == "Kundenservice/2025/A.lta-20261207_v2.pdf"


def test_families_at_the_root_have_folder_dot(root: Path) -> None:
    touch(root / "A.pdf")
    (family,) = archive_families(root)
    assert family.folder == PurePosixPath(".") and family.newest_relative == "A.pdf"


def test_new_version_is_published_beside_the_old_one_with_its_sidecar(root: Path) -> None:
    folder = root / "K"
    original = touch(folder / "A.pdf", b"original bytes")
    touch(folder / "A.lta-20261207.pdf", b"an earlier refresh of today")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    data = b"%PDF-1.7 refreshed"

    with NewVersion(root, PurePosixPath("K"), "A.lta-20261207.pdf") as version:
        version.file.write(data)
        stored = version.publish({"ticket_id": 4711, "sha256": "stale", "path": "stale"})

    assert stored.relative_path == "K/A.lta-20261207_v2.pdf"
    assert stored.path.read_bytes() == data and stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    sidecar = json.loads((folder / "A.lta-20261207_v2.pdf.json").read_text())
    assert sidecar["ticket_id"] == 4711 and sidecar["sha256"] == stored.sha256
    assert sidecar["path"] == "K/A.lta-20261207_v2.pdf" and sidecar["size"] == len(data)
    assert read_sidecar(stored.path) == sidecar
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    assert original.read_bytes() == b"original bytes"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "a temp file was left behind"
    assert oct(stored.path.stat().st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_version_left_unpublished_leaves_nothing(root: Path) -> None:
    (root / "K").mkdir()
    with NewVersion(root, PurePosixPath("K"), "A.lta-20261207.pdf") as version:
        version.file.write(b"half")
    assert list((root / "K").iterdir()) == []


def test_a_symlinked_folder_is_not_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "K")

    with pytest.raises(StorageError) as info:
        NewVersion(root, PurePosixPath("K"), "A.lta-20261207.pdf")

    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert list(outside.iterdir()) == []


def test_read_sidecar_refuses_a_sidecar_that_is_no_json_object(root: Path) -> None:
    touch(root / "A.pdf")
    assert read_sidecar(root / "A.pdf") is None
    (root / "A.pdf.json").write_text("[1, 2]")
    with pytest.raises(StorageError, match="not a JSON object"):
        read_sidecar(root / "A.pdf")


def test_a_version_is_published_without_hard_links_and_never_over_a_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some CIFS mounts refuse link(2): check, then rename, still never over an existing name."""

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    taken = touch(root / "K" / "A.lta-20261207.pdf", b"taken")
    with NewVersion(root, PurePosixPath("K"), "A.lta-20261207.pdf") as version:
        version.file.write(b"new")
        stored = version.publish({})
    assert stored.relative_path == "K/A.lta-20261207_v2.pdf" and stored.path.read_bytes() == b"new"
    assert taken.read_bytes() == b"taken"
    assert sorted(p.name for p in (root / "K").iterdir()) == [
        "A.lta-20261207.pdf",
        "A.lta-20261207_v2.pdf",
        "A.lta-20261207_v2.pdf.json",
    ]
