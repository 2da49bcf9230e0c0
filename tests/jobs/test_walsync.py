"""The WAL sync helper program (:mod:`app.jobs.walsync`) on its own: it syncs the WAL file that is
at its path now, ignores SIGTERM, and ends with its stdin."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.jobs.sqlite_walsync import WALSYNC_SCRIPT


def _fd_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # an fd closed while we look
            inodes.add(os.stat(f"/proc/{pid}/fd/{name}").st_ino)
    return inodes


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")
def test_helper_syncs_the_current_wal_file_ignores_sigterm_and_ends_with_stdin(tmp_path: Path) -> None:
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"first")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(WALSYNC_SCRIPT), str(wal)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"s")
        assert proc.stdout.read(1) == b"k"
        first = wal.stat().st_ino
        assert first in _fd_inodes(proc.pid)
        wal.rename(tmp_path / "old-wal")  # SQLite made a new WAL file: the next sync must be of
        # that one (the old file stays, so its inode number cannot be reused for the new one)
        wal.write_bytes(b"second")
        second = wal.stat().st_ino
        proc.send_signal(signal.SIGTERM)  # ignored: only the end of stdin ends it
        proc.stdin.write(b"s")
        assert proc.stdout.read(1) == b"k"
        assert second in _fd_inodes(proc.pid) and first not in _fd_inodes(proc.pid)
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
