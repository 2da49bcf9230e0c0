"""The tamper-evident manifest: hash chain across days, the writers' lock, crash leftovers,
several processes appending at once, and the archive store's hook."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.audit.manifest_check import verify_manifest
from app.audit.signatures import SignatureVerifier
from app.errors import StorageError
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_format import (
    GENESIS,
    ManifestEntry,
    day_file_name,
    line_hash,
    timestamp_file_name,
)
from app.storage.share_lock import ShareLock, ShareLockTimeout
from app.storage.store import ArchiveStore
from app.workflow.ports import TicketSnapshot

DAY1 = datetime(2026, 12, 6, 23, 59, 58, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def entry(n: int) -> ManifestEntry:
    return ManifestEntry(f"Support/2026/Ticket-{n}.pdf", f"{n:064x}", 1000 + n, n, str(n), f"job-{n}")


def lines(root: Path, day: date) -> list[dict]:
    return [json.loads(raw) for raw in (root / "_manifest" / day_file_name(day)).read_bytes().splitlines()]


def chain_ok(root: Path) -> bool:
    report = verify_manifest(root, SignatureVerifier())
    return report.first_break is None


def test_lines_chain_within_a_day_and_into_the_next(tmp_path: Path) -> None:
    clock = Clock(DAY1)
    closed: list[date] = []
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=clock, on_day_closed=closed.append)

    first = manifest.record(entry(1))
    second = manifest.record(entry(2))
    clock.now = DAY1 + timedelta(seconds=5)  # past midnight
    third = manifest.record(entry(3))

    day1, day2 = DAY1.date(), DAY1.date() + timedelta(days=1)
    assert [line["seq"] for line in lines(tmp_path, day1)] == [1, 2]
    assert lines(tmp_path, day1)[0]["prev"] == GENESIS
    assert lines(tmp_path, day1)[1]["prev"] == first.sha256 == line_hash(first.raw)
    assert lines(tmp_path, day2)[0] == {**lines(tmp_path, day2)[0], "prev": second.sha256, "seq": 1}
    assert third.day == day2 and closed == [day1]
    assert lines(tmp_path, day1)[0]["path"] == "Support/2026/Ticket-1.pdf"
    assert {"event", "job_id", "ticket_id", "ticket_number", "time", "sha256", "size"} <= set(
        lines(tmp_path, day1)[0]
    )
    assert chain_ok(tmp_path)


def test_a_writer_whose_clock_is_behind_appends_to_the_newest_day(tmp_path: Path) -> None:
    ahead = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1 + timedelta(seconds=5)))
    behind = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1))
    ahead.record(entry(1))

    line = behind.record(entry(2))

    assert line.day == DAY1.date() + timedelta(days=1) and line.seq == 2
    assert not (tmp_path / "_manifest" / day_file_name(DAY1.date())).exists()
    assert chain_ok(tmp_path)


def test_a_timestamped_day_is_closed_for_writers(tmp_path: Path) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1))
    manifest.record(entry(1))
    (tmp_path / "_manifest" / timestamp_file_name(DAY1.date())).write_bytes(b"stamped")

    line = manifest.record(entry(2))  # same clock: the day is stamped, so the next day starts

    assert line.day == DAY1.date() + timedelta(days=1) and line.seq == 1
    assert chain_ok(tmp_path)


def test_an_incomplete_last_line_is_cut_off_and_the_chain_goes_on(tmp_path: Path) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1))
    manifest.record(entry(1))
    day_file = tmp_path / "_manifest" / day_file_name(DAY1.date())
    with open(day_file, "ab") as fh:
        fh.write(b'{"event":"archived","job_id":"job-2","pa')  # a writer died mid-write

    manifest.record(entry(3))

    assert [line["seq"] for line in lines(tmp_path, DAY1.date())] == [1, 2]
    assert lines(tmp_path, DAY1.date())[1]["path"] == "Support/2026/Ticket-3.pdf"
    assert chain_ok(tmp_path)
    (kept,) = (tmp_path / "_manifest").glob(f".{day_file.name}.cut-*")  # nothing lost unseen
    assert kept.read_bytes() == b'{"event":"archived","job_id":"job-2","pa'


def test_a_day_file_ending_in_garbage_stops_writers(tmp_path: Path) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1))
    manifest.record(entry(1))
    with open(tmp_path / "_manifest" / day_file_name(DAY1.date()), "ab") as fh:
        fh.write(b"not a manifest line\n")

    with pytest.raises(Exception) as caught:
        manifest.record(entry(2))

    assert getattr(caught.value, "errno", None) == errno.EBADMSG and caught.value.transient is False
    assert "audit --manifest" in str(caught.value)
    # What the runbook (6.13) says, too: keep a copy, remove only the last line; no "repair".
    assert "remove only that last line" in str(caught.value) and "runbook 6.13" in str(caught.value)
    assert "repair" not in str(caught.value)

    day_file = tmp_path / "_manifest" / day_file_name(DAY1.date())
    day_file.write_bytes(day_file.read_bytes().removesuffix(b"not a manifest line\n"))  # the runbook's cut
    manifest.record(entry(2))
    assert [line["seq"] for line in lines(tmp_path, DAY1.date())] == [1, 2] and chain_ok(tmp_path)


@pytest.mark.parametrize("last", [b"not a manifest line", b"[" * 100_000])  # the second: too deep for json
def test_a_day_file_ending_in_no_manifest_line_is_refused_alike_by_writers_and_lta_refresh(
    tmp_path: Path, last: bytes
) -> None:
    from app.signing.lta_record import check_manifest

    manifest = ArchiveManifest(tmp_path, fsync=False, clock=Clock(DAY1))
    manifest.record(entry(1))
    day_file = tmp_path / "_manifest" / day_file_name(DAY1.date())
    with open(day_file, "ab") as fh:
        fh.write(last + b"\n")

    for attempt in (lambda: manifest.record(entry(2)), lambda: check_manifest(tmp_path)):
        with pytest.raises(StorageError) as caught:
            attempt()
        assert caught.value.errno == errno.EBADMSG and caught.value.transient is False
    assert manifest.find("Support/2026/Ticket-1.pdf", entry(1).sha256) is not None  # read past it


def _append_many(root: str, start: int, count: int, go: Any) -> None:
    manifest = ArchiveManifest(Path(root), fsync=False)
    go.wait(60)  # every process starts appending at the same moment
    for n in range(start, start + count):
        manifest.record(entry(n))


def test_several_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    procs = [context.Process(target=_append_many, args=(str(tmp_path), 1000 * i, 60, go)) for i in range(4)]
    for proc in procs:
        proc.start()
    time.sleep(1.5)  # let them import
    go.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0

    report = verify_manifest(tmp_path, SignatureVerifier())

    assert report.first_break is None and report.lines == 240
    assert not (tmp_path / "_manifest" / ".lock").exists()


def test_share_lock_breaks_a_dead_holders_lock_file(tmp_path: Path) -> None:
    lock_file = tmp_path / ".lock"
    lock_file.write_text(json.dumps({"token": "dead-holder"}))  # left behind by a crash
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lock = ShareLock(lock_file, stale_after=1.0, timeout=5.0, monotonic=lambda: now[0], sleep=sleep)

    lock.acquire()

    assert lock.held and now[0] >= 1.0
    assert json.loads(lock_file.read_text())["token"] != "dead-holder"
    lock.release()
    assert not lock_file.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the broken lock file was removed


def test_share_lock_times_out_while_a_live_holder_renews(tmp_path: Path) -> None:
    lock_file = tmp_path / ".lock"
    now = [0.0]
    tokens = iter(range(1_000_000))

    def sleep(seconds: float) -> None:  # the holder takes the lock again and again
        now[0] += seconds
        lock_file.write_text(json.dumps({"token": f"live-{next(tokens)}"}))

    lock_file.write_text(json.dumps({"token": "live"}))
    lock = ShareLock(lock_file, stale_after=1.0, timeout=3.0, monotonic=lambda: now[0], sleep=sleep)

    with pytest.raises(ShareLockTimeout) as caught:
        lock.acquire()

    assert caught.value.errno == errno.ETIMEDOUT


async def test_the_store_records_each_archive_once_per_job(tmp_path: Path, snapshot: TicketSnapshot) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False)
    store = ArchiveStore(tmp_path, fsync=False, manifest=manifest)
    sidecar = {
        "job_id": "job-1",
        "ticket_id": 4711,
        "ticket_number": "25004711",
        "archived_at": snapshot.archived_at,
    }

    first = await store.store(snapshot, b"%PDF-1.7\nfirst\n%%EOF\n", sidecar=sidecar)
    again = await store.store(snapshot, b"%PDF-1.7\nfirst\n%%EOF\n", sidecar=sidecar)  # the job ran again
    other = await store.store(snapshot, b"%PDF-1.7\nsecond\n%%EOF\n", sidecar={**sidecar, "job_id": "job-2"})

    recorded = [
        line
        for day in sorted((tmp_path / "_manifest").glob("*.jsonl"))
        for line in day.read_text().splitlines()
    ]
    facts = [json.loads(line) for line in recorded]
    assert again == first
    assert [(f["path"], f["sha256"], f["job_id"]) for f in facts] == [
        (first.relative_path, first.sha256, "job-1"),
        (other.relative_path, other.sha256, "job-2"),
    ]
    assert (
        facts[0]["ticket_id"] == 4711
        and facts[0]["ticket_number"] == "25004711"
        and facts[0]["size"] == first.size
    )


async def test_a_crash_between_sidecar_and_manifest_line_is_made_good(
    tmp_path: Path, snapshot: TicketSnapshot
) -> None:
    sidecar = {"job_id": "job-1", "archived_at": snapshot.archived_at}
    stored = await ArchiveStore(tmp_path, fsync=False).store(
        snapshot, b"%PDF-1.7\nx\n%%EOF\n", sidecar=sidecar
    )
    assert not (tmp_path / "_manifest").exists()  # written without a manifest: the line is missing

    again = await ArchiveStore(tmp_path, fsync=False, manifest=ArchiveManifest(tmp_path, fsync=False)).store(
        snapshot, b"%PDF-1.7\nx\n%%EOF\n", sidecar=sidecar
    )

    assert again == stored
    (day_file,) = (tmp_path / "_manifest").glob("*.jsonl")
    assert json.loads(day_file.read_text())["path"] == stored.relative_path


def test_manifest_folder_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "_manifest").write_text("a file where the folder should be")
    manifest = ArchiveManifest(tmp_path, fsync=False)

    with pytest.raises(Exception) as caught:
        manifest.record(entry(1))

    assert type(caught.value).__name__ in {"StorageError", "ShareLockTimeout"}
    assert getattr(caught.value, "errno", None) in {errno.ENOTDIR, errno.EEXIST}
    assert os.path.isfile(tmp_path / "_manifest")


def test_a_writer_waits_while_another_holds_the_lock(tmp_path: Path) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False, lock_timeout=0.3, lock_stale_after=30)
    manifest.record(entry(1))
    holder = ShareLock(tmp_path / "_manifest" / ".lock")  # another replica, mid-append
    holder.acquire()

    with pytest.raises(ShareLockTimeout):
        manifest.record(entry(2))

    holder.release()
    assert manifest.record(entry(2)).seq == 2


def test_an_empty_day_file_left_by_a_crash_does_not_break_the_chain(tmp_path: Path) -> None:
    clock = Clock(DAY1)
    manifest = ArchiveManifest(tmp_path, fsync=False, clock=clock)
    manifest.record(entry(1))
    day2 = DAY1.date() + timedelta(days=1)
    (tmp_path / "_manifest" / day_file_name(day2)).touch()  # created, then the writer died
    clock.now = DAY1 + timedelta(days=2)

    manifest.record(entry(2))  # day 3 chains over the empty day 2 to day 1's last line

    assert chain_ok(tmp_path)
    assert lines(tmp_path, DAY1.date() + timedelta(days=2))[0]["prev"] == line_hash(
        (tmp_path / "_manifest" / day_file_name(DAY1.date())).read_bytes().rstrip(b"\n")
    )


def _old(path: Path) -> None:
    then = time.time() - 3600
    os.utime(path, (then, then))


async def test_a_new_chain_over_archives_of_a_lost_manifest_is_logged_as_an_error(
    tmp_path: Path, snapshot: TicketSnapshot, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = ArchiveManifest(tmp_path, fsync=False)
    store = ArchiveStore(tmp_path, fsync=False, manifest=manifest)
    first = await store.store(snapshot, b"%PDF-1.7\nfirst\n%%EOF\n", sidecar={"job_id": "job-1"})
    assert manifest.chain_check is not None
    manifest.chain_check.join(10)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a first start: nothing to say
    _old(Path(f"{first.path}.json"))
    (tmp_path / "_manifest").rename(tmp_path / "manifest.aside")  # the manifest moved aside

    await store.store(snapshot, b"%PDF-1.7\nsecond\n%%EOF\n", sidecar={"job_id": "job-2"})
    assert manifest.chain_check is not None
    manifest.chain_check.join(10)

    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "new chain" in error.getMessage() and error.archive == first.relative_path


async def test_a_new_chain_over_archives_from_before_the_manifest_is_not_an_error(
    tmp_path: Path, snapshot: TicketSnapshot, caplog: pytest.LogCaptureFixture
) -> None:
    old = await ArchiveStore(tmp_path, fsync=False).store(  # no manifest: no "manifest" key
        snapshot, b"%PDF-1.7\nold\n%%EOF\n", sidecar={"job_id": "job-1"}
    )
    _old(Path(f"{old.path}.json"))
    manifest = ArchiveManifest(tmp_path, fsync=False)
    store = ArchiveStore(tmp_path, fsync=False, manifest=manifest)

    await store.store(snapshot, b"%PDF-1.7\nnew\n%%EOF\n", sidecar={"job_id": "job-2"})
    assert manifest.chain_check is not None
    manifest.chain_check.join(10)

    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert (tmp_path / "_manifest").is_dir()


def test_the_look_for_archives_of_a_lost_manifest_reads_past_a_sidecar_nested_too_deep(
    tmp_path: Path,
) -> None:
    from app.storage.manifest import _entered_archive

    (tmp_path / "A.pdf.json").write_bytes(b"[" * 100_000)  # json: RecursionError, not ValueError
    (tmp_path / "B.pdf.json").write_text(json.dumps({"manifest": True}))
    for name in ("A.pdf.json", "B.pdf.json"):
        _old(tmp_path / name)

    assert _entered_archive(tmp_path, time.time() - 60, skip="") == "B.pdf"
