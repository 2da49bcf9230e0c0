"""Every setting the code reads is in env.example and the configuration reference, and nothing else is.

Three independent checks:
1. ``scripts/dev/gen-config-docs.py --check``: the generated files are up to date;
2. env.example and the table in docs/03-configuration.md, parsed here on their own, list
   exactly the settings of ``app.config.SETTING_FIELDS`` with their TOML keys and defaults;
3. no module under app/ reads the environment except app/config.py (and there only
   ``CONFIG_PATH`` by name), and code reads only declared settings (``settings.<name>``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import SETTING_FIELDS, Settings

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"
ENV_EXAMPLE = REPO / "env.example"
CONFIG_DOC = REPO / "docs" / "03-configuration.md"
GENERATOR = REPO / "scripts" / "dev" / "gen-config-docs.py"

DECLARED = {f.metadata["env"]: f for f in SETTING_FIELDS}
# A setting line: active "NAME=value" or commented default "#NAME=value" (no space after #).
ENV_LINE = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")
DOC_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*`([^`]+)`\s*\|([^|]*)\|(.*?)\|")


def _expected_value(field) -> str:
    """The default as env.example writes it (independent of the generator's code)."""
    value = field.default
    if field.metadata["kind"] == "secret" or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_env_example(text: str) -> dict[str, tuple[str, bool]]:
    """``{NAME: (value, active)}`` of every setting line; fails on a name given twice."""
    out: dict[str, tuple[str, bool]] = {}
    for line in text.splitlines():
        match = ENV_LINE.match(line)
        if match:
            name, value = match.groups()
            assert name not in out, f"env.example lists {name} twice"
            out[name] = (value, not line.startswith("#"))
    return out


def parse_doc_table(text: str) -> dict[str, str]:
    """``{NAME: toml key}`` from the generated table of the configuration reference."""
    begin = text.index("<!-- BEGIN SETTINGS")
    end = text.index("<!-- END SETTINGS -->")
    rows: dict[str, str] = {}
    for line in text[begin:end].splitlines():
        match = DOC_ROW.match(line)
        if match:
            name, toml = match.group(1), match.group(2)
            assert name not in rows, f"the configuration reference lists {name} twice"
            rows[name] = toml
    return rows


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, (
        f"{result.stderr.strip()}\nRegenerate: .venv/bin/python scripts/dev/gen-config-docs.py"
    )


def test_env_example_lists_exactly_the_declared_settings() -> None:
    listed = parse_env_example(ENV_EXAMPLE.read_text(encoding="utf-8"))
    missing = sorted(set(DECLARED) - set(listed))
    unknown = sorted(set(listed) - set(DECLARED))
    assert not missing, f"settings read by app/config.py but missing from env.example: {missing}"
    assert not unknown, f"env.example lists settings the code does not read: {unknown}"
    for name, (value, active) in listed.items():
        field = DECLARED[name]
        assert value == _expected_value(field), f"env.example: {name}={value!r}, default is {field.default!r}"
        if field.metadata["kind"] == "secret":
            assert active and value == "", f"env.example: secret {name} must be an empty active line"


def test_reference_table_lists_exactly_the_declared_settings() -> None:
    rows = parse_doc_table(CONFIG_DOC.read_text(encoding="utf-8"))
    missing = sorted(set(DECLARED) - set(rows))
    unknown = sorted(set(rows) - set(DECLARED))
    assert not missing, f"settings missing from docs/03-configuration.md: {missing}"
    assert not unknown, f"docs/03-configuration.md lists settings the code does not read: {unknown}"
    for name, toml in rows.items():
        assert toml == DECLARED[name].metadata["toml"], f"docs: {name} has TOML key {toml!r}"


def _app_sources() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "__pycache__" not in p.parts)


ENV_ACCESS = re.compile(r"\b(os\.environ|environ\s*\[|environ\.get|getenv|putenv|environb)\b")


def test_only_config_reads_the_environment() -> None:
    offenders = []
    for path in _app_sources():
        rel = path.relative_to(REPO).as_posix()
        if rel == "app/config.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if not ENV_ACCESS.search(code):
                continue
            offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "read the environment only in app/config.py (declare a setting):\n" + "\n".join(
        offenders
    )


def test_config_reads_no_variable_by_name_except_config_path() -> None:
    tree = ast.parse((APP / "config.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        # env.get("NAME"...) and env["NAME"] with a literal name
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"get", "getenv"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.args[0].value)
        ):
            names.add(node.args[0].value)
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
            and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.slice.value)
        ):
            names.add(node.slice.value)
    assert names <= {"CONFIG_PATH"}, (
        f"app/config.py reads {sorted(names - {'CONFIG_PATH'})} outside SETTING_FIELDS"
    )


def test_code_uses_only_declared_settings() -> None:
    """``settings.<name>`` anywhere in app/ must be a declared setting or a method of Settings."""
    known = {f.name for f in SETTING_FIELDS} | {n for n in dir(Settings) if not n.startswith("_")}
    unknown = []
    for path in _app_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "settings"
                and node.attr not in known
            ):
                unknown.append(f"{path.relative_to(REPO)}:{node.lineno}: settings.{node.attr}")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "settings"
                and node.attr not in known
            ):
                unknown.append(f"{path.relative_to(REPO)}:{node.lineno}: ….settings.{node.attr}")
    assert not unknown, "undeclared settings read (declare them in app/config.py):\n" + "\n".join(unknown)


@pytest.mark.parametrize("broken", ["drop_env_line", "drop_doc_row"])
def test_the_checks_notice_a_missing_line(broken: str) -> None:
    """The parsers above really see a removed line (guards against a parser that matches nothing)."""
    name = SETTING_FIELDS[0].metadata["env"]
    if broken == "drop_env_line":
        text = "\n".join(
            line
            for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
            if not ENV_LINE.match(line) or ENV_LINE.match(line).group(1) != name
        )
        assert name not in parse_env_example(text)
        assert len(parse_env_example(text)) == len(DECLARED) - 1
    else:
        text = "\n".join(
            line
            for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines()
            if f"| `{name}` |" not in line
        )
        assert name not in parse_doc_table(text)
        assert len(parse_doc_table(text)) == len(DECLARED) - 1
