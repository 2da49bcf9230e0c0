"""The tamper-evident manifest: one JSON line per archive written, each carrying the hash of the line before.

Files, under ``STORAGE_ROOT/_manifest/``:

* ``YYYY-MM-DD.jsonl`` — the day's lines (UTF-8, ``\\n``-terminated), one per archive or
  archive version published that day (UTC);
* ``YYYY-MM-DD.jsonl.tsr`` — an RFC 3161 ``TimeStampResp`` over the hash of the day's last
  line, once the day is closed and a TSA is configured
  (:mod:`app.storage.manifest_timestamp`);
* ``.lock`` — the writers' lock (:mod:`app.storage.share_lock`).

A line is a JSON object with sorted keys and no spaces, e.g.::

    {"event":"archived","job_id":"j-1","path":"Kundenservice/2025/Ticket-25004711_20250306T132005Z.pdf",
     "prev":"9f2c…","schema":1,"seq":3,"sha256":"5d41…","size":48213,"ticket_id":4711,
     "ticket_number":"25004711","time":"2026-12-07T05:20:01.123Z"}

``prev`` is the SHA-256 (hex) of the previous line's bytes without its ``\\n`` — the previous
line of the same day, or the last line of the newest earlier day for a day's first line, or
:data:`GENESIS` for the very first line. ``seq`` counts the day's lines from 1. Changing,
removing, inserting or reordering any line, or removing a day file, therefore breaks the
chain at the next line; the day's last hash is fixed by its timestamp.

**Writers.** Every append runs under the share lock, reads the tail of the newest day file
(explicit offsets, not ``O_APPEND``: the Linux CIFS client emulates ``O_APPEND`` from its own
idea of the file's size), writes one line with one ``pwrite`` and ``fsync``\\s it. A line left
incomplete by a writer that crashed mid-write (no ``\\n`` at the end) is cut off by the next
writer (it was never part of the chain) and logged; its bytes are kept in a hidden file beside
the day file, ``.<day file>.cut-<Unix ms>``. Writers never append to a day older than
the newest day file (a replica whose clock is behind appends to the newest day) nor to a day
that has its ``.tsr`` already (it starts the next day).

**A new chain** (a first line with ``prev`` :data:`GENESIS`) over a root that holds archives
whose sidecars say ``"manifest": true`` (the archive store writes that) means the manifest
they were entered in is gone: the writer logs an error (:meth:`ArchiveManifest.record`).

**What it relies on** (see ``docs/06-runbook.md``): atomic exclusive create (the lock), and
close-to-open consistency — a file opened after another host closed it shows that host's
writes (NFS; CIFS with ``cache=strict``, as ``scripts/ops/mount-cifs.sh`` mounts).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from app.errors import StorageError
from app.storage.manifest_format import (
    EVENT_ARCHIVED,
    GENESIS,
    LINE_SCHEMA,
    LOCK_NAME,
    MANIFEST_FOLDER,
    ManifestEntry,
    ManifestLine,
    day_file_name,
    iter_lines,
    line_hash,
    line_seq,
    manifest_days,
    timestamp_file_name,
)
from app.storage.share_lock import DEFAULT_STALE_AFTER_SECONDS, DEFAULT_TIMEOUT_SECONDS, ShareLock
from app.workflow.ports import StoredArchive

log = logging.getLogger("app.storage")

_TAIL_CHUNK = 8192
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ArchiveManifest:
    """Appends archives to the daily manifest under ``root/_manifest`` (see the module docstring).

    Thread-safe; the methods block (call them from a worker thread in async code, as the
    archive store does). Several processes and hosts may append to the same manifest.

    Args:
        root: the storage root (resolved, an existing folder).
        fsync: ``fsync`` each line and a new day file's folder (``STORAGE_FSYNC``).
        clock: the current time, timezone-aware (for tests).
        on_day_closed: called with the closed day after a writer started the day after it
            (the service then asks the TSA for a timestamp over that day's last line); called
            outside the lock, from the writing thread; exceptions are logged, not raised.
        lock_stale_after, lock_timeout: see :class:`~app.storage.share_lock.ShareLock`.

    How to record (the archive store does it for every archive it writes; ``lta-refresh``
    does it for every new version)::

        manifest.record(ManifestEntry.from_archive(stored, sidecar, event=EVENT_LTA_REFRESH,
                                                   source_path=old.relative_path))
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        on_day_closed: Callable[[date], None] | None = None,
        lock_stale_after: float = DEFAULT_STALE_AFTER_SECONDS,
        lock_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.root = Path(root)
        self.folder = self.root / MANIFEST_FOLDER
        self._fsync = fsync
        self._clock = clock
        self.on_day_closed = on_day_closed
        self._lock = ShareLock(self.folder / LOCK_NAME, stale_after=lock_stale_after, timeout=lock_timeout)
        self._thread_lock = threading.Lock()
        self.chain_check: threading.Thread | None = None
        """The check run after this writer started a new chain (a daemon thread), if any."""

    def record(self, entry: ManifestEntry) -> ManifestLine:
        """Append one line for ``entry``; returns it once it is written (and ``fsync``\\ed).

        Raises:
            StorageError: the folder, lock or day file cannot be created, read or written
                (with its ``errno``; a lock held too long gives ``ETIMEDOUT``, Transient).
        """
        closed: date | None = None
        with self._thread_lock:
            self._make_folder()
            with self._lock:
                line, closed = self._append(entry)
        if line.seq == 1 and json.loads(line.raw)["prev"] == GENESIS:
            # A walk of the root: in the background, so the archive being recorded does not wait.
            self.chain_check = threading.Thread(
                target=self._check_new_chain, args=(entry.path,), name="manifest-chain-check", daemon=True
            )
            self.chain_check.start()
        if closed is not None and self.on_day_closed is not None:
            try:
                self.on_day_closed(closed)
            except Exception:  # a hook must not fail the archive that was recorded
                log.exception("manifest day-closed hook failed", extra={"day": closed.isoformat()})
        return line

    def record_archive(
        self,
        stored: StoredArchive,
        sidecar: Mapping[str, Any] | None = None,
        *,
        event: str = EVENT_ARCHIVED,
        source_path: str | None = None,
        resumed: bool = False,
    ) -> ManifestLine:
        """Record a stored archive (the archive store's hook; ``lta-refresh`` may call it too).

        With ``resumed=True`` (a job that found its own finished archive when it ran again)
        the archive is recorded only if no line for the same path and SHA-256 exists since
        the day before the sidecar's ``archived_at`` (a crash between the sidecar and the
        manifest line is made good; nothing is recorded twice).

        Raises:
            StorageError: as :meth:`record`.
        """
        entry = ManifestEntry.from_archive(stored, sidecar, event=event, source_path=source_path)
        if resumed:
            found = self.find(entry.path, entry.sha256, since=self._since(sidecar))
            if found is not None:
                return found
        return self.record(entry)

    def find(self, path: str, sha256: str, *, since: date | None = None) -> ManifestLine | None:
        """The newest line recording ``path`` with ``sha256`` in the days from ``since`` on
        (all days when ``None``), or ``None``. Reads those day files whole; meant for the
        rare resumed job, not for every archive.

        Raises:
            StorageError: a day file cannot be read.
        """
        try:
            days = [d for d in manifest_days(self.folder) if since is None or d >= since]
            for day in reversed(days):
                found = None
                for seq, (raw, complete) in enumerate(iter_lines(self.folder / day_file_name(day)), 1):
                    if not complete:
                        break
                    try:
                        fields = json.loads(raw)
                    except (ValueError, RecursionError):  # nested too deep for json: no line of ours
                        continue
                    if (
                        isinstance(fields, dict)
                        and fields.get("path") == path
                        and fields.get("sha256") == sha256
                    ):
                        found = ManifestLine(day, seq, raw, line_hash(raw))
                if found is not None:
                    return found
        except OSError as exc:
            raise _error("read", exc) from exc
        return None

    # -- internals ------------------------------------------------------------------------

    def _check_new_chain(self, recorded: str) -> None:
        """After a line started a new chain: log an error when the root holds an archive whose
        sidecar says it was entered in a manifest (``"manifest": true``) and that is older
        than :data:`NEW_CHAIN_SLACK_SECONDS` — the manifest it was entered in has been
        removed, moved aside or cut off. Walks the root (hidden names and the top-level
        ``_manifest`` skipped, no symlinks followed) up to the first such sidecar, in a thread
        of its own (:attr:`chain_check`), once per new chain; on a root without such sidecars
        (a first start, archives from before the manifest) it reads every sidecar. Never raises."""
        before = time.time() - NEW_CHAIN_SLACK_SECONDS  # file times: the file system's clock
        try:
            found = _entered_archive(self.root, before, skip=recorded + ".json")
        except OSError as exc:
            log.warning(
                "manifest: cannot look for archives entered before the new chain", extra={"cause": str(exc)}
            )
            return
        if found is not None:
            log.error(
                "manifest: a new chain was started although archives under the storage root were "
                "entered in a manifest that is gone (removed, moved aside or cut off): stop archiving "
                "and restore it (runbook 6.13)",
                extra={"archive": found},
            )

    @staticmethod
    def _since(sidecar: Mapping[str, Any] | None) -> date | None:
        archived_at = (sidecar or {}).get("archived_at")
        try:
            moment = datetime.fromisoformat(str(archived_at)) if archived_at else None
        except ValueError:
            return None
        if moment is None:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).date() - timedelta(days=1)

    def _make_folder(self) -> None:
        try:
            os.mkdir(self.folder, 0o750)
        except FileExistsError:
            return
        except OSError as exc:
            raise _error("create folder", exc) from exc
        self._sync_folder(self.root)

    def _append(self, entry: ManifestEntry) -> tuple[ManifestLine, date | None]:
        """Under the lock: pick the day, read the chain's head, write the line."""
        now = self._clock().astimezone(UTC)
        try:
            day, prev_line, prev_seq, closed = self._head(now.date())
            name = day_file_name(day)
            fields: dict[str, Any] = {
                "event": entry.event,
                "job_id": entry.job_id,
                "path": entry.path,
                "prev": line_hash(prev_line) if prev_line is not None else GENESIS,
                "schema": LINE_SCHEMA,
                "seq": prev_seq + 1,
                "sha256": entry.sha256,
                "size": entry.size,
                "ticket_id": entry.ticket_id,
                "ticket_number": entry.ticket_number,
                "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if entry.source_path is not None:
                fields["source_path"] = entry.source_path
            raw = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(
                "utf-8"
            )
            if b"\n" in raw:  # json.dumps escapes control characters; kept as a guard
                raise ValueError("manifest line contains a newline")
            self._write_line(name, raw, new_file=prev_seq == 0)
        except OSError as exc:
            raise _error("write", exc) from exc
        return ManifestLine(day, prev_seq + 1, raw, line_hash(raw)), closed

    def _head(self, today: date) -> tuple[date, bytes | None, int, date | None]:
        """The day to append to, the line the new one chains to, that day's last ``seq``
        (0 for a new day file) and the day this append closes (or ``None``)."""
        if self._exists(day_file_name(today)) and not self._exists(day_file_name(today + timedelta(days=1))):
            newest: date | None = today
        else:
            days = manifest_days(self.folder)
            newest = days[-1] if days else None
        if newest is None:
            return today, None, 0, None
        if newest >= today and not self._exists(timestamp_file_name(newest)):
            last, seq = self._last_line(day_file_name(newest))
            if last is not None:
                return newest, last, seq, None
            return newest, self._chain_end(newest), 0, None  # an empty day file (a crash after creating it)
        # The newest day is over (or already timestamped): start the next day.
        day = max(today, newest + timedelta(days=1))
        last, _ = self._last_line(day_file_name(newest))
        return day, last if last is not None else self._chain_end(newest), 0, newest

    def _chain_end(self, before: date) -> bytes | None:
        """The last complete line of the newest non-empty day before ``before`` (``None``: none)."""
        for day in reversed([d for d in manifest_days(self.folder) if d < before]):
            last, _ = self._last_line(day_file_name(day))
            if last is not None:
                return last
        return None

    def _exists(self, name: str) -> bool:
        try:
            os.stat(self.folder / name, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _last_line(self, name: str) -> tuple[bytes | None, int]:
        """The last complete line of a day file and its ``seq``; cuts off an incomplete one."""
        path = self.folder / name
        try:
            fd = os.open(path, _FILE_FLAGS)
        except FileNotFoundError:
            return None, 0
        try:
            size = os.fstat(fd).st_size
            end = size
            tail = b""
            while end > 0:
                start = max(0, end - _TAIL_CHUNK)
                tail = os.pread(fd, end - start, start) + tail
                end = start
                # Enough once the tail holds a complete last line and the newline before it.
                body = tail[:-1] if tail.endswith(b"\n") else tail
                if b"\n" in body or end == 0:
                    break
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n") + 1
                keep = size - (len(tail) - cut)
                kept = self._keep_cut(name, tail[cut:])
                log.warning(
                    "manifest: cutting off an incomplete last line (a writer crashed mid-write)",
                    extra={"file": name, "bytes": size - keep, "kept_in": kept},
                )
                os.ftruncate(fd, keep)
                if self._fsync:
                    os.fsync(fd)
                tail = tail[:cut]
            if not tail:
                return None, 0
            last = tail[:-1].rsplit(b"\n", 1)[-1]
        finally:
            os.close(fd)
        seq = line_seq(last)
        if seq is None:
            raise StorageError(
                f"manifest day file '{name}' ends in a line that is not a manifest line; archiving "
                "stops until it is removed: run 'python -m app audit --manifest', keep a copy of the "
                "file outside _manifest/ and remove only that last line (runbook 6.13)",
                errno=errno.EBADMSG,
                transient=False,
            )
        return last, seq

    def _keep_cut(self, name: str, data: bytes) -> str | None:
        """Write the bytes of an incomplete last line about to be cut off to a new hidden file
        beside the day file, ``.<day file>.cut-<Unix ms>`` (and ``fsync``), so nothing is lost
        unseen; returns its name, ``None`` when it cannot be written (logged)."""
        aside = f".{name}.cut-{int(time.time() * 1000)}"
        try:
            fd = os.open(
                self.folder / aside,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o640,
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning(
                "manifest: cannot keep the incomplete line's bytes", extra={"file": name, "cause": str(exc)}
            )
            return None
        return aside

    def _write_line(self, name: str, raw: bytes, *, new_file: bool) -> None:
        path = self.folder / name
        flags = _FILE_FLAGS | (os.O_CREAT | os.O_EXCL if new_file and not self._exists(name) else 0)
        fd = os.open(path, flags, 0o640)
        try:
            data = raw + b"\n"
            offset = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if new_file and flags & os.O_CREAT:
            self._sync_folder(self.folder)

    def _sync_folder(self, folder: Path) -> None:
        if not self._fsync:
            return
        try:
            fd = os.open(folder, _FOLDER_FLAGS)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # not supported on some network file systems; the file's own fsync happened
        finally:
            os.close(fd)


NEW_CHAIN_SLACK_SECONDS = 300.0
"""Sidecars written this recently before a new chain began are not taken for archives of a
lost manifest (archives being written at the same moment get their lines right after)."""

_SIDECAR_TAIL = ".pdf.json"


def _entered_archive(root: Path, before: float, *, skip: str) -> str | None:
    """The path of the first sidecar under ``root`` (other than ``skip``) last changed before
    ``before`` (Unix seconds) that says ``"manifest": true``, or ``None``.

    Raises:
        OSError: the root cannot be listed.
    """
    stack = [""]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(root / folder if folder else root) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except OSError:
            if not folder:
                raise
            continue
        for item in items:
            if item.name.startswith(".") or (not folder and item.name == MANIFEST_FOLDER):
                continue
            relative = f"{folder}/{item.name}" if folder else item.name
            try:
                if item.is_dir(follow_symlinks=False):
                    stack.append(relative)
                    continue
                if not item.name.lower().endswith(_SIDECAR_TAIL) or relative == skip:
                    continue
                if (
                    not item.is_file(follow_symlinks=False)
                    or item.stat(follow_symlinks=False).st_mtime >= before
                ):
                    continue
                fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as fh:
                    fields = json.loads(fh.read(1 << 20))
            except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
                continue
            if isinstance(fields, dict) and fields.get("manifest") is True:
                return relative.removesuffix(".json")
    return None


def _error(operation: str, exc: OSError) -> StorageError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(
        f"cannot {operation} the archive manifest ({MANIFEST_FOLDER}): {reason}", errno=exc.errno
    )
