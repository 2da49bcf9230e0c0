"""Typed settings: an optional TOML file named by ``CONFIG_PATH``, overridden by environment variables.

Every setting has one environment name (``ZAMMAD_BASE_URL``) and one TOML key
(``zammad.base_url``: the first word of the environment name is the table, the rest the
key; settings without a table, like ``WORKERS``, are top-level keys). Values are read once,
converted, validated, and frozen in :class:`Settings`, which is passed down; no other module
reads ``os.environ``.

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value.

The module is longer than most (about 800 lines) for one reason: :class:`Settings` declares
every setting, with its environment name, TOML key, default and help text, in one table that
``docs/03-configuration.md`` and ``env.example`` are generated from; its parsing and its
checks stay beside it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import ConfigError
from app.http.names import DEFAULT_BODY_READ_TIMEOUT_SECONDS, DEFAULT_MAX_BODY_BYTES


class Secret:
    """A secret string (token, password) that never prints.

    ``repr()`` and ``str()`` give ``'***'``; read the value with :meth:`reveal`.
    Two secrets compare equal when their values are equal.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; pass it straight to the API that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    return int(str(raw).strip()) if not isinstance(raw, int) else raw


def _parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _parse_str(raw: Any) -> str:
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ValueError("expected a string")
    return str(raw)


def _parse_optional_str(raw: Any) -> str | None:
    text = _parse_str(raw).strip()
    return text or None


def _parse_secret(raw: Any) -> Secret | None:
    text = _parse_str(raw)
    return Secret(text) if text else None


def _parse_path(raw: Any) -> Path | None:
    text = _parse_str(raw).strip()
    return Path(text) if text else None


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "str": _parse_str,
    "optional_str": _parse_optional_str,
    "secret": _parse_secret,
    "path": _parse_path,
}


def setting(env: str, kind: str, default: Any, doc: str, *, toml: str | None = None) -> Any:
    """Declare one setting as a dataclass field.

    Args:
        env: the environment variable name, e.g. ``"ZAMMAD_BASE_URL"``.
        kind: one of ``bool int float str optional_str secret path``.
        default: the value when neither TOML nor environment set it.
        doc: a one-line meaning, used by the configuration reference.
        toml: the TOML key when it differs from the rule in the module docstring.
    """
    if toml is None:
        head, _, rest = env.lower().partition("_")
        toml = f"{head}.{rest}" if rest and head in _TABLES else env.lower()
    return field(default=default, metadata={"env": env, "kind": kind, "doc": doc, "toml": toml})


_TABLES = {
    "admin",
    "audit",
    "job",
    "zammad",
    "webhook",
    "hardening",
    "storage",
    "signing",
    "tsa",
    "server",
    "workflow",
    "pdf",
    "log",
    "shutdown",
    "render",
    "healthz",
    "observability",
    "metrics",
    "state",
    "reconcile",
}

_MIB = 1024 * 1024

PADES_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
"""Values of ``SIGNING_PADES_LEVEL`` (ETSI EN 319 142-1 baseline levels)."""
MAX_GIVE_UP_HOURS = 720.0
"""Largest ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS``: 30 days, the PostgreSQL store's retention of a
ticket's older finished jobs, which hold the start of its failing streak."""


@dataclass(frozen=True)
class Settings:
    """All settings of the service, validated (see :func:`load_settings`)."""

    zammad_base_url: str = setting(
        "ZAMMAD_BASE_URL", "str", "", "Base URL of Zammad, e.g. https://zammad.example.com"
    )
    zammad_api_token: Secret | None = setting(
        "ZAMMAD_API_TOKEN",
        "secret",
        None,
        "Zammad API token (ticket.agent) sent as 'Authorization: Token token=…'",
    )
    zammad_verify_tls: bool = setting("ZAMMAD_VERIFY_TLS", "bool", True, "Verify Zammad's TLS certificate")
    zammad_timeout_seconds: float = setting(
        "ZAMMAD_TIMEOUT_SECONDS", "float", 30.0, "Timeout of one Zammad API request, in seconds"
    )

    webhook_hmac_secret: Secret | None = setting(
        "WEBHOOK_HMAC_SECRET", "secret", None, "HMAC token configured on the Zammad webhook (X-Hub-Signature)"
    )
    hardening_webhook_allow_unsigned: bool = setting(
        "HARDENING_WEBHOOK_ALLOW_UNSIGNED",
        "bool",
        False,
        "Accept unsigned webhooks when no WEBHOOK_HMAC_SECRET is set (never in production)",
    )
    admin_bearer_token: Secret | None = setting(
        "ADMIN_BEARER_TOKEN",
        "secret",
        None,
        "Bearer token for /retry and /jobs (else those need an HMAC signature like /ingest)",
    )
    hardening_body_max_bytes: int = setting(
        "HARDENING_BODY_MAX_BYTES", "int", DEFAULT_MAX_BODY_BYTES, "Largest accepted request body, in bytes"
    )
    hardening_body_read_timeout_seconds: float = setting(
        "HARDENING_BODY_READ_TIMEOUT_SECONDS",
        "float",
        DEFAULT_BODY_READ_TIMEOUT_SECONDS,
        "Seconds a request body may take to arrive; slower clients get 408 and the connection is closed",
    )
    hardening_batch_max_items: int = setting(
        "HARDENING_BATCH_MAX_ITEMS", "int", 100, "Most payloads in one POST /ingest/batch"
    )
    hardening_rate_limit_rps: float = setting(
        "HARDENING_RATE_LIMIT_RPS", "float", 50.0, "Requests per second per client (token bucket; 0 = off)"
    )
    hardening_rate_limit_burst: int = setting(
        "HARDENING_RATE_LIMIT_BURST", "int", 200, "Token-bucket size per client: requests allowed at once"
    )
    hardening_trusted_proxies: str = setting(
        "HARDENING_TRUSTED_PROXIES",
        "str",
        "",
        "Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed",
    )
    hardening_webhook_require_delivery_id: bool = setting(
        "HARDENING_WEBHOOK_REQUIRE_DELIVERY_ID",
        "bool",
        False,
        "Refuse webhooks without X-Zammad-Delivery with 400",
    )

    storage_root: Path | None = setting(
        "STORAGE_ROOT", "path", None, "Folder under which archives are written"
    )
    storage_path_template: str = setting(
        "STORAGE_PATH_TEMPLATE",
        "str",
        "{group}/{created_year}/Ticket-{number}_{archived_at}.pdf",
        "Archive path below STORAGE_ROOT; placeholders from the ticket and the archive time",
    )
    storage_fsync: bool = setting(
        "STORAGE_FSYNC", "bool", True, "fsync the file and its folder after each write"
    )

    signing_enabled: bool = setting("SIGNING_ENABLED", "bool", True, "Sign archives with PAdES")
    signing_pfx_path: Path | None = setting(
        "SIGNING_PFX_PATH", "path", None, "PKCS#12 file with key and certificate"
    )
    signing_pfx_password: Secret | None = setting(
        "SIGNING_PFX_PASSWORD", "secret", None, "Password of the PFX"
    )
    signing_reason: str | None = setting(
        "SIGNING_REASON", "optional_str", "Archived from Zammad", "Reason written into the signature"
    )
    signing_location: str | None = setting(
        "SIGNING_LOCATION", "optional_str", None, "Location written into the signature"
    )
    signing_contact: str | None = setting(
        "SIGNING_CONTACT", "optional_str", None, "Contact info written into the signature"
    )

    signing_pades_level: str | None = setting(
        "SIGNING_PADES_LEVEL",
        "optional_str",
        None,
        "PAdES level: B-B, B-T, B-LT or B-LTA (default B-T when TSA_URL is set, else B-B)",
    )
    signing_trust_roots_path: Path | None = setting(
        "SIGNING_TRUST_ROOTS_PATH",
        "path",
        None,
        "PEM bundle of the roots the signer and TSA chains end in (required for B-LT and B-LTA)",
    )
    signing_expiry_warn_days: int = setting(
        "SIGNING_EXPIRY_WARN_DAYS",
        "int",
        30,
        "Warn when the signing certificate expires within this many days",
    )

    tsa_url: str | None = setting(
        "TSA_URL", "optional_str", None, "RFC 3161 timestamp authority URL (enables PAdES B-T)"
    )
    tsa_user: str | None = setting("TSA_USER", "optional_str", None, "TSA Basic-auth user")
    tsa_pass: Secret | None = setting("TSA_PASS", "secret", None, "TSA Basic-auth password")
    tsa_timeout_seconds: float = setting(
        "TSA_TIMEOUT_SECONDS", "float", 10.0, "Timeout of one TSA request, in seconds"
    )
    tsa_ca_bundle_path: Path | None = setting(
        "TSA_CA_BUNDLE_PATH",
        "path",
        None,
        "PEM CA bundle trusted for the TSA's HTTPS (and OCSP/CRL) connections, "
        "in addition to the system store",
    )

    audit_interval_hours: float = setting(
        "AUDIT_INTERVAL_HOURS",
        "float",
        0.0,
        "Run the fixity audit (python -m app audit) in the service every this many hours (0 = off)",
    )
    audit_expiry_warn_days: int = setting(
        "AUDIT_EXPIRY_WARN_DAYS",
        "int",
        90,
        "The audit reports certificate_expiring when an archive's newest certificate chain expires "
        "within this many days",
    )
    audit_manifest: bool = setting(
        "AUDIT_MANIFEST",
        "bool",
        True,
        "The scheduled audit also verifies the manifest's hash chain and checks every archive against it",
    )

    workers: int = setting("WORKERS", "int", 2, "Number of concurrent archive workers")
    render_processes: int = setting(
        "RENDER_PROCESSES", "int", 0, "Processes in the render pool (0 = one per CPU)"
    )
    render_timeout_seconds: float = setting(
        "RENDER_TIMEOUT_SECONDS",
        "float",
        600.0,
        "Longest layout of one ticket, in seconds, from its start in a render process; a longer one "
        "is ended and fails Permanent (0 = no limit)",
    )
    workflow_queue_max: int = setting(
        "WORKFLOW_QUEUE_MAX", "int", 1000, "Most jobs waiting in the queue; beyond it /ingest answers 503"
    )
    workflow_trigger_tag: str = setting(
        "WORKFLOW_TRIGGER_TAG", "str", "pdf:sign", "Tag that requests archiving"
    )
    workflow_require_tag: bool = setting(
        "WORKFLOW_REQUIRE_TAG", "bool", True, "Skip tickets that do not carry the trigger tag"
    )
    workflow_max_attempts: int = setting(
        "WORKFLOW_MAX_ATTEMPTS", "int", 5, "Runs per job before a Transient failure is final (dead)"
    )
    workflow_retry_base_seconds: float = setting(
        "WORKFLOW_RETRY_BASE_SECONDS",
        "float",
        30.0,
        "Pause after the first Transient failure, in seconds (doubles)",
    )
    workflow_retry_max_seconds: float = setting(
        "WORKFLOW_RETRY_MAX_SECONDS",
        "float",
        900.0,
        "Longest pause between retries, in seconds (also caps a Zammad `Retry-After`)",
    )
    workflow_download_give_up_hours: float = setting(
        "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS",
        "float",
        24.0,
        "Hours a ticket may fail to archive on an inline image or original whose download fails "
        "Transient (Zammad 5xx, timeout) before the job's last attempt archives without it, "
        "listed as left out; 0 = on the first job's last attempt (at most 720)",
    )
    state_dir: Path | None = setting(
        "STATE_DIR",
        "path",
        Path("var/state"),
        "This instance's folder: the SQLite job store, the instance lock, the job spool; "
        "local disk, not the CIFS share",
    )
    state_durable: bool = setting(
        "STATE_DURABLE",
        "bool",
        True,
        "Keep jobs in STATE_DIR; false keeps them in memory only (lost on restart)",
    )
    workflow_delivery_id_ttl_seconds: int = setting(
        "WORKFLOW_DELIVERY_ID_TTL_SECONDS",
        "int",
        3600,
        "How long a X-Zammad-Delivery id is remembered, in seconds",
    )
    job_store_url: Secret | None = setting(
        "JOB_STORE_URL",
        "secret",
        None,
        "postgresql://user:password@host:port/database: keep jobs in PostgreSQL, shared by several replicas "
        "(unset: SQLite in STATE_DIR, one instance)",
    )
    job_lease_seconds: float = setting(
        "JOB_LEASE_SECONDS",
        "float",
        60.0,
        "With JOB_STORE_URL: how long a replica's claim on a job holds without renewal; a dead replica's "
        "jobs are reclaimed after it",
    )

    reconcile_interval_seconds: float = setting(
        "RECONCILE_INTERVAL_SECONDS",
        "float",
        300.0,
        "Seconds between reconciliation sweeps, which queue tickets whose webhook was lost "
        "(trigger tag, or pdf:processing left stale) through Zammad's ticket search; 0 = off",
    )
    reconcile_stale_seconds: float = setting(
        "RECONCILE_STALE_SECONDS",
        "float",
        900.0,
        "A ticket in pdf:processing unchanged for longer, with no running job here, is queued again "
        "by the sweep (also the pause before a job that gave up is retried)",
    )

    pdf_template: str = setting("PDF_TEMPLATE", "str", "default", "PDF layout template")
    pdf_timezone: str = setting(
        "PDF_TIMEZONE",
        "str",
        "Europe/Berlin",
        "Time zone of times shown in the PDF (IANA name); English archives print the UTC offset, "
        "German ones the zone's abbreviation for MEZ/MESZ/UTC, else the offset (`UTC+05:30`)",
    )
    pdf_language: str = setting(
        "PDF_LANGUAGE",
        "str",
        "en",
        "Language of the archive's labels, headings and dates and of the notes posted to Zammad: en or de",
    )
    pdf_language_by_group: str = setting(
        "PDF_LANGUAGE_BY_GROUP",
        "str",
        "",
        "Language per Zammad group, overriding PDF_LANGUAGE for the PDF and its success note, "
        "e.g. Buchhaltung=de,Support=en (group names as in Zammad)",
    )
    pdf_max_articles: int = setting(
        "PDF_MAX_ARTICLES",
        "int",
        0,
        "Most articles one PDF holds (0 = unlimited); over it only the oldest this many "
        "(by created_at, then id) have their images and originals fetched",
    )
    pdf_article_limit_mode: str = setting(
        "PDF_ARTICLE_LIMIT_MODE",
        "str",
        "fail",
        "Over PDF_MAX_ARTICLES: fail (permanent error) or cap_and_continue (the PDF holds the "
        "oldest PDF_MAX_ARTICLES articles and their originals only, articles.json lists all; "
        "page 1 and the note say so)",
    )
    pdf_font_dirs: str = setting(
        "PDF_FONT_DIRS",
        "str",
        "/usr/share/fonts",
        "Directories searched for fallback fonts (CJK, Arabic, Hebrew, emoji), colon-separated",
    )
    strict_fonts: bool = setting(
        "STRICT_FONTS",
        "bool",
        False,
        "A character no font can draw fails the job (Permanent, the note names the script and the "
        "font package) instead of archiving a visible [U+XXXX] placeholder",
    )

    pdf_pdfa: bool = setting("PDF_PDFA", "bool", True, "Write PDF/A-3B (XMP pdfaid, sRGB output intent)")
    pdf_embed_originals: bool = setting(
        "PDF_EMBED_ORIGINALS",
        "bool",
        True,
        "Embed the originals (ticket/articles JSON, bodies, .eml, attachments) as PDF/A-3 associated files",
    )
    pdf_embed_max_bytes: int = setting(
        "PDF_EMBED_MAX_BYTES",
        "int",
        10 * _MIB,
        "Largest attachment embedded, in bytes (larger ones are listed as omitted)",
    )
    pdf_embed_total_max_bytes: int = setting(
        "PDF_EMBED_TOTAL_MAX_BYTES", "int", 50 * _MIB, "Most attachment bytes embedded per ticket"
    )
    server_host: str = setting("SERVER_HOST", "str", "127.0.0.1", "Address the HTTP server binds to")
    server_port: int = setting("SERVER_PORT", "int", 8080, "Port the HTTP server binds to")
    shutdown_grace_seconds: float = setting(
        "SHUTDOWN_GRACE_SECONDS", "float", 30.0, "How long running jobs may finish after SIGTERM, in seconds"
    )
    healthz_omit_version: bool = setting(
        "HEALTHZ_OMIT_VERSION", "bool", False, "Leave service name and version out of /healthz"
    )
    observability_metrics_enabled: bool = setting(
        "OBSERVABILITY_METRICS_ENABLED", "bool", False, "Serve Prometheus metrics on /metrics"
    )
    metrics_bearer_token: Secret | None = setting(
        "METRICS_BEARER_TOKEN", "secret", None, "Bearer token required on /metrics when set"
    )
    log_level: str = setting("LOG_LEVEL", "str", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR")
    allow_insecure_http: bool = setting(
        "ALLOW_INSECURE_HTTP",
        "bool",
        False,
        "Allow http:// URLs for Zammad and the TSA (tests and the demo only)",
    )

    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``HARDENING_TRUSTED_PROXIES`` parsed into networks (a bare address is a /32 or /128).

        Raises:
            ValueError: for an entry that is not an IP address or network.
        """
        nets = []
        for part in self.hardening_trusted_proxies.split(","):
            part = part.strip()
            if part:
                try:
                    nets.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    raise ValueError(f"{part!r} is not an IP address or network") from None
        return tuple(nets)

    def pdf_font_directories(self) -> tuple[str, ...]:
        """``PDF_FONT_DIRS`` split at ``:`` (or ``,``), blanks dropped."""
        return tuple(part.strip() for part in s_split(self.pdf_font_dirs) if part.strip())

    def secrets(self) -> list[str]:
        """Return the revealed values of every secret that is set (for log redaction).

        Besides each :class:`Secret` whole, the passwords inside ``JOB_STORE_URL`` alone,
        wherever a driver's message quotes them (see :func:`_job_store_passwords`).
        ``ZAMMAD_BASE_URL`` and ``TSA_URL`` carry none: a ``user:password@`` in them is
        refused at load.
        """
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret) and value:
                out.append(value.reveal())
        if self.job_store_url:
            out.extend(_job_store_passwords(self.job_store_url.reveal()))
        return out


SETTING_FIELDS = tuple(f for f in fields(Settings))
"""Every declared setting, in declaration order (used by docs and the config-coverage test)."""


def s_split(value: str) -> list[str]:
    """A list setting split at ``:`` or ``,``."""
    return value.replace(",", ":").split(":")


def _flatten_toml(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_toml(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_settings(env: Mapping[str, str] | None = None, *, require_complete: bool = True) -> Settings:
    """Read, convert and validate the settings.

    Args:
        env: the environment (default ``os.environ``). ``CONFIG_PATH`` in it names an optional
            TOML file; environment values override the file's.
        require_complete: when true (the service), also require what a running service needs
            (Zammad URL and token, storage root, PFX when signing).

    Returns:
        Frozen :class:`Settings`.

    Raises:
        ConfigError: naming the bad key (environment name and TOML key) and what is wrong,
            never the value of a secret.
    """
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    config_path = env.get("CONFIG_PATH", "").strip()
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                file_values = _flatten_toml(tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"CONFIG_PATH names {config_path!r}, which does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"CONFIG_PATH {config_path!r} is not valid TOML: {exc}") from None
        except OSError as exc:  # a folder, no permission, an I/O error
            raise ConfigError(f"CONFIG_PATH {config_path!r} cannot be read: {exc.strerror or exc}") from None
        known = {f.metadata["toml"] for f in SETTING_FIELDS}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in {config_path!r}: {', '.join(unknown)}")

    values: dict[str, Any] = {}
    for f in SETTING_FIELDS:
        meta = f.metadata
        if meta["env"] in env:
            raw, origin = env[meta["env"]], f"environment variable {meta['env']}"
        elif meta["toml"] in file_values:
            raw, origin = file_values[meta["toml"]], f"TOML key {meta['toml']!r}"
        else:
            continue
        try:
            values[f.name] = _PARSERS[meta["kind"]](raw)
        except (TypeError, ValueError) as exc:
            shown = "" if meta["kind"] == "secret" else f" (got {str(raw)[:60]!r})"
            raise ConfigError(
                f"{meta['env']} / {meta['toml']}: invalid value from {origin}{shown}: {exc}"
            ) from None
    settings = Settings(**values)
    _validate(settings, require_complete=require_complete)
    return settings


_HTTP_SCHEMES = frozenset({"http", "https"})
"""Schemes of ``ZAMMAD_BASE_URL`` and ``TSA_URL``."""
_JOB_STORE_SCHEMES = frozenset({"postgresql", "postgres"})
"""Schemes of ``JOB_STORE_URL`` (libpq's connection URIs)."""


def _url_problem(url: str, schemes: frozenset[str]) -> str | None:
    """Why ``url`` cannot be used as a server's URL, or ``None`` when it can.

    Checked here so that a bad URL is a :class:`ConfigError` at start rather than a
    ``ValueError`` where a client first reads it (``urllib.parse``, aiohttp's ``yarl``):
    a scheme in ``schemes``, a host, a port of 1-65535 when one is given, and no space or
    control character anywhere.

    Returns:
        A reason that never quotes the URL (it may carry a password), e.g.
        ``"its port is not a number from 1 to 65535"``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # "[" without "]", or not an IPv6 address between them
        return "its host cannot be read (an IPv6 address goes in brackets: [2001:db8::1])"
    if parts.scheme not in schemes:
        return "its scheme is not " + " or ".join(sorted(schemes))
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = 0
    if port == 0:
        return "its port is not a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):  # urlsplit drops tabs
        return "it has a space or control character in it (write a space as %20)"
    return None


_JOB_STORE_PASSWORD_PARAMETERS = ("password", "sslpassword")
"""Query parameters of a PostgreSQL URL that hold a password (libpq's and asyncpg's: the
user's, and the one of the client's TLS key)."""

_QUERY_PARAMETER = re.compile(r"([?&][^=&#]*=)[^&#]*")
"""A query parameter with its value (``?password=...``); :func:`redact_url` hides those of
:data:`_JOB_STORE_PASSWORD_PARAMETERS`."""


def _hide_password_parameter(match: re.Match[str]) -> str:
    """``match`` (:data:`_QUERY_PARAMETER`) with its value as ``***`` when its name, decoded as
    asyncpg decodes it (``parse_qs``: ``%XX`` and ``+``), is a password's (``pass%77ord=``)."""
    head = match[1]
    return f"{head}***" if unquote_plus(head[1:-1]) in _JOB_STORE_PASSWORD_PARAMETERS else match[0]


def _job_store_passwords(url: str) -> list[str]:
    """The passwords in ``JOB_STORE_URL``: the one after ``user:`` and the values of its
    ``password=`` and ``sslpassword=`` query parameters, each as written and decoded
    (asyncpg decodes ``%XX`` and a query's ``+``, libpq ``%XX``; a driver's message would
    quote the decoded text).

    Returns:
        The distinct non-empty values, ``[]`` for a URL without any. Never raises (a URL
        that cannot be parsed is refused by :func:`load_settings` anyway).
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    for parameter in parts.query.split("&"):
        name, _, value = parameter.partition("=")
        if unquote_plus(name) in _JOB_STORE_PASSWORD_PARAMETERS:
            found += [value, unquote(value), unquote_plus(value)]
    return list(dict.fromkeys(v for v in found if v))


def redact_url(url: str) -> str:
    """``url`` (``JOB_STORE_URL``, ``ZAMMAD_BASE_URL`` ...) with its password as ``***``, for
    logs and errors; the user is kept: ``postgresql://u:***@db:5432/x``.

    The password is everything between the user's first ``:`` and the URL's last ``@``, read
    without :func:`urllib.parse.urlsplit`: so it is hidden whole even when it holds a raw
    ``@``, ``/``, ``?`` or ``#``, and in a URL that cannot be parsed at all (an unclosed IPv6
    ``[``, a port that is no number). A ``password=`` query parameter (libpq's other place for
    it, and ``sslpassword=``, the client key's; its name decoded as asyncpg decodes it, as
    :meth:`Settings.secrets` finds it) is hidden too. A URL without either comes back
    unchanged. Never raises.
    """
    url = _QUERY_PARAMETER.sub(_hide_password_parameter, url)
    head, sep, rest = url.partition("//")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not sep or not at or not colon:
        return url
    return f"{head}//{user}:***@{host}"


def _meta(name: str) -> str:
    f = next(f for f in SETTING_FIELDS if f.name == name)
    return f"{f.metadata['env']} / {f.metadata['toml']}"


_HEADER_TOKEN = re.compile(r"[!-~]+")
"""A token that goes into an HTTP header as it is: visible ASCII, no space (RFC 9110 §5.5)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _validate(s: Settings, *, require_complete: bool) -> None:
    def fail(name: str, why: str) -> None:
        raise ConfigError(f"{_meta(name)}: {why}")

    for name in ("workers", "workflow_queue_max", "hardening_body_max_bytes"):
        if getattr(s, name) < 1:
            fail(name, "must be at least 1")
    if s.hardening_batch_max_items < 1 or s.hardening_rate_limit_burst < 1:
        fail(
            "hardening_batch_max_items" if s.hardening_batch_max_items < 1 else "hardening_rate_limit_burst",
            "must be at least 1",
        )
    if s.hardening_body_read_timeout_seconds <= 0:
        fail("hardening_body_read_timeout_seconds", "must be more than 0")
    if s.hardening_rate_limit_rps < 0:
        fail("hardening_rate_limit_rps", "must be 0 (off) or more")
    try:
        s.trusted_proxy_networks()
    except ValueError as exc:
        fail("hardening_trusted_proxies", str(exc))
    if s.pdf_embed_max_bytes < 0 or s.pdf_embed_total_max_bytes < 0:
        fail(
            "pdf_embed_max_bytes" if s.pdf_embed_max_bytes < 0 else "pdf_embed_total_max_bytes",
            "must not be negative",
        )
    if s.workflow_max_attempts < 1:
        fail("workflow_max_attempts", "must be at least 1")
    if s.workflow_retry_base_seconds < 0 or s.workflow_retry_max_seconds < s.workflow_retry_base_seconds:
        fail(
            "workflow_retry_max_seconds"
            if s.workflow_retry_base_seconds >= 0
            else "workflow_retry_base_seconds",
            "the base must be >= 0 and the maximum >= the base",
        )
    if not 0 <= s.workflow_download_give_up_hours <= MAX_GIVE_UP_HOURS:
        fail(
            "workflow_download_give_up_hours",
            f"must be 0 to {MAX_GIVE_UP_HOURS:g} (the job store keeps a ticket's failed jobs 30 days)",
        )
    if s.state_durable and s.state_dir is None:
        fail("state_dir", "is required when STATE_DURABLE=true")
    if s.job_store_url is not None:
        problem = _url_problem(s.job_store_url.reveal(), _JOB_STORE_SCHEMES)
        if problem is None and not urlsplit(s.job_store_url.reveal()).path.strip("/"):
            problem = "names no database"
        if problem is not None:
            fail(
                "job_store_url",
                f"{problem}; expected postgresql://user:password@host:port/database",
            )
    if s.job_lease_seconds < 4:
        fail("job_lease_seconds", "must be at least 4 (leases are renewed every quarter of it)")
    if s.reconcile_interval_seconds < 0:
        fail("reconcile_interval_seconds", "must be 0 (off) or more")
    if s.reconcile_stale_seconds <= 0:
        fail("reconcile_stale_seconds", "must be more than 0")
    if s.render_processes < 0:
        fail("render_processes", "must be 0 (one per CPU) or more")
    if s.render_timeout_seconds < 0:
        fail("render_timeout_seconds", "must be 0 (no limit) or more")
    if not 0 < s.server_port < 65536:
        fail("server_port", "must be a TCP port, 1-65535")
    for name in ("zammad_timeout_seconds", "tsa_timeout_seconds"):
        if getattr(s, name) <= 0:
            fail(name, "must be greater than 0")
    if s.shutdown_grace_seconds < 0 or s.workflow_delivery_id_ttl_seconds < 0:
        fail(
            "shutdown_grace_seconds" if s.shutdown_grace_seconds < 0 else "workflow_delivery_id_ttl_seconds",
            "must not be negative",
        )
    if not s.workflow_trigger_tag.strip() or "," in s.workflow_trigger_tag:
        fail("workflow_trigger_tag", "must be a non-empty tag without commas (Zammad joins tags with ', ')")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        fail("log_level", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    try:
        ZoneInfo(s.pdf_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail("pdf_timezone", f"unknown time zone {s.pdf_timezone!r} (use an IANA name such as Europe/Berlin)")
    from app.i18n import LANGUAGES, parse_language_by_group
    from app.render.options import LIMIT_MODES, TEMPLATES

    if s.pdf_language not in LANGUAGES:
        fail("pdf_language", f"unknown language {s.pdf_language!r} (use one of {', '.join(LANGUAGES)})")
    try:
        parse_language_by_group(s.pdf_language_by_group)
    except ValueError as exc:
        fail("pdf_language_by_group", str(exc))

    if s.pdf_template not in TEMPLATES:
        fail("pdf_template", f"unknown template {s.pdf_template!r} (use one of {', '.join(TEMPLATES)})")
    if s.pdf_max_articles < 0:
        fail("pdf_max_articles", "must be 0 (unlimited) or more")
    if s.pdf_article_limit_mode not in LIMIT_MODES:
        fail(
            "pdf_article_limit_mode",
            f"unknown mode {s.pdf_article_limit_mode!r} (use fail or cap_and_continue)",
        )
    if not s.pdf_font_directories():
        fail("pdf_font_dirs", "must name at least one directory")
    from app.storage.paths import validate_path_template

    try:
        validate_path_template(s.storage_path_template)
    except ValueError as exc:
        fail("storage_path_template", str(exc))

    if s.audit_interval_hours < 0:
        fail("audit_interval_hours", "must be 0 (off) or more")
    if s.audit_expiry_warn_days < 0:
        fail("audit_expiry_warn_days", "must be 0 or more")
    if s.signing_expiry_warn_days < 0:
        fail("signing_expiry_warn_days", "must be 0 (off) or more")
    if s.signing_pades_level is not None:
        if s.signing_pades_level.upper() not in PADES_LEVELS:
            fail(
                "signing_pades_level",
                f"must be one of {', '.join(PADES_LEVELS)}, got {s.signing_pades_level[:20]!r}",
            )
        if s.signing_pades_level.upper() != "B-B" and not s.tsa_url:
            fail(
                "signing_pades_level",
                f"{s.signing_pades_level.upper()} needs a timestamp authority: set TSA_URL",
            )
        if s.signing_pades_level.upper() in {"B-LT", "B-LTA"} and s.signing_trust_roots_path is None:
            fail(
                "signing_trust_roots_path",
                f"is required for SIGNING_PADES_LEVEL={s.signing_pades_level.upper()}",
            )

    for name in ("zammad_base_url", "tsa_url"):
        url = getattr(s, name)
        if not url:
            continue
        try:
            credentials = "@" in urlsplit(url).netloc
        except ValueError:  # _url_problem says why
            credentials = False
        if credentials:  # user:password@host: never echoed, never sent
            fail(
                name,
                "must not carry credentials (user:password@); use "
                + ("ZAMMAD_API_TOKEN" if name == "zammad_base_url" else "TSA_USER and TSA_PASS"),
            )
        problem = _url_problem(url, _HTTP_SCHEMES)
        if problem is not None:
            fail(name, f"{problem} (got {redact_url(url)[:80]!r})")
        if urlsplit(url).scheme == "http" and not s.allow_insecure_http:
            fail(
                name,
                "uses http://, which sends credentials in clear text; use https:// "
                "or set ALLOW_INSECURE_HTTP=true for local tests",
            )

    token = s.zammad_api_token.reveal() if s.zammad_api_token else ""
    if token and not _HEADER_TOKEN.fullmatch(token):
        fail(
            "zammad_api_token",
            "holds whitespace or a character an HTTP header cannot carry (a secret file's last "
            "newline?); Zammad's tokens have none: remove it",
        )
    if s.webhook_hmac_secret and _CONTROL.search(s.webhook_hmac_secret.reveal()):
        fail(
            "webhook_hmac_secret",
            "holds a line break or another control character (a secret file's last newline?), "
            "which Zammad's HMAC token field cannot hold: every signature would differ; remove it",
        )
    if s.webhook_hmac_secret and not s.webhook_hmac_secret.reveal().strip():
        fail(
            "webhook_hmac_secret",
            "is only spaces: anyone could sign webhooks, retries and job queries with it; "
            "set Zammad's HMAC token, or leave it empty to refuse webhooks",
        )

    if not require_complete:
        return
    if not s.zammad_base_url:
        fail("zammad_base_url", "is required")
    if not s.zammad_api_token:
        fail("zammad_api_token", "is required")
    if s.storage_root is None:
        fail("storage_root", "is required")
    if s.signing_enabled and s.signing_pfx_path is None:
        fail("signing_pfx_path", "is required when SIGNING_ENABLED=true")
