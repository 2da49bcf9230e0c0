"""ArchiveStore against a real file system: atomic publish, versions, symlinks, faults.

Faults are produced for real where this machine allows it (tests run as root here):

* EROFS: a tmpfs mounted read-only (``mount -t tmpfs`` + ``remount,ro``);
* EACCES: a 0o555 root written by a forked child that dropped to ``nobody`` with
  ``os.setuid`` (chmod alone does not stop root); without root, chmod is enough;
* ENOSPC: a 64 KiB tmpfs. When mounting is not permitted, those two tests are skipped
  and :func:`test_write_failure_removes_temp_file` (a mocked ENOSPC) still covers the
  error mapping and clean-up.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import app.storage.atomic as atomic_module
from app.errors import StorageError
from app.storage.store import ArchiveStore
from app.workflow.ports import TicketSnapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zammad" / "ticket-expand.json"
ARCHIVED_AT = datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)
FOLDER = "Kundenservice/2025"
NAME = "Ticket-25004711_20250306T132005Z"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def all_files(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file() or p.is_symlink())


def temp_files(top: Path) -> list[str]:
    return [name for name in all_files(top) if name.endswith(".tmp")]


def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator:
    """Mount tmpfs file systems under tmp_path; unmounted afterwards. The suite runs as root (CI
    included), where mounting works; elsewhere these tests fail rather than pass unchecked."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        if not _mount_tmpfs(target, options):
            pytest.fail(
                "mounting a tmpfs is not permitted here: run the suite as root (as make test does in CI)"
            )
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


# -- happy path -----------------------------------------------------------------------------


async def test_store_writes_bytes_under_root(root: Path, snapshot: TicketSnapshot) -> None:
    stored = await ArchiveStore(root).store(snapshot, PDF)

    assert stored.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert stored.path == root.resolve() / FOLDER / f"{NAME}.pdf"
    assert stored.path.read_bytes() == PDF
    assert stored.sha256 == hashlib.sha256(PDF).hexdigest()
    assert stored.size == len(PDF)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o640 & ~umask
    assert all_files(root) == [f"{FOLDER}/{NAME}.pdf"]


async def test_second_store_gets_v2_and_leaves_first_unchanged(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    first = await store.store(snapshot, b"first")
    second = await store.store(snapshot, b"second")
    third = await store.store(snapshot, b"third")

    assert first.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert second.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert third.relative_path == f"{FOLDER}/{NAME}_v3.pdf"
    assert first.path.read_bytes() == b"first"
    assert second.path.read_bytes() == b"second"
    assert second.sha256 == hashlib.sha256(b"second").hexdigest()
    assert temp_files(root) == []
    assert len(all_files(root)) == 3


async def test_concurrent_stores_of_same_ticket_never_overwrite(root: Path, snapshot: TicketSnapshot) -> None:
    store = ArchiveStore(root)
    payloads = [f"payload {i}".encode() * 1000 for i in range(10)]

    results = await asyncio.gather(*(store.store(snapshot, data) for data in payloads))

    assert len({r.relative_path for r in results}) == 10
    expected = {f"{FOLDER}/{NAME}.pdf"} | {f"{FOLDER}/{NAME}_v{n}.pdf" for n in range(2, 11)}
    assert {r.relative_path for r in results} == expected
    for result, data in zip(results, payloads, strict=True):
        assert result.path.read_bytes() == data
        assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(all_files(root)) == sorted(expected)


async def test_symlinked_root_is_resolved_once(tmp_path: Path, root: Path, snapshot: TicketSnapshot) -> None:
    link = tmp_path / "share"
    link.symlink_to(root)
    stored = await ArchiveStore(link).store(snapshot, PDF)
    assert stored.path == root.resolve() / FOLDER / f"{NAME}.pdf"
    assert (root / FOLDER / f"{NAME}.pdf").read_bytes() == PDF


async def test_fsync_flag(root: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])

    await ArchiveStore(root, fsync=False).store(snapshot, PDF)
    assert calls == []
    await ArchiveStore(root, fsync=True).store(snapshot, PDF)
    assert len(calls) >= 2  # the file and its folder


# -- configuration and root -----------------------------------------------------------------


def test_unknown_placeholder_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{ticket_number\}"):
        ArchiveStore(root, path_template="{group}/{ticket_number}.pdf")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        ArchiveStore(tmp_path / "absent")
    assert info.value.errno == errno.ENOENT
    assert "storage root" in str(info.value) and "(ENOENT)" in str(info.value)


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError) as info:
        ArchiveStore(tmp_path / "file")
    assert info.value.errno == errno.ENOTDIR


def test_check_notices_root_gone(root: Path) -> None:
    store = ArchiveStore(root)
    store.check()
    root.rmdir()
    with pytest.raises(StorageError) as info:
        store.check()
    assert info.value.errno == errno.ENOENT


# -- symlinks inside the root ---------------------------------------------------------------


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


async def test_symlinked_first_folder_is_not_followed(
    root: Path, outside: Path, snapshot: TicketSnapshot
) -> None:
    (root / "Kundenservice").symlink_to(outside)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    assert info.value.errno == errno.ELOOP
    assert "'Kundenservice'" in str(info.value)
    assert list(outside.iterdir()) == []


async def test_symlinked_deeper_folder_is_not_followed(
    root: Path, outside: Path, snapshot: TicketSnapshot
) -> None:
    (root / "Kundenservice").mkdir()
    (root / "Kundenservice" / "2025").symlink_to(outside)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    assert info.value.errno == errno.ELOOP
    assert f"'{FOLDER}'" in str(info.value)
    assert list(outside.iterdir()) == []
    assert temp_files(root) == []


def fool_lstat(monkeypatch: pytest.MonkeyPatch, name: str, real_dir: Path) -> None:
    """Make the store's lstat report ``name`` as the directory ``real_dir`` (simulates a race)."""
    real_lstat = os.lstat

    def lstat(path, *, dir_fd=None):
        return real_lstat(real_dir) if path == name else real_lstat(path, dir_fd=dir_fd)

    monkeypatch.setattr(atomic_module.os, "lstat", lstat)


async def test_symlink_swapped_in_after_lstat_is_not_followed(
    root: Path, outside: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second layer: even if lstat is fooled (a race), O_NOFOLLOW refuses the link."""
    (root / "Kundenservice").symlink_to(outside)
    fool_lstat(monkeypatch, "Kundenservice", outside)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    # openat(O_DIRECTORY | O_NOFOLLOW) on a symlink: ENOTDIR on Linux, ELOOP elsewhere.
    assert info.value.errno in {errno.ELOOP, errno.ENOTDIR}
    assert str(info.value).startswith("cannot open folder 'Kundenservice'")
    assert list(outside.iterdir()) == []


async def test_resolved_folder_outside_root_is_refused(
    root: Path, outside: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Third layer: with lstat fooled and O_NOFOLLOW gone, the resolve check still refuses."""
    (root / "Kundenservice").symlink_to(outside)
    fool_lstat(monkeypatch, "Kundenservice", outside)
    monkeypatch.setattr(atomic_module, "DIR_FLAGS", os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(StorageError, match="outside the storage root"):
        await ArchiveStore(root).store(snapshot, PDF)
    assert all_files(outside) == []  # the folder 2025 may exist there, but no file


async def test_symlink_at_final_name_is_not_written_through(
    root: Path, outside: Path, snapshot: TicketSnapshot
) -> None:
    target = outside / "victim"
    target.write_bytes(b"precious")
    (root / FOLDER).mkdir(parents=True)
    (root / FOLDER / f"{NAME}.pdf").symlink_to(target)

    stored = await ArchiveStore(root).store(snapshot, PDF)

    assert stored.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert target.read_bytes() == b"precious"
    assert (root / FOLDER / f"{NAME}.pdf").is_symlink()


async def test_file_in_place_of_folder(root: Path, snapshot: TicketSnapshot) -> None:
    (root / "Kundenservice").write_bytes(b"not a folder")
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    assert info.value.errno == errno.ENOTDIR


# -- publishing -----------------------------------------------------------------------------


async def test_fallback_without_hard_links(
    root: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some CIFS mounts refuse link(2); the store falls back to check + rename."""

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic_module.os, "link", no_link)
    store = ArchiveStore(root)
    first = await store.store(snapshot, b"first")
    second = await store.store(snapshot, b"second")

    assert first.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert second.relative_path == f"{FOLDER}/{NAME}_v2.pdf"
    assert first.path.read_bytes() == b"first"
    assert second.path.read_bytes() == b"second"
    assert temp_files(root) == []


async def test_publish_failure_removes_temp_file(
    root: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic_module.os, "link", broken_link)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    assert info.value.errno == errno.EIO
    assert str(info.value) == f"cannot publish '{FOLDER}/{NAME}.pdf': Input/output error (EIO)"
    assert all_files(root) == []


async def test_write_failure_removes_temp_file(
    root: Path, snapshot: TicketSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mocked ENOSPC: runs everywhere, also where tmpfs cannot be mounted."""

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_module, "write_all", full)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(root).store(snapshot, PDF)
    assert info.value.errno == errno.ENOSPC
    assert "(ENOSPC)" in str(info.value) and f"'{FOLDER}/.{NAME}.pdf." in str(info.value)
    assert all_files(root) == []


# -- real faults ----------------------------------------------------------------------------


async def test_disk_full_on_small_tmpfs(tmpfs, snapshot: TicketSnapshot) -> None:
    small = tmpfs("small", "size=64k,mode=0755")
    with pytest.raises(StorageError) as info:
        await ArchiveStore(small).store(snapshot, os.urandom(512 * 1024))
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"cannot write '{FOLDER}/.{NAME}.pdf.")
    assert str(info.value).endswith(": No space left on device (ENOSPC)")
    assert all_files(small) == []  # temp file removed, nothing published


async def test_read_only_mount(tmpfs, snapshot: TicketSnapshot) -> None:
    ro = tmpfs("ro", "size=1m,mode=0755")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    with pytest.raises(StorageError) as info:
        await ArchiveStore(ro).store(snapshot, PDF)
    assert info.value.errno == errno.EROFS
    assert str(info.value) == "cannot create folder 'Kundenservice': Read-only file system (EROFS)"


def test_permission_denied(snapshot: TicketSnapshot) -> None:
    """A 0o555 root, written by an unprivileged user (forked child dropped to nobody if root)."""
    root = Path(tempfile.mkdtemp(prefix="zpa-storage-", dir="/tmp"))
    try:
        os.chmod(root, 0o555)
        store = ArchiveStore(root, fsync=False)
        outcome = _attempt(store, snapshot) if os.geteuid() != 0 else _attempt_as_nobody(store, snapshot)
        assert outcome.get("errno") == errno.EACCES, outcome
        assert outcome["message"] == "cannot create folder 'Kundenservice': Permission denied (EACCES)"
        assert all_files(root) == []
    finally:
        os.chmod(root, 0o755)
        shutil.rmtree(root)


def _attempt(store: ArchiveStore, snapshot: TicketSnapshot) -> dict:
    try:
        stored = asyncio.run(store.store(snapshot, PDF))
    except StorageError as exc:
        return {"errno": exc.errno, "message": str(exc)}
    return {"stored": stored.relative_path}


def _attempt_as_nobody(store: ArchiveStore, snapshot: TicketSnapshot) -> dict:
    nobody = pwd.getpwnam("nobody")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges for good, try, report, exit without cleanup
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = _attempt(store, snapshot)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"crash": repr(exc)}
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(report or b'{"crash": "no report"}')


# -- from a file --------------------------------------------------------------------------------


async def test_store_file_copies_in_chunks_with_the_same_result_as_bytes(
    root: Path, snapshot: TicketSnapshot, tmp_path: Path
) -> None:
    data = os.urandom(3 * atomic_module.COPY_CHUNK_BYTES + 12345)  # several chunks and a short one
    source = tmp_path / "signed.pdf"
    source.write_bytes(data)
    stored = await ArchiveStore(root).store_file(snapshot, source, sidecar={"job_id": "j1"})
    assert stored.relative_path == f"{FOLDER}/{NAME}.pdf"
    assert (stored.sha256, stored.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert stored.path.read_bytes() == data and source.read_bytes() == data
    sidecar = json.loads((root / FOLDER / f"{NAME}.pdf.json").read_text())
    assert (sidecar["sha256"], sidecar["size"], sidecar["job_id"]) == (stored.sha256, len(data), "j1")
    # the same job again: its finished archive is found, nothing is written
    again = await ArchiveStore(root).store_file(snapshot, source, sidecar={"job_id": "j1"})
    assert again == stored and all_files(root) == [f"{FOLDER}/{NAME}.pdf", f"{FOLDER}/{NAME}.pdf.json"]


async def test_store_file_with_an_unreadable_source_writes_nothing(
    root: Path, snapshot: TicketSnapshot, tmp_path: Path
) -> None:
    with pytest.raises(StorageError, match="cannot read the PDF to store") as info:
        await ArchiveStore(root).store_file(snapshot, tmp_path / "missing.pdf")
    assert info.value.errno == errno.ENOENT
    assert temp_files(root) == [] and list((root / FOLDER).iterdir()) == []


async def test_store_file_on_a_full_disk(tmpfs, snapshot: TicketSnapshot, tmp_path: Path) -> None:
    small = tmpfs("small-file", "size=64k,mode=0755")
    source = tmp_path / "big.pdf"
    source.write_bytes(os.urandom(512 * 1024))
    with pytest.raises(StorageError) as info:
        await ArchiveStore(small).store_file(snapshot, source)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"cannot write '{FOLDER}/.{NAME}.pdf.")
    assert temp_files(small) == []
