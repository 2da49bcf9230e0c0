"""The archive store: writes a PDF atomically under the storage root, never overwriting another run's archive.

Layout and names come from :mod:`app.storage.paths`; the file steps (folders opened
relative to directory file descriptors without following symlinks, temp file, ``fsync``,
publish by ``link()`` under the first free name, folder ``fsync``) from
:mod:`app.storage.atomic`. The write sequence:

1. open (and create) the folders of the relative path under the root;
2. write the bytes to ``.<name>.<random>.tmp`` (mode ``0o640``), ``fsync`` it;
3. publish it under ``name``, or ``<stem>_v2.pdf``, ``_v3``, ... when the name is taken,
   never over an existing file. Where hard links are unsupported (some CIFS mounts) the
   check-then-``rename`` fallback has a window in which another writer's file of the same
   name could be replaced; only two concurrent archive runs of the same ticket in the same
   second can hit it;
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
archive published gets its line in the tamper-evident manifest after its sidecar, which says
so (``"manifest": true``: ``python -m app audit --manifest`` then requires the line); a job that
finds its own finished archive records it only if the line is missing (a crash between the
two).

Any failure removes the temp file. Every ``OSError`` becomes :class:`StorageError` with its
``errno``; whether that is Transient or Permanent is decided by the workflow's classifier.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from app.errors import StorageError
from app.storage.atomic import (
    COPY_CHUNK_BYTES,
    READ_FLAGS,
    FirstFreeName,
    describe,
    hash_file,
    open_under_root,
    publish_new_file,
    replace_file,
    storage_error,
    sync_folder,
)
from app.storage.manifest import ArchiveManifest
from app.storage.paths import (
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_PATH_TEMPLATE,
    build_relative_path,
    validate_path_template,
    versioned_name,
)
from app.workflow.ports import StoredArchive, TicketSnapshot

__all__ = [
    "COPY_CHUNK_BYTES",
    "INCOMPLETE_MTIME_SLACK_SECONDS",
    "MAX_VERSIONS",
    "SIDECAR_MAX_BYTES",
    "SIDECAR_SCHEMA",
    "SIDECAR_SUFFIX",
    "ArchiveStore",
]

MAX_VERSIONS = 1000
"""How many ``_vN`` names are tried before giving up with ``EEXIST``."""

SIDECAR_SUFFIX = ".json"
"""Appended to the PDF's name for its sidecar: ``X.pdf`` → ``X.pdf.json``."""

SIDECAR_SCHEMA = 1
"""``schema`` field of the sidecar; raised when a field changes meaning."""

INCOMPLETE_MTIME_SLACK_SECONDS = 2.0
"""How much older than the job's ``archived_at`` a sidecar-less PDF may look and still be
taken for the job's own interrupted publish (file systems with coarse or skewed times)."""

SIDECAR_MAX_BYTES = 64 << 20
"""Largest sidecar written, and read back (when looking for a job's earlier archive, by
``lta-refresh`` and by the audit). Its ``embedded_files`` list takes ~130 bytes per embedded
original, one or more per article: ~2.5 MB for a ticket of 16,500 articles, so 64 MiB holds
about 500,000 originals. A sidecar over it is refused when written, never written unreadable."""

_NAME_LOCKS = 64


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (PurePosixPath, Path)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
            raise storage_error("open storage root", str(root), exc) from exc
        self._root = resolved
        self._template = path_template
        self._fsync = fsync
        self._max_segment_bytes = max_segment_bytes
        self._names = FirstFreeName(self._versioned_name, MAX_VERSIONS)
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
            raise storage_error("open storage root", str(self._root), exc) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(
                f"cannot open storage root '{self._root}': {describe(OSError(errno.ENOTDIR, ''))}",
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

    def _versioned_name(self, name: str, version: int) -> str:
        return versioned_name(name, version, max_bytes=self._max_segment_bytes)

    def _store_blocking(
        self,
        relative: PurePosixPath,
        data: bytes | Path,
        sidecar: dict[str, Any] | None = None,
        not_before: float | None = None,
    ) -> StoredArchive:
        folders, name = relative.parts[:-1], relative.parts[-1]
        folder_path = "/".join(folders) or "."
        opened = open_under_root(self._root, folders, create=True)
        try:
            target_fd = opened.target
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
                if replace is not None:  # this job's own interrupted publish
                    digest, size = replace_file(target_fd, folders, replace, data, fsync=self._fsync)
                    published = replace
                else:
                    published, digest, size = publish_new_file(
                        target_fd, folders, name, data, names=self._names, fsync=self._fsync
                    )
                if self._fsync:
                    for fd, path in [(target_fd, folder_path), *reversed(opened.grown)]:
                        sync_folder(fd, path)
                stored = StoredArchive(
                    path=self._root.joinpath(*folders, published),
                    relative_path="/".join((*folders, published)),
                    sha256=digest,
                    size=size,
                )
                if sidecar is not None:
                    # The completion mark; a symlink planted at its name is replaced, not followed.
                    replace_file(
                        target_fd,
                        folders,
                        published + SIDECAR_SUFFIX,
                        self._sidecar_bytes(sidecar, stored),
                        fsync=self._fsync,
                    )
                    if self._fsync:
                        sync_folder(target_fd, folder_path)
        finally:
            opened.close()
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
            candidate = self._versioned_name(name, version)
            here = "/".join((*folders, candidate))
            try:
                st = os.lstat(candidate, dir_fd=dir_fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise storage_error("inspect", here, exc) from exc
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink or folder planted at the name is never ours
            recorded = self._read_sidecar(dir_fd, candidate + SIDECAR_SUFFIX, here + SIDECAR_SUFFIX)
            if recorded is None:
                if not_before is not None and st.st_mtime >= not_before - INCOMPLETE_MTIME_SLACK_SECONDS:
                    return candidate  # our publish, interrupted before its completion marker
                continue
            if recorded.get("job_id") != job_id:
                continue
            digest, size = hash_file(dir_fd, candidate, here)
            if digest != recorded.get("sha256") or size != recorded.get("size"):
                continue  # not the file the sidecar describes: leave it alone
            return StoredArchive(
                path=self._root.joinpath(*folders, candidate),
                relative_path=here,
                sha256=digest,
                size=size,
                already_stored=True,
            )
        return None

    @staticmethod
    def _read_sidecar(dir_fd: int, sidecar_name: str, here: str) -> dict[str, Any] | None:
        """The parsed sidecar, ``None`` when there is none, ``{}`` when it cannot be used
        (a symlink, not JSON, too large)."""
        try:
            fd = os.open(sidecar_name, READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return {}
            raise storage_error("read", here, exc) from exc
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(SIDECAR_MAX_BYTES + 1)
        except OSError as exc:
            raise storage_error("read", here, exc) from exc
        try:
            parsed = json.loads(raw) if len(raw) <= SIDECAR_MAX_BYTES else None
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {}

    def _sidecar_bytes(self, sidecar: dict[str, Any], stored: StoredArchive) -> bytes:
        content = {
            **sidecar,
            "schema": SIDECAR_SCHEMA,
            "path": stored.relative_path,
            "sha256": stored.sha256,
            "size": stored.size,
            "path_template": self._template,
        }
        if self._manifest is not None:
            # The archive is entered in the manifest right after this: the audit then requires
            # its line, whatever its date (a removed or restarted manifest shows).
            content["manifest"] = True
        try:
            text = json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"cannot write the sidecar of '{stored.relative_path}': {exc}") from exc
        data = (text + "\n").encode("utf-8")
        if len(data) > SIDECAR_MAX_BYTES:  # it could not be read back: the archive would look foreign
            raise StorageError(
                f"cannot write the sidecar of '{stored.relative_path}': {len(data)} bytes, over the "
                f"{SIDECAR_MAX_BYTES} bytes it may have"
            )
        return data
