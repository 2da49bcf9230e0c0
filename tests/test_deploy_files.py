"""The deployment files hold what operators rely on: image, compose service, units, scripts."""

from __future__ import annotations

import json
import os
import re
import shlex
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
EXECUTABLES = [
    *SCRIPTS,
    REPO / "scripts" / "dev" / "gen-config-docs.py",
    REPO / "deploy" / "container" / "healthcheck.py",
]


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
    runtime = containerfile[max(i for i, (kw, _) in enumerate(containerfile) if kw == "FROM") :]
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


def _volumes(service: dict) -> dict[str, tuple[str, list[str]]]:
    """``{target: (source as written, options)}`` of a service's short-syntax volumes."""
    out = {}
    for volume in service["volumes"]:
        source = re.match(r"^(\$\{[^}]*\}|[^:]+):", volume)
        assert source, volume
        target, *options = volume[source.end() :].split(":")
        assert target not in out, f"{target} mounted twice"
        out[target] = (source.group(1), options)
    return out


def _with_defaults(value: str, **variables: str) -> str:
    """``${NAME:-default}`` and ``${NAME}`` replaced as compose does, from ``variables`` or the
    default (an unset variable without a default is empty)."""

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(3) or ""
        return variables.get(name, default)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, value)


def _check_hardened_archiver(name: str, service: dict) -> None:
    assert service["env_file"], f"{name}: env_file is required"
    assert service["restart"] in {"unless-stopped", "always", "on-failure"}
    assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert service["read_only"] is True and "ALL" in service["cap_drop"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["stop_grace_period"] == "45s", "SHUTDOWN_GRACE_SECONDS (30) plus margin"
    for port in service["ports"]:
        assert str(port).startswith("${ARCHIVER_BIND:-127.0.0.1}:") or str(port).startswith("127.0.0.1:"), (
            "ports are bound to loopback by default"
        )
    targets = _volumes(service)
    assert "/srv/archive" in targets and "/var/lib/zammad-pdf-archiver" in targets
    assert targets["/etc/zammad-pdf-archiver/certs"][1] == ["ro"], "certificates are mounted read-only"
    env = service["environment"]
    assert env["STORAGE_ROOT"] == "/srv/archive"
    assert env["STATE_DIR"] == "/var/lib/zammad-pdf-archiver"
    assert env["SIGNING_PFX_PATH"].startswith("/etc/zammad-pdf-archiver/certs/")


def test_compose_service(compose) -> None:
    _check_hardened_archiver("archiver", compose["services"]["archiver"])


def test_compose_default_is_one_sqlite_archiver(compose) -> None:
    """Without a profile, `compose up` starts what it always did: `archiver`, on SQLite."""
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == {"archiver"}
    archiver = compose["services"]["archiver"]
    assert "JOB_STORE_URL" not in archiver["environment"] and "depends_on" not in archiver
    assert archiver["ports"] == ["${ARCHIVER_BIND:-127.0.0.1}:${ARCHIVER_PORT:-8080}:8080"]
    assert _volumes(archiver)["/var/lib/zammad-pdf-archiver"][0] == "${ARCHIVER_STATE_DIR:-./state}"


def test_compose_ha_profile_postgres(compose) -> None:
    services = compose["services"]
    assert {name for name, s in services.items() if "ha" in s.get("profiles", [])} == {
        "postgres",
        "archiver-a",
        "archiver-b",
    }
    pg = services["postgres"]
    image = _with_defaults(pg["image"])
    match = re.fullmatch(r"docker\.io/library/postgres:(\d+)", image)
    assert match and 13 <= int(match.group(1)) <= 17, (
        f"{image}: the official image pinned to a major version 13-17 (18 moved its data folder)"
    )
    assert "ports" not in pg, "PostgreSQL is not published outside the compose network"
    assert re.fullmatch(r"\$\{[A-Z_]+:-\}", pg["environment"]["POSTGRES_PASSWORD"]), (
        "the password comes from a variable (.env), never written here"
    )
    assert pg["environment"]["POSTGRES_DB"] not in {"zammad_production", "zammad", "postgres"}
    ((source, _),) = [v for t, v in _volumes(pg).items() if t == "/var/lib/postgresql/data"]
    assert source in compose["volumes"], "the data lives in a named volume"
    test = " ".join(pg["healthcheck"]["test"])
    assert "pg_isready" in test and "-h 127.0.0.1" in test, "ready over TCP, not during the first-start init"
    assert pg["restart"] == "unless-stopped"


def test_compose_ha_replicas_share_database_and_storage_not_state(compose) -> None:
    services = compose["services"]
    archiver, pg = services["archiver"], services["postgres"]
    replicas = [services["archiver-a"], services["archiver-b"]]
    for name, replica in zip(("archiver-a", "archiver-b"), replicas, strict=True):
        _check_hardened_archiver(name, replica)
        assert replica["image"] == archiver["image"] and replica["env_file"] == archiver["env_file"]
        assert replica["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    a, b = replicas
    # One database for both: the same URL, naming the compose service, its role, database and password.
    url = a["environment"]["JOB_STORE_URL"]
    assert b["environment"]["JOB_STORE_URL"] == url
    password_var = re.fullmatch(r"\$\{([A-Z_]+):-\}", pg["environment"]["POSTGRES_PASSWORD"]).group(1)
    expected = (
        f"postgresql://{pg['environment']['POSTGRES_USER']}:${{{password_var}:-}}@postgres:5432/"
        f"{pg['environment']['POSTGRES_DB']}"
    )
    assert url == expected
    # The same storage folder (the share) for both, the one the single archiver uses...
    assert _volumes(a)["/srv/archive"] == _volumes(b)["/srv/archive"] == _volumes(archiver)["/srv/archive"]
    # ... but a state folder each (lock and spool), none of them the single archiver's.
    states = [_volumes(s)["/var/lib/zammad-pdf-archiver"][0] for s in (archiver, a, b)]
    assert len({_with_defaults(s) for s in states}) == 3, states
    assert len(set(states)) == 3, "each state folder has its own variable"
    ports = [_with_defaults(p.rsplit(":", 1)[0]) for s in (archiver, a, b) for p in s["ports"]]
    assert len(set(ports)) == 3, f"distinct published ports: {ports}"


def test_compose_ha_url_is_accepted_by_the_settings(compose) -> None:
    """What the replicas get in JOB_STORE_URL passes the service's own validation."""
    from app.config import load_settings

    service = compose["services"]["archiver-a"]
    url = _with_defaults(service["environment"]["JOB_STORE_URL"], ARCHIVER_DB_PASSWORD="0123abcd")
    settings = load_settings(
        {
            "ZAMMAD_BASE_URL": "https://zammad.example.com",
            "ZAMMAD_API_TOKEN": "t",
            "STORAGE_ROOT": "/srv/archive",
            "SIGNING_ENABLED": "false",
            "JOB_STORE_URL": url,
        }
    )
    assert settings.job_store_url is not None and settings.job_store_url.reveal() == url
    assert "0123abcd" in settings.secrets(), "its password is redacted from logs"


def test_compose_header_explains_the_ha_profile() -> None:
    header = "".join(
        line for line in COMPOSE.read_text(encoding="utf-8").splitlines(keepends=True) if line.startswith("#")
    )
    assert "--profile ha up -d postgres archiver-a archiver-b" in header
    assert "ARCHIVER_DB_PASSWORD" in header and "docs/08-high-availability.md" in header


def test_systemd_units() -> None:
    compose_unit = (UNITS / "zammad-pdf-archiver-compose.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=.*compose .*up", compose_unit, re.M)
    assert re.search(r"^ExecStop=.*compose .*down", compose_unit, re.M)
    plain = (UNITS / "zammad-pdf-archiver.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=\S+/python -m app serve$", plain, re.M)
    assert re.search(r"^EnvironmentFile=", plain, re.M)
    for option in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "User=",
    ):
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


def test_mount_cifs_keeps_a_share_and_mount_point_with_spaces_whole(tmp_path: Path) -> None:
    """A share path with spaces: the fstab line has them as ``\\040`` (fstab(5); util-linux's
    own parser reads it back), the dry run's commands quote them for the shell."""
    share, mountpoint = "//fileserver/Ticket Archiv", "/srv/ticket archive"
    script = str(REPO / "scripts/ops/mount-cifs.sh")
    fstab = subprocess.run([script, "--fstab", share, mountpoint], capture_output=True, text=True, timeout=30)
    assert fstab.returncode == 0, fstab.stderr
    table = tmp_path / "fstab"
    table.write_text(fstab.stdout)
    parsed = subprocess.run(
        ["findmnt", "--tab-file", str(table), "-J", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert parsed.returncode == 0, parsed.stderr
    (entry,) = json.loads(parsed.stdout)["filesystems"]
    assert (entry["source"], entry["target"], entry["fstype"]) == (share, mountpoint, "cifs")
    assert "x-systemd.automount" in entry["options"]

    dry = subprocess.run([script, share, mountpoint], capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert shlex.split(next(row for row in lines if row.startswith("mkdir")))[2:] == [mountpoint]
    mount = shlex.split(next(row for row in lines if row.startswith("mount -t cifs")))
    assert mount[3:5] == [share, mountpoint] and mount[5] == "-o"
    check = shlex.split(
        next(row for row in lines if row.startswith("# then check: ")).removeprefix("# then check: ")
    )
    assert check[:2] == ["findmnt", mountpoint] and f"{mountpoint}/.probe" in check


def test_mount_cifs_dry_run_prints_the_documented_options() -> None:
    result = subprocess.run(
        [str(REPO / "scripts/ops/mount-cifs.sh"), "//server/share", "/srv/ticket-archive"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("mount -t cifs"))
    for option in (
        "uid=10001",
        "gid=10001",
        "file_mode=0640",
        "dir_mode=0750",
        "cache=strict",
        "credentials=",
        "nosuid",
        "nodev",
        "noexec",
    ):
        assert option in line
