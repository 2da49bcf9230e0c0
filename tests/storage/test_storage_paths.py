"""Path template rendering and file-name sanitising (app.storage.paths), no I/O."""

from __future__ import annotations

import json
import os
import random
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import pytest

from app.storage.paths import (
    DEFAULT_PATH_TEMPLATE,
    PLACEHOLDERS,
    build_relative_path,
    is_reserved_name,
    is_storage_name,
    placeholder_values,
    sanitize_segment,
    validate_path_template,
    versioned_name,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zammad" / "ticket-expand.json"
ARCHIVED_AT = datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC)
FORBIDDEN = set('/\\:*?"<>|\x00')


@pytest.fixture()
def ticket() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def assert_safe_segment(segment: str, max_bytes: int = 120) -> None:
    assert segment, "empty segment"
    assert segment not in {".", ".."}
    assert not FORBIDDEN & set(segment), segment
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in segment), repr(
        segment
    )
    assert segment[0] not in ". " and segment[-1] not in ". ", repr(segment)
    assert not is_reserved_name(segment), segment
    assert not is_storage_name(segment), segment
    assert len(segment.encode("utf-8")) <= max_bytes, segment
    assert unicodedata.normalize("NFC", segment) == segment


# -- sanitize_segment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../etc", "_.._etc"),
        ("/abs", "_abs"),
        ("C:\\x", "C_x"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT9", "_LPT9"),
        ("nul.tar.gz", "_nul.tar.gz"),
        ("COM1 .txt", "_COM1 .txt"),
        ("CONSOLE", "CONSOLE"),  # only exact device names are reserved
        ("a\x00b", "a_b"),
        ("a\x01\x02\x1fb\x7f", "a_b_"),
        ("line\r\nbreak\ttab", "line_break_tab"),
        ("bidi\u202etxt.exe", "bidi_txt.exe"),
        ("name. . ", "name"),
        ("  .hidden", "hidden"),
        ("", "_"),
        (".", "_"),
        ("..", "_"),
        ("...", "_"),
        ("   ", "_"),
        ("a  \u00a0  b", "a b"),
        ("a _ _ b", "a_b"),
        ("Rechnung 2025-0117: Position 3", "Rechnung 2025-0117_Position 3"),
        ("Mühlenbach Logistik GmbH", "Mühlenbach Logistik GmbH"),
        ("Mu\u0308hle", "Mühle"),  # NFD input becomes NFC
        ("工单 №7", "工单 №7"),
        ('a*b?c"d<e>f|g', "a_b_c_d_e_f_g"),
        ("_manifest", "zammad_manifest"),  # the manifest's folder is the storage's
        ("_MANIFEST", "zammad_MANIFEST"),  # the same folder on a case-insensitive share
        ("_manıfest", "zammad_manıfest"),  # dotless ı: Windows upper-cases it to I
        (" _manifest. ", "zammad_manifest"),
        ("__manifest", "zammad_manifest"),
        ("_manifest_2025", "_manifest_2025"),  # only the exact name is the storage's
        ("zammad_manifest", "zammad_manifest"),
    ],
)
def test_sanitize_segment_table(value: str, expected: str) -> None:
    assert sanitize_segment(value) == expected
    assert_safe_segment(sanitize_segment(value))


@pytest.mark.parametrize("value", ["x" * 500, "ü" * 500, "𝄞" * 500, "a" + "ü" * 499, "€" * 41 + "a"])
def test_sanitize_segment_bounds_length_at_character_boundary(value: str) -> None:
    result = sanitize_segment(value, max_bytes=120)
    encoded = result.encode("utf-8")
    assert len(encoded) <= 120
    assert len(encoded) > 120 - 4  # cut close to the bound, not far below it
    assert value.startswith(result)  # a prefix: nothing garbled, no half characters
    assert_safe_segment(result)


def test_sanitize_segment_keeps_extension_when_cutting() -> None:
    result = sanitize_segment("ü" * 500 + ".pdf", max_bytes=120, keep_extension=True)
    assert result.endswith("ü.pdf")
    assert len(result.encode()) <= 120
    assert not sanitize_segment("ü" * 500 + ".pdf", max_bytes=120).endswith(".pdf")


def test_sanitize_segment_cut_does_not_leave_trailing_dot() -> None:
    result = sanitize_segment("a" * 119 + ".b" * 10, max_bytes=120)
    assert not result.endswith(".")
    assert_safe_segment(result)


def test_sanitize_segment_cut_does_not_leave_a_storage_name() -> None:
    result = sanitize_segment("_manifestABC", max_bytes=9)
    assert result == "zammad_ma"
    assert sanitize_segment(result, max_bytes=9) == result


def test_sanitize_segment_rejects_tiny_bound() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        sanitize_segment("x", max_bytes=3)


# -- versioned_name -------------------------------------------------------------------------


def test_versioned_name() -> None:
    assert versioned_name("a.pdf", 1) == "a.pdf"
    assert versioned_name("a.pdf", 2) == "a_v2.pdf"
    assert versioned_name("a", 12) == "a_v12"
    long = sanitize_segment("ü" * 500 + ".pdf", keep_extension=True)
    v = versioned_name(long, 999)
    assert v.endswith("_v999.pdf") and len(v.encode()) <= 120
    assert_safe_segment(v)


# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_PATH_TEMPLATE,
        "{organization}/{customer}/{archived_date}/{id}-{title:.40}.pdf",
        "x.pdf",
        "{{literal}}/{id}",
    ],
)
def test_validate_accepts(template: str) -> None:
    validate_path_template(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{group}/{foo}/x.pdf", "unknown placeholder {foo}"),
        ("{grup}.pdf", "unknown placeholder {grup}"),
        ("{group.__class__}.pdf", "unknown placeholder {group.__class__}"),
        ("{id[0]}.pdf", r"unknown placeholder {id\[0\]}"),
        ("{}.pdf", "empty placeholder"),
        ("{title!r}.pdf", "may not use"),
        ("{number:d}.pdf", "bad format"),
        ("{title:{group}}.pdf", "may not use"),
        ("/abs/{id}.pdf", "relative"),
        ("a//{id}.pdf", "empty"),
        ("../{id}.pdf", "'..'"),
        ("", "empty"),
        ("{group", "invalid"),
    ],
)
def test_validate_rejects(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_path_template(template)


def test_placeholder_values_from_fixture(ticket: dict) -> None:
    values = placeholder_values(ticket, ARCHIVED_AT)
    assert set(values) == PLACEHOLDERS
    assert values == {
        "number": "25004711",
        "id": "4711",
        "title": "Rechnung 2025-0117: Position 3 doppelt berechnet",
        "group": "Kundenservice",
        "customer": "k.vogelsang@muehlenbach-logistik.example",
        "organization": "Mühlenbach Logistik GmbH",
        "created_year": "2025",
        "created_month": "03",
        "archived_at": "20250306T132005Z",
        "archived_year": "2025",
        "archived_month": "03",
        "archived_date": "2025-03-06",
    }


def test_placeholder_values_webhook_form_and_missing() -> None:
    ticket = {
        "number": 31337,
        "group": {"name": "Buchhaltung", "id": 3},
        "organization": {"name": "Acme"},
        "customer": {"login": "jane", "email": "jane@example.org"},
        "created_at": "2024-12-31T23:30:00-02:00",  # 2025-01-01 01:30 UTC
    }
    values = placeholder_values(ticket, datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))))
    assert values["group"] == "Buchhaltung"
    assert values["organization"] == "Acme"
    assert values["customer"] == "jane"
    assert values["number"] == "31337"
    assert (values["created_year"], values["created_month"]) == ("2025", "01")
    assert values["archived_at"] == "20241231T230000Z"
    assert values["id"] == values["title"] == "unknown"
    odd_ticket = {"customer": {"email": "e@x"}, "group": {}, "title": "", "created_at": "garbage"}
    odd = placeholder_values(odd_ticket, ARCHIVED_AT)
    assert odd == {**placeholder_values({}, ARCHIVED_AT), "customer": "e@x"}
    assert odd["group"] == odd["title"] == odd["created_year"] == "unknown"


def test_naive_archived_at_is_refused(ticket: dict) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_relative_path(DEFAULT_PATH_TEMPLATE, ticket, datetime(2025, 3, 6, 13, 20, 5))


def test_build_relative_path_fixture(ticket: dict) -> None:
    path = build_relative_path(DEFAULT_PATH_TEMPLATE, ticket, ARCHIVED_AT)
    assert path == PurePosixPath("Kundenservice/2025/Ticket-25004711_20250306T132005Z.pdf")


def test_build_relative_path_with_crafted_fields(ticket: dict, tmp_path: Path) -> None:
    crafted = {
        **ticket,
        "group": "../../etc",
        "number": "/abs",
        "customer": "C:\\x",
        "title": "evil\x00/../../title",
        "organization": "..",
    }
    template = "{group}/{organization}/{customer}/{title}/Ticket-{number}.pdf"
    path = build_relative_path(template, crafted, ARCHIVED_AT)
    assert path.parts == ("_.._etc", "_", "C_x", "evil_.._.._title", "Ticket-_abs.pdf")
    assert not path.is_absolute()
    assert ".." not in path.parts
    root = tmp_path / "root"
    landed = Path(os.path.normpath(root / path))
    assert landed.is_relative_to(root)
    assert len(landed.relative_to(root).parts) == 5


def test_build_relative_path_group_named_like_the_manifest_folder(ticket: dict) -> None:
    path = build_relative_path(DEFAULT_PATH_TEMPLATE, {**ticket, "group": {"name": "_manifest"}}, ARCHIVED_AT)
    assert path == PurePosixPath("zammad_manifest/2025/Ticket-25004711_20250306T132005Z.pdf")


def test_build_relative_path_long_title_keeps_pdf_extension(ticket: dict) -> None:
    path = build_relative_path("{group}/{title}.pdf", {**ticket, "title": "ü" * 500}, ARCHIVED_AT)
    assert path.name.endswith(".pdf")
    assert len(path.name.encode()) <= 120


# -- property loop --------------------------------------------------------------------------

ALPHABET = [
    "a", "Z", "0", "ü", "ß", "€", "𝄞", "工", "e\u0301", " ", "\u00a0", "\u3000", "\t", "\n", "\x00", "\x1b",
    "\x7f", "\u202e", "\u200b", "\u2028", "\ud800", ".", "..", "/", "\\", ":", "*", "?", '"', "<", ">", "|",
    "_", "-", "CON", "con", "nul", "LPT1", "com9", "AUX", "prn", "C:\\", "../", "/..", "~",
    "_manifest", "_MANIFEST", "zammad",
]  # fmt: skip


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 40, 200])))


def test_property_random_segments_and_paths() -> None:
    rng = random.Random(20250306)
    template = "{group}/{organization}/{created_year}/{customer}/{title}-{number}_{archived_at}.pdf"
    for _ in range(5000):
        value = random_text(rng)
        max_bytes = rng.choice([8, 16, 40, 120, 255])
        segment = sanitize_segment(value, max_bytes=max_bytes, keep_extension=rng.random() < 0.5)
        assert_safe_segment(segment, max_bytes)
        assert sanitize_segment(segment, max_bytes=max_bytes) == segment  # idempotent

        ticket = {
            "group": random_text(rng) if rng.random() < 0.5 else {"name": random_text(rng)},
            "organization": random_text(rng),
            "customer": {"login": random_text(rng)},
            "title": random_text(rng),
            "number": random_text(rng),
            "created_at": "2025-03-03T08:12:44.031Z",
        }
        path = build_relative_path(template, ticket, ARCHIVED_AT, max_segment_bytes=max(max_bytes, 16))
        assert not path.is_absolute()
        assert len(path.parts) == 5, path
        assert ".." not in path.parts and "." not in path.parts
        assert "\x00" not in str(path)
        for part in path.parts:
            assert_safe_segment(part, max(max_bytes, 16))
        root = Path("/srv/archive")
        assert Path(os.path.normpath(root / path)).is_relative_to(root)
