"""Is the manifest intact? Verifies the hash chain across all days and each day's RFC 3161 timestamp.

Streams the day files oldest first (:mod:`app.storage.manifest` describes the format) and
stops checking at the first broken line, which it reports with its file and line number and
what is wrong: not a JSON object, a field missing, a ``prev`` that is not the previous line's
hash (a line changed, removed, inserted or reordered, or a day file removed), a ``seq`` out of
order, or a first line that does not start the chain. An incomplete last line of the newest
day is a write in progress, not a break.

Each ``.tsr`` is checked as a timestamp token
(:meth:`app.audit.signatures.SignatureVerifier.verify_timestamp`): its imprint must be the
hash of one of the day's lines (normally the last) and its TSA must chain to the trust roots.
A closed day without one is listed, not failed (no TSA may be configured) — unless it has lines
and a later day has a ``.tsr``: the service stamps the closed days it finds unstamped oldest
first and stops at the first it cannot stamp, so that one was removed
(:attr:`ManifestReport.missing_timestamps`, failed). A line whose ``time`` is after its day
file's day, or more than :data:`CLOCK_SLACK` before it, is in the wrong day file (a day file
renamed; :attr:`ManifestReport.misdated`, failed).

``_manifest/`` is the service's own folder: any name in it the service did not make —
anything but day files, the ``.tsr`` of a day file there, hidden names (the lock, temporary
files) and, in subfolders, archives the manifest records there (with their sidecars; a group
named ``_manifest`` put them there before its name was remapped) — is listed as stray
(:attr:`ManifestReport.stray`, failed): a day file renamed to a name that is no date, a ``.tsr``
whose day file is gone, a copy of the manifest, an archive hidden where the walk does not look.

Optionally builds a :class:`ManifestIndex` (path → SHA-256, ticket id, ticket number and job
id of the newest line for it) for the file audit's cross-check: about 180 bytes per line, ~18 MB
for 100,000 archives (measured with tracemalloc: 178 bytes per line). The audit
takes each path it walks out of the index; :func:`recorded_archives` then reads the lines of
the paths left (the archives the walk did not find) back from the day files.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
from array import array
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from asn1crypto import tsp

from app.audit.signatures import SignatureVerifier
from app.storage.manifest_format import (
    GENESIS,
    MANIFEST_FOLDER,
    REQUIRED_FIELDS,
    TIMESTAMP_SUFFIX,
    day_file_name,
    day_of,
    iter_lines,
    line_hash,
    manifest_days,
    timestamp_file_name,
)
from app.storage.store import SIDECAR_SUFFIX

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")

CLOCK_SLACK = timedelta(hours=1)
"""How far before its day file's day a line's ``time`` may be: a writer whose clock is behind
appends to the newest day file (the runbook asks for clocks within an hour or so)."""

STRAY_SAMPLE = 20
"""How many stray names a :class:`ManifestReport` lists (all are counted)."""

MISDATED_SAMPLE = 20
"""How many misdated lines a :class:`ManifestReport` lists (all are counted)."""


@dataclass(frozen=True, slots=True)
class ManifestBreak:
    """The first line where the chain does not hold.

    Attributes:
        file: the day file's name, e.g. ``2026-12-07.jsonl``.
        line: the line number in that file (from 1).
        reason: what is wrong with it.
    """

    file: str
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class DayTimestamp:
    """The check of one day's ``.tsr``.

    Attributes:
        day: the day.
        covers_line: the number of the line whose hash it timestamps (``None``: none of them).
        lines: the number of complete lines of the day.
        gen_time: the token's ``genTime``.
        problem: why it does not hold, ``None`` when it does.
    """

    day: date
    covers_line: int | None
    lines: int
    gen_time: datetime | None
    problem: str | None


def _recorded(value: object) -> str | None:
    """A sidecar's ``ticket_number`` or ``job_id`` as a manifest line records it
    (:meth:`app.storage.manifest_format.ManifestEntry.from_archive`): its ``str``, ``None`` for
    a missing or empty one."""
    return str(value) if value not in (None, "") else None


def _record_digest(ticket_number: str | None, job_id: str | None) -> bytes:
    return hashlib.blake2b(orjson.dumps([ticket_number, job_id]), digest_size=8).digest()


def record_key(ticket_number: object, job_id: object) -> bytes:
    """9 bytes that stand for a manifest line's ``ticket_number`` and ``job_id``: which of the
    two it has (a bit each) and 8 bytes of a hash of both, so a sidecar's pair can be compared
    with its line's (:meth:`IndexedLine.records`) without keeping the strings of every line."""
    number, job = _recorded(ticket_number), _recorded(job_id)
    mask = (number is not None) | (job is not None) << 1
    return bytes([mask]) + _record_digest(number, job)


@dataclass(frozen=True, slots=True)
class IndexedLine:
    """What the index keeps of the newest manifest line for a path.

    Attributes:
        sha256: the recorded SHA-256 (hex).
        ticket_id: the recorded ``ticket_id`` (``None`` when the line has none).
        record: :func:`record_key` of the recorded ``ticket_number`` and ``job_id``.
    """

    sha256: str
    ticket_id: int | None
    record: bytes

    def records(self, ticket_number: object, job_id: object) -> bool:
        """Whether the line records this ``ticket_number`` and ``job_id`` (a sidecar's); a
        field the line has no value for is not compared, like a line's missing ``ticket_id``."""
        mask = self.record[0]
        number = _recorded(ticket_number) if mask & 1 else None
        job = _recorded(job_id) if mask & 2 else None
        return self.record[1:] == _record_digest(number, job)


class ManifestIndex:
    """Path → SHA-256, ticket id and :func:`record_key` of the newest manifest line for that
    path (compact: 8-byte path keys), and the first 8 bytes of every SHA-256 the manifest
    records, for "is this file recorded at another path?"."""

    def __init__(self) -> None:
        self._lines: dict[int, bytes] = {}
        self._digests = array("Q")
        self._sorted = True

    @staticmethod
    def key(path: str) -> int:
        """The index's key of ``path``: 8 bytes of its BLAKE2b hash."""
        return int.from_bytes(hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest(), "big")

    def add(self, path: str, sha256: str, ticket_id: object, record: bytes) -> None:
        """Record a line (a later line for the same path replaces an earlier one); ``record``
        is :func:`record_key` of its ``ticket_number`` and ``job_id``."""
        try:
            digest = bytes.fromhex(sha256)
        except ValueError:  # not hex: the chain check reports the line
            return
        if len(digest) != 32:
            return
        ticket = b""
        if isinstance(ticket_id, int) and not isinstance(ticket_id, bool) and -(2**63) <= ticket_id < 2**63:
            ticket = ticket_id.to_bytes(8, "big", signed=True)
        self._lines[self.key(path)] = digest + record + ticket
        self._digests.append(int.from_bytes(digest[:8], "big"))
        self._sorted = False

    @staticmethod
    def _line(value: bytes | None) -> IndexedLine | None:
        if value is None:
            return None
        ticket = int.from_bytes(value[41:], "big", signed=True) if len(value) > 41 else None
        return IndexedLine(value[:32].hex(), ticket, value[32:41])

    def get(self, path: str) -> IndexedLine | None:
        """The newest line for ``path``, or ``None`` when the path has none (or was taken)."""
        return self._line(self._lines.get(self.key(path)))

    def take(self, path: str) -> IndexedLine | None:
        """As :meth:`get`, and removes the path: what is left after the walk are the recorded
        archives it did not find (:meth:`keys`)."""
        return self._line(self._lines.pop(self.key(path), None))

    def records_sha256(self, sha256: str) -> bool:
        """Whether any line (for any path, taken or not) records a SHA-256 starting with the
        same 8 bytes as ``sha256`` (hex): a file found at a path without a line is then
        almost surely a copy of a recorded archive."""
        if not self._sorted:
            self._digests = array("Q", sorted(self._digests))
            self._sorted = True
        try:
            wanted = int(sha256[:16], 16)
        except ValueError:
            return False
        at = bisect.bisect_left(self._digests, wanted)
        return at < len(self._digests) and self._digests[at] == wanted

    def keys(self) -> Set[int]:
        """The keys (:meth:`key`) of the paths still in the index."""
        return self._lines.keys()

    def __len__(self) -> int:
        return len(self._lines)


@dataclass(frozen=True, slots=True)
class RecordedArchive:
    """An archive as the manifest's newest line for its path records it.

    Attributes:
        path: relative to the storage root, ``/``-separated, as recorded.
        sha256: the recorded SHA-256 (hex).
        file, line: the day file's name and the line's number in it (from 1).
    """

    path: str
    sha256: str
    file: str
    line: int


def recorded_archives(root: Path, keys: Set[int]) -> list[RecordedArchive]:
    """The newest complete line of every path whose :meth:`ManifestIndex.key` is in ``keys``,
    read from the day files under ``root/_manifest``, sorted by path. Lines appended since the
    index was built count only for paths in ``keys``; memory grows with those, not the manifest.

    Raises:
        OSError: the manifest folder or a day file cannot be read.
    """
    found: dict[int, RecordedArchive] = {}
    if not keys:
        return []
    folder = root / MANIFEST_FOLDER
    for day in manifest_days(folder):
        name = day_file_name(day)
        for number, (raw, complete) in enumerate(iter_lines(folder / name), 1):
            if not complete:
                break
            try:
                fields = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(fields, dict):
                continue
            path, sha = fields.get("path"), fields.get("sha256")
            if isinstance(path, str) and isinstance(sha, str):
                key = ManifestIndex.key(path)
                if key in keys:
                    found[key] = RecordedArchive(path, sha, name, number)
    return sorted(found.values(), key=lambda recorded: recorded.path)


@dataclass(slots=True)
class ManifestReport:
    """What :func:`verify_manifest` found.

    Attributes:
        days, lines: day files and complete lines read.
        first_break: the first broken line, ``None`` when the chain holds.
        timestamps: one entry per ``.tsr``.
        unstamped_days: closed days (all but the newest) without a ``.tsr``.
        incomplete_tail: the day file whose last line is incomplete (a write in progress), if any.
        missing_timestamps: closed days with lines and no ``.tsr`` although a later day has one
            (its ``.tsr`` was removed).
        misdated: lines whose ``time`` does not fall on their day file's day, as ``(file, line,
            time)`` (the first :data:`MISDATED_SAMPLE`); misdated_lines: how many there are.
        stray: names under ``_manifest/`` that are not the manifest's (relative to the root,
            the first :data:`STRAY_SAMPLE`); stray_count: how many there are.
        first_time: the first line's ``time`` (the manifest's start).
        head: the hash of the last line (what the next line will chain to).
    """

    days: int = 0
    lines: int = 0
    first_break: ManifestBreak | None = None
    timestamps: list[DayTimestamp] = field(default_factory=list)
    unstamped_days: list[date] = field(default_factory=list)
    incomplete_tail: str | None = None
    missing_timestamps: list[date] = field(default_factory=list)
    misdated: list[tuple[str, int, str]] = field(default_factory=list)
    misdated_lines: int = 0
    stray: list[str] = field(default_factory=list)
    stray_count: int = 0
    first_time: datetime | None = None
    head: str | None = None

    @property
    def ok(self) -> bool:
        """The chain holds, every timestamp does, no closed day lost its timestamp and every line
        is in its day's file."""
        return (
            self.first_break is None
            and all(t.problem is None for t in self.timestamps)
            and not self.missing_timestamps
            and not self.misdated_lines
            and not self.stray_count
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``manifest`` of ``python -m app audit --json``)."""
        broken = self.first_break
        return {
            "ok": self.ok,
            "days": self.days,
            "lines": self.lines,
            "first_break": {"file": broken.file, "line": broken.line, "reason": broken.reason}
            if broken
            else None,
            "timestamps": [
                {
                    "day": t.day.isoformat(),
                    "covers_line": t.covers_line,
                    "lines": t.lines,
                    "gen_time": t.gen_time.isoformat() if t.gen_time else None,
                    "problem": t.problem,
                }
                for t in self.timestamps
            ],
            "unstamped_days": [d.isoformat() for d in self.unstamped_days],
            "missing_timestamps": [d.isoformat() for d in self.missing_timestamps],
            "misdated_lines": self.misdated_lines,
            "misdated": [{"file": f, "line": n, "time": t} for f, n, t in self.misdated],
            "stray": list(self.stray),
            "stray_count": self.stray_count,
            "incomplete_tail": self.incomplete_tail,
            "first_time": self.first_time.isoformat() if self.first_time else None,
            "head": self.head,
        }


def _line_problem(fields: Any) -> str | None:
    if not isinstance(fields, dict):
        return "not a JSON object"
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        return f"field(s) missing: {', '.join(missing)}"
    if not isinstance(fields["prev"], str) or not _HEX64.match(fields["prev"]):
        return "prev is not a SHA-256"
    if not isinstance(fields["sha256"], str) or not _HEX64.match(fields["sha256"]):
        return "sha256 is not a SHA-256"
    if not isinstance(fields["path"], str) or not fields["path"]:
        return "path is not a path"
    seq = fields["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "seq is not a number"
    return None


def _parse_time(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def verify_manifest(
    root: Path, verifier: SignatureVerifier, *, index: ManifestIndex | None = None
) -> ManifestReport:
    """Verify the chain of every day file under ``root/_manifest`` and each day's timestamp.

    Args:
        root: the storage root.
        verifier: checks the ``.tsr`` tokens (with or without trust roots).
        index: filled with every line's path and SHA-256 when given.

    Raises:
        OSError: the manifest folder or a day file cannot be read.
    """
    folder = root / MANIFEST_FOLDER
    report = ManifestReport()
    days = manifest_days(folder)
    report.days = len(days)
    expected_prev = GENESIS
    lines_of: dict[date, int] = {}
    inside_prefix, inside = MANIFEST_FOLDER + "/", set[str]()
    for position, day in enumerate(days):
        name = day_file_name(day)
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        earliest, end = day_start - CLOCK_SLACK, day_start + timedelta(days=1)
        hashes: dict[str, int] = {}
        seq = 0
        for number, (raw, complete) in enumerate(iter_lines(folder / name), 1):
            if not complete:
                if position == len(days) - 1:
                    report.incomplete_tail = name
                elif report.first_break is None:
                    report.first_break = ManifestBreak(
                        name, number, "incomplete line (no newline) before the end"
                    )
                break
            report.lines += 1
            digest = line_hash(raw)
            hashes.setdefault(digest, number)
            try:
                fields = orjson.loads(raw)
            except orjson.JSONDecodeError:
                fields = None
            if isinstance(fields, dict):
                moment = _parse_time(fields.get("time"))
                if moment is not None and not earliest <= moment < end:
                    report.misdated_lines += 1
                    if len(report.misdated) < MISDATED_SAMPLE:
                        report.misdated.append((name, number, str(fields.get("time"))))
            if isinstance(fields, dict):
                path, sha = fields.get("path"), fields.get("sha256")
                if isinstance(path, str) and isinstance(sha, str):
                    if index is not None:
                        index.add(
                            path,
                            sha,
                            fields.get("ticket_id"),
                            record_key(fields.get("ticket_number"), fields.get("job_id")),
                        )
                    if path.startswith(inside_prefix):
                        inside.add(path)
            if report.first_break is None:
                problem = _line_problem(fields)
                if problem is None:
                    assert isinstance(fields, dict)
                    if fields["prev"] != expected_prev:
                        problem = (
                            "does not start the chain (earlier manifest lines or days are missing)"
                            if expected_prev == GENESIS
                            else "prev is not the hash of the line before it (a line was changed, "
                            "removed, inserted or reordered, or a day file removed)"
                        )
                    elif fields["seq"] != seq + 1:
                        problem = f"seq is {fields['seq']}, expected {seq + 1}"
                if problem is not None:
                    report.first_break = ManifestBreak(name, number, problem)
                elif report.first_time is None:
                    report.first_time = _parse_time(fields["time"])
            seq = (
                fields["seq"] if isinstance(fields, dict) and isinstance(fields.get("seq"), int) else seq + 1
            )
            expected_prev = digest
        report.head = expected_prev if report.lines else None
        lines_of[day] = len(hashes)
        tsr = folder / timestamp_file_name(day)
        if tsr.exists():
            report.timestamps.append(_check_timestamp(tsr, day, hashes, seq, verifier))
        elif position < len(days) - 1:
            report.unstamped_days.append(day)
    if report.timestamps:
        newest_stamped = max(t.day for t in report.timestamps)
        report.missing_timestamps = [d for d in report.unstamped_days if d < newest_stamped and lines_of[d]]
    for number, name in enumerate(_stray_names(folder, set(days), inside)):
        if number < STRAY_SAMPLE:
            report.stray.append(name)
        report.stray_count += 1
    return report


def _stray_names(folder: Path, days: set[date], recorded: set[str]) -> Iterator[str]:
    """Names under ``folder`` (``_manifest``) that are not the manifest's (see the module
    docstring), relative to the storage root, sorted; folders are walked without following
    symlinks. ``recorded``: the archive paths under the folder that manifest lines record.

    Raises:
        OSError: the folder exists but cannot be listed.
    """
    try:
        top = sorted(os.scandir(folder), key=lambda item: item.name)
    except FileNotFoundError:
        return
    stack: list[tuple[str, list[os.DirEntry[str]]]] = [(MANIFEST_FOLDER, top)]
    while stack:
        where, items = stack.pop()
        subfolders = []
        for item in items:
            relative = f"{where}/{item.name}"
            if item.name.startswith("."):
                continue  # the lock, temporary files: the service's, hidden
            if item.is_dir(follow_symlinks=False):
                try:
                    subfolders.append((relative, sorted(os.scandir(item.path), key=lambda i: i.name)))
                except OSError:
                    yield relative + "/"
                continue
            if where == MANIFEST_FOLDER:
                day = day_of(item.name.removesuffix(TIMESTAMP_SUFFIX))
                if day in days and item.is_file(follow_symlinks=False):
                    continue
            elif item.is_file(follow_symlinks=False) and (
                relative in recorded or relative.removesuffix(SIDECAR_SUFFIX) in recorded
            ):
                continue
            yield relative
        stack.extend(reversed(subfolders))


def _check_timestamp(
    tsr: Path, day: date, hashes: dict[str, int], lines: int, verifier: SignatureVerifier
) -> DayTimestamp:
    try:
        response = tsp.TimeStampResp.load(tsr.read_bytes())
        status = response["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            raise ValueError(f"status {status}")
        token = response["time_stamp_token"]
        imprint = token["content"]["encap_content_info"]["content"].parsed["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        stamped = imprint["hashed_message"].native
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return DayTimestamp(day, None, lines, None, f"not a usable RFC 3161 response: {exc}")
    if algorithm != "sha256":
        return DayTimestamp(day, None, lines, None, f"imprint uses {algorithm}, expected sha256")
    covers = hashes.get(stamped.hex())
    check = verifier.verify_timestamp(token.dump(), lambda _alg: stamped, "manifest timestamp")
    problem = check.problem
    if covers is None:
        problem = "the timestamp covers none of the day's lines" + (f"; {problem}" if problem else "")
    return DayTimestamp(day, covers, lines, check.gen_time, problem)
