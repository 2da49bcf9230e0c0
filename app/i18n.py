"""The archive's language: message catalogues, dates in each language's form, language by group.

Every text the archiver shows a person (PDF labels and headings, the notes posted to
Zammad) is a ``msgid`` in English, looked up in a GNU gettext catalogue per language:
``app/locale/<lang>/LC_MESSAGES/archiver.po``. The catalogues are read with the standard
library's :class:`gettext.GNUTranslations`; the ``.po`` text is compiled into ``.mo``
bytes in memory when a language is first used (:func:`compile_po`), so there is no build
step to forget and no compiled file that can drift from its source. English ``msgstr``
entries are empty: an English archive prints the ``msgid`` itself, byte for byte.

The language travels with each render request (:attr:`app.render.options.RenderOptions.language`),
never as a process global: render processes serve tickets of every language.

Dates and times (:func:`app.render.content.format_time`):

- ``en``: ``2025-03-03 09:12:44 +01:00`` (ISO 8601 order, the zone as its UTC offset);
- ``de``: ``03.03.2025 09:12:44 MEZ`` (DIN 5008 day.month.year, 24-hour clock, the zone's
  abbreviation, translated through the catalogue: CET → MEZ, CEST → MESZ, UTC; every other
  zone is named by its offset, ``UTC+05:30``, as abbreviations are ambiguous — ``IST`` is
  India's, Ireland's and Israel's — see :data:`NAMED_ZONES`).
"""

from __future__ import annotations

import ast
import functools
import gettext
import io
import struct
from datetime import datetime
from pathlib import Path

#: Languages with a catalogue; the first is the default.
LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

#: The gettext domain: ``app/locale/<lang>/LC_MESSAGES/<DOMAIN>.po``.
DOMAIN = "archiver"
LOCALE_DIR = Path(__file__).with_name("locale")

#: BCP 47 tag written as the PDF's ``/Lang`` and XMP ``dc:language``.
LANGUAGE_TAGS = {"en": "en", "de": "de"}


def catalogue_path(language: str) -> Path:
    """The ``.po`` file of ``language`` (one of :data:`LANGUAGES`)."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _unquote(token: str) -> str:
    """The value of one ``"..."`` token of a ``.po`` file (C escapes, as msgfmt reads them)."""
    value = ast.literal_eval(token)
    if not isinstance(value, str):
        raise ValueError(f"not a string: {token!r}")
    return value


def parse_po(text: str) -> dict[str, str]:
    """The entries of a ``.po`` file: ``msgid`` → ``msgstr`` (the header under ``""``).

    Plural entries become ``"singular\\0plural"`` → ``"form0\\0form1…"``, the keys
    :class:`gettext.GNUTranslations` reads from a ``.mo``. Entries whose ``msgstr`` is
    empty, and ``#, fuzzy`` ones, are left out (msgfmt does the same). Comments and
    ``msgctxt`` are not used by our catalogues; a ``msgctxt`` raises.

    Raises:
        ValueError: a line that is none of comment, keyword or string continuation.
    """
    entries: dict[str, str] = {}
    fields: dict[str, str] = {}
    current: str | None = None
    fuzzy = False

    def finish() -> None:
        nonlocal fuzzy
        if "msgid" in fields:
            if "msgid_plural" in fields:
                key = fields["msgid"] + "\0" + fields["msgid_plural"]
                forms = [fields[k] for k in sorted(f for f in fields if f.startswith("msgstr["))]
                value = "\0".join(forms)
                translated = all(forms)
            else:
                key, value = fields["msgid"], fields.get("msgstr", "")
                translated = bool(value)
            if translated and not (fuzzy and key):
                entries[key] = value
        fields.clear()
        fuzzy = False

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if any(key.startswith("msgstr") for key in fields):
                finish()  # a comment starts the next entry
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        if line.startswith('"'):
            if current is None:
                raise ValueError(f"line {number}: string outside an entry")
            fields[current] += _unquote(line)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgctxt":
            raise ValueError(f"line {number}: msgctxt is not used in these catalogues")
        if keyword not in ("msgid", "msgid_plural", "msgstr") and not keyword.startswith("msgstr["):
            raise ValueError(f"line {number}: unexpected {keyword!r}")
        if keyword == "msgid" and "msgid" in fields:
            finish()
        current = keyword
        fields[keyword] = _unquote(rest.strip())
    finish()
    return entries


def compile_po(text: str) -> bytes:
    """A ``.po`` file's text as ``.mo`` bytes (GNU format, little-endian, no hash table)."""
    entries = sorted((k.encode(), v.encode()) for k, v in parse_po(text).items())
    count = len(entries)
    keys_start = 7 * 4
    values_start = keys_start + count * 8
    data_start = values_start + count * 8
    key_table, value_table, blob = [], [], b""
    for key, _ in entries:
        key_table.append((len(key), data_start + len(blob)))
        blob += key + b"\0"
    for _, value in entries:
        value_table.append((len(value), data_start + len(blob)))
        blob += value + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, keys_start, values_start, 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in key_table + value_table)
    return header + tables + blob


@functools.cache
def translation(language: str) -> gettext.GNUTranslations:
    """The catalogue of ``language``, read once per process.

    Raises:
        ValueError: ``language`` is not one of :data:`LANGUAGES`.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}, use one of {', '.join(LANGUAGES)}")
    text = catalogue_path(language).read_text(encoding="utf-8")
    return gettext.GNUTranslations(io.BytesIO(compile_po(text)))


#: The zone abbreviations (zoneinfo's ``tzname()``) printed by name, each with the one UTC
#: offset it stands for: names that mean one offset wherever they are read. Any other
#: abbreviation is printed as its offset (``IST`` is +05:30 in Asia/Kolkata, +01:00 in
#: Europe/Dublin, +02:00 in Asia/Jerusalem; ``CST`` is China's and the US's).
NAMED_ZONES = {"CET": "+01:00", "CEST": "+02:00", "UTC": "+00:00"}


def zone_name(local: datetime, language: str, offset: str) -> str:
    """The zone of ``local`` as a reader of ``language`` names it: a name of
    :data:`NAMED_ZONES` through the catalogue (``CET`` → ``MEZ``), else its UTC offset,
    ``UTC+05:30``.

    Args:
        local: an aware datetime in the archive's zone.
        language: one of :data:`LANGUAGES`.
        offset: its UTC offset as ``±HH:MM``, or ``±HH:MM:SS`` for an offset with seconds (a local mean time).
    """
    abbreviation = local.tzname() or ""
    if NAMED_ZONES.get(abbreviation) != offset:
        return f"UTC{offset}"
    return translation(language).gettext(abbreviation)


def parse_language_by_group(value: str) -> tuple[tuple[str, str], ...]:
    """``"Buchhaltung=de,Support=en"`` as ``(("Buchhaltung", "de"), ("Support", "en"))``.

    Group names are Zammad's, compared exactly (case and spaces inside kept; spaces
    around ``,`` and ``=`` dropped). A group may contain ``::`` (Zammad's sub-groups).

    Raises:
        ValueError: an item without ``=``, an empty group name, a language not in
            :data:`LANGUAGES`, or a group named twice.
    """
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        if not item.strip():
            continue
        group, equals, language = item.rpartition("=")
        group, language = group.strip(), language.strip()
        if not equals or not group:
            raise ValueError(f"{item.strip()!r} is not GROUP=LANGUAGE")
        if language not in LANGUAGES:
            raise ValueError(
                f"group {group!r}: unknown language {language!r}, use one of {', '.join(LANGUAGES)}"
            )
        if any(group == known for known, _ in pairs):
            raise ValueError(f"group {group!r} is named twice")
        pairs.append((group, language))
    return tuple(pairs)


def language_for_group(group: str, default: str, by_group: tuple[tuple[str, str], ...]) -> str:
    """The language of a ticket in Zammad group ``group``: its entry in ``by_group``, else ``default``."""
    for known, language in by_group:
        if known == group:
            return language
    return default
