"""The scheduled audit in the service: ``python -m app audit --manifest`` every ``AUDIT_INTERVAL_HOURS``.

Each run happens in a child process (``spawn``, ``nice`` 10): the audit is CPU-bound Python
and would otherwise hold the service's GIL and stall its event loop; the child also takes
the memory of the run with it when it ends. The child sends back the summary and up to
:data:`~app.audit.run.PROBLEM_SAMPLE` problem files, which are logged (``audit finished``,
and one ``audit problem`` warning each) and counted in the metrics below. The end of the
last run is kept in ``STATE_DIR/audit-last-run.json``, so a restart does not start the
clock again; without one, the first run starts :data:`FIRST_RUN_DELAY_SECONDS` after the
service (or one interval, if shorter). With several replicas, set the interval on one of
them: each replica that has it audits the whole share.

Metrics (prefix ``zammad_pdf_archiver_``):

* ``audit_runs_total{outcome}`` — runs by outcome: ``ok``, ``problems``, ``failed`` (the
  run itself failed: root unreadable, child killed);
* ``audit_files_total{result}`` — files checked, by result code (``missing_archive``: an
  archive the manifest records that is not there; ``temp_file_left``: a temporary file of a
  killed write, over an hour old, which the scheduled audit never removes);
* ``audit_last_run_timestamp_seconds`` — Unix time the last run ended (read back from
  ``STATE_DIR/audit-last-run.json`` at start; 0 while no run is recorded);
* ``audit_interval_seconds`` — ``AUDIT_INTERVAL_HOURS`` in seconds (alert when the last run
  is older than twice this);
* ``audit_last_run_duration_seconds`` — how long it took;
* ``audit_last_run_problems`` — files not ``ok`` in the last run, missing ones included
  (alert on > 0); a broken manifest chain is not a file and is not counted here;
* ``audit_manifest_intact`` — 1 when the last run that checked the manifest found its chain
  and day timestamps intact, 0 when not (alert on == 0); NaN until a run has checked it
  (after a start, and always with ``AUDIT_MANIFEST=false``), so it never reads 0 for
  "not checked".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("app.audit")

PREFIX = "zammad_pdf_archiver"
FIRST_RUN_DELAY_SECONDS = 600.0
"""Delay of the first run after a start without a recorded last run."""

LAST_RUN_FILE = "audit-last-run.json"
"""Under ``STATE_DIR``: when the last scheduled run ended."""

OUTCOMES = ("ok", "problems", "failed")


class AuditMetrics:
    """The scheduled audit's metrics on ``registry`` (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Imported here, not with the module: the spawned child imports this module to find
        # _child, and fixity imports pyHanko, whose import-time warning _child filters first.
        from app.audit.fixity import RESULT_ORDER

        r = registry
        self.runs_total = Counter(
            f"{PREFIX}_audit_runs_total", "Audit runs by outcome", ["outcome"], registry=r
        )
        self.files_total = Counter(
            f"{PREFIX}_audit_files_total",
            "Files checked by the audit, by result",
            ["result"],
            registry=r,
        )
        self.last_run_timestamp_seconds = Gauge(
            f"{PREFIX}_audit_last_run_timestamp_seconds",
            "Unix time the last audit run ended (0: none recorded)",
            registry=r,
        )
        self.interval_seconds = Gauge(
            f"{PREFIX}_audit_interval_seconds",
            "Seconds between scheduled audit runs (AUDIT_INTERVAL_HOURS)",
            registry=r,
        )
        self.last_run_duration_seconds = Gauge(
            f"{PREFIX}_audit_last_run_duration_seconds", "Wall time of the last audit run", registry=r
        )
        self.last_run_problems = Gauge(
            f"{PREFIX}_audit_last_run_problems", "Files not ok in the last audit run", registry=r
        )
        self.manifest_intact = Gauge(
            f"{PREFIX}_audit_manifest_intact",
            "1 when the last audit run that checked the manifest found its chain and day "
            "timestamps intact, 0 when not, NaN until a run checked it",
            registry=r,
        )
        self.manifest_intact.set(math.nan)
        for outcome in OUTCOMES:
            self.runs_total.labels(outcome)
        for result in RESULT_ORDER:
            self.files_total.labels(result)

    def record(self, summary: dict[str, Any] | None, seconds: float) -> None:
        """Count one run: its summary (``AuditSummary.as_dict()``), or ``None`` when it failed."""
        self.last_run_timestamp_seconds.set(time.time())
        self.last_run_duration_seconds.set(seconds)
        if summary is None:
            self.runs_total.labels("failed").inc()
            return
        self.runs_total.labels("ok" if summary["ok"] else "problems").inc()
        for result, count in summary["results"].items():
            if count:
                self.files_total.labels(result).inc(count)
        self.last_run_problems.set(summary["problems"])
        if summary.get("manifest_ok") is not None:
            self.manifest_intact.set(1 if summary["manifest_ok"] else 0)


@dataclass(frozen=True, slots=True)
class ScheduledAuditOptions:
    """What the scheduled audit checks (picklable: sent to the child process).

    Attributes:
        root: the storage root.
        trust_roots: DER of the trust roots (``SIGNING_TRUST_ROOTS_PATH``).
        expiry_days: ``AUDIT_EXPIRY_WARN_DAYS``.
        manifest: ``AUDIT_MANIFEST``.
    """

    root: str
    trust_roots: tuple[bytes, ...]
    expiry_days: int
    manifest: bool


def _child(options: ScheduledAuditOptions, conn: Connection) -> None:
    """The child process: one audit run, its summary sent through ``conn``.

    A ``spawn`` child is a fresh interpreter that shares the service's stderr: it filters the
    known library warnings as ``python -m app`` does, and writes what it still shows or logs
    (at WARNING) as JSON lines, never as raw text in the service's log.
    """
    from app.observability.warning_capture import capture_early, ignore_known_library_warnings

    ignore_known_library_warnings()
    capture_early()
    from app.observability.logging import configure_logging

    configure_logging("WARNING")
    with contextlib.suppress(OSError):  # lower priority where allowed
        os.nice(10)
    from asn1crypto import x509

    from app.audit.run import AuditOptions, run_audit

    try:
        summary = run_audit(
            AuditOptions(
                root=Path(options.root),
                trust_roots=tuple(x509.Certificate.load(der) for der in options.trust_roots),
                expiry_window=timedelta(days=options.expiry_days),
                manifest=options.manifest,
            )
        )
        result: dict[str, Any] = {
            "summary": summary.as_dict(),
            "sample": summary.sample,
            "manifest": summary.manifest.as_dict() if summary.manifest is not None else None,
        }
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs and counts it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    conn.send(result)
    conn.close()


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What fails the manifest (``manifest`` of the audit's JSON) besides a chain break (its
    own log line): day timestamps that do not verify or were removed, misdated lines, stray
    names in ``_manifest/`` (the samples the report keeps, and how many in all)."""
    out = [
        f"timestamp {t.get('day')}: {t['problem']}"
        for t in manifest.get("timestamps") or []
        if t.get("problem")
    ]
    out += [
        f"timestamp {day}: missing although a later day has one"
        for day in manifest.get("missing_timestamps") or []
    ]
    if manifest.get("misdated_lines"):
        sample = ", ".join(f"{m['file']} line {m['line']}" for m in manifest.get("misdated") or [])
        out.append(f"{manifest['misdated_lines']} line(s) not on their day file's day: {sample}")
    if manifest.get("stray_count"):
        out.append(
            f"{manifest['stray_count']} name(s) not the manifest's: {', '.join(manifest.get('stray') or [])}"
        )
    return out


def _receive(conn: Connection) -> dict[str, Any] | None:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


class ScheduledAudit:
    """Runs the audit every ``interval`` seconds until cancelled (see the module docstring).

    Args:
        options: what to audit.
        interval: seconds between the end of one run and the start of the next.
        metrics: where runs are counted.
        state_dir: where the last run's end is kept (``None``: not kept).
    """

    def __init__(
        self,
        options: ScheduledAuditOptions,
        interval: float,
        metrics: AuditMetrics,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.options = options
        self.interval = interval
        self.metrics = metrics
        self._state_file = state_dir / LAST_RUN_FILE if state_dir is not None else None
        metrics.interval_seconds.set(interval)
        ended = self._recorded_end()
        if ended is not None:  # a restart does not reset the age of the last run
            metrics.last_run_timestamp_seconds.set(ended)

    def _recorded_end(self) -> float | None:
        """Unix time the last run recorded in the state file ended (``None``: no record)."""
        if self._state_file is None:
            return None
        try:
            return float(json.loads(self._state_file.read_text())["ended_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def first_delay(self) -> float:
        """Seconds until the first run: one interval after the recorded last run, else
        :data:`FIRST_RUN_DELAY_SECONDS` (or the interval, if shorter)."""
        ended = self._recorded_end()
        if ended is not None:
            return max(0.0, ended + self.interval - time.time())
        return min(FIRST_RUN_DELAY_SECONDS, self.interval)

    async def run(self) -> None:
        """Run forever (until cancelled): wait, audit, record, repeat."""
        await asyncio.sleep(self.first_delay())
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    async def run_once(self) -> dict[str, Any] | None:
        """One audit in a child process; returns its summary (``None`` when the run failed)."""
        started = time.monotonic()
        log.info("audit started", extra={"root": self.options.root, "manifest": self.options.manifest})
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(self.options, sender), name="archive-audit")
        process.start()
        sender.close()
        try:
            result = await asyncio.to_thread(_receive, receiver)
        finally:
            if process.is_alive():
                process.terminate()
            await asyncio.to_thread(process.join, 10)
            receiver.close()
        seconds = time.monotonic() - started
        summary = result.get("summary") if result else None
        if summary is None:
            cause = result.get("error") if result else f"audit process ended with status {process.exitcode}"
            log.error("audit failed", extra={"cause": cause, "seconds": round(seconds, 1)})
        else:
            self._log(summary, result or {}, seconds)
        self.metrics.record(summary, seconds)
        self._remember()
        return summary

    def _log(self, summary: dict[str, Any], result: dict[str, Any], seconds: float) -> None:
        counts = {code: n for code, n in summary["results"].items() if n}
        log.log(
            logging.INFO if summary["ok"] else logging.WARNING,
            "audit finished",
            extra={
                "files": summary["files"],
                "problems": summary["problems"],
                "results": counts,
                "manifest_ok": summary.get("manifest_ok"),
                "seconds": round(seconds, 1),
            },
        )
        for item in result.get("sample") or []:
            log.warning(
                "audit problem",
                extra={
                    "path": item["path"],
                    "result": item["result"],
                    "detail": "; ".join(p["detail"] for p in item["problems"]),
                },
            )
        manifest = result.get("manifest")
        broken = (manifest or {}).get("first_break")
        if broken:
            log.warning(
                "audit: manifest chain broken",
                extra={
                    "manifest_file": broken["file"],
                    "manifest_line": broken["line"],
                    "reason": broken["reason"],
                },
            )
        others = _manifest_problems(manifest or {})
        if others:  # what else makes manifest_ok false: without it, a 0 with no line to say why
            log.warning("audit: manifest not intact", extra={"manifest_problems": others})

    def _remember(self) -> None:
        if self._state_file is None:
            return
        try:
            self._state_file.write_text(json.dumps({"ended_at": time.time()}))
        except OSError as exc:
            log.warning("cannot record the audit's last run", extra={"cause": str(exc)})
