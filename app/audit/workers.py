"""Who checks the archives: this process, or several worker processes with the reports kept in walk order.

An archive's check is CPU-bound Python (CMS parsing, two RSA verifications, hashing), so one
process uses one core. With ``jobs > 1`` the walk stays in the calling process and hands
batches of :data:`BATCH` entries to a pool of forked workers; at most ``2 × jobs`` batches
are in flight, and reports come back in the order the walk found the files, so the output
is the same as with one process and memory stays bounded. Each worker has its own
certificate and path caches (a few validations each).

Workers are forked (the audit's process is single-threaded: the command line, or the
service's audit child process), so they start in milliseconds without importing anything.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import x509

from app.audit.fixity import CHUNK_BYTES, ORPHAN_SIDECAR, UNREADABLE, FileReport, check_archive
from app.audit.signatures import SignatureVerifier
from app.audit.walk import WalkEntry, open_folder

BATCH = 32
"""Entries per batch sent to a worker."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What every checker needs (picklable: sent to each worker once)."""

    root: str
    trust_roots: tuple[bytes, ...]
    now: datetime
    expiry_window: timedelta
    root_prefix: str | None = ""
    """The root's position under the storage root (:func:`app.audit.root_position.root_prefix`)."""


class ArchiveChecker:
    """Checks walk entries under one root (see :func:`app.audit.fixity.check_archive`).

    Opens each entry's folder from the root one component at a time without following
    symlinks, keeping the last folder open (entries arrive folder by folder).
    """

    def __init__(self, spec: CheckSpec) -> None:
        self._spec = spec
        roots = tuple(x509.Certificate.load(der) for der in spec.trust_roots)
        self.verifier = SignatureVerifier(roots, clock=lambda: spec.now)
        self._buffer = bytearray(CHUNK_BYTES)
        self._root_fd = os.open(spec.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._folder: str | None = None
        self._folder_fd = -1

    @property
    def path_validations(self) -> int:
        paths = self.verifier.paths
        return paths.validations if paths is not None else 0

    def check(self, entry: WalkEntry) -> FileReport:
        """The report of one archive or orphan sidecar."""
        if entry.pdf is None:
            report = FileReport(entry.relative)
            report.add(ORPHAN_SIDECAR, "a sidecar without its PDF (the PDF was deleted or renamed)")
            return report
        try:
            folder_fd = self._open_folder(entry.folder)
        except OSError as exc:
            report = FileReport(entry.relative)
            report.add(UNREADABLE, f"its folder cannot be opened: {os.strerror(exc.errno or 0)}")
            return report
        return check_archive(
            folder_fd,
            entry.relative,
            entry.pdf,
            entry.sidecar,
            self.verifier,
            self._buffer,
            now=self._spec.now,
            expiry_window=self._spec.expiry_window,
            root_prefix=self._spec.root_prefix,
        )

    def close(self) -> None:
        if self._folder_fd >= 0:
            os.close(self._folder_fd)
            self._folder_fd = -1
        os.close(self._root_fd)
        self.verifier.close()

    def _open_folder(self, folder: str) -> int:
        if folder == self._folder and self._folder_fd >= 0:
            return self._folder_fd
        if self._folder_fd >= 0:
            os.close(self._folder_fd)
            self._folder_fd, self._folder = -1, None
        fd = open_folder(self._root_fd, folder.split("/") if folder else ())
        self._folder_fd, self._folder = fd, folder
        return fd


_WORKER: ArchiveChecker | None = None


def _start_worker(spec: CheckSpec) -> None:
    global _WORKER
    _WORKER = ArchiveChecker(spec)


def _check_batch(entries: list[WalkEntry]) -> tuple[list[FileReport], int]:
    assert _WORKER is not None
    before = _WORKER.path_validations
    reports = [_WORKER.check(entry) for entry in entries]
    return reports, _WORKER.path_validations - before


@dataclass(slots=True)
class CheckStats:
    """Counted while checking: certificate-path validations run (cache misses)."""

    path_validations: int = 0


def check_all(
    entries: Iterable[WalkEntry], spec: CheckSpec, jobs: int, stats: CheckStats
) -> Iterator[FileReport]:
    """Check ``entries`` with ``jobs`` processes (1: in this one); reports in entry order."""
    if jobs <= 1:
        checker = ArchiveChecker(spec)
        try:
            for entry in entries:
                yield checker.check(entry)
        finally:
            stats.path_validations += checker.path_validations
            checker.close()
        return
    context = multiprocessing.get_context("fork")
    pending: deque[Future[tuple[list[FileReport], int]]] = deque()
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(spec,))
    with pool:
        try:
            batch: list[WalkEntry] = []
            for entry in entries:
                batch.append(entry)
                if len(batch) == BATCH:
                    pending.append(pool.submit(_check_batch, batch))
                    batch = []
                    while len(pending) >= 2 * jobs:
                        yield from _collect(pending.popleft(), stats)
            if batch:
                pending.append(pool.submit(_check_batch, batch))
            while pending:
                yield from _collect(pending.popleft(), stats)
        finally:
            for future in pending:
                future.cancel()


def _collect(future: Future[tuple[list[FileReport], int]], stats: CheckStats) -> list[FileReport]:
    reports, validations = future.result()
    stats.path_validations += validations
    return reports
