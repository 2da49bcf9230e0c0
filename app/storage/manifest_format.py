"""What the manifest's files look like: their names, a line's fields and hash, reading them back.

The format is described in :mod:`app.storage.manifest` (which writes it); the audit reads it
(:mod:`app.audit.manifest_check`), the timestamper stamps it
(:mod:`app.storage.manifest_timestamp`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from app.workflow.ports import StoredArchive

MANIFEST_FOLDER = "_manifest"
"""The manifest's folder directly under the storage root (the audit does not look for archives in it)."""

DAY_SUFFIX = ".jsonl"
TIMESTAMP_SUFFIX = ".tsr"
LOCK_NAME = ".lock"
"""The writers' lock file in the manifest folder."""

GENESIS = "0" * 64
"""``prev`` of the very first line."""

LINE_SCHEMA = 1
"""``schema`` of a line; raised when a field changes meaning."""

EVENT_ARCHIVED = "archived"
"""A new archive written by a job."""

EVENT_LTA_REFRESH = "lta_refresh"
"""A new version of an archive with fresh validation data and a document timestamp (``lta-refresh``)."""

REQUIRED_FIELDS = ("event", "path", "prev", "schema", "seq", "sha256", "size", "time")
"""Fields every line has (``ticket_id``, ``ticket_number``, ``job_id`` may be ``null``;
``source_path`` is there for new versions only)."""

_DAY_FILE = re.compile(r"\A(\d{4}-\d{2}-\d{2})\.jsonl\Z")


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of a manifest line's bytes without its ``\\n``: the next line's ``prev``."""
    return hashlib.sha256(line).hexdigest()


def day_file_name(day: date) -> str:
    """``2026-12-07.jsonl``."""
    return f"{day.isoformat()}{DAY_SUFFIX}"


def timestamp_file_name(day: date) -> str:
    """``2026-12-07.jsonl.tsr``: the RFC 3161 response over the day's last line."""
    return day_file_name(day) + TIMESTAMP_SUFFIX


def day_of(name: str) -> date | None:
    """The day of a day file's name, ``None`` for any other name."""
    match = _DAY_FILE.match(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match[1])
    except ValueError:
        return None


def manifest_days(folder: Path) -> list[date]:
    """The days that have a day file in ``folder``, oldest first (``[]`` without a folder).

    Raises:
        OSError: the folder exists but cannot be listed.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(d for d in map(day_of, names) if d is not None)


def iter_lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """The lines of a day file as ``(bytes without \\n, complete)``, streamed; only the last
    can be incomplete (a write in progress, or a writer that crashed mid-write).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n"):
                yield raw[:-1], True
            else:
                yield raw, False


def line_seq(raw: bytes) -> int | None:
    """The ``seq`` of a manifest line (bytes without ``\\n``), ``None`` when it is not a
    manifest line: not JSON, nested too deep for it, not an object, or without an integer
    ``seq``. The writers (:mod:`app.storage.manifest`) do not chain to, and the timestamper
    (:mod:`app.storage.manifest_timestamp`) does not stamp, a day file whose last line is none."""
    try:
        seq = json.loads(raw)["seq"]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deep
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What one manifest line records.

    Attributes:
        path: the archive's path relative to the storage root, ``/``-separated.
        sha256: its SHA-256, lowercase hex.
        size: its size in bytes.
        ticket_id, ticket_number: the Zammad ticket (``None`` when unknown).
        job_id: the archive job's id (``None`` outside a job).
        event: :data:`EVENT_ARCHIVED` or :data:`EVENT_LTA_REFRESH`.
        source_path: for a new version, the path of the archive it was made from.
    """

    path: str
    sha256: str
    size: int
    ticket_id: int | None = None
    ticket_number: str | None = None
    job_id: str | None = None
    event: str = EVENT_ARCHIVED
    source_path: str | None = None

    @classmethod
    def from_archive(
        cls,
        stored: StoredArchive,
        sidecar: Mapping[str, Any] | None = None,
        *,
        event: str = EVENT_ARCHIVED,
        source_path: str | None = None,
    ) -> ManifestEntry:
        """The entry of a stored archive; ticket and job from its sidecar mapping (if any)."""
        facts = sidecar or {}
        ticket_id = facts.get("ticket_id")
        number = facts.get("ticket_number")
        job_id = facts.get("job_id")
        return cls(
            path=stored.relative_path,
            sha256=stored.sha256,
            size=stored.size,
            ticket_id=ticket_id if isinstance(ticket_id, int) and not isinstance(ticket_id, bool) else None,
            ticket_number=str(number) if number not in (None, "") else None,
            job_id=str(job_id) if job_id not in (None, "") else None,
            event=event,
            source_path=source_path,
        )


@dataclass(frozen=True, slots=True)
class ManifestLine:
    """A line as written: its day, number within the day, bytes (without ``\\n``) and hash."""

    day: date
    seq: int
    raw: bytes
    sha256: str
