"""The archive store: writes a PDF atomically under the storage root, never overwriting another run's archive.

Layout and names come from :mod:`app.storage.paths`. The write sequence (all relative to
directory file descriptors opened without following symlinks):

1. open the root, then each folder of the relative path in turn: ``mkdirat`` (``EEXIST``
   is fine), ``lstat`` (a symlink is refused), ``openat(O_DIRECTORY | O_NOFOLLOW)``;
   the resolved final folder must be the same inode as, and lie under, the resolved root;
2. write the bytes to ``.<name>.<random>.tmp`` (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode
   ``0o640``), ``fsync`` it;
3. publish it with ``link(tmp, name)``, which fails atomically with ``EEXIST`` when the
   name is taken, in which case ``<stem>_v2.pdf``, ``_v3``, ... are tried; then unlink
   the temp file. Where hard links are unsupported (``EPERM``/``ENOTSUP``/``EXDEV``, some
   CIFS mounts) it falls back to ``lstat`` + ``rename``: between the check and the rename
   another writer could publish the same name, which the rename would replace. Only two
   concurrent archive runs of the same ticket in the same second can hit that window;
4. ``fsync`` the target folder (and every folder a new folder was created in);
5. with a ``sidecar`` mapping: write ``<published name>.json`` (e.g. ``Ticket-1_v2.pdf.json``)
   the same way (temp file, ``fsync``, ``os.replace``, folder ``fsync``). It is the
   completion marker: a PDF without its sidecar is an interrupted publish. Its name follows
   from the PDF's, which no other run can hold, so the replace never overwrites another
   run's sidecar.

**One archive per job.** A job that was killed after publishing and runs again (the job
store resumes it) writes to the same target name, because its ``archived_at`` is fixed at
its first start. When the ``sidecar`` mapping carries a ``job_id``, the names ``name``,
``<stem>_v2``, ... are looked at in order, before anything is written, up to the first free
one:

* a regular file whose sidecar names **this** ``job_id`` (and whose SHA-256 matches the
  sidecar's) is this job's finished archive: it is returned as it is, nothing is written;
* a regular file **without** a sidecar, last modified no earlier than the job's
  ``archived_at`` (less :data:`INCOMPLETE_MTIME_SLACK_SECONDS`), is taken for this job's own
  publish that was interrupted before its completion marker: it is replaced atomically
  (temp file, ``fsync``, ``os.replace`` over the name) and then gets its sidecar. This is
  the only case in which the store replaces a file. It is safe because within one process
  the publish and the sidecar of one name run under one lock (no other run's half-done
  publish is visible), one ticket has one job at a time, and the default template puts the
  ticket number and the archive second in the name; a sidecar-less file older than the job
  (e.g. written by a version of the service without sidecars) is never replaced;
* anything else (another job's sidecar, a symlink, an unreadable sidecar, a PDF that does
  not match its sidecar) is another run's and is left alone.

Without a ``job_id`` (or without a sidecar) every call publishes a new file.

**Manifest.** With a ``manifest`` (:class:`app.storage.manifest.ArchiveManifest`), every
archive published gets its line in the tamper-evident manifest after its sidecar; a job that
finds its own finished archive records it only if the line is missing (a crash between the
two).

Any failure removes the temp file. Every ``OSError`` becomes :class:`StorageError` with its
``errno``; whether that is Transient or Permanent is decided by the workflow's classifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from app.errors import StorageError
from app.storage.manifest import ArchiveManifest
from app.storage.paths import (
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_PATH_TEMPLATE,
    build_relative_path,
    validate_path_template,
    versioned_name,
)
from app.workflow.ports import StoredArchive, TicketSnapshot

FILE_MODE = 0o640
"""Permission bits of a stored archive (before the umask; CIFS mounts may ignore them)."""

FOLDER_MODE = 0o750
"""Permission bits of a folder the store creates."""

MAX_VERSIONS = 1000
"""How many ``_vN`` names are tried before giving up with ``EEXIST``."""

_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS})
# fsync on a directory is not supported everywhere (some network/FUSE file systems).
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

SIDECAR_SUFFIX = ".json"
"""Appended to the PDF's name for its sidecar: ``X.pdf`` → ``X.pdf.json``."""

SIDECAR_SCHEMA = 1
"""``schema`` field of the sidecar; raised when a field changes meaning."""

INCOMPLETE_MTIME_SLACK_SECONDS = 2.0
"""How much older than the job's ``archived_at`` a sidecar-less PDF may look and still be
taken for the job's own interrupted publish (file systems with coarse or skewed times)."""

SIDECAR_MAX_BYTES = 1 << 20
"""Largest sidecar read back when looking for a job's earlier archive."""

COPY_CHUNK_BYTES = 1 << 20
"""Chunk size in which :meth:`ArchiveStore.store_file` copies (and hashes) a PDF."""

_NAME_LOCKS = 64
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _describe(exc: OSError) -> str:
    """``"Permission denied (EACCES)"`` for an ``OSError``."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"


def _storage_error(operation: str, relative: str, exc: OSError) -> StorageError:
    return StorageError(f"cannot {operation} '{relative}': {_describe(exc)}", errno=exc.errno)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (PurePosixPath, Path)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class ArchiveStore:
    """Stores archive PDFs under a storage root; implements :class:`app.workflow.ports.StoragePort`.

    Args:
        root: the storage root (local folder or a mounted CIFS/SMB share); must exist and be
            a directory. It is resolved once, here (a symlinked root is therefore allowed);
            symlinks *inside* the root are never followed.
        path_template: where a ticket's archive goes, see :mod:`app.storage.paths`.
        fsync: ``fsync`` the file and its folder before reporting success (durability
            across power loss; turn off only for tests or throw-away roots).
        max_segment_bytes: upper bound of each path segment in UTF-8 bytes.
        manifest: where every archive written is recorded (``None``: no manifest).

    Raises:
        ValueError: invalid ``path_template`` (message names the placeholder).
        StorageError: the root does not exist, cannot be reached or is not a directory.
    """

    def __init__(
        self,
        root: Path,
        *,
        path_template: str = DEFAULT_PATH_TEMPLATE,
        fsync: bool = True,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        manifest: ArchiveManifest | None = None,
    ) -> None:
        validate_path_template(path_template)
        try:
            resolved = Path(root).resolve(strict=True)
        except OSError as exc:
            raise _storage_error("open storage root", str(root), exc) from exc
        self._root = resolved
        self._template = path_template
        self._fsync = fsync
        self._max_segment_bytes = max_segment_bytes
        self._hardlinks = True
        self._manifest = manifest
        # Publish + sidecar of one target name never interleave within this process.
        self._name_locks = [threading.Lock() for _ in range(_NAME_LOCKS)]
        self.check()

    @property
    def root(self) -> Path:
        """The resolved storage root."""
        return self._root

    def check(self) -> None:
        """Check that the root is (still) a reachable directory, e.g. for a readiness probe.

        Raises:
            StorageError: ``ENOENT``/``ENOTDIR``/``EACCES``/... (a share that went away
                typically gives ``ENOENT``, ``EIO`` or ``EHOSTDOWN``).
        """
        try:
            st = os.stat(self._root)
        except OSError as exc:
            raise _storage_error("open storage root", str(self._root), exc) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(
                f"cannot open storage root '{self._root}': {_describe(OSError(errno.ENOTDIR, ''))}",
                errno=errno.ENOTDIR,
            )

    def relative_path(self, snapshot: TicketSnapshot) -> PurePosixPath:
        """Where ``snapshot`` goes before any ``_vN`` suffix, relative to the root."""
        return build_relative_path(
            self._template, snapshot.ticket, snapshot.archived_at, max_segment_bytes=self._max_segment_bytes
        )

    async def store(
        self, snapshot: TicketSnapshot, data: bytes, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive:
        """Write ``data`` as the archive of ``snapshot``; never overwrites an earlier archive.

        With ``sidecar``, ``<file>.pdf.json`` is written after the PDF (see the module
        docstring): the mapping (JSON-serialisable; ``datetime`` values as ISO 8601) plus
        ``schema``, ``path`` (relative to the root), ``sha256``, ``size`` and
        ``path_template``, which override same-named keys of the mapping.

        With a ``job_id`` in ``sidecar`` the call is idempotent per job: the job's finished
        archive is returned instead of writing a second one, and its interrupted publish
        (a PDF without sidecar) is replaced (see the module docstring).

        The blocking work runs in a worker thread. If the awaiting task is cancelled the
        thread still finishes, so the file may be published anyway.

        Returns:
            :class:`StoredArchive` with the absolute path, the ``/``-separated path relative
            to the root (possibly with a ``_vN`` suffix), the SHA-256 (hex) and size in
            bytes of ``data`` — or of the job's earlier archive when that is returned.

        Raises:
            StorageError: any file-system failure, with its ``errno`` and a message naming
                the operation and relative path, e.g. ``cannot create folder
                'Kundenservice/2025': Permission denied (EACCES)``; a symlink inside the
                root gives ``ELOOP`` (``ENOTDIR`` if it was swapped in during the call).
            ValueError: ``snapshot.archived_at`` is naive.
        """
        relative = self.relative_path(snapshot)
        return await asyncio.to_thread(
            self._store_blocking,
            relative,
            bytes(data),
            dict(sidecar) if sidecar is not None else None,
            snapshot.archived_at.timestamp(),
        )

    async def store_file(
        self, snapshot: TicketSnapshot, source: Path, *, sidecar: Mapping[str, Any] | None = None
    ) -> StoredArchive:
        """As :meth:`store`, with the archive's bytes read from the file ``source`` in chunks of
        :data:`COPY_CHUNK_BYTES` (hashed while copied), so a big PDF is never held whole in
        memory. ``source`` is left as it is.

        Raises:
            StorageError: as :meth:`store`; also when ``source`` cannot be read (the message
                says so, with its ``errno``).
            ValueError: ``snapshot.archived_at`` is naive.
        """
        relative = self.relative_path(snapshot)
        return await asyncio.to_thread(
            self._store_blocking,
            relative,
            Path(source),
            dict(sidecar) if sidecar is not None else None,
            snapshot.archived_at.timestamp(),
        )

    # -- blocking part -------------------------------------------------------------------

    def _store_blocking(
        self,
        relative: PurePosixPath,
        data: bytes | Path,
        sidecar: dict[str, Any] | None = None,
        not_before: float | None = None,
    ) -> StoredArchive:
        folders, name = relative.parts[:-1], relative.parts[-1]
        opened: list[int] = []
        try:
            try:
                opened.append(os.open(self._root, _DIR_FLAGS))
            except OSError as exc:
                raise _storage_error("open storage root", str(self._root), exc) from exc
            grown: list[tuple[int, str]] = []  # (folder fd, its relative path) that got a new entry
            for depth, folder in enumerate(folders):
                here = "/".join(folders[: depth + 1])
                if self._make_folder(opened[-1], folder, here):
                    grown.append((opened[-1], "/".join(folders[:depth]) or "."))
                opened.append(self._open_folder(opened[-1], folder, here))
            target_fd = opened[-1]
            self._check_inside_root(target_fd, folders)
            job_id = sidecar.get("job_id") if sidecar is not None else None
            lock = self._name_locks[zlib.crc32(str(relative).encode()) % _NAME_LOCKS]
            with lock:
                replace = None
                if job_id is not None:
                    found = self._find_job_archive(target_fd, folders, name, str(job_id), not_before)
                    if isinstance(found, StoredArchive):
                        if self._manifest is not None:
                            self._manifest.record_archive(found, sidecar, resumed=True)
                        return found  # this job's archive is complete: nothing to write
                    replace = found
                published, digest, size = self._write_and_publish(
                    target_fd, folders, name, data, replace=replace
                )
                if self._fsync:
                    for fd, here in [(target_fd, "/".join(folders) or "."), *reversed(grown)]:
                        self._sync_folder(fd, here)
                stored = StoredArchive(
                    path=self._root.joinpath(*folders, published),
                    relative_path="/".join((*folders, published)),
                    sha256=digest,
                    size=size,
                )
                if sidecar is not None:
                    self._write_sidecar(target_fd, folders, published, self._sidecar_bytes(sidecar, stored))
                    if self._fsync:
                        self._sync_folder(target_fd, "/".join(folders) or ".")
        finally:
            for fd in opened:
                _close_quietly(fd)
        if self._manifest is not None:
            self._manifest.record_archive(stored, sidecar)
        return stored

    def _find_job_archive(
        self, dir_fd: int, folders: tuple[str, ...], name: str, job_id: str, not_before: float | None
    ) -> StoredArchive | str | None:
        """Look for ``job_id``'s earlier archive among ``name``, ``<stem>_v2``, ... up to the
        first free name: its :class:`StoredArchive` when complete, the name of its
        interrupted publish (no sidecar) to replace, or ``None`` (see the module docstring)."""
        for version in range(1, MAX_VERSIONS + 1):
            candidate = versioned_name(name, version, max_bytes=self._max_segment_bytes)
            here = "/".join((*folders, candidate))
            try:
                st = os.lstat(candidate, dir_fd=dir_fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise _storage_error("inspect", here, exc) from exc
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink or folder planted at the name is never ours
            recorded = self._read_sidecar(dir_fd, candidate + SIDECAR_SUFFIX, here + SIDECAR_SUFFIX)
            if recorded is None:
                if not_before is not None and st.st_mtime >= not_before - INCOMPLETE_MTIME_SLACK_SECONDS:
                    return candidate  # our publish, interrupted before its completion marker
                continue
            if recorded.get("job_id") != job_id:
                continue
            digest, size = self._digest(dir_fd, candidate, here)
            if digest != recorded.get("sha256") or size != recorded.get("size"):
                continue  # not the file the sidecar describes: leave it alone
            return StoredArchive(
                path=self._root.joinpath(*folders, candidate), relative_path=here, sha256=digest, size=size
            )
        return None

    @staticmethod
    def _read_sidecar(dir_fd: int, sidecar_name: str, here: str) -> dict[str, Any] | None:
        """The parsed sidecar, ``None`` when there is none, ``{}`` when it cannot be used
        (a symlink, not JSON, too large)."""
        try:
            fd = os.open(sidecar_name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return {}
            raise _storage_error("read", here, exc) from exc
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(SIDECAR_MAX_BYTES + 1)
        except OSError as exc:
            raise _storage_error("read", here, exc) from exc
        try:
            parsed = json.loads(raw) if len(raw) <= SIDECAR_MAX_BYTES else None
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {}

    @staticmethod
    def _digest(dir_fd: int, name: str, here: str) -> tuple[str, int]:
        """SHA-256 (hex) and size of a file in ``dir_fd``, read without following a symlink."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _storage_error("read", here, exc) from exc
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise _storage_error("read", here, exc) from exc
        return digest.hexdigest(), size

    def _sidecar_bytes(self, sidecar: dict[str, Any], stored: StoredArchive) -> bytes:
        content = {
            **sidecar,
            "schema": SIDECAR_SCHEMA,
            "path": stored.relative_path,
            "sha256": stored.sha256,
            "size": stored.size,
            "path_template": self._template,
        }
        try:
            text = json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"cannot write the sidecar of '{stored.relative_path}': {exc}") from exc
        return (text + "\n").encode("utf-8")

    def _write_sidecar(self, dir_fd: int, folders: tuple[str, ...], pdf_name: str, payload: bytes) -> None:
        """Write ``<pdf_name>.json`` atomically next to the PDF (temp file, fsync, ``os.replace``;
        a symlink planted at the name is replaced, not followed)."""
        name = pdf_name + SIDECAR_SUFFIX
        self._write_and_publish(dir_fd, folders, name, payload, replace=name)

    def _make_folder(self, parent_fd: int, folder: str, here: str) -> bool:
        """``mkdirat``; ``True`` when created, ``False`` when something already has the name."""
        try:
            os.mkdir(folder, FOLDER_MODE, dir_fd=parent_fd)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise _storage_error("create folder", here, exc) from exc

    def _open_folder(self, parent_fd: int, folder: str, here: str) -> int:
        """Open an existing folder under ``parent_fd`` without following a symlink."""
        try:
            st = os.lstat(folder, dir_fd=parent_fd)
        except OSError as exc:
            raise _storage_error("inspect folder", here, exc) from exc
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(
                f"refusing to follow symlink '{here}' inside the storage root", errno=errno.ELOOP
            )
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(
                f"cannot create folder '{here}': a file of that name exists", errno=errno.ENOTDIR
            )
        try:
            # O_NOFOLLOW closes the race between lstat and open (ELOOP on a swapped-in link).
            return os.open(folder, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            raise _storage_error("open folder", here, exc) from exc

    def _check_inside_root(self, target_fd: int, folders: tuple[str, ...]) -> None:
        """The resolved target folder must be under the resolved root and be the opened inode."""
        here = "/".join(folders) or "."
        try:
            resolved = self._root.joinpath(*folders).resolve(strict=True)
            by_path = os.stat(resolved)
            by_fd = os.fstat(target_fd)
        except OSError as exc:
            raise _storage_error("inspect folder", here, exc) from exc
        if not resolved.is_relative_to(self._root) or (by_path.st_dev, by_path.st_ino) != (
            by_fd.st_dev,
            by_fd.st_ino,
        ):
            raise StorageError(f"folder '{here}' resolves outside the storage root", errno=errno.ELOOP)

    def _write_and_publish(
        self,
        dir_fd: int,
        folders: tuple[str, ...],
        name: str,
        data: bytes | Path,
        *,
        replace: str | None = None,
    ) -> tuple[str, str, int]:
        """Write ``data`` (bytes, or the contents of a file) to a temp file in ``dir_fd`` and
        publish it — under the first free name, or over ``replace`` (an interrupted publish of
        the same job); returns (final name, sha256 hex, size in bytes)."""
        tmp_name = f".{name}.{secrets.token_hex(8)}.tmp"
        tmp_relative = "/".join((*folders, tmp_name))
        try:
            fd = os.open(tmp_name, _TMP_FLAGS, FILE_MODE, dir_fd=dir_fd)
        except OSError as exc:
            raise _storage_error("create temporary file", tmp_relative, exc) from exc
        published = False
        try:
            try:
                if isinstance(data, Path):
                    digest, size = self._copy_file(fd, data)
                else:
                    self._write_all(fd, data)
                    digest, size = hashlib.sha256(data).hexdigest(), len(data)
                if os.fstat(fd).st_size != size:
                    raise OSError(errno.EIO, "short write")
                if self._fsync:
                    os.fsync(fd)
            except StorageError:  # the source could not be read
                _close_quietly(fd)
                raise
            except OSError as exc:
                _close_quietly(fd)
                raise _storage_error("write", tmp_relative, exc) from exc
            try:
                os.close(fd)  # network file systems may report deferred write errors here
            except OSError as exc:
                raise _storage_error("write", tmp_relative, exc) from exc
            if replace is not None:
                try:
                    os.replace(tmp_name, replace, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except OSError as exc:
                    raise _storage_error("publish", "/".join((*folders, replace)), exc) from exc
                final = replace
            else:
                final = self._publish(dir_fd, folders, tmp_name, name)
            published = True
            return final, digest, size
        finally:
            if not published:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name, dir_fd=dir_fd)

    @staticmethod
    def _copy_file(fd: int, source: Path) -> tuple[str, int]:
        """Copy ``source`` into ``fd`` in chunks; (sha256 hex, size) of what was copied.

        Raises:
            StorageError: ``source`` cannot be opened or read (its own message; a write
                error on ``fd`` propagates as ``OSError``).
        """
        digest = hashlib.sha256()
        size = 0
        try:
            reader = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StorageError(f"cannot read the PDF to store: {_describe(exc)}", errno=exc.errno) from exc
        with reader:
            buffer = bytearray(COPY_CHUNK_BYTES)
            view = memoryview(buffer)
            while True:
                try:
                    count = reader.readinto(buffer)
                except OSError as exc:
                    raise StorageError(
                        f"cannot read the PDF to store: {_describe(exc)}", errno=exc.errno
                    ) from exc
                if not count:
                    break
                digest.update(view[:count])
                ArchiveStore._write_all(fd, view[:count])
                size += count
        return digest.hexdigest(), size

    @staticmethod
    def _write_all(fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _publish(self, dir_fd: int, folders: tuple[str, ...], tmp_name: str, name: str) -> str:
        """Give the temp file its first free name (``name``, ``<stem>_v2.<ext>``, ...)."""
        for version in range(1, MAX_VERSIONS + 1):
            candidate = versioned_name(name, version, max_bytes=self._max_segment_bytes)
            here = "/".join((*folders, candidate))
            if self._hardlinks:
                try:
                    os.link(tmp_name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise _storage_error("publish", here, exc) from exc
                    self._hardlinks = False  # e.g. CIFS without hard-link support
                else:
                    with contextlib.suppress(
                        OSError
                    ):  # a stray temp file is harmless; the archive is in place
                        os.unlink(tmp_name, dir_fd=dir_fd)
                    return candidate
            # Fallback without hard links: check, then rename. Not atomic against a second
            # writer publishing the same name in between (see the module docstring).
            try:
                os.lstat(candidate, dir_fd=dir_fd)
                continue
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _storage_error("publish", here, exc) from exc
            try:
                os.replace(tmp_name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                raise _storage_error("publish", here, exc) from exc
            return candidate
        raise StorageError(
            f"cannot publish '{'/'.join((*folders, name))}': {MAX_VERSIONS} versions exist already",
            errno=errno.EEXIST,
        )

    def _sync_folder(self, fd: int, here: str) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
                raise _storage_error("sync folder", here, exc) from exc
