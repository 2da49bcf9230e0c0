"""The message catalogues (app/locale) and the language helpers of app.i18n."""

from __future__ import annotations

import ast
import gettext
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.i18n import (
    LANGUAGES,
    catalogue_path,
    compile_po,
    language_for_group,
    parse_language_by_group,
    parse_po,
    translation,
)

APP = Path(__file__).resolve().parent.parent / "app"
FIELD = re.compile(r"\{[a-z_]*\}")


def msgids_in_code(root: Path = APP) -> dict[str | tuple[str, str], str]:
    """Every literal ``_("…")``/``gettext("…")``/``ngettext("…", "…", n)`` in ``root``, with its file."""
    found: dict[str | tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name in ("_", "gettext") and args:
                found.setdefault(args[0], str(path.relative_to(root.parent)))
            elif name == "ngettext" and len(args) >= 2:
                found.setdefault((args[0], args[1]), str(path.relative_to(root.parent)))
    return found


def po_msgids(language: str) -> set[str | tuple[str, str]]:
    """The msgids of a catalogue, translated or not (plural ones as ``(singular, plural)``)."""
    text = catalogue_path(language).read_text(encoding="utf-8")
    ids: set[str | tuple[str, str]] = set()
    singular = None
    for line in text.splitlines():
        if line.startswith("msgid "):
            singular = ast.literal_eval(line[6:])
            ids.add(singular)
        elif line.startswith("msgid_plural ") and singular is not None:
            ids.discard(singular)
            ids.add((singular, ast.literal_eval(line[13:])))
    ids.discard("")
    return ids


def test_the_code_uses_msgids_at_all():
    used = msgids_in_code()
    assert "Ticket number" in used and "PDF archived" in used and len(used) > 50


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_msgid_in_the_code_is_in_the_catalogue(language):
    missing = {key: where for key, where in msgids_in_code().items() if key not in po_msgids(language)}
    assert not missing, f"{catalogue_path(language)} lacks: {missing}"


def test_both_catalogues_hold_the_same_msgids():
    assert po_msgids("de") == po_msgids("en")


def test_german_translates_everything_and_keeps_the_format_fields():
    german = translation("de")
    for key in po_msgids("de"):
        if isinstance(key, tuple):
            forms = [german.ngettext(*key, n) for n in (1, 2)]
            assert forms[0] != key[0] and forms[1] != key[1], key
            assert all(sorted(FIELD.findall(f)) == sorted(FIELD.findall(key[0])) for f in forms), key
            continue
        text = german.gettext(key)
        assert text, key
        if key not in ("Tags", "Cc", "Code", "Job", "Organisation", "UTC", "Ticket #{number}"):  # same word
            assert text != key, f"untranslated in de: {key!r}"
        assert sorted(FIELD.findall(text)) == sorted(FIELD.findall(key)), key
        assert text.count("{{") == key.count("{{"), key


def test_english_prints_the_msgids_themselves():
    english = translation("en")
    for key in po_msgids("en"):
        if isinstance(key, tuple):
            assert [english.ngettext(*key, n) for n in (1, 2)] == list(key)
        else:
            assert english.gettext(key) == key


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_in_memory_compiler_matches_gnu_msgfmt(language, tmp_path: Path):
    assert shutil.which("msgfmt"), (
        "GNU gettext's msgfmt is missing: scripts/dev/install-system-deps.sh installs it"
    )
    mo = tmp_path / "out.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(catalogue_path(language))], check=True)
    with mo.open("rb") as file:
        reference = gettext.GNUTranslations(file)
    assert translation(language)._catalog == reference._catalog  # type: ignore[attr-defined]


def test_parse_po_reads_continuations_plurals_and_skips_fuzzy_and_empty():
    text = (
        'msgid ""\nmsgstr "Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        'msgid "a"\nmsgstr ""\n"A\\"1"\n\n'
        '#, fuzzy\nmsgid "b"\nmsgstr "B"\n\n'
        'msgid "c"\nmsgstr ""\n\n'
        'msgid "one"\nmsgid_plural "many"\nmsgstr[0] "eins"\nmsgstr[1] "viele"\n'
    )
    assert parse_po(text) == {
        "": "Plural-Forms: nplurals=2; plural=(n != 1);\n",
        "a": 'A"1',
        "one\0many": "eins\0viele",
    }
    import io

    compiled = gettext.GNUTranslations(io.BytesIO(compile_po(text)))
    assert compiled.gettext("a") == 'A"1' and compiled.gettext("b") == "b"
    assert compiled.ngettext("one", "many", 5) == "viele"


def test_parse_po_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="line 1"):
        parse_po('msgctxt "x"\nmsgid "a"\nmsgstr "b"\n')
    with pytest.raises(ValueError, match="line 1"):
        parse_po('"stray"\n')


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        translation("fr")


def test_language_by_group():
    pairs = parse_language_by_group(" Buchhaltung = de , Support=en,, Sales::EMEA=de ")
    assert pairs == (("Buchhaltung", "de"), ("Support", "en"), ("Sales::EMEA", "de"))
    assert language_for_group("Buchhaltung", "en", pairs) == "de"
    assert language_for_group("buchhaltung", "en", pairs) == "en"  # Zammad's names, exactly
    assert language_for_group("", "de", pairs) == "de"
    assert parse_language_by_group("") == ()
    for bad, why in (
        ("Support", "GROUP=LANGUAGE"),
        ("=de", "GROUP=LANGUAGE"),
        ("A=fr", "unknown language"),
        ("A=de,A=en", "named twice"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_language_by_group(bad)
