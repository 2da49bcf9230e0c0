"""``python -m app audit`` and the temporary files of killed writes: ``.<name>.<16 hex>.tmp`` left
beside real archives (by a process really killed with SIGKILL mid-write), aged with ``os.utime``;
reported once old enough, removed only with ``--remove-temp-files``, nothing else touched."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.audit.cli import main
from tests.audit.conftest import ArchiveRoot

REPO = Path(__file__).resolve().parents[2]
HOUR = 3600.0

# A store killed between writing its temp file and publishing it: the real create_temp names
# the file, half the PDF is written, then the process is killed as OOM or `kill -9` would.
KILLED_WRITE = """
import os, signal, sys
from app.storage.atomic import DIR_FLAGS, create_temp
folder, name, data = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
fd = os.open(folder, DIR_FLAGS)
tmp_name, tmp_fd = create_temp(fd, (), name)
os.write(tmp_fd, data[: len(data) // 2])
print(tmp_name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def audit(archives: ArchiveRoot, *args: str) -> tuple[int, dict]:
    out, err = io.StringIO(), io.StringIO()
    status = main(
        ["--root", str(archives.root), "--trust", str(archives.trust), "--json", "--jobs", "1", *args],
        stdout=out,
        stderr=err,
    )
    assert err.getvalue() == ""
    return status, json.loads(out.getvalue())


def age(path: Path, seconds: float) -> None:
    """Set the file's (not a symlink target's) times to ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def killed_write(archives: ArchiveRoot) -> Path:
    """The temp file a store killed mid-write leaves beside the first archive."""
    stored = archives.stored[0]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITE, str(stored.path.parent), "Ticket-new.pdf", str(stored.path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = stored.path.parent / proc.stdout.strip()
    assert left.is_file()
    return left


def relative(archives: ArchiveRoot, path: Path) -> str:
    return path.relative_to(archives.root).as_posix()


def temp_like(folder: Path, stem: str = "Ticket-x.pdf") -> Path:
    return folder / f".{stem}.0123456789abcdef.tmp"


def test_an_old_temp_file_of_a_killed_write_is_reported_and_fails_the_audit(
    archive_root: ArchiveRoot,
) -> None:
    left = killed_write(archive_root)
    age(left, 2 * HOUR)

    status, document = audit(archive_root, "--manifest")

    assert status == 1
    (item,) = [f for f in document["files"] if f["result"] != "ok"]
    assert item["path"] == relative(archive_root, left) and item["result"] == "temp_file_left"
    assert item["size"] == archive_root.stored[0].size // 2 == left.stat().st_size
    (problem,) = item["problems"]
    assert "(2 h ago)" in problem["detail"] and "--remove-temp-files" in problem["detail"]
    summary = document["summary"]
    assert summary["ok"] is False and summary["problems"] == 1 and summary["files"] == 4
    assert summary["bytes"] == sum(s.size for s in archive_root.stored)  # the temp file is not read
    assert summary["results"]["temp_file_left"] == 1 and summary["results"]["ok"] == 3
    assert document["manifest"]["ok"] is True
    assert document["audit"]["temp_file_minutes"] == 60 and document["audit"]["remove_temp_files"] is False
    assert left.exists()  # reporting removes nothing


def test_text_output_names_the_temp_file(archive_root: ArchiveRoot) -> None:
    left = temp_like(archive_root.stored[1].path.parent)
    left.write_bytes(b"%PDF-1.7 half")
    age(left, 3 * 86400)
    out = io.StringIO()

    status = main(["--root", str(archive_root.root), "--jobs", "1", "--no-progress"], stdout=out)

    assert status == 1
    assert f"temp_file_left        {relative(archive_root, left)}  (" in out.getvalue()
    assert "13 bytes" in out.getvalue() and "(3 days ago)" in out.getvalue()
    assert "1 temp_file_left" in out.getvalue() and "result: PROBLEMS FOUND" in out.getvalue()


def test_a_fresh_temp_file_is_not_reported(archive_root: ArchiveRoot) -> None:
    """Written a minute ago: maybe a running replica's store, not a leftover."""
    left = killed_write(archive_root)
    age(left, 60)

    status, document = audit(archive_root)

    assert status == 0 and len(document["files"]) == 3
    assert {f["result"] for f in document["files"]} == {"ok"}


def test_the_threshold_is_an_option(archive_root: ArchiveRoot) -> None:
    left = killed_write(archive_root)
    age(left, 30 * 60)

    assert audit(archive_root)[0] == 0
    status, document = audit(archive_root, "--temp-file-minutes", "20")
    assert status == 1 and [f["path"] for f in document["files"] if f["result"] == "temp_file_left"] == [
        relative(archive_root, left)
    ]
    assert (
        main(
            ["--root", str(archive_root.root), "--temp-file-minutes", "0"],
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
        == 2
    )


def test_temp_files_are_reported_whatever_since_says(archive_root: ArchiveRoot) -> None:
    left = killed_write(archive_root)
    age(left, 40 * 86400)

    status, document = audit(archive_root, "--since", "2099-01-01")

    assert status == 1 and [f["path"] for f in document["files"]] == [relative(archive_root, left)]


def other_hidden_names(folder: Path) -> list[Path]:
    """Hidden names that are not the storage's temp files, and a temp-like name not hidden."""
    names = [
        ".Ticket-x.pdf.0123456789ABCDEF.tmp",  # upper-case hex: not token_hex's
        ".Ticket-x.pdf.0123456789abcde.tmp",  # 15 hex digits
        ".Ticket-x.pdf.0123456789abcdef.tmp.bak",
        ".Ticket-x.pdf.0123456789abcdef.TMP",
        ".0123456789abcdef.tmp",  # no name
        ".Ticket-x.pdf.tmp",
        ".healthz-0123456789abcdef",
        ".2026-12-07.jsonl.cut-1765000000000",
        "Ticket-x.pdf.0123456789abcdef.tmp",  # not hidden
    ]
    paths = [folder / name for name in names]
    for path in paths:
        path.write_bytes(b"not ours")
        age(path, 10 * 86400)
    hidden_folder = temp_like(folder, "folder")
    hidden_folder.mkdir()
    age(hidden_folder, 10 * 86400)
    return [*paths, hidden_folder]


def test_other_hidden_files_are_neither_reported_nor_removed(archive_root: ArchiveRoot) -> None:
    others = other_hidden_names(archive_root.stored[0].path.parent)

    for args in ((), ("--remove-temp-files",)):
        status, document = audit(archive_root, *args)
        assert status == 0 and {f["result"] for f in document["files"]} == {"ok"}, document["files"]
    assert all(path.exists() for path in others)


def test_removal_removes_only_old_temp_files_and_reports_each(archive_root: ArchiveRoot) -> None:
    first, second = (archive_root.stored[0].path.parent, archive_root.stored[2].path.parent)
    old = [killed_write(archive_root), temp_like(second, archive_root.stored[2].path.name + ".json")]
    old[1].write_bytes(b'{"half": ')
    for path in old:
        age(path, 5 * HOUR)
    fresh = temp_like(first, "Ticket-fresh.pdf")
    fresh.write_bytes(b"being written")
    age(fresh, 5 * 60)
    others = other_hidden_names(first)
    archives = [p for s in archive_root.stored for p in (s.path, s.path.with_name(s.path.name + ".json"))]

    status, document = audit(archive_root, "--remove-temp-files", "--manifest")

    assert status == 0, document["files"]  # removed: nothing left to do
    removed = {f["path"]: f for f in document["files"] if f["result"] == "temp_file_removed"}
    assert set(removed) == {relative(archive_root, path) for path in old}
    assert all(f["problems"][0]["detail"].endswith(": removed") for f in removed.values())
    assert document["summary"]["problems"] == 0 and document["summary"]["results"]["temp_file_removed"] == 2
    assert not any(path.exists() for path in old)
    assert fresh.exists() and all(path.exists() for path in others + archives)
    assert document["audit"]["remove_temp_files"] is True

    status, document = audit(archive_root, "--remove-temp-files")
    assert status == 0 and {f["result"] for f in document["files"]} == {"ok"}


def test_a_symlink_named_like_a_temp_file_is_not_followed_nor_removed(
    archive_root: ArchiveRoot, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.pdf"
    target.write_bytes(b"%PDF precious")
    age(target, 10 * 86400)
    folder = archive_root.stored[0].path.parent
    links = [temp_like(folder, "to-file"), temp_like(folder, "to-folder"), temp_like(folder, "dangling")]
    links[0].symlink_to(target)
    links[1].symlink_to(outside, target_is_directory=True)
    links[2].symlink_to(outside / "gone")
    for link in links:
        age(link, 10 * 86400)

    status, document = audit(archive_root, "--remove-temp-files")

    assert status == 0 and {f["result"] for f in document["files"]} == {"ok"}, document["files"]
    assert all(link.is_symlink() for link in links)
    assert target.read_bytes() == b"%PDF precious" and [p.name for p in outside.iterdir()] == ["precious.pdf"]
