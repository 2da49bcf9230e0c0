"""One audit run: the manifest (optionally), then every archive under the storage root, streamed.

:func:`run_audit` walks the root (:mod:`app.audit.walk`), checks each archive
(:mod:`app.audit.fixity`) and hands each :class:`~app.audit.fixity.FileReport` to a callback
as soon as it is made, keeping only counts: memory does not grow with the number of
archives (the manifest cross-check's index aside, ~100 bytes per manifest line). The command
line (:mod:`app.audit.cli`) and the service's scheduled audit (:mod:`app.audit.schedule`)
both run it.
"""

from __future__ import annotations

import os
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
    NOT_IN_MANIFEST,
    OK,
    RESULT_ORDER,
    FileReport,
)
from app.audit.manifest_check import ManifestIndex, ManifestReport, verify_manifest
from app.audit.signatures import SignatureVerifier
from app.audit.walk import WalkEntry, WalkErrors, count_archives, walk_archives
from app.audit.workers import CheckSpec, CheckStats, check_all

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
    """

    root: Path
    trust_roots: tuple[x509.Certificate, ...] = ()
    since: datetime | None = None
    expiry_window: timedelta = timedelta(days=DEFAULT_EXPIRY_DAYS)
    manifest: bool = False
    count_first: bool = False
    jobs: int = 1


@dataclass(slots=True)
class AuditSummary:
    """The totals of one run.

    Attributes:
        started_at: when the run began (aware UTC).
        seconds: wall time.
        files: archives and orphan sidecars checked.
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
        """Files whose result is not ``ok``."""
        return self.files - self.results.get(OK, 0)

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
        since = options.since.timestamp() if options.since is not None else None
        skipped = 0

        def entries() -> Iterator[WalkEntry]:
            nonlocal skipped
            for _, entry in walk_archives(root_fd, errors):
                if since is not None and entry.mtime < since:
                    skipped += 1
                    continue
                yield entry

        spec = CheckSpec(
            root=str(options.root),
            trust_roots=tuple(cert.dump() for cert in options.trust_roots),
            now=now,
            expiry_window=options.expiry_window,
        )
        results: Counter[str] = Counter()
        for report in check_all(entries(), spec, options.jobs, stats):
            if index is not None and report.sha256 is not None:
                _cross_check(report, index, manifest_start)
            summary.files += 1
            summary.bytes += report.size or 0
            result = report.result
            results[result] += 1
            if result != OK and len(summary.sample) < PROBLEM_SAMPLE:
                summary.sample.append(report.as_dict())
            if on_file is not None:
                on_file(report)
            if progress is not None:
                progress(summary.files, None if total is None else total - skipped, summary.bytes)
        summary.results.update(results)
        summary.folder_errors = errors.folders
    finally:
        os.close(root_fd)
        summary.path_validations = stats.path_validations
        summary.seconds = time.perf_counter() - started
    return summary


def _cross_check(report: FileReport, index: ManifestIndex, manifest_start: datetime | None) -> None:
    """``manifest_mismatch`` when the manifest recorded another SHA-256 for the path;
    ``not_in_manifest`` when it has no line for an archive written after it began."""
    recorded = index.get(report.path)
    if recorded is not None:
        if recorded != report.sha256:
            report.add(MANIFEST_MISMATCH, f"the manifest recorded SHA-256 {recorded} for this path")
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
