"""How does an archive that was published but never got its manifest line get it afterwards?

A job whose manifest append failed Permanent (a day file ending in a line that is not a manifest
line, runbook 6.13) leaves its PDF and sidecar (``"manifest": true``) published and no line: the
audit reports it ``not_in_manifest``. Its job is finished (failed), and a retry is a new job with
a new archive name, so no job run ever records that line. After the day file is repaired, the
operator records it here::

    python -m app.storage.manifest_repair "$STORAGE_ROOT" Support/2026/Ticket-1_20261207T052001Z.pdf

The PDF must still be what its sidecar describes (SHA-256 and size, the sidecar's ``path`` its
own): a line records only an archive the audit would otherwise pass. An archive that already has
its line (same path and SHA-256, from the day before the sidecar's ``archived_at`` on) gets no
second one (:meth:`app.storage.manifest.ArchiveManifest.record_archive` with ``resumed=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.errors import StorageError
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_format import ManifestLine
from app.storage.store import SIDECAR_SUFFIX
from app.workflow.ports import StoredArchive


def record_missing_line(root: Path, relative_path: str, *, fsync: bool = True) -> ManifestLine:
    """Record the manifest line of the archive at ``relative_path`` (``/``-separated, relative
    to the storage root ``root``) unless it has one; returns the line (new or found).

    Raises:
        ValueError: the PDF is not what its sidecar describes, the sidecar names another path
            or does not say ``"manifest": true``, or the path leaves the root.
        OSError: the PDF or its sidecar cannot be read (a symlink is not followed).
        StorageError: the manifest cannot be read or written.
    """
    parts = relative_path.split("/")
    if (
        not relative_path
        or any(p in ("", ".", "..") for p in parts)
        or relative_path.startswith("_manifest/")
    ):
        raise ValueError(f"not an archive path under the root: {relative_path!r}")
    pdf = Path(root).joinpath(*parts)
    sidecar = _read_json(Path(str(pdf) + SIDECAR_SUFFIX))
    if sidecar.get("manifest") is not True:
        raise ValueError(f"{relative_path}: its sidecar does not say it was entered in the manifest")
    if sidecar.get("path") != relative_path:
        raise ValueError(f"{relative_path}: its sidecar names another path ({sidecar.get('path')!r})")
    digest, size = _hash_file(pdf)
    if digest != sidecar.get("sha256") or size != sidecar.get("size"):
        raise ValueError(f"{relative_path}: the PDF is not the one its sidecar describes (SHA-256 or size)")
    stored = StoredArchive(path=pdf, relative_path=relative_path, sha256=digest, size=size)
    return ArchiveManifest(Path(root), fsync=fsync).record_archive(stored, sidecar, resumed=True)


def _read_json(path: Path) -> dict[str, Any]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        data = json.loads(fh.read(1 << 20))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: not a sidecar")
    return data


def _hash_file(path: Path) -> tuple[str, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def main(argv: list[str]) -> int:
    """``ROOT PATH...``: record each archive's missing line; prints one result per path.
    Exit status 0 when every path has its line, 1 otherwise, 2 for a usage error."""
    if len(argv) < 2:
        print("usage: python -m app.storage.manifest_repair STORAGE_ROOT ARCHIVE_PATH...", file=sys.stderr)
        return 2
    root, status = Path(argv[0]), 0
    for relative in argv[1:]:
        try:
            line = record_missing_line(root, relative)
        except (OSError, ValueError, StorageError) as exc:
            print(f"{relative}: NOT recorded: {exc}")
            status = 1
        else:
            print(f"{relative}: line {line.seq} of {line.day.isoformat()}.jsonl")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
