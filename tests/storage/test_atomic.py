"""The shared atomic file steps: folders under the root, write beside, publish without overwriting.

The archive store's tests (test_storage_store.py) cover these steps through ``ArchiveStore``;
here they are checked directly, as :mod:`app.storage.versions` uses them too.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from app.errors import StorageError
from app.storage import atomic


def numbered(name: str, n: int) -> str:
    stem, dot, ext = name.rpartition(".")
    return name if n == 1 else f"{stem}_v{n}{dot}{ext}"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_open_under_root_creates_folders_and_reports_the_grown_ones(root: Path) -> None:
    (root / "A").mkdir()
    opened = atomic.open_under_root(root, ("A", "B", "C"), create=True)
    try:
        assert os.path.samestat(os.fstat(opened.target), os.stat(root / "A" / "B" / "C"))
        assert [here for _, here in opened.grown] == ["A", "A/B"]  # A existed: the root did not grow
    finally:
        opened.close()
    assert opened.fds == []


def test_open_under_root_refuses_a_symlink_and_leaves_nothing_open(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "A").symlink_to(outside)
    before = open_fds()
    with pytest.raises(StorageError) as info:
        atomic.open_under_root(root, ("A", "B"), create=True)
    assert info.value.errno == errno.ELOOP
    assert open_fds() == before
    assert list(outside.iterdir()) == []


def test_publish_takes_the_first_free_name_and_leaves_no_temp_file(root: Path) -> None:
    (root / "X.pdf").write_bytes(b"older")
    fd = os.open(root, atomic.DIR_FLAGS)
    try:
        names = atomic.FirstFreeName(numbered, 3)
        published, digest, size = atomic.publish_new_file(fd, (), "X.pdf", b"new", names=names, fsync=True)
        assert (published, digest, size) == ("X_v2.pdf", hashlib.sha256(b"new").hexdigest(), 3)
        atomic.publish_new_file(fd, (), "X.pdf", b"third", names=names, fsync=False)
        with pytest.raises(StorageError, match="3 versions exist already") as info:
            atomic.publish_new_file(fd, (), "X.pdf", b"fourth", names=names, fsync=False)
    finally:
        os.close(fd)
    assert info.value.errno == errno.EEXIST
    assert sorted(p.name for p in root.iterdir()) == ["X.pdf", "X_v2.pdf", "X_v3.pdf"]
    assert (root / "X.pdf").read_bytes() == b"older"


def test_without_hard_links_the_fallback_never_overwrites(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def no_link(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "link", no_link)
    (root / "X.pdf").write_bytes(b"older")
    fd = os.open(root, atomic.DIR_FLAGS)
    try:
        names = atomic.FirstFreeName(numbered, 10)
        first, _, _ = atomic.publish_new_file(fd, (), "X.pdf", b"one", names=names, fsync=False)
        second, _, _ = atomic.publish_new_file(fd, (), "X.pdf", b"two", names=names, fsync=False)
    finally:
        os.close(fd)
    assert (first, second) == ("X_v2.pdf", "X_v3.pdf")
    assert len(calls) == 1 and not names.hardlinks  # link(2) is not tried again
    assert {p.name: p.read_bytes() for p in root.iterdir()} == {
        "X.pdf": b"older",
        "X_v2.pdf": b"one",
        "X_v3.pdf": b"two",
    }


def test_a_failed_publish_removes_the_temp_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "link", broken_link)
    fd = os.open(root, atomic.DIR_FLAGS)
    try:
        with pytest.raises(StorageError, match=r"cannot publish 'X.pdf': Input/output error \(EIO\)"):
            atomic.publish_new_file(
                fd, (), "X.pdf", b"data", names=atomic.FirstFreeName(numbered, 5), fsync=False
            )
    finally:
        os.close(fd)
    assert list(root.iterdir()) == []


def test_replace_file_replaces_a_symlink_instead_of_writing_through(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (root / "X.pdf.json").symlink_to(victim)
    fd = os.open(root, atomic.DIR_FLAGS)
    try:
        digest, size = atomic.replace_file(fd, (), "X.pdf.json", b"{}\n", fsync=True)
    finally:
        os.close(fd)
    assert (digest, size) == (hashlib.sha256(b"{}\n").hexdigest(), 3)
    assert victim.read_bytes() == b"precious"
    assert not (root / "X.pdf.json").is_symlink() and (root / "X.pdf.json").read_bytes() == b"{}\n"
    assert [p.name for p in root.iterdir()] == ["X.pdf.json"]
