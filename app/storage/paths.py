"""Where an archive goes: the path template, its placeholders and file-name sanitising.

Pure functions only (no file-system access). A path is built from a template such as
``{group}/{created_year}/Ticket-{number}_{archived_at}.pdf`` by splitting the template on
``/`` *first* and then rendering and sanitising each segment on its own, so a ticket value
can never add, remove or climb a folder level, whatever it contains (``/``, ``..``,
``C:\\``, NUL, ...). Every segment produced is safe on POSIX file systems and on SMB/CIFS
shares served by Windows or Samba, and is never a name the storage keeps for itself
(:data:`STORAGE_NAMES`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from app.storage.manifest_format import MANIFEST_FOLDER

DEFAULT_PATH_TEMPLATE = "{group}/{created_year}/Ticket-{number}_{archived_at}.pdf"
"""Template used when none is configured."""

PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "number",  # ticket number as shown in Zammad, e.g. "25004711"
        "id",  # database id, e.g. "4711"
        "title",
        "group",  # group name
        "customer",  # customer login
        "organization",  # organization name
        "created_year",  # "2025" (UTC)
        "created_month",  # "03" (UTC)
        "archived_at",  # "20250306T132005Z" (UTC)
        "archived_year",  # "2025"
        "archived_month",  # "03"
        "archived_date",  # "2025-03-06"
    }
)
"""Names a path template may use, e.g. ``{group}``."""

MISSING_VALUE = "unknown"
"""Value of a placeholder whose ticket field is missing, empty or unparsable."""

DEFAULT_MAX_SEGMENT_BYTES = 120
"""Default upper bound of one path segment, in UTF-8 bytes (well under the 255 of ext4/NTFS)."""

ARCHIVED_AT_FORMAT = "%Y%m%dT%H%M%SZ"

# Characters Windows/SMB refuse in a name, plus the POSIX separator.
_FORBIDDEN_CHARS = frozenset('/\\:*?"<>|')
# Unicode categories replaced by "_": controls (incl. NUL, TAB, LF), format characters
# (bidi overrides such as U+202E that disguise names), lone surrogates (not encodable as
# UTF-8), line/paragraph separators.
_REPLACED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_RUN_WITH_UNDERSCORE = re.compile(r"[\s_]*_[\s_]*")
_RUN_OF_SPACE = re.compile(r"\s+")
# Windows device names; reserved with any extension too ("CON.txt", "nul.tar.gz").
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]}
)
STORAGE_NAMES: frozenset[str] = frozenset({MANIFEST_FOLDER})
"""Names the storage keeps for itself directly under the root: the manifest's folder
(:mod:`app.storage.manifest`), which the audit's walk and ``lta-refresh`` skip. Every other
name the storage makes itself is hidden (temporary files ``.….tmp``, the readiness probe
``.healthz-…``, the manifest's ``.lock`` inside its folder), and sanitising never gives one."""

STORAGE_NAME_PREFIX = "zammad"
"""Put before a segment that would be a storage name: ``_manifest`` → ``zammad_manifest``."""

_EXTENSION = re.compile(r"\.[0-9A-Za-z]{1,10}\Z")
_SAMPLE_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def is_reserved_name(segment: str) -> bool:
    """Whether ``segment`` is a Windows device name such as ``CON`` or ``lpt1.txt``.

    Windows ignores case, anything after the first dot and trailing spaces before it.
    """
    base = segment.split(".", 1)[0].rstrip(" ")
    return base.upper() in _RESERVED_NAMES


def is_storage_name(segment: str) -> bool:
    """Whether ``segment`` names the same file as one of :data:`STORAGE_NAMES` would, on a
    case-sensitive or a case-insensitive (SMB/NTFS) file system: ``_manifest``, ``_MANIFEST``,
    ``_manıfest`` (dotless ı, which Windows upper-cases to ``I``)."""
    upper, folded = segment.upper(), segment.casefold()
    return any(upper == name.upper() or folded == name.casefold() for name in STORAGE_NAMES)


def _cut_utf8(value: str, max_bytes: int) -> str:
    """The longest prefix of ``value`` that is at most ``max_bytes`` UTF-8 bytes."""
    encoded = value.encode("utf-8")
    if len(encoded) <= max_bytes:
        return value
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _bound_length(value: str, max_bytes: int, *, keep_extension: bool) -> str:
    if len(value.encode("utf-8")) <= max_bytes:
        return value
    match = _EXTENSION.search(value) if keep_extension else None
    if match and len(match.group()) * 2 <= max_bytes and match.start() > 0:
        extension = match.group()
        stem = _cut_utf8(value[: match.start()], max_bytes - len(extension)).rstrip(". ")
        return stem + extension if stem else _cut_utf8(value, max_bytes)
    return _cut_utf8(value, max_bytes)


def sanitize_segment(
    value: str, *, max_bytes: int = DEFAULT_MAX_SEGMENT_BYTES, keep_extension: bool = False
) -> str:
    """Make ``value`` one file or folder name that is safe on POSIX and SMB/CIFS.

    Steps: NFC-normalise; replace ``/ \\ : * ? " < > |``, NUL, control, format (bidi) and
    line-separator characters with ``_``; collapse runs of ``_``/whitespace (to ``_`` when
    the run holds an ``_``, else to one space); strip leading and trailing dots and spaces
    (so ``.``/``..`` and hidden names cannot occur); prefix Windows device names (``CON``,
    ``lpt1.txt``, ...) with ``_``; prefix a name the storage keeps for itself
    (:func:`is_storage_name`: ``_manifest`` in any case) with :data:`STORAGE_NAME_PREFIX`
    (``zammad_manifest``), so a Zammad group named ``_manifest`` cannot write into the
    manifest's folder; cut to ``max_bytes`` UTF-8 bytes at a character boundary, keeping a
    short extension such as ``.pdf`` when ``keep_extension`` (a cut that leaves a storage name
    is prefixed and cut again); an empty result becomes ``_``. Unicode letters and digits
    (umlauts, CJK, ...) are kept. Every segment is treated alike, whatever its level.

    Args:
        value: any text, e.g. a ticket title.
        max_bytes: upper bound of the result in UTF-8 bytes (>= 8).
        keep_extension: keep a trailing ``.ext`` (1-10 ASCII letters/digits) when cutting.

    Returns:
        A non-empty name without separators; ``sanitize_segment`` is idempotent.

    Raises:
        ValueError: ``max_bytes`` is below 8.
    """
    if max_bytes < 8:
        raise ValueError(f"max_bytes must be at least 8, got {max_bytes}")
    text = unicodedata.normalize("NFC", value)
    text = "".join(
        "_" if ch in _FORBIDDEN_CHARS or unicodedata.category(ch) in _REPLACED_CATEGORIES else ch
        for ch in text
    )
    text = _RUN_WITH_UNDERSCORE.sub("_", text)
    text = _RUN_OF_SPACE.sub(" ", text)
    text = text.strip(". ")
    if is_reserved_name(text):
        text = "_" + text
    if is_storage_name(text):
        text = STORAGE_NAME_PREFIX + text
    text = _bound_length(text, max_bytes, keep_extension=keep_extension)
    # Cutting may expose a trailing dot/space or leave a device or storage name ("CON" + cut).
    text = text.rstrip(". ")
    if is_reserved_name(text):
        text = _cut_utf8("_" + text, max_bytes).rstrip(". ")
    if is_storage_name(text):
        text = _cut_utf8(STORAGE_NAME_PREFIX + text, max_bytes).rstrip(". ")
    return text or "_"


def versioned_name(name: str, version: int, *, max_bytes: int = DEFAULT_MAX_SEGMENT_BYTES) -> str:
    """The name of the ``version``-th archive for ``name``: ``a.pdf`` → ``a_v2.pdf`` for 2.

    Version 1 is ``name`` itself. The stem is shortened (at a character boundary) so the
    result stays within ``max_bytes`` UTF-8 bytes.
    """
    if version <= 1:
        return name
    suffix = f"_v{version}"
    match = _EXTENSION.search(name)
    stem, extension = (name[: match.start()], match.group()) if match and match.start() > 0 else (name, "")
    budget = max(max_bytes - len(suffix) - len(extension), 1)
    return _cut_utf8(stem, budget) + suffix + extension


def _segment_fields(segment: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(segment))
    except ValueError as exc:
        raise ValueError(f"invalid path template segment {segment!r}: {exc}") from None


@lru_cache(maxsize=64)
def _parse_template(template: str) -> tuple[tuple[tuple[str, str | None, str], ...], ...]:
    """Split, check and parse a template: per segment, (literal, field or None, format spec)."""
    if not template or not template.strip():
        raise ValueError("path template is empty")
    if template.startswith("/"):
        raise ValueError(f"path template {template!r} must be relative (no leading '/')")
    parsed: list[tuple[tuple[str, str | None, str], ...]] = []
    for segment in template.split("/"):
        if segment.strip() in {"", ".", ".."}:
            raise ValueError(f"path template {template!r} has an empty, '.' or '..' segment")
        parts: list[tuple[str, str | None, str]] = []
        for literal, field, spec, conversion in _segment_fields(segment):
            if field is None:
                parts.append((literal, None, ""))
                continue
            if field == "":
                raise ValueError(f"path template {template!r} has an empty placeholder '{{}}'")
            if field not in PLACEHOLDERS:
                raise ValueError(
                    f"path template {template!r} uses unknown placeholder {{{field}}}; "
                    f"known: {', '.join(sorted(PLACEHOLDERS))}"
                )
            if conversion is not None or (spec and ("{" in spec or "}" in spec)):
                raise ValueError(
                    f"path template {template!r}: placeholder {{{field}}} may not use '!' or nested '{{}}'"
                )
            parts.append((literal, field, spec or ""))
        parsed.append(tuple(parts))
    return tuple(parsed)


def validate_path_template(template: str) -> None:
    """Check a path template at configuration time.

    Raises:
        ValueError: the template is empty or absolute, has an empty/``.``/``..`` segment,
            uses an unknown placeholder (named in the message), attribute or index access
            (``{group.name}``, ``{id[0]}``), a conversion (``{title!r}``) or a format spec
            that cannot format text (``{number:d}``).
    """
    parsed = _parse_template(template)
    sample = {name: "x" for name in PLACEHOLDERS}
    for parts in parsed:
        for _literal, field, spec in parts:
            if field is not None:
                try:
                    format(sample[field], spec)
                except ValueError as exc:
                    raise ValueError(
                        f"path template {template!r}: bad format for {{{field}}}: {exc}"
                    ) from None


def _text(value: Any, *keys: str) -> str:
    """A ticket field as text; nested objects (webhook form) are read by ``keys``."""
    if isinstance(value, Mapping):
        for key in keys:
            inner = value.get(key)
            if inner not in (None, ""):
                return str(inner)
        return MISSING_VALUE
    if value is None or value == "" or isinstance(value, (list, tuple, set)):
        return MISSING_VALUE
    return str(value)


def _created_at(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        created = value
    elif isinstance(value, str):
        try:
            created = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)


def placeholder_values(ticket: Mapping[str, Any], archived_at: datetime) -> dict[str, str]:
    """The value of every placeholder for ``ticket`` archived at ``archived_at`` (unsanitised).

    Args:
        ticket: Zammad ticket, REST (``expand=true``: names as strings) or webhook form
            (``{"name": ...}`` for group/organization, ``{"login": ...}`` for customer).
            ``created_at`` is an ISO-8601 string; a naive one is taken as UTC.
        archived_at: timezone-aware archive time; converted to UTC.

    Raises:
        ValueError: ``archived_at`` is naive.
    """
    if archived_at.tzinfo is None or archived_at.utcoffset() is None:
        raise ValueError("archived_at must be timezone-aware (UTC)")
    archived = archived_at.astimezone(UTC)
    created = _created_at(ticket.get("created_at"))
    return {
        "number": _text(ticket.get("number")),
        "id": _text(ticket.get("id")),
        "title": _text(ticket.get("title")),
        "group": _text(ticket.get("group"), "name"),
        "customer": _text(ticket.get("customer"), "login", "email"),
        "organization": _text(ticket.get("organization"), "name"),
        "created_year": f"{created.year:04d}" if created else MISSING_VALUE,
        "created_month": f"{created.month:02d}" if created else MISSING_VALUE,
        "archived_at": archived.strftime(ARCHIVED_AT_FORMAT),
        "archived_year": f"{archived.year:04d}",
        "archived_month": f"{archived.month:02d}",
        "archived_date": archived.strftime("%Y-%m-%d"),
    }


def build_relative_path(
    template: str,
    ticket: Mapping[str, Any],
    archived_at: datetime,
    *,
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
) -> PurePosixPath:
    """Render ``template`` for a ticket into a safe path relative to the storage root.

    The template is split on ``/`` first; each segment is then rendered and passed through
    :func:`sanitize_segment` (the last one keeping its extension), so the result has
    exactly as many levels as the template and never contains ``..``, an absolute part,
    NUL or a reserved device name. Missing ticket fields render as ``unknown``.

    Example: the default template and the fixture ticket give
    ``Kundenservice/2025/Ticket-25004711_20250306T132005Z.pdf``.

    Raises:
        ValueError: invalid template (see :func:`validate_path_template`) or naive
            ``archived_at``.
    """
    parsed = _parse_template(template)
    values = placeholder_values(ticket, archived_at)
    segments: list[str] = []
    for index, parts in enumerate(parsed):
        rendered = "".join(
            literal + (format(values[field], spec) if field else "") for literal, field, spec in parts
        )
        segments.append(
            sanitize_segment(rendered, max_bytes=max_segment_bytes, keep_extension=index == len(parsed) - 1)
        )
    return PurePosixPath(*segments)
