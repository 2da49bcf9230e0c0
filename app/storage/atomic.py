"""Atomic file steps under the storage root: write beside, publish without overwriting, follow no symlink.

The archive store (:mod:`app.storage.store`) and new versions of archives
(:mod:`app.storage.versions`) both write through these steps, all relative to directory file
descriptors opened without following symlinks:

1. :func:`open_under_root` opens the root, then each folder of the relative path in turn:
   ``mkdirat`` when asked to create (``EEXIST`` is fine), ``lstat`` (a symlink is refused),
   ``openat(O_DIRECTORY | O_NOFOLLOW)``; the resolved final folder must be the same inode as,
   and lie under, the resolved root;
2. :func:`publish_new_file` / :func:`replace_file` write the bytes (or copy a file, hashing it
   on the way) to ``.<name>.<random>.tmp`` (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode
   ``0o640``) and ``fsync`` it;
3. :class:`FirstFreeName` publishes it with ``link(tmp, name)``, which fails atomically with
   ``EEXIST`` when the name is taken, in which case the next name of the sequence (``_v2``,
   ``_v3``, ...) is tried; then the temp file is unlinked. Where hard links are unsupported
   (``EPERM``/``ENOTSUP``/``EXDEV``, some CIFS mounts) it falls back to ``lstat`` +
   ``rename``: between the check and the rename another writer could publish the same name,
   which the rename would replace. :func:`replace_file` instead ``rename``-s over its name on
   purpose (a sidecar, or a job's own interrupted publish);
4. :func:`sync_folder` ``fsync``-s a folder (where the file system supports it).

Any failure removes the temp file. Every ``OSError`` becomes :class:`StorageError` with its
``errno`` and a message naming the operation and the path relative to the root.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import StorageError

FILE_MODE = 0o640
"""Permission bits of a stored file (before the umask; CIFS mounts may ignore them)."""

FOLDER_MODE = 0o750
"""Permission bits of a folder created under the root."""

COPY_CHUNK_BYTES = 1 << 20
"""Chunk size in which :func:`copy_file` copies (and hashes) a file, and :func:`hash_file` reads."""

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""``open`` flags of a folder under the root (no symlink followed)."""

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
"""``open`` flags of a file read under the root (no symlink followed)."""

TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")
"""The names :func:`create_temp` gives, ``.<name>.<16 lowercase hex>.tmp`` (match with
``fullmatch``): what a write killed before its publish (``kill -9``, OOM, power loss) leaves
behind. The audit reports (and on request removes) old ones (:mod:`app.audit.temp_files`)."""

_TMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS})
# fsync on a directory is not supported everywhere (some network/FUSE file systems).
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def describe(exc: OSError) -> str:
    """``"Permission denied (EACCES)"`` for an ``OSError``."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"


def storage_error(operation: str, relative: str, exc: OSError) -> StorageError:
    """``StorageError("cannot <operation> '<relative>': <describe(exc)>")`` with ``exc``'s ``errno``."""
    return StorageError(f"cannot {operation} '{relative}': {describe(exc)}", errno=exc.errno)


def close_quietly(fd: int) -> None:
    """Close ``fd``, ignoring errors (clean-up paths only)."""
    with contextlib.suppress(OSError):
        os.close(fd)


def _relative(folders: tuple[str, ...], name: str | None = None) -> str:
    parts = folders if name is None else (*folders, name)
    return "/".join(parts) or "."


# -- folders ------------------------------------------------------------------------------


def _make_folder(parent_fd: int, folder: str, here: str) -> bool:
    """``mkdirat``; ``True`` when created, ``False`` when something already has the name."""
    try:
        os.mkdir(folder, FOLDER_MODE, dir_fd=parent_fd)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise storage_error("create folder", here, exc) from exc


def _open_folder(parent_fd: int, folder: str, here: str) -> int:
    """Open the existing folder ``folder`` under ``parent_fd`` without following a symlink."""
    try:
        st = os.lstat(folder, dir_fd=parent_fd)
    except OSError as exc:
        raise storage_error("inspect folder", here, exc) from exc
    if stat.S_ISLNK(st.st_mode):
        raise StorageError(f"refusing to follow symlink '{here}' inside the storage root", errno=errno.ELOOP)
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError(f"cannot create folder '{here}': a file of that name exists", errno=errno.ENOTDIR)
    try:
        # O_NOFOLLOW closes the race between lstat and open (ELOOP on a swapped-in link).
        return os.open(folder, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise storage_error("open folder", here, exc) from exc


def _check_inside_root(root: Path, target_fd: int, folders: tuple[str, ...]) -> None:
    """The resolved folder ``root/folders`` must lie under ``root`` and be ``target_fd``'s inode."""
    here = _relative(folders)
    try:
        resolved = root.joinpath(*folders).resolve(strict=True)
        by_path = os.stat(resolved)
        by_fd = os.fstat(target_fd)
    except OSError as exc:
        raise storage_error("inspect folder", here, exc) from exc
    if not resolved.is_relative_to(root) or (by_path.st_dev, by_path.st_ino) != (by_fd.st_dev, by_fd.st_ino):
        raise StorageError(f"folder '{here}' resolves outside the storage root", errno=errno.ELOOP)


@dataclass(slots=True)
class OpenedFolders:
    """The folders from the root down to a target folder, open; see :func:`open_under_root`.

    Attributes:
        fds: the open folder descriptors, the root's first, the target folder's last.
        grown: ``(folder fd, its path relative to the root)`` of each folder in which a new
            folder was created (to be ``fsync``-ed after the publish), outermost first.
    """

    fds: list[int] = field(default_factory=list)
    grown: list[tuple[int, str]] = field(default_factory=list)

    @property
    def target(self) -> int:
        """The target folder's descriptor."""
        return self.fds[-1]

    def close(self, *, keep_target: bool = False) -> None:
        """Close every descriptor (but the target's with ``keep_target``); idempotent."""
        keep = self.fds[-1:] if keep_target else []
        for fd in self.fds[: len(self.fds) - len(keep)]:
            close_quietly(fd)
        self.fds = keep
        self.grown = []


def open_under_root(root: Path, folders: tuple[str, ...], *, create: bool) -> OpenedFolders:
    """Open ``root/folders`` one folder at a time, never following a symlink (steps in the module docstring).

    Args:
        root: the resolved storage root (the inside-root check compares against it).
        folders: the path below the root, one name per folder (empty: the root itself).
        create: create missing folders (mode :data:`FOLDER_MODE`).

    Returns:
        The open folders; the caller closes them (:meth:`OpenedFolders.close`).

    Raises:
        StorageError: a folder cannot be created, inspected or opened; a symlink on the way
            (``ELOOP``, or ``ENOTDIR`` when swapped in during the call); the folder resolves
            outside the root (``ELOOP``). Nothing is left open.
    """
    opened = OpenedFolders()
    try:
        try:
            opened.fds.append(os.open(root, DIR_FLAGS))
        except OSError as exc:
            raise storage_error("open storage root", str(root), exc) from exc
        for depth, folder in enumerate(folders):
            here = "/".join(folders[: depth + 1])
            if create and _make_folder(opened.target, folder, here):
                opened.grown.append((opened.target, _relative(folders[:depth])))
            opened.fds.append(_open_folder(opened.target, folder, here))
        _check_inside_root(root, opened.target, folders)
    except BaseException:
        opened.close()
        raise
    return opened


def sync_folder(fd: int, here: str) -> None:
    """``fsync`` a folder; file systems that cannot (``EINVAL``, ``ENOTSUP``, ...) are let be.

    Raises:
        StorageError: ``cannot sync folder '<here>'`` for any other error.
    """
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise storage_error("sync folder", here, exc) from exc


# -- files --------------------------------------------------------------------------------


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until all of ``data`` is written (``OSError`` propagates)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def copy_file(fd: int, source: Path) -> tuple[str, int]:
    """Copy ``source`` into ``fd`` in chunks of :data:`COPY_CHUNK_BYTES`; (sha256 hex, size) of the copy.

    Raises:
        StorageError: ``source`` cannot be opened or read (its own message; a write error on
            ``fd`` propagates as ``OSError``).
    """
    digest = hashlib.sha256()
    size = 0
    try:
        reader = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StorageError(f"cannot read the PDF to store: {describe(exc)}", errno=exc.errno) from exc
    with reader:
        buffer = bytearray(COPY_CHUNK_BYTES)
        view = memoryview(buffer)
        while True:
            try:
                count = reader.readinto(buffer)
            except OSError as exc:
                raise StorageError(f"cannot read the PDF to store: {describe(exc)}", errno=exc.errno) from exc
            if not count:
                break
            digest.update(view[:count])
            write_all(fd, view[:count])
            size += count
    return digest.hexdigest(), size


def hash_file(dir_fd: int, name: str, here: str) -> tuple[str, int]:
    """SHA-256 (hex) and size of the file ``name`` in ``dir_fd``, read without following a symlink.

    Raises:
        StorageError: ``cannot read '<here>'`` with the ``errno``.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise storage_error("read", here, exc) from exc
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise storage_error("read", here, exc) from exc
    return digest.hexdigest(), size


def create_temp(
    dir_fd: int, folders: tuple[str, ...], name: str, *, readable: bool = False
) -> tuple[str, int]:
    """Create ``.<name>.<random>.tmp`` in ``dir_fd`` (``O_EXCL | O_NOFOLLOW``, mode :data:`FILE_MODE`).

    Returns:
        (temp file name, its descriptor open for writing — and reading with ``readable``).

    Raises:
        StorageError: ``cannot create temporary file '<path>'`` with the ``errno``.
    """
    tmp_name = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = _TMP_FLAGS | (os.O_RDWR if readable else os.O_WRONLY)
    try:
        return tmp_name, os.open(tmp_name, flags, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        raise storage_error("create temporary file", _relative(folders, tmp_name), exc) from exc


def remove_quietly(dir_fd: int, name: str) -> None:
    """Unlink ``name`` in ``dir_fd``, ignoring errors (a stray temp file is harmless)."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def write_temp(
    dir_fd: int, folders: tuple[str, ...], name: str, data: bytes | Path, *, fsync: bool
) -> tuple[str, str, int]:
    """Write ``data`` (bytes, or the contents of a file) to a new temp file beside ``name`` and close it.

    Returns:
        (temp file name, sha256 hex, size in bytes) of what was written.

    Raises:
        StorageError: the temp file cannot be created or written (``fsync`` and ``close``
            errors included); the source file cannot be read. The temp file is removed.
    """
    tmp_name, fd = create_temp(dir_fd, folders, name)
    tmp_relative = _relative(folders, tmp_name)
    try:
        try:
            if isinstance(data, Path):
                digest, size = copy_file(fd, data)
            else:
                write_all(fd, data)
                digest, size = hashlib.sha256(data).hexdigest(), len(data)
            if os.fstat(fd).st_size != size:
                raise OSError(errno.EIO, "short write")
            if fsync:
                os.fsync(fd)
        except StorageError:  # the source could not be read
            close_quietly(fd)
            raise
        except OSError as exc:
            close_quietly(fd)
            raise storage_error("write", tmp_relative, exc) from exc
        try:
            os.close(fd)  # network file systems may report deferred write errors here
        except OSError as exc:
            raise storage_error("write", tmp_relative, exc) from exc
    except BaseException:
        remove_quietly(dir_fd, tmp_name)
        raise
    return tmp_name, digest, size


class FirstFreeName:
    """Publishes temp files under the first free name of a sequence, never over an existing file.

    Args:
        version_name: ``(name, n)`` → the ``n``-th candidate (``n`` = 1 is ``name`` itself).
        limit: how many candidates are tried before giving up with ``EEXIST``.

    The first refusal of ``link(2)`` (no hard links on this file system) switches this
    instance to check-then-``rename`` for good (see the module docstring).
    """

    def __init__(self, version_name: Callable[[str, int], str], limit: int) -> None:
        self._version_name = version_name
        self._limit = limit
        self.hardlinks = True

    def publish(self, dir_fd: int, folders: tuple[str, ...], tmp_name: str, name: str) -> str:
        """Give the temp file ``tmp_name`` in ``dir_fd`` its first free name; returns that name.

        Raises:
            StorageError: ``cannot publish '<path>'``: the link or rename failed (with its
                ``errno``), or all ``limit`` names are taken (``EEXIST``). The temp file is
                then left for the caller to remove.
        """
        for version in range(1, self._limit + 1):
            candidate = self._version_name(name, version)
            here = _relative(folders, candidate)
            if self.hardlinks:
                try:
                    os.link(tmp_name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise storage_error("publish", here, exc) from exc
                    self.hardlinks = False  # e.g. CIFS without hard-link support
                else:
                    remove_quietly(dir_fd, tmp_name)  # the file is in place under its name
                    return candidate
            # Fallback without hard links: check, then rename. Not atomic against a second
            # writer publishing the same name in between (see the module docstring).
            try:
                os.lstat(candidate, dir_fd=dir_fd)
                continue
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise storage_error("publish", here, exc) from exc
            try:
                os.replace(tmp_name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                raise storage_error("publish", here, exc) from exc
            return candidate
        raise StorageError(
            f"cannot publish '{_relative(folders, name)}': {self._limit} versions exist already",
            errno=errno.EEXIST,
        )


def publish_new_file(
    dir_fd: int,
    folders: tuple[str, ...],
    name: str,
    data: bytes | Path,
    *,
    names: FirstFreeName,
    fsync: bool,
) -> tuple[str, str, int]:
    """Write ``data`` beside ``name`` (:func:`write_temp`) and publish it under the first free name.

    Returns:
        (published name, sha256 hex, size in bytes). The folder is not ``fsync``-ed here.

    Raises:
        StorageError: as :func:`write_temp` and :meth:`FirstFreeName.publish`; the temp file is removed.
    """
    tmp_name, digest, size = write_temp(dir_fd, folders, name, data, fsync=fsync)
    try:
        return names.publish(dir_fd, folders, tmp_name, name), digest, size
    except BaseException:
        remove_quietly(dir_fd, tmp_name)
        raise


def replace_file(
    dir_fd: int, folders: tuple[str, ...], name: str, data: bytes | Path, *, fsync: bool
) -> tuple[str, int]:
    """Write ``data`` beside ``name`` (:func:`write_temp`) and ``rename`` it over ``name`` (a symlink
    there is replaced, not followed). Only for names this writer owns (a sidecar, its own
    interrupted publish).

    Returns:
        (sha256 hex, size in bytes). The folder is not ``fsync``-ed here.

    Raises:
        StorageError: as :func:`write_temp`; ``cannot publish '<path>'`` when the rename fails.
            The temp file is removed.
    """
    tmp_name, digest, size = write_temp(dir_fd, folders, name, data, fsync=fsync)
    try:
        os.replace(tmp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        remove_quietly(dir_fd, tmp_name)
        raise storage_error("publish", _relative(folders, name), exc) from exc
    except BaseException:
        remove_quietly(dir_fd, tmp_name)
        raise
    return digest, size
