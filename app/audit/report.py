"""How an audit is shown: text lines or one streamed JSON document on stdout, and a progress bar on stderr.

The JSON document (``--json``) is written as the audit goes, so it never has to be held in
memory::

    {"audit": {"root": "...", "started_at": "...", "since": null, "expiry_days": 90,
               "trust_roots": 2, "manifest": true, "temp_file_minutes": 60,
               "remove_temp_files": false},
     "manifest": {"ok": true, "days": 12, "lines": 2000, "first_break": null, ...} | null,
     "files": [{"path": "...", "result": "ok", "problems": [], "size": 48213,
                "sha256": "...", "pades_level": "B-T", "signature_check": "byte_range",
                "evidence_expires_at": "2030-01-01T00:00:00+00:00"}, ...],
     "summary": {"ok": true, "files": 2000, "problems": 0, "results": {"ok": 2000, ...}, ...}}
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import orjson

from app.audit.fixity import OK, RESULT_ORDER, FileReport
from app.audit.manifest_check import ManifestReport
from app.audit.run import AuditSummary


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class JsonReport:
    """Writes the audit as one JSON document, streamed (see the module docstring)."""

    def __init__(self, out: TextIO, header: dict[str, Any]) -> None:
        self._out = out
        self._files_open = False
        self._first_file = True
        out.write('{"audit":' + _json(header))

    def manifest(self, report: ManifestReport) -> None:
        self._out.write(',"manifest":' + _json(report.as_dict()))
        self._open_files()

    def file(self, report: FileReport) -> None:
        self._open_files(null_manifest=True)
        self._out.write(("\n" if self._first_file else ",\n") + _json(report.as_dict()))
        self._first_file = False

    def finish(self, summary: AuditSummary) -> None:
        self._open_files(null_manifest=True)
        self._out.write('\n],"summary":' + _json(summary.as_dict()) + "}\n")
        self._out.flush()

    def _open_files(self, *, null_manifest: bool = False) -> None:
        if self._files_open:
            return
        if null_manifest:
            self._out.write(',"manifest":null')
        self._out.write(',"files":[')
        self._files_open = True


class TextReport:
    """Writes one line per problem file (every file with ``show_ok``), then the totals."""

    def __init__(self, out: TextIO, *, show_ok: bool = False) -> None:
        self._out = out
        self._show_ok = show_ok
        self._manifest: ManifestReport | None = None

    def manifest(self, report: ManifestReport) -> None:
        self._manifest = report

    def file(self, report: FileReport) -> None:
        result = report.result
        if result == OK and not self._show_ok:
            return
        details = "; ".join(p.detail for p in report.problems)
        self._out.write(f"{result:<21} {report.path}" + (f"  ({details})" if details else "") + "\n")

    def finish(self, summary: AuditSummary) -> None:
        out = self._out
        counts = ", ".join(
            f"{summary.results[code]} {code}" for code in RESULT_ORDER if summary.results.get(code)
        )
        out.write(
            f"audited {summary.files} file(s), {summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s"
            + (f": {counts}" if counts else "")
            + "\n"
        )
        for folder, error in summary.folder_errors:
            out.write(f"folder not listed: {folder} ({error})\n")
        manifest = summary.manifest
        if manifest is not None:
            out.write(_manifest_text(manifest))
        out.write(
            f"trust: signatures and timestamps checked against the trust roots "
            f"({summary.path_validations} certificate path validation(s))\n"
            if summary.trust_checked
            else "trust: NOT checked (no trust roots: set SIGNING_TRUST_ROOTS_PATH or pass --trust); "
            "signatures checked for integrity only\n"
        )
        out.write("result: OK\n" if summary.ok else "result: PROBLEMS FOUND\n")
        out.flush()


def _manifest_text(report: ManifestReport) -> str:
    lines = []
    if report.days == 0:
        lines.append("manifest: none (no day files under _manifest/)")
    elif report.first_break is None:
        lines.append(
            f"manifest: {report.days} day(s), {report.lines} line(s), chain intact (head {report.head})"
        )
    else:
        broken = report.first_break
        lines.append(
            f"manifest: BROKEN at {broken.file} line {broken.line}: {broken.reason} "
            f"({report.days} day(s), {report.lines} line(s) read)"
        )
    for stamp in report.timestamps:
        if stamp.problem:
            lines.append(f"manifest timestamp {stamp.day}: INVALID: {stamp.problem}")
        elif stamp.covers_line != stamp.lines:
            lines.append(
                f"manifest timestamp {stamp.day}: covers line {stamp.covers_line} of {stamp.lines} "
                "(later lines were appended after it was taken)"
            )
    stamped = sum(1 for s in report.timestamps if s.problem is None)
    lines.append(
        f"manifest timestamps: {stamped} valid"
        + (
            f", {len(report.unstamped_days)} closed day(s) without one (TSA_URL unset or unreachable?)"
            if report.unstamped_days
            else ""
        )
    )
    for day in report.missing_timestamps:
        lines.append(f"manifest timestamp {day}: MISSING although a later day has one (removed?)")
    for name, number, moment in report.misdated:
        lines.append(
            f"manifest: {name} line {number} is timed {moment}, not on that file's day (a day file renamed?)"
        )
    if report.misdated_lines > len(report.misdated):
        lines.append(f"manifest: {report.misdated_lines - len(report.misdated)} more misdated line(s)")
    if report.stray_count:
        more = report.stray_count - len(report.stray)
        lines.append(
            "manifest: not the manifest's (remove or explain): "
            + ", ".join(report.stray)
            + (f" and {more} more" if more else "")
        )
    if report.incomplete_tail:
        lines.append(
            f"manifest: the last line of {report.incomplete_tail} is incomplete (a write in progress?)"
        )
    return "".join(line + "\n" for line in lines)


class ProgressBar:
    """A one-line progress bar on a terminal (redrawn at most every ``interval`` seconds).

    Args:
        out: the terminal (stderr).
        interval: seconds between redraws.
        width: characters of the bar itself.
    """

    def __init__(self, out: TextIO, *, interval: float = 0.2, width: int = 30) -> None:
        self._out = out
        self._interval = interval
        self._width = width
        self._started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, done: int, total: int | None, read: int) -> None:
        now = time.monotonic()
        if now - self._drawn < self._interval and done != total:
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-6)
        rate = f"{done / elapsed:,.0f} files/s {read / elapsed / 1e6:,.1f} MB/s"
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self._width)
            eta = (elapsed / share - elapsed) if share > 0 else 0
            bar = "#" * filled + "-" * (self._width - filled)
            left = f"{int(eta) // 60}:{int(eta) % 60:02d}"
            text = f"audit [{bar}] {share:4.0%} {done:,}/{total:,} {rate} ETA {left}"
        else:
            text = f"audit {done:,} files {rate}"
        self._out.write("\r" + text + "\x1b[K")
        self._out.flush()

    def close(self) -> None:
        """Clear the bar's line."""
        self._out.write("\r\x1b[K")
        self._out.flush()
