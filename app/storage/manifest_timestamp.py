"""RFC 3161 timestamps over the manifest: once a day is closed, the TSA stamps the hash of its last line.

The timestamp request's message imprint is the SHA-256 of the day's last line (its bytes
without ``\\n``), i.e. exactly the ``prev`` of the next day's first line. The TSA's answer
is stored as an RFC 3161 ``TimeStampResp`` (status *granted* plus the token) in
``_manifest/YYYY-MM-DD.jsonl.tsr``, next to the day file, so an auditor can check it with
OpenSSL alone::

    openssl ts -verify -digest "$(tail -n1 2026-12-06.jsonl | tr -d '\\n' | sha256sum | cut -d' ' -f1)" \\
        -in 2026-12-06.jsonl.tsr -CAfile tsa-root.pem

A day is closed when a later day file exists (a writer started the next day) or when
:data:`CLOSE_GRACE` has passed after its end (UTC). Several replicas may stamp the same day
at once: the ``.tsr`` is published with ``link()`` (atomic, fails if the name exists), so the
first one stays and the others are dropped. Writers never append to a day that has a ``.tsr``
(:mod:`app.storage.manifest`); a line that a writer with a lagging clock appended after the
last hash was read is simply not covered (the audit names the line the timestamp covers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from asn1crypto import tsp
from pyhanko.sign.timestamps import TimeStamper

from app.storage.manifest_format import (
    MANIFEST_FOLDER,
    day_file_name,
    iter_lines,
    line_hash,
    line_seq,
    manifest_days,
    timestamp_file_name,
)

log = logging.getLogger("app.storage")

CLOSE_GRACE = timedelta(hours=1)
"""How long after a day's end (UTC) it counts as closed when no later day was started."""

CHECK_INTERVAL_SECONDS = 3600.0
"""How often the service looks for closed days without a timestamp (and sooner when a
writer closes a day)."""


class NotAManifestLine(ValueError):
    """A day file's last line is not a manifest line (:func:`app.storage.manifest_format.line_seq`):
    the day is not stamped until that line is repaired (runbook 6.13), since a timestamp over
    it would cover none of the day's lines once it is."""


def last_line_hash(path: Path) -> str | None:
    """SHA-256 of the last complete line of a day file, ``None`` when it has none.

    Raises:
        NotAManifestLine: that line is not a manifest line.
        OSError: the file cannot be read.
    """
    last = None
    for raw, complete in iter_lines(path):
        if complete:
            last = raw
    if last is None:
        return None
    if line_seq(last) is None:
        raise NotAManifestLine(f"{path.name} ends in a line that is not a manifest line")
    return line_hash(last)


def closed_days_without_timestamp(folder: Path, now: datetime) -> list[date]:
    """The days in ``folder`` that are closed (see the module docstring) and have no ``.tsr``.

    Raises:
        OSError: the folder cannot be listed.
    """
    days = manifest_days(folder)
    names = set(os.listdir(folder)) if days else set()
    closed = []
    for index, day in enumerate(days):
        if timestamp_file_name(day) in names:
            continue
        ended = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        if index < len(days) - 1 or now >= ended + CLOSE_GRACE:
            closed.append(day)
    return closed


def timestamp_response(token: object) -> bytes:
    """A DER ``TimeStampResp`` (RFC 3161 §2.4.2) with status *granted* around ``token``
    (a ``cms.ContentInfo`` as pyHanko's ``TimeStamper.async_timestamp`` returns it)."""
    return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


class ManifestTimestamper:
    """Asks the TSA for a timestamp over each closed manifest day and stores it as ``.tsr``.

    Args:
        root: the storage root.
        timestamper: a pyHanko ``TimeStamper`` (the service's, from ``TSA_URL``).
        clock: the current time, timezone-aware (for tests).
    """

    def __init__(
        self,
        root: Path,
        timestamper: TimeStamper,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.folder = Path(root) / MANIFEST_FOLDER
        self._timestamper = timestamper
        self._clock = clock

    async def stamp_closed_days(self) -> list[date]:
        """Timestamp the closed days that have no ``.tsr`` yet, oldest first; returns the days
        stamped by this call.

        A TSA or file-system failure of one day is logged and stops the call there: the later
        days wait for the next check (the hourly one, or the next day closed), so a day without
        a ``.tsr`` is never older than one with it unless its ``.tsr`` was removed, which is
        what the audit infers (:attr:`app.audit.manifest_check.ManifestReport.missing_timestamps`).
        A day without lines has nothing to stamp and is passed over; a day whose last line is
        not a manifest line is not stamped (logged as an error) and stops the call like a
        failure, until the line is repaired.
        """
        try:
            days = await asyncio.to_thread(closed_days_without_timestamp, self.folder, self._clock())
        except OSError as exc:
            log.warning("manifest: cannot list the manifest folder", extra={"cause": str(exc)})
            return []
        stamped = []
        for index, day in enumerate(days):
            try:
                if await self.stamp_day(day):
                    stamped.append(day)
            except NotAManifestLine as exc:
                log.error(
                    "manifest: day not timestamped: its day file ends in a line that is not a "
                    "manifest line; remove only that line (runbook 6.13)",
                    extra={
                        "day": day.isoformat(),
                        "later_days_waiting": len(days) - index - 1,
                        "cause": str(exc),
                    },
                )
                break
            except Exception as exc:  # noqa: BLE001 - TSA errors are many; the next check retries
                log.warning(
                    "manifest: day not timestamped, will retry",
                    extra={
                        "day": day.isoformat(),
                        "later_days_waiting": len(days) - index - 1,
                        "cause": f"{type(exc).__name__}: {exc}",
                    },
                )
                break
        return stamped

    async def stamp_day(self, day: date) -> bool:
        """Timestamp the last line of ``day``'s file; ``False`` when it has no line or another
        writer stored a ``.tsr`` first.

        Raises:
            NotAManifestLine: the day file's last line is not a manifest line.
            pyhanko TimestampRequestError, ValueError: the TSA failed or answered garbage.
            OSError: the day file cannot be read or the ``.tsr`` written.
        """
        digest_hex = await asyncio.to_thread(last_line_hash, self.folder / day_file_name(day))
        if digest_hex is None:
            return False
        token = await self._timestamper.async_timestamp(bytes.fromhex(digest_hex), "sha256")
        stored = await asyncio.to_thread(self._publish, timestamp_file_name(day), timestamp_response(token))
        if stored:
            log.info(
                "manifest day timestamped", extra={"day": day.isoformat(), "last_line_sha256": digest_hex}
            )
        return stored

    def _publish(self, name: str, data: bytes) -> bool:
        target = self.folder / name
        tmp = self.folder / f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError:
                # No hard links (some CIFS servers): check, then rename; a second stamper in the
                # same instant could replace the first's response with its own, equally valid one.
                if target.exists():
                    return False
                os.replace(tmp, target)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def run(self, wake: asyncio.Event, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        """Stamp closed days now, then whenever ``wake`` is set (a writer closed a day) or
        ``interval`` seconds pass; until cancelled."""
        while True:
            await self.stamp_closed_days()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()
