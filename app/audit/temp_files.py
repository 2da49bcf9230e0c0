"""Temporary files left by writes that were killed: reported by the audit, removed only on request.

Every write under the storage root goes to ``.<name>.<16 hex>.tmp`` beside its target
(:func:`app.storage.atomic.create_temp`) and is then published by a link or rename; the writer
removes the temp file on any error it sees. A process killed in between (``kill -9``, OOM,
power loss) cannot: the half-written file stays, hidden, and the walk of the audit skips
hidden names. So the walk collects the regular files named exactly so
(:class:`~app.audit.walk.TempFile`; nothing else hidden, no symlink), and those last written
at least ``min_age`` before the audit's "now" are reported as ``temp_file_left``. A younger one
may be the write of a running replica (a store takes seconds; ``lta-refresh`` keeps its temp
file open while the TSA answers), and is left out.

With ``remove`` each such file is unlinked, after a fresh ``lstat`` (from the root one folder
at a time, no symlink followed) shows the same regular file (device, inode) with the same
modification time: ``temp_file_removed``. When that fails, or the file changed meanwhile, it
stays ``temp_file_left`` and the detail says why. Removing such a file loses nothing: no
archive or sidecar has its name, and the write it belonged to failed (its job is retried).
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

from app.audit.fixity import TEMP_FILE_LEFT, TEMP_FILE_REMOVED, FileReport
from app.audit.walk import TempFile, open_folder
from app.storage.atomic import describe

DEFAULT_MIN_AGE = timedelta(hours=1)
"""Temporary files last written less long ago are not reported (a replica may be writing them)."""


def temp_file_report(
    root_fd: int, found: TempFile, now: datetime, min_age: timedelta, *, remove: bool = False
) -> FileReport | None:
    """The report of one temporary file, removing it first with ``remove``.

    Args:
        root_fd: the storage root (opened as a directory).
        found: the file as the walk saw it.
        now: the audit's "now" (aware); the file's age is counted from its modification time.
        min_age: files younger than this are left alone.
        remove: unlink the file (see the module docstring).

    Returns:
        ``None`` for a file younger than ``min_age``; else a report with the path, the size
        (bytes) and one problem, ``temp_file_left`` or ``temp_file_removed``, whose detail
        gives the age and the time of the last write (UTC).
    """
    age = now.timestamp() - found.mtime
    if age < min_age.total_seconds():
        return None
    written = datetime.fromtimestamp(found.mtime, UTC).isoformat(timespec="seconds")
    what = f"{found.size} bytes, last written {written} ({_age(age)} ago)"
    report = FileReport(found.relative, size=found.size)
    if not remove:
        report.add(
            TEMP_FILE_LEFT,
            f"temporary file of a write that never finished (the process was killed?), {what}; "
            "remove with --remove-temp-files",
        )
        return report
    failure = _remove(root_fd, found)
    if failure is None:
        report.add(TEMP_FILE_REMOVED, f"temporary file of a write that never finished, {what}: removed")
    else:
        report.add(
            TEMP_FILE_LEFT, f"temporary file of a write that never finished, {what}; not removed: {failure}"
        )
    return report


def _remove(root_fd: int, found: TempFile) -> str | None:
    """Unlink ``found`` if it is still the same regular file, unchanged; ``None`` when removed,
    else why not."""
    try:
        fd = open_folder(root_fd, found.folder.split("/") if found.folder else ())
    except OSError as exc:
        return describe(exc)
    try:
        st = os.stat(found.name, dir_fd=fd, follow_symlinks=False)
        if (
            not stat.S_ISREG(st.st_mode)
            or (st.st_dev, st.st_ino) != (found.device, found.inode)
            or st.st_mtime != found.mtime
        ):
            return "it changed during the audit"
        os.unlink(found.name, dir_fd=fd)  # unlink never follows a symlink
    except OSError as exc:
        return describe(exc)
    finally:
        os.close(fd)
    return None


def _age(seconds: float) -> str:
    """``"50 min"``, ``"7 h"``, ``"12 days"``."""
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"
