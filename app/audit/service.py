"""What the service runs to keep archives provable: the manifest, its day timestamps, the scheduled audit.

:func:`open_manifest` gives the archive store its :class:`~app.storage.manifest.ArchiveManifest`;
:func:`start_archive_checks` starts the background tasks in the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date

import aiohttp
from prometheus_client import CollectorRegistry

from app.audit.schedule import AuditMetrics, ScheduledAudit, ScheduledAuditOptions
from app.config import Settings
from app.errors import ConfigError
from app.signing.trust import load_certificates
from app.signing.tsa import timestamper_from_settings
from app.storage.manifest import ArchiveManifest
from app.storage.manifest_timestamp import ManifestTimestamper

log = logging.getLogger("app.audit")


def open_manifest(settings: Settings, day_closed: asyncio.Event) -> ArchiveManifest:
    """The manifest under ``STORAGE_ROOT``; a writer that closes a day sets ``day_closed``
    (from its storage thread), which wakes the day timestamps. Call from the event loop."""
    assert settings.storage_root is not None
    loop = asyncio.get_running_loop()

    def on_day_closed(_day: date) -> None:
        loop.call_soon_threadsafe(day_closed.set)

    return ArchiveManifest(
        settings.storage_root.resolve(), fsync=settings.storage_fsync, on_day_closed=on_day_closed
    )


def start_archive_checks(
    settings: Settings, registry: CollectorRegistry, session: aiohttp.ClientSession, day_closed: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Start the background tasks that keep the archive provable: the RFC 3161 timestamp of
    each closed manifest day (with ``TSA_URL``) and the scheduled audit (with
    ``AUDIT_INTERVAL_HOURS``). A bad TSA or trust-roots setting is logged and that task left out.

    Args:
        settings: the service settings.
        registry: the service's metrics registry (the audit's metrics are added to it).
        session: the HTTP session for the TSA.
        day_closed: set (from the storage's threads) when a writer closed a manifest day.
    """
    assert settings.storage_root is not None
    root = settings.storage_root.resolve()
    tasks: list[asyncio.Task[None]] = []
    if settings.tsa_url:
        try:
            timestamper = timestamper_from_settings(settings, session)
        except ConfigError as exc:
            log.error("manifest days will not be timestamped", extra={"cause": str(exc)})
        else:
            notary = ManifestTimestamper(root, timestamper)
            tasks.append(asyncio.create_task(notary.run(day_closed), name="manifest-timestamps"))
    if settings.audit_interval_hours > 0:
        roots: tuple[bytes, ...] = ()
        if settings.signing_trust_roots_path is not None:
            try:
                roots = tuple(c.dump() for c in load_certificates(settings.signing_trust_roots_path))
            except ConfigError as exc:
                log.error("the scheduled audit checks integrity only", extra={"cause": str(exc)})
        audit = ScheduledAudit(
            ScheduledAuditOptions(str(root), roots, settings.audit_expiry_warn_days, settings.audit_manifest),
            settings.audit_interval_hours * 3600,
            AuditMetrics(registry),
            state_dir=settings.state_dir if settings.state_durable else None,
        )
        tasks.append(asyncio.create_task(audit.run(), name="scheduled-audit"))
    return tasks
