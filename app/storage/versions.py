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

Publishing follows :mod:`app.storage.store`: the folder is opened relative to the root without
following symlinks; the new PDF is written to ``.<name>.<random>.tmp`` (``O_EXCL``, mode
``0o640``), ``fsync``-ed and published with ``link()`` under the first free name (``EEXIST``
moves on to ``_v2``, …; without hard links, check-then-``rename``), the folder is
``fsync``-ed, then the sidecar is written the same way and replaces ``<name>.json``. Nothing
that exists is ever changed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from app.errors import StorageError
from app.storage.store import FILE_MODE, SIDECAR_MAX_BYTES, SIDECAR_SCHEMA, SIDECAR_SUFFIX
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

SKIPPED_TOP_FOLDERS = frozenset({"_manifest"})
"""Folders directly under the storage root that hold no archives."""

_VERSION = re.compile(r"^(?P<base>.+?)(?:\.lta-(?P<day>\d{8})(?:_v(?P<n>\d+))?)?(?P<ext>\.pdf)$", re.I)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS})
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def _describe(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"


def _error(operation: str, relative: str, exc: OSError) -> StorageError:
    return StorageError(f"cannot {operation} '{relative}': {_describe(exc)}", errno=exc.errno)


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
        raise _error("open storage root", str(root), exc) from exc
    for here, folders, files in os.walk(root, followlinks=False):
        folder = PurePosixPath(Path(here).relative_to(root).as_posix())
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and not (folder == PurePosixPath(".") and name in SKIPPED_TOP_FOLDERS)
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
        StorageError: it cannot be read, is a symlink, is larger than 1 MiB or is no JSON object.
    """
    sidecar = Path(str(path) + SIDECAR_SUFFIX)
    try:
        fd = os.open(sidecar, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _error("read", sidecar.name, exc) from exc
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(SIDECAR_MAX_BYTES + 1)
    try:
        parsed = json.loads(raw) if len(raw) <= SIDECAR_MAX_BYTES else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise StorageError(f"sidecar '{sidecar.name}' is not a JSON object of at most 1 MiB")
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
        self._dir_fd = self._open_folder()
        self._tmp_name = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(self._tmp_name, _TMP_FLAGS, FILE_MODE, dir_fd=self._dir_fd)
        except OSError as exc:
            os.close(self._dir_fd)
            raise _error("create temporary file", self._here(self._tmp_name), exc) from exc
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self._done = False

    def __enter__(self) -> NewVersion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def _here(self, name: str) -> str:
        return "/".join((*self._folders, name))

    def _open_folder(self) -> int:
        try:
            fd = os.open(self._root, _DIR_FLAGS)
        except OSError as exc:
            raise _error("open storage root", str(self._root), exc) from exc
        for depth, part in enumerate(self._folders):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                raise _error("open folder", "/".join(self._folders[: depth + 1]), exc) from exc
            os.close(fd)
            fd = child
        return fd

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
            published = self._publish_pdf()
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
            self._write_sidecar(published + SIDECAR_SUFFIX, (text + "\n").encode("utf-8"))
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
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_name, dir_fd=self._dir_fd)
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
            raise _error("write", here, exc) from exc
        return digest.hexdigest(), size

    def _publish_pdf(self) -> str:
        hardlinks = True
        for n in range(1, MAX_VERSIONS_PER_DAY + 1):
            candidate = _numbered(self._name, n)
            if hardlinks:
                try:
                    os.link(
                        self._tmp_name,
                        candidate,
                        src_dir_fd=self._dir_fd,
                        dst_dir_fd=self._dir_fd,
                        follow_symlinks=False,
                    )
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise _error("publish", self._here(candidate), exc) from exc
                    hardlinks = False  # e.g. CIFS without hard links: check, then rename
                else:
                    self._sync_folder()
                    return candidate
            try:
                os.lstat(candidate, dir_fd=self._dir_fd)
                continue
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _error("publish", self._here(candidate), exc) from exc
            try:
                os.rename(self._tmp_name, candidate, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            except OSError as exc:
                raise _error("publish", self._here(candidate), exc) from exc
            self._sync_folder()
            return candidate
        raise StorageError(
            f"cannot publish '{self._here(self._name)}': {MAX_VERSIONS_PER_DAY} versions exist already",
            errno=errno.EEXIST,
        )

    def _write_sidecar(self, name: str, payload: bytes) -> None:
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, _TMP_FLAGS, FILE_MODE, dir_fd=self._dir_fd)
        except OSError as exc:
            raise _error("create temporary file", self._here(tmp), exc) from exc
        try:
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self._dir_fd)
            raise _error("write", self._here(name), exc) from exc
        self._sync_folder()

    def _sync_folder(self) -> None:
        if not self._fsync:
            return
        try:
            os.fsync(self._dir_fd)
        except OSError as exc:
            if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
                raise _error("sync folder", "/".join(self._folders) or ".", exc) from exc
