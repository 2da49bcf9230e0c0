"""One audit run: the manifest (optionally), then every archive under the storage root, streamed.

:func:`run_audit` walks the root (:mod:`app.audit.walk`), checks each archive
(:mod:`app.audit.fixity`) and hands each :class:`~app.audit.fixity.FileReport` to a callback
as soon as it is made, keeping only counts: memory does not grow with the number of
archives (the manifest cross-check's index aside, ~180 bytes per manifest line). With the
manifest, every archive it records is accounted for after the walk: one the walk did not find
is looked up at its recorded path — ``missing_archive`` when it is not there (also with
``since``: a deletion leaves no time behind), checked like any archive when it is (a folder
the walk skips, such as the top-level ``_manifest``). Temporary files the walk found that a
killed write left behind are reported after its archives (:mod:`app.audit.temp_files`). The command
line (:mod:`app.audit.cli`) and the service's scheduled audit (:mod:`app.audit.schedule`)
both run it.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import x509

from app.audit.fixity import (
    MANIFEST_MISMATCH,
    MISSING_ARCHIVE,
    NOT_IN_MANIFEST,
    ORPHAN_SIDECAR,
    PASSING_RESULTS,
    RESULT_ORDER,
    UNREADABLE,
    FileReport,
    Problem,
)
from app.audit.manifest_check import (
    ManifestIndex,
    ManifestReport,
    RecordedArchive,
    recorded_archives,
    verify_manifest,
)
from app.audit.signatures import SignatureVerifier
from app.audit.temp_files import DEFAULT_MIN_AGE, temp_file_report
from app.audit.walk import TempFile, WalkEntry, WalkErrors, count_archives, open_folder, walk_archives
from app.audit.workers import CheckSpec, CheckStats, check_all
from app.storage.store import SIDECAR_SUFFIX

DEFAULT_EXPIRY_DAYS = 90
"""Default warning window for ``certificate_expiring`` (as ``lta-refresh --within-days``)."""

PROBLEM_SAMPLE = 20
"""How many problem files an :class:`AuditSummary` keeps for logs."""


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What to audit and how.

    Attributes:
        root: the storage root.
        trust_roots: anchors for signature and timestamp chains (empty: integrity only).
        since: only archives whose PDF or sidecar changed at or after this time.
        expiry_window: report ``certificate_expiring`` within this time.
        manifest: verify the manifest's chain and cross-check every archive against it.
        count_first: count the archives before checking them (for a progress bar's total).
        jobs: processes that check archives (1: this one; see :mod:`app.audit.workers`).
        root_prefix: the root's position under the storage root, ``""`` when it is the storage
            root, ``None`` when unknown (:func:`app.audit.root_position.root_prefix`).
        temp_min_age: report temporary files left by killed writes once last written this
            long ago (``temp_file_left``; whatever ``since`` says).
        remove_temp_files: remove those files (``temp_file_removed``).
    """

    root: Path
    trust_roots: tuple[x509.Certificate, ...] = ()
    since: datetime | None = None
    expiry_window: timedelta = timedelta(days=DEFAULT_EXPIRY_DAYS)
    manifest: bool = False
    count_first: bool = False
    jobs: int = 1
    root_prefix: str | None = ""
    temp_min_age: timedelta = DEFAULT_MIN_AGE
    remove_temp_files: bool = False


@dataclass(slots=True)
class AuditSummary:
    """The totals of one run.

    Attributes:
        started_at: when the run began (aware UTC).
        seconds: wall time.
        files: archives, orphan sidecars and old temporary files reported.
        bytes: archive bytes read.
        results: count per result code (every code of :data:`~app.audit.fixity.RESULT_ORDER`).
        manifest: the manifest check, when asked for.
        folder_errors: folders that could not be listed.
        trust_checked: whether chains were validated against trust roots.
        path_validations: certificate-path validations run (the rest came from the cache).
        sample: the first :data:`PROBLEM_SAMPLE` problem files (JSON form).
    """

    started_at: datetime
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULT_ORDER, 0))
    manifest: ManifestReport | None = None
    folder_errors: list[tuple[str, str]] = field(default_factory=list)
    trust_checked: bool = False
    path_validations: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Files whose result is a problem (not one of :data:`~app.audit.fixity.PASSING_RESULTS`)."""
        return self.files - sum(self.results.get(code, 0) for code in PASSING_RESULTS)

    @property
    def ok(self) -> bool:
        """Nothing wrong: every file ok, every folder listed, the manifest (if checked) intact."""
        return self.problems == 0 and not self.folder_errors and (self.manifest is None or self.manifest.ok)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``summary`` of ``python -m app audit --json``)."""
        return {
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "files": self.files,
            "bytes": self.bytes,
            "problems": self.problems,
            "results": dict(self.results),
            "folder_errors": [{"folder": f, "error": e} for f, e in self.folder_errors],
            "trust_checked": self.trust_checked,
            "path_validations": self.path_validations,
            "manifest_ok": None if self.manifest is None else self.manifest.ok,
        }


Progress = Callable[[int, int | None, int], None]
"""``progress(files done, total or None, bytes read)``."""


def run_audit(
    options: AuditOptions,
    *,
    on_manifest: Callable[[ManifestReport], None] | None = None,
    on_file: Callable[[FileReport], None] | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AuditSummary:
    """Audit every archive under ``options.root``.

    Args:
        options: what to check.
        on_manifest: receives the manifest report before the files are checked.
        on_file: receives each file's report as soon as it is made.
        progress: called after each file.
        clock: the audit's "now" (expiry window, signatures without a timestamp).

    Raises:
        OSError: the root cannot be opened, or the manifest cannot be read.
    """
    now = clock()
    started = time.perf_counter()
    summary = AuditSummary(started_at=now)
    summary.trust_checked = bool(options.trust_roots)
    stats = CheckStats()
    root_fd = os.open(options.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        index: ManifestIndex | None = None
        if options.manifest:
            index = ManifestIndex()
            verifier = SignatureVerifier(options.trust_roots, clock=lambda: now)
            try:
                summary.manifest = verify_manifest(options.root, verifier, index=index)
            finally:
                verifier.close()
            if on_manifest is not None:
                on_manifest(summary.manifest)
        manifest_start = summary.manifest.first_time if summary.manifest is not None else None
        total = count_archives(root_fd) if options.count_first else None
        errors = WalkErrors([])
        temp_files: list[TempFile] = []
        since = options.since.timestamp() if options.since is not None else None
        skipped = 0

        def entries() -> Iterator[WalkEntry]:
            nonlocal skipped
            for _, entry in walk_archives(root_fd, errors, temp_files):
                if since is not None and entry.mtime < since:
                    skipped += 1
                    if index is not None and entry.pdf is not None:
                        index.take(entry.relative)  # there, unchanged since: accounted for
                    continue
                yield entry

        spec = CheckSpec(
            root=str(options.root),
            trust_roots=tuple(cert.dump() for cert in options.trust_roots),
            now=now,
            expiry_window=options.expiry_window,
            root_prefix=options.root_prefix,
        )
        results: Counter[str] = Counter()

        def count(report: FileReport) -> None:
            summary.files += 1
            if report.sha256 is not None:  # read (a temporary file's size is not)
                summary.bytes += report.size or 0
            result = report.result
            results[result] += 1
            if result not in PASSING_RESULTS and len(summary.sample) < PROBLEM_SAMPLE:
                summary.sample.append(report.as_dict())
            if on_file is not None:
                on_file(report)
            if progress is not None:
                progress(summary.files, None if total is None else total - skipped, summary.bytes)

        for report in check_all(entries(), spec, options.jobs, stats):
            if index is not None:
                _cross_check(report, index, manifest_start)
            count(report)
        for left in temp_files:
            temp_report = temp_file_report(
                root_fd, left, now, options.temp_min_age, remove=options.remove_temp_files
            )
            if temp_report is not None:
                count(temp_report)
        if index is not None and len(index):
            unwalked: list[WalkEntry] = []
            for recorded in recorded_archives(options.root, index.keys()):
                found = _locate(root_fd, recorded)
                if isinstance(found, Problem):
                    report = FileReport(recorded.path, [found])
                    index.take(recorded.path)
                    count(report)
                elif since is None or found.mtime >= since:
                    unwalked.append(found)
            for report in check_all(unwalked, spec, 1, stats):
                _cross_check(report, index, manifest_start)
                count(report)
        summary.results.update(results)
        summary.folder_errors = errors.folders
    finally:
        os.close(root_fd)
        summary.path_validations = stats.path_validations
        summary.seconds = time.perf_counter() - started
    return summary


def _locate(root_fd: int, recorded: RecordedArchive) -> WalkEntry | Problem:
    """The walk entry of an archive the manifest records and the walk did not find, or the
    problem (``missing_archive``, ``unreadable``) when it is not there. Folders are opened one
    at a time without following symlinks, as the walk does."""
    *folders, name = recorded.path.split("/")
    where = f"{recorded.file} line {recorded.line}, SHA-256 {recorded.sha256}"
    if any(part in ("", ".", "..") or "\0" in part for part in (*folders, name)):
        return Problem(MISSING_ARCHIVE, f"the manifest records it ({where}) at a path outside the root")
    try:
        fd = open_folder(root_fd, folders)
        try:
            pdf = os.stat(name, dir_fd=fd, follow_symlinks=False)
            try:
                sidecar: os.stat_result | None = os.stat(
                    name + SIDECAR_SUFFIX, dir_fd=fd, follow_symlinks=False
                )
            except FileNotFoundError:
                sidecar = None
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return Problem(
                MISSING_ARCHIVE,
                f"the manifest records it ({where}), but it is not there"
                + (" (a folder on its path is a symlink)" if exc.errno == errno.ELOOP else ""),
            )
        return Problem(UNREADABLE, f"cannot be looked up: {os.strerror(exc.errno or 0)}")
    if sidecar is not None and not (stat.S_ISREG(sidecar.st_mode) or stat.S_ISLNK(sidecar.st_mode)):
        sidecar = None
    mtime = max(pdf.st_mtime, sidecar.st_mtime) if sidecar is not None else pdf.st_mtime
    return WalkEntry("/".join(folders), name, name + SIDECAR_SUFFIX if sidecar else None, mtime)


def _cross_check(report: FileReport, index: ManifestIndex, manifest_start: datetime | None) -> None:
    """Takes the report's archive out of the index. ``missing_archive`` for an orphan sidecar
    whose PDF the manifest records; ``manifest_mismatch`` when the manifest's line for the path
    records another SHA-256, or another ticket id, ticket number or job id than the sidecar
    names; ``not_in_manifest`` when it has no line for the path although the sidecar says the
    archive was entered (``"manifest": true``, whatever its date), or the manifest records the
    file's SHA-256 for another path (a copy), or — for a sidecar without that key — it was
    archived after the manifest began. A file that could not be read is taken out and left as
    it is."""
    if report.sha256 is None:
        orphan = any(p.code == ORPHAN_SIDECAR for p in report.problems)
        pdf = report.path.removesuffix(SIDECAR_SUFFIX) if orphan else report.path
        line = index.take(pdf)
        if orphan and line is not None:
            report.add(
                MISSING_ARCHIVE, f"the manifest records its PDF (SHA-256 {line.sha256}), but it is not there"
            )
        return
    recorded = index.take(report.path)
    if recorded is not None:
        if recorded.sha256 != report.sha256:
            report.add(MANIFEST_MISMATCH, f"the manifest recorded SHA-256 {recorded.sha256} for this path")
        elif (
            report.sidecar_read and recorded.ticket_id is not None and recorded.ticket_id != report.ticket_id
        ):
            report.add(
                MANIFEST_MISMATCH,
                f"the manifest recorded ticket id {recorded.ticket_id} for this path, "
                f"the sidecar says {report.ticket_id}",
            )
        elif report.sidecar_read and not recorded.records(report.ticket_number, report.job_id):
            report.add(
                MANIFEST_MISMATCH,
                "the manifest recorded another ticket number or job id for this path than the sidecar's "
                f"(ticket_number {report.ticket_number!r}, job_id {report.job_id!r})",
            )
        return
    copy = index.records_sha256(report.sha256)
    elsewhere = "; the manifest records this SHA-256 for another path (a copy, or a renamed archive)"
    if report.manifested:
        report.add(
            NOT_IN_MANIFEST,
            "its sidecar says it was entered in the manifest, but the manifest has no line for this path"
            + (elsewhere if copy else ""),
        )
        return
    if copy:
        report.add(NOT_IN_MANIFEST, "the manifest has no line for this path" + elsewhere)
        return
    if manifest_start is None or report.archived_at is None:
        return
    try:
        archived = datetime.fromisoformat(report.archived_at)
    except ValueError:
        return
    if archived.tzinfo is None:
        archived = archived.replace(tzinfo=UTC)
    if archived >= manifest_start:
        report.add(NOT_IN_MANIFEST, "archived after the manifest began, but the manifest has no line for it")
