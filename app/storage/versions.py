"""New versions of stored archives: their names, the newest version of each archive, and an atomic publish.

An archive may gain later versions, e.g. a PAdES B-LTA refresh (:mod:`app.signing.lta`) that
adds validation data and a document timestamp. A version is a new file next to the archive,
never a change to it:

* ``Ticket-25004711_20250306T132005Z.pdf`` is the archive the service wrote (*version 0*);
* ``Ticket-25004711_20250306T132005Z.lta-20261207.pdf`` is its LTA refresh of 7 December 2026,
  ``….lta-20261207_v2.pdf`` a second one on the same day; a later refresh of that file is
  ``….lta-20271207.pdf`` again (the base name stays, only the date moves).

Every version has its own sidecar ``<name>.json`` (:data:`~app.storage.store.SIDECAR_SUFFIX`).
The newest version of an archive is the one with the latest date (then the highest ``_vN``).

Publishing uses the same steps as the archive store (:mod:`app.storage.atomic`): the folder
is opened relative to the root without following symlinks; the new PDF is written to
``.<name>.<random>.tmp`` (``O_EXCL``, mode ``0o640``), ``fsync``-ed and published under the
first free name (``name``, ``_v2``, …; never over an existing file), the folder is
``fsync``-ed, then the sidecar is written the same way and replaces ``<name>.json``. Nothing
that exists is ever changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from app.errors import StorageError
from app.storage.atomic import (
    READ_FLAGS,
    FirstFreeName,
    close_quietly,
    create_temp,
    open_under_root,
    remove_quietly,
    replace_file,
    storage_error,
    sync_folder,
)
from app.storage.paths import STORAGE_NAMES
from app.storage.store import SIDECAR_MAX_BYTES, SIDECAR_SCHEMA, SIDECAR_SUFFIX
from app.workflow.ports import StoredArchive

__all__ = [
    "ArchiveFamily",
    "NewVersion",
    "archive_families",
    "lta_version_name",
    "read_sidecar",
]

LTA_MARK = ".lta-"
"""Separates an archive's base name from the date of an LTA refresh."""

MAX_VERSIONS_PER_DAY = 100
"""How many ``_vN`` names of one day are tried before giving up with ``EEXIST``."""

_VERSION = re.compile(r"^(?P<base>.+?)(?:\.lta-(?P<day>\d{8})(?:_v(?P<n>\d+))?)?(?P<ext>\.pdf)$", re.I)


def _version_key(name: str) -> tuple[str, int] | None:
    """``(day, n)`` ordering the versions of one archive (``("", 0)`` for version 0), or
    ``None`` when ``name`` is no PDF."""
    match = _VERSION.match(name)
    if match is None:
        return None
    if match["day"] is None:
        return "", 0
    return match["day"], int(match["n"] or 1)


def lta_version_name(name: str, day: date) -> str:
    """The name of an LTA refresh made on ``day`` of the archive version ``name``.

    ``A.pdf`` and ``A.lta-20251201_v2.pdf`` both give ``A.lta-20261207.pdf`` for 7 December
    2026; :class:`NewVersion` adds ``_v2``, ``_v3``, … when that name is taken.

    Raises:
        ValueError: ``name`` does not end in ``.pdf``.
    """
    match = _VERSION.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a PDF name (*.pdf)")
    return f"{match['base']}{LTA_MARK}{day:%Y%m%d}{match['ext']}"


def _numbered(name: str, n: int) -> str:
    if n <= 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}_v{n}{dot}{ext}"


@dataclass(frozen=True, slots=True)
class ArchiveFamily:
    """An archive and its later versions in one folder.

    Attributes:
        folder: the folder relative to the storage root (``PurePosixPath(".")`` for the root).
        versions: the file names, oldest first; the last one is the newest version.
    """

    folder: PurePosixPath
    versions: tuple[str, ...]

    @property
    def newest(self) -> str:
        """The newest version's file name."""
        return self.versions[-1]

    @property
    def newest_relative(self) -> str:
        """The newest version's path relative to the root, ``/``-separated."""
        return str(self.folder / self.newest)


def archive_families(root: Path) -> Iterator[ArchiveFamily]:
    """Every archive under ``root`` with its versions, folder by folder (sorted by name).

    PDFs (``*.pdf``, any case) that are regular files count; symlinks, hidden names (temp
    files ``.…tmp``), hidden folders and the top-level ``_manifest`` folder are skipped and
    symlinked folders are not followed. Memory grows with the largest folder, not the tree.

    Raises:
        StorageError: the root cannot be read (a folder below it that cannot be read is skipped).
    """
    root = Path(root)
    try:
        os.stat(root)
    except OSError as exc:
        raise storage_error("open storage root", str(root), exc) from exc
    for here, folders, files in os.walk(root, followlinks=False):
        folder = PurePosixPath(Path(here).relative_to(root).as_posix())
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and not (folder == PurePosixPath(".") and name in STORAGE_NAMES)
        )
        groups: dict[str, list[tuple[tuple[str, int], str]]] = {}
        for name in files:
            key = _version_key(name)
            if key is None or name.startswith("."):
                continue
            try:
                if not stat.S_ISREG(os.lstat(os.path.join(here, name)).st_mode):
                    continue
            except OSError:
                continue
            match = _VERSION.match(name)
            assert match is not None
            groups.setdefault(match["base"] + match["ext"].lower(), []).append((key, name))
        for base in sorted(groups):
            versions = tuple(name for _, name in sorted(groups[base]))
            yield ArchiveFamily(folder=folder, versions=versions)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The parsed sidecar ``<path>.json`` of an archive, or ``None`` when there is none.

    Raises:
        StorageError: it cannot be read, is a symlink, is larger than :data:`SIDECAR_MAX_BYTES`
            or is no JSON object.
    """
    sidecar = Path(str(path) + SIDECAR_SUFFIX)
    try:
        fd = os.open(sidecar, READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error("read", sidecar.name, exc) from exc
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(SIDECAR_MAX_BYTES + 1)
    try:
        parsed = json.loads(raw) if len(raw) <= SIDECAR_MAX_BYTES else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise StorageError(
            f"sidecar '{sidecar.name}' is not a JSON object of at most {SIDECAR_MAX_BYTES} bytes"
        )
    return parsed


class NewVersion:
    """A new version of an archive, written to a temp file beside it and then published.

    Use as a context manager: write the PDF into :attr:`file` (readable, writable,
    seekable, initially empty), then call :meth:`publish`; leaving the block without
    publishing removes the temp file.

    Args:
        root: the storage root.
        folder: the archive's folder relative to the root (it must exist).
        name: the wished file name (``_v2``, ``_v3``, … are tried when it is taken).
        fsync: ``fsync`` the file and the folder before publishing counts as done.

    Raises:
        StorageError: the folder cannot be opened (a symlink on the way gives ``ELOOP``)
            or the temp file cannot be created.
    """

    def __init__(self, root: Path, folder: PurePosixPath, name: str, *, fsync: bool = True) -> None:
        self._root = Path(root)
        self._folders = tuple(part for part in folder.parts if part != ".")
        self._name = name
        self._fsync = fsync
        try:
            resolved = self._root.resolve(strict=True)
        except OSError as exc:
            raise storage_error("open storage root", str(self._root), exc) from exc
        opened = open_under_root(resolved, self._folders, create=False)
        opened.close(keep_target=True)
        self._dir_fd = opened.target
        try:
            self._tmp_name, fd = create_temp(self._dir_fd, self._folders, name, readable=True)
        except StorageError:
            close_quietly(self._dir_fd)
            raise
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self._done = False

    def __enter__(self) -> NewVersion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def _here(self, name: str) -> str:
        return "/".join((*self._folders, name))

    def publish(self, sidecar: Mapping[str, Any]) -> StoredArchive:
        """Publish the written file under the first free name, then its sidecar.

        The sidecar is ``sidecar`` plus ``schema``, ``path``, ``sha256`` and ``size`` of the
        published file (these override same-named keys).

        Returns:
            Where the version landed, with the SHA-256 and size of its bytes.

        Raises:
            StorageError: writing, publishing or syncing failed (the temp file is removed;
                a PDF that was published before its sidecar failed stays, as with the store).
        """
        if self._done:
            raise RuntimeError("this version was published or discarded already")
        try:
            digest, size = self._finish_file()
            names = FirstFreeName(_numbered, MAX_VERSIONS_PER_DAY)
            published = names.publish(self._dir_fd, self._folders, self._tmp_name, self._name)
            self._sync_folder()
            stored = StoredArchive(
                path=self._root.joinpath(*self._folders, published),
                relative_path=self._here(published),
                sha256=digest,
                size=size,
            )
            content = {
                **sidecar,
                "schema": SIDECAR_SCHEMA,
                "path": stored.relative_path,
                "sha256": digest,
                "size": size,
            }
            try:
                text = json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise StorageError(f"cannot write the sidecar of '{stored.relative_path}': {exc}") from exc
            replace_file(
                self._dir_fd,
                self._folders,
                published + SIDECAR_SUFFIX,
                (text + "\n").encode("utf-8"),
                fsync=self._fsync,
            )
            self._sync_folder()
            return stored
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temp file (if still there) and close the folder; idempotent."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        remove_quietly(self._dir_fd, self._tmp_name)
        os.close(self._dir_fd)

    def _finish_file(self) -> tuple[str, int]:
        """Flush and ``fsync`` the temp file; its SHA-256 (hex) and size."""
        here = self._here(self._tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            self.file.flush()
            if self._fsync:
                os.fsync(self.file.fileno())
            self.file.seek(0)
            while chunk := self.file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            self.file.close()  # network file systems may report deferred write errors here
        except OSError as exc:
            raise storage_error("write", here, exc) from exc
        return digest.hexdigest(), size

    def _sync_folder(self) -> None:
        if self._fsync:
            sync_folder(self._dir_fd, "/".join(self._folders) or ".")
