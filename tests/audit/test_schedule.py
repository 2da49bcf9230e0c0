"""The scheduled audit: a run in a child process with its metrics; and in the running service,
every archive in the manifest and the audit's results on ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from app.audit.schedule import LAST_RUN_FILE, AuditMetrics, ScheduledAudit, ScheduledAuditOptions
from devtools.webhook import zammad_webhook
from tests.audit.archives import load_cert
from tests.audit.conftest import ArchiveRoot
from tests.conftest import FIXTURES, HMAC_SECRET


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"zammad_pdf_archiver_{name}", labels or None)


def checked(archive_root: ArchiveRoot) -> ScheduledAuditOptions:
    """A scheduled audit of ``archive_root`` with its trust root and the manifest check."""
    return ScheduledAuditOptions(
        str(archive_root.root), (load_cert(archive_root.trust).dump(),), expiry_days=90, manifest=True
    )


async def test_a_run_counts_files_and_problems(archive_root: ArchiveRoot, tmp_path: Path) -> None:
    archive_root.sidecar(0).unlink()
    registry = CollectorRegistry()
    options = checked(archive_root)
    audit = ScheduledAudit(options, 3600, AuditMetrics(registry), state_dir=tmp_path)

    summary = await audit.run_once()

    assert summary is not None and summary["files"] == 3 and summary["problems"] == 1
    assert sample(registry, "audit_runs_total", outcome="problems") == 1
    assert sample(registry, "audit_runs_total", outcome="ok") == 0
    assert sample(registry, "audit_files_total", result="ok") == 2
    assert sample(registry, "audit_files_total", result="missing_sidecar") == 1
    assert sample(registry, "audit_last_run_problems") == 1
    assert sample(registry, "audit_manifest_intact") == 1
    assert abs((sample(registry, "audit_last_run_timestamp_seconds") or 0) - time.time()) < 60
    assert json.loads((tmp_path / LAST_RUN_FILE).read_text())["ended_at"] > 0
    assert 3590 < audit.first_delay() <= 3600  # a restart waits for the rest of the interval


async def test_a_deleted_archive_is_a_problem_of_the_run(archive_root: ArchiveRoot) -> None:
    archive_root.stored[1].path.unlink()
    archive_root.sidecar(1).unlink()
    registry = CollectorRegistry()
    options = checked(archive_root)

    summary = await ScheduledAudit(options, 3600, AuditMetrics(registry)).run_once()

    assert summary is not None and summary["ok"] is False and summary["problems"] == 1
    assert sample(registry, "audit_runs_total", outcome="problems") == 1
    assert sample(registry, "audit_files_total", result="missing_archive") == 1
    assert sample(registry, "audit_last_run_problems") == 1
    assert sample(registry, "audit_manifest_intact") == 1


async def test_an_old_temp_file_of_a_killed_write_is_a_problem_of_the_run(archive_root: ArchiveRoot) -> None:
    """Counted in ``audit_last_run_problems`` (the shipped alert), never removed by the service."""
    left = archive_root.stored[0].path.with_name(".Ticket-new.pdf.0123456789abcdef.tmp")
    left.write_bytes(b"%PDF-1.7 half")
    then = time.time() - 7200
    os.utime(left, (then, then))
    registry = CollectorRegistry()
    options = checked(archive_root)

    summary = await ScheduledAudit(options, 3600, AuditMetrics(registry)).run_once()

    assert summary is not None and summary["ok"] is False and summary["problems"] == 1
    assert sample(registry, "audit_files_total", result="temp_file_left") == 1
    assert sample(registry, "audit_files_total", result="ok") == 3
    assert sample(registry, "audit_last_run_problems") == 1
    assert left.exists()


async def test_a_failed_run_is_counted_as_failed(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    options = ScheduledAuditOptions(str(tmp_path / "gone"), (), expiry_days=90, manifest=False)

    summary = await ScheduledAudit(options, 3600, AuditMetrics(registry)).run_once()

    assert summary is None
    assert sample(registry, "audit_runs_total", outcome="failed") == 1


async def test_a_broken_manifest_chain_reads_0_and_no_check_reads_nan(archive_root: ArchiveRoot) -> None:
    registry = CollectorRegistry()
    metrics = AuditMetrics(registry)
    assert math.isnan(sample(registry, "audit_manifest_intact") or 0.0)  # not checked yet: not 0
    trust = (load_cert(archive_root.trust).dump(),)
    unchecked = ScheduledAuditOptions(str(archive_root.root), trust, expiry_days=90, manifest=False)
    assert await ScheduledAudit(unchecked, 3600, metrics).run_once() is not None
    assert math.isnan(sample(registry, "audit_manifest_intact") or 0.0)  # AUDIT_MANIFEST=false

    (day_file,) = (archive_root.root / "_manifest").glob("*.jsonl")
    lines = day_file.read_text().splitlines(keepends=True)
    edited = json.loads(lines[1])
    # A millisecond later, still on its day: compared with no file (ticket and job now are), so
    # only the chain breaks.
    edited["time"] = edited["time"][:-2] + ("1Z" if edited["time"][-2] != "1" else "2Z")
    lines[1] = json.dumps(edited, separators=(",", ":")) + "\n"
    day_file.write_text("".join(lines))
    checked = ScheduledAuditOptions(str(archive_root.root), trust, expiry_days=90, manifest=True)
    summary = await ScheduledAudit(checked, 3600, metrics).run_once()

    assert summary is not None and summary["problems"] == 0 and summary["manifest_ok"] is False
    assert sample(registry, "audit_manifest_intact") == 0


async def test_a_manifest_failed_without_a_chain_break_says_why_in_the_log(
    archive_root: ArchiveRoot, caplog: pytest.LogCaptureFixture
) -> None:
    (archive_root.root / "_manifest" / "README").write_text("notes\n")  # a stray name: not intact
    registry = CollectorRegistry()
    trust = (load_cert(archive_root.trust).dump(),)
    options = ScheduledAuditOptions(str(archive_root.root), trust, expiry_days=90, manifest=True)

    summary = await ScheduledAudit(options, 3600, AuditMetrics(registry)).run_once()

    assert summary is not None and summary["problems"] == 0 and summary["manifest_ok"] is False
    assert sample(registry, "audit_manifest_intact") == 0
    (record,) = [r for r in caplog.records if r.getMessage() == "audit: manifest not intact"]
    assert record.manifest_problems == ["1 name(s) not the manifest's: _manifest/README"]


def test_a_restart_keeps_the_recorded_last_run_and_exposes_the_interval(tmp_path: Path) -> None:
    (tmp_path / LAST_RUN_FILE).write_text(json.dumps({"ended_at": 1_765_000_000.5}))
    registry = CollectorRegistry()
    options = ScheduledAuditOptions("/nowhere", (), 90, True)

    ScheduledAudit(options, 7200.0, AuditMetrics(registry), state_dir=tmp_path)

    assert sample(registry, "audit_last_run_timestamp_seconds") == 1_765_000_000.5
    assert sample(registry, "audit_interval_seconds") == 7200.0
    fresh = CollectorRegistry()
    ScheduledAudit(options, 7200.0, AuditMetrics(fresh), state_dir=tmp_path / "empty")
    assert sample(fresh, "audit_last_run_timestamp_seconds") == 0  # none recorded: the stale alert skips 0


async def test_the_child_writes_no_raw_warning_lines(
    archive_root: ArchiveRoot, capfd: pytest.CaptureFixture[str]
) -> None:
    """The spawned child imports pyHanko afresh: its known import-time warning is filtered there
    too, and anything else it shows or logs is a JSON line, like the service's own log."""
    options = checked(archive_root)
    capfd.readouterr()

    assert await ScheduledAudit(options, 3600, AuditMetrics(CollectorRegistry())).run_once() is not None

    err = capfd.readouterr().err
    assert "CryptographyDeprecationWarning" not in err
    for line in err.splitlines():
        assert isinstance(json.loads(line), dict), line


def test_first_run_without_a_record_waits_the_shorter_of_delay_and_interval() -> None:
    options = ScheduledAuditOptions("/nowhere", (), 90, False)
    metrics = AuditMetrics(CollectorRegistry())
    assert ScheduledAudit(options, 5.0, metrics).first_delay() == 5.0
    assert ScheduledAudit(options, 86400.0, metrics).first_delay() == 600.0


@pytest.mark.sqlite_only
async def test_service_manifests_archives_and_audits_them(archiver, simulator, dev_pki) -> None:
    service = await archiver(
        AUDIT_INTERVAL_HOURS="0.001",  # 3.6 s
        OBSERVABILITY_METRICS_ENABLED="true",
        SIGNING_TRUST_ROOTS_PATH=str(dev_pki.root_pem),
    )
    payload = json.loads((FIXTURES / "webhook-default.json").read_text())
    body, headers = zammad_webhook(payload, HMAC_SECRET, delivery_id="audit-e2e-1")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.url}/ingest", data=body, headers=headers) as resp:
            assert resp.status == 202
        await service.wait_idle()

        (pdf,) = list(service.storage_root.rglob("*.pdf"))
        (day_file,) = list((service.storage_root / "_manifest").glob("*.jsonl"))
        (line,) = [json.loads(raw) for raw in day_file.read_text().splitlines()]
        assert line["path"] == pdf.relative_to(service.storage_root).as_posix()
        assert line["ticket_id"] == 4711 and line["event"] == "archived" and line["seq"] == 1

        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            async with session.get(f"{service.url}/metrics") as resp:
                text = await resp.text()
            found = re.search(r'zammad_pdf_archiver_audit_files_total\{result="ok"\} (\d+)', text)
            if found and int(found[1]) >= 1:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"no audit run with the archive in it:\n{text[-2000:]}")
    assert re.search(r'zammad_pdf_archiver_audit_runs_total\{outcome="ok"\} [1-9]', text)
    assert 'zammad_pdf_archiver_audit_files_total{result="hash_mismatch"} 0.0' in text
    assert "zammad_pdf_archiver_audit_manifest_intact 1.0" in text
