"""RFC 3161 timestamps over closed manifest days: written as ``.tsr``, checked by the audit and by OpenSSL."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.audit.cli import main
from app.audit.manifest_check import verify_manifest
from app.audit.signatures import SignatureVerifier
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_format import ManifestEntry, day_file_name, timestamp_file_name
from app.storage.manifest_timestamp import ManifestTimestamper, last_line_hash
from tests.audit.archives import dev_timestamper, load_cert
from tests.conftest import DevPki

DAY1 = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


def write_two_days(root: Path) -> ArchiveManifest:
    clock = [DAY1]
    manifest = ArchiveManifest(root, fsync=False, clock=lambda: clock[0])
    for n in range(3):
        manifest.record(ManifestEntry(f"a/{n}.pdf", f"{n:064x}", n))
    clock[0] = DAY1 + timedelta(days=1)
    manifest.record(ManifestEntry("a/3.pdf", "3" * 64, 3))
    return manifest


async def test_a_closed_day_gets_a_timestamp_the_audit_and_openssl_accept(
    tmp_path: Path, dev_pki: DevPki
) -> None:
    write_two_days(tmp_path)
    notary = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: DAY1 + timedelta(days=1)
    )

    stamped = await notary.stamp_closed_days()

    day1 = DAY1.date()
    assert stamped == [day1]  # day 2 is still open
    folder = tmp_path / "_manifest"
    tsr = folder / timestamp_file_name(day1)
    assert tsr.is_file() and not (folder / timestamp_file_name(day1 + timedelta(days=1))).exists()

    report = verify_manifest(tmp_path, SignatureVerifier([load_cert(dev_pki.root_pem)]))
    assert report.first_break is None and report.ok
    (check,) = report.timestamps
    assert check.problem is None and check.covers_line == check.lines == 3 and check.gen_time is not None

    digest = last_line_hash(folder / day_file_name(day1))
    verified = await asyncio.to_thread(
        subprocess.run,
        ["openssl", "ts", "-verify", "-digest", digest, "-in", str(tsr), "-CAfile", str(dev_pki.root_pem)],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr

    assert await notary.stamp_closed_days() == []  # nothing left to stamp


async def test_a_day_ends_for_stamping_after_the_grace_period(tmp_path: Path, dev_pki: DevPki) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=lambda: DAY1)
    manifest.record(ManifestEntry("a/0.pdf", "0" * 64, 0))
    midnight = datetime(2026, 12, 7, tzinfo=UTC)

    early = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: midnight + timedelta(minutes=5)
    )
    assert await early.stamp_closed_days() == []
    late = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: midnight + timedelta(hours=2)
    )
    assert await late.stamp_closed_days() == [DAY1.date()]


async def test_a_tampered_timestamp_or_day_is_reported(tmp_path: Path, dev_pki: DevPki) -> None:
    write_two_days(tmp_path)
    notary = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: DAY1 + timedelta(days=1)
    )
    await notary.stamp_closed_days()
    folder = tmp_path / "_manifest"
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])

    day_file = folder / day_file_name(DAY1.date())
    original = day_file.read_bytes()
    day_file.write_bytes(original.rsplit(b"\n", 2)[0] + b"\n")  # the day's last line removed
    report = verify_manifest(tmp_path, verifier)
    assert report.first_break is not None and report.first_break.file == day_file_name(
        DAY1.date() + timedelta(days=1)
    )
    assert report.timestamps[0].problem is not None and "covers none" in report.timestamps[0].problem

    day_file.write_bytes(original)
    tsr = folder / timestamp_file_name(DAY1.date())
    data = bytearray(tsr.read_bytes())
    data[-40] ^= 0x01  # inside the TSA's signature value
    tsr.write_bytes(bytes(data))
    report = verify_manifest(tmp_path, verifier)
    assert report.first_break is None and not report.ok
    assert "does not verify" in (report.timestamps[0].problem or "")


async def test_a_removed_timestamp_before_a_stamped_day_fails_the_audit(
    tmp_path: Path, dev_pki: DevPki
) -> None:
    clock = [DAY1]
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=lambda: clock[0])
    for n in range(3):  # three days, one line each
        clock[0] = DAY1 + timedelta(days=n)
        manifest.record(ManifestEntry(f"a/{n}.pdf", f"{n:064x}", n))
    notary = ManifestTimestamper(tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: clock[0])
    assert len(await notary.stamp_closed_days()) == 2
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])
    folder = tmp_path / "_manifest"

    (folder / timestamp_file_name(DAY1.date() + timedelta(days=1))).unlink()  # the newest stamp
    report = verify_manifest(tmp_path, verifier)
    assert report.ok and report.unstamped_days and not report.missing_timestamps  # a TSA outage looks so

    (folder / timestamp_file_name(DAY1.date())).rename(folder / "kept.tsr")
    await notary.stamp_day(DAY1.date() + timedelta(days=1))  # the TSA is back: day 2 stamped
    report = verify_manifest(tmp_path, verifier)
    assert not report.ok and report.missing_timestamps == [DAY1.date()]
    assert report.as_dict()["missing_timestamps"] == [DAY1.date().isoformat()]


def test_a_renamed_day_file_fails_the_audit(tmp_path: Path) -> None:
    write_two_days(tmp_path)
    folder = tmp_path / "_manifest"
    day2 = DAY1.date() + timedelta(days=1)
    report = verify_manifest(tmp_path, SignatureVerifier())
    assert report.ok and report.misdated_lines == 0

    (folder / day_file_name(day2)).rename(folder / day_file_name(day2 + timedelta(days=3)))
    report = verify_manifest(tmp_path, SignatureVerifier())
    assert report.first_break is None and not report.ok  # the chain holds, the dates do not
    assert report.misdated == [(day_file_name(day2 + timedelta(days=3)), 1, report.misdated[0][2])]

    (folder / day_file_name(day2 + timedelta(days=3))).rename(folder / day_file_name(day2))
    (folder / day_file_name(DAY1.date())).rename(folder / day_file_name(DAY1.date() - timedelta(days=1)))
    report = verify_manifest(tmp_path, SignatureVerifier())
    assert report.misdated_lines == 3  # lines after their file's day


def test_a_writer_whose_clock_is_a_little_behind_is_not_misdated(tmp_path: Path) -> None:
    clock = [datetime(2026, 12, 7, 0, 10, tzinfo=UTC)]
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=lambda: clock[0])
    manifest.record(ManifestEntry("a/0.pdf", "0" * 64, 0))
    clock[0] = datetime(2026, 12, 6, 23, 40, tzinfo=UTC)  # another replica, 30 min behind
    manifest.record(ManifestEntry("a/1.pdf", "1" * 64, 1))

    assert verify_manifest(tmp_path, SignatureVerifier()).ok


def test_the_audit_text_names_misdated_lines(tmp_path: Path) -> None:
    write_two_days(tmp_path)
    folder = tmp_path / "_manifest"
    day2 = DAY1.date() + timedelta(days=1)
    (folder / day_file_name(day2)).rename(folder / day_file_name(day2 + timedelta(days=3)))
    out = io.StringIO()

    status = main(["--root", str(tmp_path), "--manifest", "--no-progress"], stdout=out, stderr=io.StringIO())

    assert status == 1
    assert (
        f"manifest: {day_file_name(day2 + timedelta(days=3))} line 1 is timed 2026-12-07T15:00"
        in out.getvalue()
    )
    assert out.getvalue().rstrip().endswith("result: PROBLEMS FOUND")


def test_names_in_the_manifest_folder_that_are_not_the_manifests_fail_the_audit(tmp_path: Path) -> None:
    manifest = write_two_days(tmp_path)
    manifest.record(ManifestEntry("_manifest/2025/Ticket-1.pdf", "4" * 64, 4))  # a group once named so
    folder = tmp_path / "_manifest"
    (folder / "2025").mkdir()
    (folder / "2025" / "Ticket-1.pdf").write_bytes(b"%PDF")
    (folder / "2025" / "Ticket-1.pdf.json").write_text("{}")
    (folder / ".lock.stale-0123").write_text("")  # a broken lock: hidden, the service's
    assert verify_manifest(tmp_path, SignatureVerifier()).ok

    (folder / "2026-13-45.jsonl").write_text("")
    (folder / "2026-12-06.jsonl.bak").write_text("")
    (folder / "README").write_text("")
    (folder / "2020-01-01.jsonl.tsr").write_bytes(b"")  # a timestamp whose day file is gone
    (folder / "sub").mkdir()
    (folder / "sub" / "x.pdf").write_bytes(b"%PDF")
    report = verify_manifest(tmp_path, SignatureVerifier())

    assert report.first_break is None and not report.ok
    assert report.stray == [
        "_manifest/2020-01-01.jsonl.tsr",
        "_manifest/2026-12-06.jsonl.bak",
        "_manifest/2026-13-45.jsonl",
        "_manifest/README",
        "_manifest/sub/x.pdf",
    ]
    out = io.StringIO()
    assert (
        main(["--root", str(tmp_path), "--manifest", "--no-progress"], stdout=out, stderr=io.StringIO()) == 1
    )
    assert (
        "manifest: not the manifest's (remove or explain): _manifest/2020-01-01.jsonl.tsr, " in out.getvalue()
    )


class FlakyTimeStamper:
    """A TSA that refuses its first ``failures`` requests (a rate limit, a blip), then answers."""

    def __init__(self, inner: object, failures: int) -> None:
        self.inner, self.failures, self.asked = inner, failures, 0

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> object:
        self.asked += 1
        if self.asked <= self.failures:
            raise OSError("429 Too Many Requests")
        return await self.inner.async_timestamp(message_digest, md_algorithm)  # type: ignore[attr-defined]


async def test_a_day_the_tsa_refuses_stops_the_stamping_so_the_audit_does_not_cry_removed(
    tmp_path: Path, dev_pki: DevPki
) -> None:
    clock = [DAY1]
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=lambda: clock[0])
    for n in range(3):  # three days, one line each: day 1 and 2 closed
        clock[0] = DAY1 + timedelta(days=n)
        manifest.record(ManifestEntry(f"a/{n}.pdf", f"{n:064x}", n))
    flaky = FlakyTimeStamper(dev_timestamper(dev_pki.folder), failures=1)
    notary = ManifestTimestamper(tmp_path, flaky, clock=lambda: clock[0])  # type: ignore[arg-type]
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])

    assert await notary.stamp_closed_days() == []  # day 1 refused: day 2 waits for it
    assert flaky.asked == 1
    report = verify_manifest(tmp_path, verifier)
    assert report.ok and not report.missing_timestamps and len(report.unstamped_days) == 2

    day1, day2 = DAY1.date(), DAY1.date() + timedelta(days=1)
    assert await notary.stamp_closed_days() == [day1, day2]  # the next check: oldest first
    assert verify_manifest(tmp_path, verifier).ok


async def test_a_day_without_lines_does_not_stop_the_stamping(tmp_path: Path, dev_pki: DevPki) -> None:
    write_two_days(tmp_path)
    folder = tmp_path / "_manifest"
    empty = DAY1.date() - timedelta(days=1)
    (folder / day_file_name(empty)).write_bytes(b"")  # a writer crashed after creating it
    notary = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: DAY1 + timedelta(days=1)
    )

    assert await notary.stamp_closed_days() == [DAY1.date()]


async def test_a_day_ending_in_a_line_that_is_not_a_manifest_line_waits_for_its_repair(
    tmp_path: Path, dev_pki: DevPki, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=lambda: DAY1)
    manifest.record(ManifestEntry("a/0.pdf", "0" * 64, 0))
    day_file = tmp_path / "_manifest" / day_file_name(DAY1.date())
    good = day_file.read_bytes()
    day_file.write_bytes(good + b'{"note": "pasted here by hand"}\n')  # stops the writers too
    notary = ManifestTimestamper(
        tmp_path, dev_timestamper(dev_pki.folder), clock=lambda: DAY1 + timedelta(days=1)
    )
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])

    with caplog.at_level(logging.ERROR, logger="app.storage"):
        assert await notary.stamp_closed_days() == []
    assert not (tmp_path / "_manifest" / timestamp_file_name(DAY1.date())).exists()
    assert "is not a manifest line" in caplog.text

    day_file.write_bytes(good)  # runbook 6.13: only that last line removed
    assert await notary.stamp_closed_days() == [DAY1.date()]
    report = verify_manifest(tmp_path, verifier)
    assert report.ok and report.timestamps[0].covers_line == 1
