"""Which files under the storage root are archives and sidecars: a streamed walk, one folder at a time.

An archive is a regular file named ``*.pdf`` (any case); its sidecar is ``<name>.json``
beside it (:data:`app.storage.store.SIDECAR_SUFFIX`). The walk yields every archive with
its sidecar's name (or ``None``) and every sidecar whose PDF is missing. It never follows a
symlink, skips hidden names (temporary files ``.….tmp``, probes, locks) and the storage's own
folders at the top (:data:`app.storage.paths.STORAGE_NAMES`: the manifest's; no archive
path can be one), and ignores other files (``Thumbs.db``, ``desktop.ini``…). Of the hidden
names, regular files named exactly as the storage's temporary files
(:data:`app.storage.atomic.TEMP_NAME`) are collected on request (:class:`TempFile`): left by a
write that was killed, they are the audit's ``temp_file_left`` (:mod:`app.audit.temp_files`).

Only one folder's names are held at a time (plus the stack of folders still to visit), so
memory follows the largest folder (and the number of temporary files collected), not the number
of archives. Folders and names are visited
in sorted order, so two runs report in the same order.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from app.storage.atomic import DIR_FLAGS, TEMP_NAME
from app.storage.paths import STORAGE_NAMES
from app.storage.store import SIDECAR_SUFFIX

ARCHIVE_SUFFIX = ".pdf"


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One archive or orphan sidecar.

    Attributes:
        folder: the folder's path relative to the root (``""`` for the root itself).
        pdf: the archive's name, ``None`` for an orphan sidecar.
        sidecar: the sidecar's name, ``None`` for an archive without one.
        mtime: the newest modification time of the two (Unix seconds).
    """

    folder: str
    pdf: str | None
    sidecar: str | None
    mtime: float

    @property
    def relative(self) -> str:
        """The archive's (or orphan sidecar's) path relative to the root."""
        name = self.pdf if self.pdf is not None else self.sidecar
        assert name is not None
        return f"{self.folder}/{name}" if self.folder else name


@dataclass(frozen=True, slots=True)
class TempFile:
    """A regular file named as the storage's temporary files (``.<name>.<16 hex>.tmp``).

    Attributes:
        folder: the folder's path relative to the root (``""`` for the root itself).
        name: the file's name.
        size: its size in bytes.
        mtime: its modification time (Unix seconds).
        device, inode: which file it was (a removal checks it is still the same).
    """

    folder: str
    name: str
    size: int
    mtime: float
    device: int
    inode: int

    @property
    def relative(self) -> str:
        """The file's path relative to the root."""
        return f"{self.folder}/{self.name}" if self.folder else self.name


@dataclass(slots=True)
class WalkErrors:
    """Folders that could not be listed during a walk: ``(relative path, reason)``."""

    folders: list[tuple[str, str]]


def walk_archives(
    root_fd: int, errors: WalkErrors | None = None, temp_files: list[TempFile] | None = None
) -> Iterator[tuple[int, WalkEntry]]:
    """Yield ``(folder fd, entry)`` for every archive and orphan sidecar under the root.

    Args:
        root_fd: the storage root, opened as a directory. Folder fds yielded are valid until
            the next item is taken from the iterator.
        errors: collects folders that cannot be opened or listed (the walk goes on).
        temp_files: collects the temporary files (regular files only, whatever their age) of
            the folders walked; complete once the iterator is exhausted.
    """
    stack: list[str] = [""]
    while stack:
        folder = stack.pop()
        try:
            fd = os.open(folder, DIR_FLAGS, dir_fd=root_fd) if folder else os.dup(root_fd)
        except OSError as exc:
            if errors is not None:
                errors.folders.append((folder, os.strerror(exc.errno or 0)))
            continue
        try:
            try:
                names = sorted(os.listdir(fd))
            except OSError as exc:
                if errors is not None:
                    errors.folders.append((folder or ".", os.strerror(exc.errno or 0)))
                continue
            files: dict[str, float] = {}
            subfolders: list[str] = []
            for name in names:
                if name.startswith("."):
                    if temp_files is not None and TEMP_NAME.fullmatch(name):
                        _collect_temp(fd, folder, name, temp_files)
                    continue
                if not folder and name in STORAGE_NAMES:
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue  # vanished meanwhile
                if stat.S_ISDIR(st.st_mode):
                    subfolders.append(f"{folder}/{name}" if folder else name)
                elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    # A symlink is reported (as unreadable) when it has an archive's name.
                    files[name] = st.st_mtime
            for name in files:
                if name.lower().endswith(ARCHIVE_SUFFIX):
                    sidecar = name + SIDECAR_SUFFIX
                    has_sidecar = sidecar in files
                    mtime = max(files[name], files[sidecar]) if has_sidecar else files[name]
                    yield fd, WalkEntry(folder, name, sidecar if has_sidecar else None, mtime)
                elif (
                    name.lower().endswith(ARCHIVE_SUFFIX + SIDECAR_SUFFIX)
                    and name[: -len(SIDECAR_SUFFIX)] not in files
                ):
                    yield fd, WalkEntry(folder, None, name, files[name])
            stack.extend(reversed(subfolders))
        finally:
            os.close(fd)


def _collect_temp(fd: int, folder: str, name: str, temp_files: list[TempFile]) -> None:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return  # vanished meanwhile (published or removed by its writer)
    if stat.S_ISREG(st.st_mode):  # a symlink or folder of that name is not the storage's
        temp_files.append(TempFile(folder, name, st.st_size, st.st_mtime, st.st_dev, st.st_ino))


def open_folder(root_fd: int, parts: Sequence[str]) -> int:
    """Open the folder ``parts`` (one name each; none: the root itself) below ``root_fd`` one
    name at a time, never following a symlink (``O_NOFOLLOW``: ``ELOOP`` on one). The caller
    closes the descriptor.

    Raises:
        OSError: a folder on the way is missing (``ENOENT``), not a folder (``ENOTDIR``), a
            symlink (``ELOOP``), or cannot be opened. Nothing is left open.
    """
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd


def count_archives(root_fd: int) -> int:
    """How many entries :func:`walk_archives` will yield (a first pass for the progress bar)."""
    return sum(1 for _ in walk_archives(root_fd))
