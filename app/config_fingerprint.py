"""Which settings every replica on one PostgreSQL job store must share, and their fingerprint.

Any replica may run any job of the shared store, so a setting that decides what a job does
— which tag requests archiving, where the archive is written, what the PDF and its signature
hold — must have the same value on every replica, or some jobs end differently from the
others without anyone noticing (a replica with another ``WORKFLOW_TRIGGER_TAG`` ends them
``skipped: trigger_tag_absent``; one with another ``STORAGE_ROOT`` writes their archives
elsewhere). Settings that only tune this replica (workers, timeouts, ports, log level, its
own ``STATE_DIR``) may differ.

:func:`settings_fingerprint` turns the values of :data:`GROUPS` into a short, fixed-size text
that the store puts into the ``application_name`` of its PostgreSQL connections
(:func:`application_name`), where every replica can compare it with its own
(:mod:`app.jobs.pg_replicas`). Secrets (tokens, passwords, the HMAC secret, ``JOB_STORE_URL``)
and anything derived from them alone are never part of it: ``pg_stat_activity`` shows it to
every role on the server. Pure: no file is read, nothing is logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings, redact_url
from app.i18n import parse_language_by_group
from app.signing.options import PadesLevel

FORMAT_VERSION = "1"
"""The version of :func:`settings_fingerprint`'s format and choice of settings; raised when
either changes, so that replicas of different versions are told apart from replicas with
different settings."""
APPLICATION_PREFIX = "zammad-pdf-archiver/"
"""What every ``application_name`` of a replica with a fingerprint starts with."""
GROUP_HEX = 6
"""Hex digits of each group's part of the fingerprint (24 bits: a difference goes unnoticed
with a chance of 1 in 16.8 million)."""


def _tsa_url(s: Settings) -> str | None:
    """``TSA_URL`` as scheme, host, port and path: without credentials (refused at load anyway,
    and hidden by :func:`redact_url`) and without query or fragment, where a service's access
    key may be."""
    if not s.tsa_url:
        return None
    parts = urlsplit(redact_url(s.tsa_url))
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


def _signing(s: Settings, certificate_sha256: str | None) -> dict[str, Any]:
    if not s.signing_enabled:
        return {"SIGNING_ENABLED": False}
    level = PadesLevel.parse(s.signing_pades_level, has_timestamper=bool(s.tsa_url))
    return {
        "SIGNING_ENABLED": True,
        "SIGNING_PFX_PATH": certificate_sha256.lower() if certificate_sha256 else "not loaded",
        "SIGNING_PADES_LEVEL": level.value,
        "TSA_URL": _tsa_url(s) if level.needs_timestamper else None,
        "SIGNING_REASON": s.signing_reason,
        "SIGNING_LOCATION": s.signing_location,
        "SIGNING_CONTACT": s.signing_contact,
    }


def _workflow(s: Settings, _: str | None) -> dict[str, Any]:
    return {
        "ZAMMAD_BASE_URL": redact_url(s.zammad_base_url.rstrip("/")),
        "WORKFLOW_TRIGGER_TAG": s.workflow_trigger_tag,
        "WORKFLOW_REQUIRE_TAG": s.workflow_require_tag,
        "WORKFLOW_MAX_ATTEMPTS": s.workflow_max_attempts,
        "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS": s.workflow_download_give_up_hours,
        "RECONCILE_INTERVAL_SECONDS": s.reconcile_interval_seconds > 0,  # on or off, not how often
    }


def _storage(s: Settings, _: str | None) -> dict[str, Any]:
    return {
        "STORAGE_ROOT": str(s.storage_root) if s.storage_root is not None else None,
        "STORAGE_PATH_TEMPLATE": s.storage_path_template,
    }


def _pdf(s: Settings, _: str | None) -> dict[str, Any]:
    return {
        "PDF_TEMPLATE": s.pdf_template,
        "PDF_TIMEZONE": s.pdf_timezone,
        "PDF_LANGUAGE": s.pdf_language,
        "PDF_LANGUAGE_BY_GROUP": sorted(parse_language_by_group(s.pdf_language_by_group)),
        "PDF_MAX_ARTICLES": s.pdf_max_articles,
        "PDF_ARTICLE_LIMIT_MODE": s.pdf_article_limit_mode if s.pdf_max_articles else None,
        "PDF_PDFA": s.pdf_pdfa,
        "PDF_EMBED_ORIGINALS": s.pdf_embed_originals,
        "PDF_EMBED_MAX_BYTES": s.pdf_embed_max_bytes if s.pdf_embed_originals else None,
        "PDF_EMBED_TOTAL_MAX_BYTES": s.pdf_embed_total_max_bytes if s.pdf_embed_originals else None,
        "STRICT_FONTS": s.strict_fonts,
    }


GROUPS: dict[str, tuple[tuple[str, ...], Callable[[Settings, str | None], dict[str, Any]]]] = {
    "workflow": (
        (
            "ZAMMAD_BASE_URL",
            "WORKFLOW_TRIGGER_TAG",
            "WORKFLOW_REQUIRE_TAG",
            "WORKFLOW_MAX_ATTEMPTS",
            "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS",
            "RECONCILE_INTERVAL_SECONDS (on or off)",
        ),
        _workflow,
    ),
    "storage": (("STORAGE_ROOT", "STORAGE_PATH_TEMPLATE"), _storage),
    "pdf": (
        (
            "PDF_TEMPLATE",
            "PDF_TIMEZONE",
            "PDF_LANGUAGE",
            "PDF_LANGUAGE_BY_GROUP",
            "PDF_MAX_ARTICLES",
            "PDF_ARTICLE_LIMIT_MODE",
            "PDF_PDFA",
            "PDF_EMBED_ORIGINALS",
            "PDF_EMBED_MAX_BYTES",
            "PDF_EMBED_TOTAL_MAX_BYTES",
            "STRICT_FONTS",
        ),
        _pdf,
    ),
    "signing": (
        (
            "SIGNING_ENABLED",
            "SIGNING_PFX_PATH (its certificate)",
            "SIGNING_PADES_LEVEL",
            "TSA_URL",
            "SIGNING_REASON",
            "SIGNING_LOCATION",
            "SIGNING_CONTACT",
        ),
        _signing,
    ),
}
"""The settings that must agree, in groups, in the fingerprint's order: group name → (the
settings' environment names as the warning lists them, the function that reads their values).
Each group is one part of the fingerprint, so the warning can say which group differs."""


def settings_fingerprint(settings: Settings, *, certificate_sha256: str | None = None) -> str:
    """The fingerprint of the settings every replica must share (:data:`GROUPS`).

    Args:
        settings: this replica's settings.
        certificate_sha256: the signing certificate's SHA-256 (hex,
            :attr:`app.signing.signer.ArchiveSigner.sha256_fingerprint`), or ``None`` when no
            certificate was loaded: the certificate stands for ``SIGNING_PFX_PATH``, whose path
            may differ between hosts while the certificate must not. Public: it is in every
            archive's signature and success note.

    Returns:
        ``"<FORMAT_VERSION>/<part>.<part>.<part>.<part>"``, one part of :data:`GROUP_HEX` hex
        digits per group of :data:`GROUPS` (SHA-256 of the group's values as JSON-like text),
        e.g. ``"1/3fa01c.9b77e2.0c1d4e.a8b2f0"``; 30 characters. Equal settings give equal
        fingerprints, on any host and in any process. Never holds or depends on a secret.
    """
    parts = []
    for name, (_, read) in GROUPS.items():
        values = read(settings, certificate_sha256)
        text = repr((FORMAT_VERSION, name, sorted(values.items())))
        parts.append(hashlib.sha256(text.encode()).hexdigest()[:GROUP_HEX])
    return f"{FORMAT_VERSION}/{'.'.join(parts)}"


def application_name(fingerprint: str | None) -> str:
    """The ``application_name`` of a replica's PostgreSQL connections: ``zammad-pdf-archiver/``
    and the fingerprint (49 bytes, within PostgreSQL's 63), or ``zammad-pdf-archiver`` alone
    for a store without one (tools, tests), which no replica compares with its own."""
    return APPLICATION_PREFIX + fingerprint if fingerprint else APPLICATION_PREFIX.rstrip("/")


def differing_groups(ours: str, theirs: str) -> list[str] | None:
    """The names of the groups of :data:`GROUPS` whose parts differ between two fingerprints.

    Returns:
        e.g. ``["workflow", "storage"]`` (``[]`` when equal), or ``None`` when ``theirs``
        is of another :data:`FORMAT_VERSION` or cannot be read (another version of the
        service): then which settings differ is unknown.
    """
    version, _, body = theirs.partition("/")
    mine = ours.partition("/")[2].split(".")
    other = body.split(".")
    if version != FORMAT_VERSION or len(other) != len(mine):
        return None
    return [name for name, a, b in zip(GROUPS, mine, other, strict=True) if a != b]
