"""The test run's own PostgreSQL (tests/postgres_server.py and the conftest fixtures) is real:
it answers over TCP, asks for the password, gives each test its own database, survives a
crash-stop with its data, and runs as ``postgres`` under root."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import postgres_server as pg


def _psql_url(
    server: pg.PostgresServer, url: str, sql: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``psql URL -c SQL`` as a client would run it: the password comes from the URL only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "2"
    return subprocess.run(
        [str(server.bindir / "psql"), "-X", "-w", "-A", "-t", "-d", url, "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_server_answers_through_its_url(postgres_server: pg.PostgresServer, postgres_url: str) -> None:
    prefix = f"postgresql://archiver:{postgres_server.password}@127.0.0.1:{postgres_server.port}/t_"
    assert postgres_url.startswith(prefix)
    out = _psql_url(postgres_server, postgres_url, "select 1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    settings = _psql_url(
        postgres_server,
        postgres_url,
        "select current_setting('max_connections'), current_setting('listen_addresses'), "
        "current_setting('synchronous_commit'), current_setting('server_encoding')",
    )
    assert settings.stdout.strip() == "200|127.0.0.1|on|UTF8"
    assert postgres_server.port != 5432
    assert str(postgres_server.socket_dir).startswith(str(postgres_server.base))


def test_each_test_gets_its_own_database(postgres_server: pg.PostgresServer, postgres_url: str) -> None:
    other = postgres_server.create_database("t_other_for_this_test")
    try:
        assert other != postgres_url
        assert _psql_url(postgres_server, postgres_url, "create table marker (x int)").returncode == 0
        seen = _psql_url(postgres_server, other, "select count(*) from pg_tables where tablename = 'marker'")
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.strip() == "0"
        name = postgres_url.rsplit("/", 1)[1]
        assert _psql_url(postgres_server, postgres_url, "select current_database()").stdout.strip() == name
    finally:
        postgres_server.drop_database("t_other_for_this_test")
    assert "t_other_for_this_test" not in postgres_server.psql("select datname from pg_database")


def test_a_wrong_password_is_refused(postgres_server: pg.PostgresServer, postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    out = _psql_url(postgres_server, postgres_server.url(name, password="not-the-password"), "select 1")
    assert out.returncode != 0
    assert "password authentication failed" in out.stderr
    with pytest.raises(pg.PostgresError, match="password authentication failed"):
        postgres_server.psql("select 1", password="wrong")
    # The socket asks too: trust is configured nowhere.
    hba = postgres_server.run_as_owner(["cat", str(postgres_server.data_dir / "pg_hba.conf")]).stdout
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)


def test_restart_keeps_port_and_data(postgres_server: pg.PostgresServer, postgres_url: str) -> None:
    port = postgres_server.port
    made = _psql_url(postgres_server, postgres_url, "create table kept (x int); insert into kept values (42)")
    assert made.returncode == 0, made.stderr
    postgres_server.kill()
    assert not postgres_server.running
    down = _psql_url(postgres_server, postgres_url, "select 1")
    assert down.returncode != 0 and "Connection refused" in down.stderr
    began = time.monotonic()
    postgres_server.restart()
    assert time.monotonic() - began < 10
    assert postgres_server.running and postgres_server.port == port
    out = _psql_url(postgres_server, postgres_url, "select x from kept")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_pause_makes_connections_hang_until_resume(
    postgres_server: pg.PostgresServer, postgres_url: str
) -> None:
    postgres_server.pause()
    try:
        began = time.monotonic()
        hung = _psql_url(postgres_server, postgres_url, "select 1")
        assert hung.returncode != 0 and "timeout expired" in hung.stderr
        assert time.monotonic() - began >= 1.5
    finally:
        postgres_server.resume()
    assert _psql_url(postgres_server, postgres_url, "select 1").stdout.strip() == "1"


def test_pause_and_resume_pass_over_a_backend_that_just_exited(
    postgres_server: pg.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend whose client has just disconnected exits between ``_pids()`` and the signal:
    the fixtures' teardown (``resume()``) failed with ProcessLookupError now and then."""
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a process (nor a reused pid)
    real = postgres_server._pids
    monkeypatch.setattr(postgres_server, "_pids", lambda: [*real(), gone])
    postgres_server.pause()
    postgres_server.resume()
    assert postgres_server.psql("select 1") == "1"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres user")
def test_under_root_the_cluster_belongs_to_postgres(postgres_server: pg.PostgresServer) -> None:
    import pwd

    uid = pwd.getpwnam("postgres").pw_uid
    assert postgres_server.owner == "postgres"
    for path in (postgres_server.base, postgres_server.data_dir, postgres_server.socket_dir):
        assert path.stat().st_uid == uid, path
    postmaster = int((postgres_server.data_dir / "postmaster.pid").read_text().split()[0])
    assert Path(f"/proc/{postmaster}").stat().st_uid == uid
    # The owner can run the server's tools on its data folder.
    control = postgres_server.run_as_owner(
        [str(postgres_server.bindir / "pg_controldata"), str(postgres_server.data_dir)]
    )
    assert "in production" in control.stdout


def test_missing_postgresql_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PG_BINDIR", raising=False)
    (tmp_path / "15" / "bin").mkdir(parents=True)  # a client-only install: no initdb
    with pytest.raises(pg.PostgresNotInstalled, match=r"apt-get install postgresql.*make system-deps"):
        pg.find_bindir(tmp_path)
