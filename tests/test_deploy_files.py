"""The deployment files hold what operators rely on: image, compose service, units, scripts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "Containerfile"
COMPOSE = REPO / "compose.yaml"
UNITS = REPO / "deploy" / "systemd"
SCRIPTS = [
    REPO / "scripts" / "ci" / "smoke-test.sh",
    REPO / "scripts" / "dev" / "run-local.sh",
    REPO / "scripts" / "dev" / "gen-dev-certs.sh",
    REPO / "scripts" / "dev" / "install-system-deps.sh",
    REPO / "scripts" / "ops" / "mount-cifs.sh",
    REPO / "deploy" / "container" / "trust-extra-cas.sh",
]
EXECUTABLES = [*SCRIPTS, REPO / "scripts" / "dev" / "gen-config-docs.py", REPO / "deploy" / "container" / "healthcheck.py"]


def _instructions(text: str) -> list[tuple[str, str]]:
    """Containerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def containerfile() -> list[tuple[str, str]]:
    return _instructions(CONTAINERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_containerfile_base_image_is_an_argument(containerfile) -> None:
    first = containerfile[0]
    assert first[0] == "ARG" and first[1].startswith("BASE_IMAGE="), "the first line must be ARG BASE_IMAGE=…"
    froms = [args for kw, args in containerfile if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)


def test_containerfile_has_mirror_arguments(containerfile) -> None:
    args = {a.split("=", 1)[0] for kw, a in containerfile if kw == "ARG"}
    assert {"BASE_IMAGE", "PIP_INDEX_URL", "EXTRA_CA_CERTS"} <= args


def test_containerfile_runtime_pieces(containerfile) -> None:
    runtime = containerfile[max(i for i, (kw, _) in enumerate(containerfile) if kw == "FROM"):]
    keywords = {kw for kw, _ in runtime}
    assert {"USER", "HEALTHCHECK", "EXPOSE", "VOLUME", "ENTRYPOINT"} <= keywords
    user = [a for kw, a in runtime if kw == "USER"][-1]
    assert user.split(":")[0] not in {"0", "root"}, "the service must not run as root"
    assert "8080" in [a for kw, a in runtime if kw == "EXPOSE"][0].split()
    volumes = " ".join(a for kw, a in runtime if kw == "VOLUME")
    assert "/var/lib/zammad-pdf-archiver" in volumes and "/srv/archive" in volumes
    env = " ".join(a for kw, a in runtime if kw == "ENV")
    for needed in ("SERVER_HOST=0.0.0.0", "SERVER_PORT=8080", "STORAGE_ROOT=/srv/archive"):
        assert needed in env
    packages = " ".join(a for kw, a in runtime if kw == "RUN")
    for package in ("fonts-noto-core", "fonts-dejavu-core", "poppler-utils"):
        assert package in packages
    entry = [a for kw, a in runtime if kw == "ENTRYPOINT"][0] + [a for kw, a in runtime if kw == "CMD"][0]
    assert '"-m", "app"' in entry and '"serve"' in entry
    assert "curl" not in [a for kw, a in runtime if kw == "HEALTHCHECK"][0]


def test_containerignore_keeps_the_context_small() -> None:
    text = (REPO / ".containerignore").read_text(encoding="utf-8")
    assert text.splitlines()[1] == "*" or "\n*\n" in text
    for kept in ("!pyproject.toml", "!README.md", "!app/", "!deploy/container/"):
        assert kept in text


def test_compose_service(compose) -> None:
    service = compose["services"]["archiver"]
    assert service["env_file"], "env_file is required"
    assert service["restart"] in {"unless-stopped", "always", "on-failure"}
    assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    for port in service["ports"]:
        assert str(port).startswith("${ARCHIVER_BIND:-127.0.0.1}:") or str(port).startswith("127.0.0.1:"), (
            "ports are bound to loopback by default")
    targets = {}
    for volume in service["volumes"]:
        source = re.match(r"^(\$\{[^}]*\}|[^:]+):", volume)
        assert source, volume
        target, *options = volume[source.end():].split(":")
        targets[target] = options
    assert "/srv/archive" in targets and "/var/lib/zammad-pdf-archiver" in targets
    assert targets["/etc/zammad-pdf-archiver/certs"] == ["ro"], "certificates are mounted read-only"
    env = service["environment"]
    assert env["STORAGE_ROOT"] == "/srv/archive"
    assert env["SIGNING_PFX_PATH"].startswith("/etc/zammad-pdf-archiver/certs/")


def test_systemd_units() -> None:
    compose_unit = (UNITS / "zammad-pdf-archiver-compose.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=.*compose .*up", compose_unit, re.M)
    assert re.search(r"^ExecStop=.*compose .*down", compose_unit, re.M)
    plain = (UNITS / "zammad-pdf-archiver.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=\S+/python -m app serve$", plain, re.M)
    assert re.search(r"^EnvironmentFile=", plain, re.M)
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                   "CapabilityBoundingSet=", "User="):
        assert re.search(rf"^{re.escape(option)}", plain, re.M), option
    for text in (compose_unit, plain):
        assert "[Unit]" in text and "[Service]" in text and "[Install]" in text


@pytest.mark.parametrize("path", EXECUTABLES, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_are_executable(path: Path) -> None:
    assert path.exists(), path
    assert os.access(path, os.X_OK), f"chmod +x {path.relative_to(REPO)}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_parse(path: Path) -> None:
    shell = "sh" if path.read_text(encoding="utf-8").startswith("#!/bin/sh") else "bash"
    result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_mount_cifs_dry_run_prints_the_documented_options() -> None:
    result = subprocess.run([str(REPO / "scripts/ops/mount-cifs.sh"), "//server/share", "/srv/ticket-archive"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("mount -t cifs"))
    for option in ("uid=10001", "gid=10001", "file_mode=0640", "dir_mode=0750", "cache=strict",
                   "credentials=", "nosuid", "nodev", "noexec"):
        assert option in line
