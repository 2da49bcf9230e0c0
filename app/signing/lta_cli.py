"""``lta-refresh``: renew archives' long-term validation (PAdES B-LTA) before their evidence expires.

Usage::

    python -m app lta-refresh [--within-days N] [--dry-run]

Walks ``STORAGE_ROOT`` (:func:`app.storage.versions.archive_families`) and looks at the newest
version of every archive. One whose newest timestamp or signing chain expires within ``N`` days
(default 90; see :mod:`app.signing.lta`) gets a new version next to it,
``<name>.lta-YYYYMMDD.pdf`` with its own sidecar: the bytes of the version it came from (checked
against that version's sidecar first), plus validation data and a document timestamp from
``TSA_URL``. Nothing that exists is changed. Each new version is recorded in the manifest
(``lta_refresh`` line); a run that could not record one leaves none behind
(:mod:`app.signing.lta_record`): it checks the manifest before anything else, and takes back a
version whose line could not be written, then stops. ``--dry-run`` lists what would be
refreshed and why, and writes nothing.

Needs ``STORAGE_ROOT``, ``TSA_URL`` (with ``TSA_USER``/``TSA_PASS``/``TSA_CA_BUNDLE_PATH`` as
the service uses them) and ``SIGNING_TRUST_ROOTS_PATH``; the PFX is not used. Exit status: 0
when every due archive was refreshed (or, with ``--dry-run``, could be looked at), 1 when one
failed, 2 for a usage or configuration error. Messages never hold a password.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import aiohttp

from app import __version__
from app.config import Settings, load_settings
from app.errors import ArchiverError, ConfigError, SigningError, StorageError
from app.signing.lta import (
    DEFAULT_REFRESH_WINDOW,
    LtaEvidence,
    LtaRefresher,
    LtaResult,
    read_evidence,
    refresh_reasons,
    require_revocation_sources,
)
from app.signing.lta_record import check_manifest, withdraw_version
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import timestamper_from_settings
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_format import EVENT_LTA_REFRESH
from app.storage.versions import ArchiveFamily, NewVersion, archive_families, lta_version_name, read_sidecar
from app.workflow.ports import StoredArchive

__all__ = ["LtaRefreshConfig", "main", "record_new_version", "run"]

_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class LtaRefreshConfig:
    """What one run needs, taken from the settings.

    Attributes:
        root: the resolved storage root.
        tsa_url: the TSA (``TSA_URL``).
        trust_roots_path: the PEM bundle of trust roots (``SIGNING_TRUST_ROOTS_PATH``).
        settings: the other settings (TSA credentials, timeout, CA bundle, fsync).
        within: refresh what expires within this time.
        dry_run: list only, write nothing.
    """

    root: Path
    tsa_url: str
    trust_roots_path: Path
    settings: Settings
    within: timedelta
    dry_run: bool

    @classmethod
    def from_settings(cls, settings: Settings, *, within: timedelta, dry_run: bool) -> LtaRefreshConfig:
        """Check that the settings name what a refresh needs.

        Raises:
            ConfigError: no ``STORAGE_ROOT`` (or not a folder), no ``TSA_URL``, no
                ``SIGNING_TRUST_ROOTS_PATH``; the message names the setting.
        """
        if settings.storage_root is None:
            raise ConfigError("STORAGE_ROOT / storage.root: is required for lta-refresh")
        if not settings.storage_root.is_dir():
            raise ConfigError(
                f"STORAGE_ROOT / storage.root: {str(settings.storage_root)!r} is not an existing folder"
            )
        if not settings.tsa_url:
            raise ConfigError(
                "TSA_URL / tsa.url: lta-refresh adds document timestamps and needs a timestamp "
                "authority: set TSA_URL"
            )
        if settings.signing_trust_roots_path is None:
            raise ConfigError(
                "SIGNING_TRUST_ROOTS_PATH / signing.trust_roots_path: lta-refresh validates the "
                "signer and TSA chains and needs the roots they end in: set it"
            )
        return cls(
            settings.storage_root.resolve(),
            settings.tsa_url,
            settings.signing_trust_roots_path,
            settings,
            within,
            dry_run,
        )


def record_new_version(
    root: Path, stored: StoredArchive, sidecar: Mapping[str, Any], *, source: str, fsync: bool = True
) -> None:
    """Record a published version in the tamper-evident manifest (``STORAGE_ROOT/_manifest/``).

    Called once for every new version this command publishes, after its sidecar is written:
    one ``lta_refresh`` line naming the version, its SHA-256, size, ticket and job, and the
    version it was made from (``source``, relative to the root).

    Raises:
        StorageError: the manifest cannot be written (the version itself stays published:
            the caller withdraws it, see :mod:`app.signing.lta_record`).
    """
    ArchiveManifest(root, fsync=fsync).record_archive(
        stored, sidecar, event=EVENT_LTA_REFRESH, source_path=source
    )


class _NotRecorded(StorageError):
    """A version was made but its manifest line could not be written; the run stops."""


@dataclass
class _Tally:
    archives: int = 0
    unsigned: int = 0
    due: int = 0
    refreshed: int = 0  # with --dry-run: the archives it would refresh (due and not refused)
    failed: int = 0
    skipped: int = 0


class _Output:
    """stdout for results, stderr for failures; every secret of the settings redacted."""

    def __init__(self, out: TextIO, err: TextIO, secrets: Sequence[str]) -> None:
        self._out, self._err = out, err
        self._secrets = [s for s in secrets if s]

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def say(self, text: str) -> None:
        print(self._clean(text), file=self._out, flush=True)

    def warn(self, text: str) -> None:
        print(self._clean(text), file=self._err, flush=True)


def _copy_and_hash(source: Path, target: BinaryIO) -> tuple[str, int]:
    """Copy ``source`` (not following a symlink) into ``target``; SHA-256 (hex) and size of the copy."""
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as reader:
            while chunk := reader.read(_COPY_CHUNK):
                digest.update(chunk)
                target.write(chunk)
                size += len(chunk)
    except OSError as exc:
        raise StorageError(f"cannot read '{source.name}': {exc.strerror or exc}", errno=exc.errno) from exc
    return digest.hexdigest(), size


def _evidence(path: Path, roots: Sequence[Any]) -> LtaEvidence:
    """:func:`~app.signing.lta.read_evidence` of the PDF at ``path`` (not following a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot read '{path.name}': {exc.strerror or exc}", errno=exc.errno) from exc
    with os.fdopen(fd, "rb") as pdf:
        return read_evidence(pdf, extra_certificates=roots)


def _new_sidecar(
    previous: Mapping[str, Any],
    source: str,
    *,
    refreshed_at: datetime,
    reasons: Sequence[str],
    result_timestamp: datetime,
    authority: str,
    valid_until: datetime | None,
) -> dict[str, Any]:
    """The new version's sidecar: the previous version's facts, level B-LTA and the refresh's own."""
    earlier = previous.get("lta_refresh")
    original = earlier.get("original") if isinstance(earlier, dict) else None
    return {
        **previous,
        "pades_level": "B-LTA",
        "lta_refresh": {
            "original": original or source,
            "source": source,
            "source_sha256": previous.get("sha256"),
            "refreshed_at": refreshed_at.isoformat(),
            "reasons": list(reasons),
            "document_timestamp": result_timestamp.isoformat(),
            "timestamp_authority": authority,
            "valid_until": valid_until.isoformat() if valid_until else None,
            "service_version": __version__,
        },
    }


async def _refresh(
    config: LtaRefreshConfig,
    refresher: LtaRefresher,
    family: ArchiveFamily,
    sidecar: Mapping[str, Any],
    reasons: Sequence[str],
    now: datetime,
) -> tuple[StoredArchive, LtaResult]:
    source = config.root / family.newest_relative
    name = lta_version_name(family.newest, now.date())
    with NewVersion(config.root, family.folder, name, fsync=config.settings.storage_fsync) as version:
        digest, size = _copy_and_hash(source, version.file)
        if digest != sidecar.get("sha256") or size != sidecar.get("size"):
            raise StorageError(
                "the file does not match its sidecar (SHA-256 or size): not refreshed; "
                "run the fixity audit (python -m app audit)"
            )
        version.file.seek(0)
        result = await refresher.refresh(version.file)
        content = _new_sidecar(
            sidecar,
            family.newest_relative,
            refreshed_at=now,
            reasons=reasons,
            result_timestamp=result.timestamp,
            authority=result.timestamp_authority,
            valid_until=result.evidence.expires_at,
        )
        stored = version.publish(content)
    try:
        record_new_version(
            config.root, stored, content, source=family.newest_relative, fsync=config.settings.storage_fsync
        )
    except StorageError as exc:
        raise _not_recorded(config, stored, exc) from exc
    return stored, result


def _not_recorded(config: LtaRefreshConfig, stored: StoredArchive, exc: StorageError) -> _NotRecorded:
    """Take back ``stored``, whose manifest line could not be written (``exc``); what to say.

    The line may have landed all the same (e.g. ``fsync`` failed after the write): a version
    whose line is found is kept. One that cannot be looked up is kept too, and named."""
    where = stored.relative_path
    try:
        # The line went to today's day file (real clock, UTC) or a later one; a day back
        # for a run that crossed midnight.
        since = datetime.now(UTC).date() - timedelta(days=1)
        found = ArchiveManifest(config.root).find(where, stored.sha256, since=since)
    except StorageError as lookup:
        return _NotRecorded(
            f"{exc}; the manifest cannot be read back either ({lookup}): the new version {where} "
            "stays and may be unrecorded: run 'python -m app audit --manifest'",
            errno=exc.errno,
        )
    if found is not None:
        return _NotRecorded(
            f"{exc}; the manifest holds the line of the new version {where} all the same "
            f"({found.day:%Y-%m-%d} #{found.seq}): kept; check the manifest's storage",
            errno=exc.errno,
        )
    try:
        withdraw_version(config.root, stored, fsync=config.settings.storage_fsync)
    except StorageError as undo:
        return _NotRecorded(
            f"{exc}; the new version {where} could not be removed ({undo}): remove it and its "
            "sidecar by hand, it is in no manifest",
            errno=exc.errno,
        )
    return _NotRecorded(f"{exc}; the new version was removed, nothing refreshed", errno=exc.errno)


async def run(
    config: LtaRefreshConfig,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: datetime | None = None,
) -> int:
    """One pass over the storage root; returns the exit status (0 ok, 1 something failed).

    Prints one line per archive that is due (``would refresh``/``refreshed``), failed or was
    skipped, then a summary. Blocking file work runs on the event loop: this is a command,
    not the service.

    Before anything else the manifest must be able to take a line
    (:func:`~app.signing.lta_record.check_manifest`), also with ``--dry-run``. A version whose
    manifest line cannot be written is taken back, and the run stops there (the other
    archives would fail alike, each after a TSA request).

    Raises:
        ConfigError: the trust roots or the TSA CA bundle cannot be loaded, or a TSA setting
            is invalid.
        StorageError: the manifest cannot be extended or read; nothing was written.
    """
    settings = config.settings
    now = now or datetime.now(UTC)
    output = _Output(out, err, settings.secrets())
    roots = load_certificates(config.trust_roots_path)
    check_manifest(config.root)
    from app.signing.factory import tsa_ssl_context

    try:
        ssl_context = tsa_ssl_context(settings)
    except SigningError as exc:
        raise ConfigError(str(exc)) from None
    tally = _Tally()
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        timestamper = timestamper_from_settings(settings, session)
        validation = LongTermValidation(roots, session, fetch_timeout=settings.tsa_timeout_seconds)
        refresher = LtaRefresher(timestamper, validation, clock=lambda: now)
        for family in archive_families(config.root):
            tally.archives += 1
            relative = family.newest_relative
            try:
                sidecar = read_sidecar(config.root / relative)
                if sidecar is None:
                    tally.skipped += 1
                    output.warn(f"skipped {relative}: no sidecar (an interrupted publish?)")
                    continue
                evidence = _evidence(config.root / relative, roots)
                if not evidence.signed:
                    tally.unsigned += 1
                    continue
                reasons = refresh_reasons(evidence, now=now, within=config.within)
                if not reasons:
                    continue
                tally.due += 1
                require_revocation_sources(evidence, roots)  # before the TSA, and for --dry-run
                if config.dry_run:
                    tally.refreshed += 1
                    output.say(f"would refresh {relative}: {'; '.join(reasons)}")
                    continue
                stored, result = await _refresh(config, refresher, family, sidecar, reasons, now)
            except _NotRecorded as exc:
                tally.failed += 1
                output.warn(f"failed {relative}: {exc}")
                output.warn(
                    "lta-refresh: stopped, as the manifest cannot be written; "
                    "the archives after it were not looked at"
                )
                break
            except (ArchiverError, OSError) as exc:
                tally.failed += 1
                message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                output.warn(f"failed {relative}: {message}")
                continue
            tally.refreshed += 1
            expires = result.evidence.expires_at
            output.say(
                f"refreshed {relative} -> {stored.relative_path}: {'; '.join(reasons)}; "
                f"document timestamp {result.timestamp.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                f"by {result.timestamp_authority!r}; "
                f"next refresh due before {f'{expires:%Y-%m-%d}' if expires else 'an unknown date'}"
            )
    done = f"{'would refresh' if config.dry_run else 'refreshed'} {tally.refreshed}"
    output.say(
        f"lta-refresh: {tally.archives} archives, {tally.unsigned} unsigned, "
        f"{tally.due} due within {config.within.days} days, {done}, "
        f"{tally.failed} failed, {tally.skipped} skipped"
    )
    return 1 if tally.failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app lta-refresh",
        description="Add validation data and a new document timestamp (PAdES B-LTA) to archives whose "
        "newest timestamp or signing chain expires soon, as a new version next to each.",
    )
    parser.add_argument(
        "--within-days",
        type=int,
        default=DEFAULT_REFRESH_WINDOW.days,
        metavar="N",
        help=f"refresh what expires within N days (default {DEFAULT_REFRESH_WINDOW.days})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be refreshed and why; write nothing"
    )
    return parser


def main(argv: list[str]) -> int:
    """``python -m app lta-refresh``; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    if args.within_days < 0:
        print("lta-refresh: --within-days must be 0 or more", file=sys.stderr)
        return 2
    from app.observability.warning_capture import ROUTER

    try:
        settings = load_settings(require_complete=False)
        config = LtaRefreshConfig.from_settings(
            settings, within=timedelta(days=args.within_days), dry_run=args.dry_run
        )
    except ConfigError as exc:
        ROUTER.discard()
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from app.observability.logging import configure_logging

    configure_logging("WARNING", secrets=settings.secrets())
    try:
        return asyncio.run(run(config))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"lta-refresh: {exc}", file=sys.stderr)
        return 1
