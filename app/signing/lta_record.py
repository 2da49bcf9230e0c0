"""Whether ``lta-refresh`` can record a version in the manifest; taking back one that was not.

A version ``lta-refresh`` publishes counts only with its ``lta_refresh`` line in the
tamper-evident manifest (:mod:`app.storage.manifest`); a version without one is what the
manifest audit reports as ``not_in_manifest``, and it would look finished to the next run.
So a run that cannot record leaves no version behind:

* before anything is written or a TSA is asked, :func:`check_manifest` reads the line the
  next one would chain to, as the manifest's writers do, and refuses a manifest whose
  newest line is not a manifest line: the writers refuse to extend that chain (``EBADMSG``,
  Permanent) until it is repaired;
* when recording fails anyway (the manifest lock held too long, a full disk, a share that
  went away), :func:`withdraw_version` removes the version that was just published, PDF
  first, then its sidecar (a sidecar without its PDF is no version). It removes only a file
  whose SHA-256 and size are those it published.

The check asks :func:`app.storage.manifest_format.line_seq`, the test ``ArchiveManifest``'s
writers apply to the line they chain to (app/storage/manifest.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

from app.errors import StorageError
from app.storage.atomic import hash_file, open_under_root, storage_error, sync_folder
from app.storage.manifest_format import MANIFEST_FOLDER, day_file_name, iter_lines, line_seq, manifest_days
from app.storage.store import SIDECAR_SUFFIX
from app.workflow.ports import StoredArchive

__all__ = ["check_manifest", "withdraw_version"]


def check_manifest(root: Path) -> None:
    """Check that a line can be appended to the manifest under ``root``; read-only.

    The line a new one would chain to is the last complete line of the newest day file that
    has one (an incomplete last line is a crashed writer's and is cut off by the next one).
    No manifest yet is fine.

    Raises:
        StorageError: that line is not a manifest line (no JSON object with an integer
            ``seq``): ``EBADMSG``, Permanent, naming the day file; or the manifest folder or
            a day file cannot be read (with its ``errno``).
    """
    folder = Path(root) / MANIFEST_FOLDER
    try:
        for day in reversed(manifest_days(folder)):
            name = day_file_name(day)
            last = None
            for raw, complete in iter_lines(folder / name):
                if complete:
                    last = raw
            if last is not None:
                _check_line(name, last)
                return
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StorageError(
            f"cannot read the archive manifest ({MANIFEST_FOLDER}): {reason}", errno=exc.errno
        ) from exc


def _check_line(name: str, raw: bytes) -> None:
    if line_seq(raw) is None:  # the writers' own test (ArchiveManifest._last_line)
        raise StorageError(
            f"manifest day file '{name}' ends in a line that is not a manifest line, so no new "
            "version could be recorded: nothing refreshed; run 'python -m app audit --manifest' "
            "and repair it as runbook §6.13 says",
            errno=errno.EBADMSG,
            transient=False,
        )


def withdraw_version(root: Path, stored: StoredArchive, *, fsync: bool = True) -> None:
    """Remove a version just published (``stored``) and its sidecar, as if never written.

    Folders are opened under the resolved ``root`` without following symlinks. The PDF is
    removed only when its SHA-256 and size are ``stored``'s; a PDF already gone is fine.

    Raises:
        StorageError: a folder cannot be opened, the PDF is not the one published
            (``EEXIST``), or the PDF or sidecar cannot be removed (with its ``errno``).
    """
    relative = PurePosixPath(stored.relative_path)
    folders, name = relative.parts[:-1], relative.name
    here = str(relative)
    opened = open_under_root(Path(root).resolve(), folders, create=False)
    try:
        fd = opened.target
        try:
            digest, size = hash_file(fd, name, here)
        except StorageError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            if (digest, size) != (stored.sha256, stored.size):
                raise StorageError(
                    f"'{here}' is no longer the version this run published: left in place",
                    errno=errno.EEXIST,
                )
            _unlink(fd, name, here)
        _unlink(fd, name + SIDECAR_SUFFIX, here + SIDECAR_SUFFIX)
        if fsync:
            sync_folder(fd, "/".join(folders) or ".")
    finally:
        opened.close()


def _unlink(dir_fd: int, name: str, here: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error("remove", here, exc) from exc
