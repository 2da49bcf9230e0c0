"""Where is the audited folder under the storage root? (A sidecar's ``path`` is relative to the storage root.)

An audit may be given a folder of the storage root as ``--root`` (one group, e.g.
``/srv/archive/Support``): a sidecar there names ``Support/2026/T.pdf`` where the walk sees
``2026/T.pdf``. The audit accepts that path only with the folder's own position, ``Support``,
in front of it, so an archive moved (with its sidecar) to another folder is still
``hash_mismatch``. Where the storage root is unknown (no ``STORAGE_ROOT`` around the folder and
no ``_manifest`` above it: a copy of part of a storage root, audited elsewhere), the position
cannot be known, and a sidecar's path is accepted when it ends in the walked path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.storage.manifest_format import MANIFEST_FOLDER


def root_prefix(root: Path, storage_root: Path | None = None) -> str | None:
    """The position of ``root`` under the storage root, ``/``-separated (``""`` when ``root``
    is the storage root itself), or ``None`` when no storage root is known around it.

    The storage root is ``storage_root`` (``STORAGE_ROOT``) when ``root`` lies within it,
    else the nearest folder from ``root`` upwards (``root`` included) that holds a
    ``_manifest`` folder (not a symlink); without either the position is unknown (``None``).
    Paths are compared resolved.

    Raises:
        OSError: ``root`` cannot be resolved.
    """
    here = root.resolve(strict=True)
    if storage_root is not None:
        try:
            base = storage_root.resolve(strict=True)
        except OSError:
            base = None
        if base is not None and here.is_relative_to(base):
            return _position(here, base)
    for folder in (here, *here.parents):
        try:
            mode = os.lstat(folder / MANIFEST_FOLDER).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            return _position(here, folder)
    return None


def _position(folder: Path, base: Path) -> str:
    relative = folder.relative_to(base).as_posix()
    return "" if relative == "." else relative


def described_here(described: object, relative: str, prefix: str | None) -> bool:
    """Whether a sidecar's ``path`` (``described``, relative to the storage root) names the
    archive the walk found at ``relative`` (relative to the audited folder at ``prefix``;
    ``None``: its position is unknown, so any path ending in ``relative`` is accepted)."""
    if prefix is None:
        return isinstance(described, str) and (described == relative or described.endswith(f"/{relative}"))
    return described == (f"{prefix}/{relative}" if prefix else relative)
