"""A throw-away PostgreSQL server for the tests, started by the test run itself.

Uses the binaries of Debian's ``postgresql`` package (``initdb``, ``pg_ctl``, ``psql`` under
``/usr/lib/postgresql/N/bin``); no database mocks, no running system cluster. ``start()``
creates a temporary folder, runs ``initdb`` in it and starts the server:

* TCP on ``127.0.0.1`` only, on a free port; unix socket in the temporary folder (so neither
  port nor socket ever meets Debian's own cluster "main" on 5432 and ``/var/run/postgresql``);
* password authentication (``scram-sha-256``) for every connection, TCP and socket alike, with
  one superuser: URLs look like ``postgresql://archiver:PASSWORD@127.0.0.1:PORT/DBNAME``;
* ``max_connections=200``, ``shared_buffers=32MB``; ``fsync=off`` and ``full_page_writes=off``
  for speed (a crash of the server keeps its data, a crash of the machine would not).
  ``synchronous_commit`` keeps its default (``on``) so the code under test can set it per
  transaction.

As root, the folder belongs to the ``postgres`` system user and every server program runs as
that user (PostgreSQL refuses to run as root); otherwise they run as the current user.
``psql`` for the helpers runs as the current user over TCP with the password.

A stray server is avoided three ways: ``stop()`` (the fixture's finalizer), an ``atexit``
hook, and a watchdog process that kills the server and removes the folder when the test
process dies without either (SIGKILL, for one).

This module needs no Python database driver. Run it directly to time a start:
``python tests/postgres_server.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["PostgresError", "PostgresNotInstalled", "PostgresServer", "find_bindir", "start"]

SUPERUSER = "archiver"
OWNER_IF_ROOT = "postgres"
DEFAULT_MAX_CONNECTIONS = 200
DEBIAN_ROOT = Path("/usr/lib/postgresql")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSTALL_HINT = (
    "PostgreSQL's server programs (initdb, pg_ctl) were not found; the tests start their own "
    "throw-away server from Debian's postgresql package. Install it: "
    "`sudo apt-get install postgresql` (or `make system-deps` as root)."
)
# Acts on EOF of its stdin, i.e. once the test process is gone (or ``stop()`` closed it):
# SIGQUIT to the postmaster (immediate shutdown), then the folder goes.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
base, pidfile = sys.argv[1], sys.argv[2]
sys.stdin.read()
try:
    with open(pidfile) as f:
        pid = int(f.readline())
    os.kill(pid, signal.SIGCONT)  # in case it was paused
    os.kill(pid, signal.SIGQUIT)
    for _ in range(200):  # the postmaster removes its pid file last (a zombie still answers kill 0)
        if not os.path.exists(pidfile):
            break
        time.sleep(0.05)
except (OSError, ValueError):
    pass
shutil.rmtree(base, ignore_errors=True)
"""


class PostgresError(RuntimeError):
    """A server program or ``psql`` failed; the message holds its output (and the server log)."""


class PostgresNotInstalled(PostgresError):
    """No PostgreSQL server binaries on this machine (or, as root, no ``postgres`` user)."""


def find_bindir(debian_root: Path = DEBIAN_ROOT) -> Path:
    """The folder holding ``initdb``, ``pg_ctl``, ``postgres`` and ``psql``.

    Looks at ``$PG_BINDIR`` when set, then the newest ``debian_root/N/bin`` (Debian's
    ``/usr/lib/postgresql/15/bin``), then ``pg_config --bindir``, then ``initdb`` on ``PATH``.

    Raises ``PostgresNotInstalled`` (naming ``apt-get install postgresql``) when none has them.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    versions = []
    for entry in debian_root.glob("*/bin"):
        try:
            versions.append((tuple(int(part) for part in entry.parent.name.split(".")), entry))
        except ValueError:
            continue
    candidates += [path for _, path in sorted(versions, reverse=True)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    raise PostgresNotInstalled(_INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without ``PG*`` variables (a stray PGHOST or PGSERVICE must not leak in)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", **extra)
    return env


def _temp_parent() -> str:
    """A parent folder the ``postgres`` user can walk into, short enough for a socket path."""
    parent = tempfile.gettempdir()
    if len(parent) > 60:
        return "/tmp"
    if os.geteuid() == 0:
        path = Path(parent).resolve()
        for folder in [path, *path.parents]:
            if not folder.stat().st_mode & 0o001:
                return "/tmp"
    return parent


class PostgresServer:
    """One running (or killed) throw-away cluster; made by ``start()``.

    Attributes: ``bindir`` (the PostgreSQL programs), ``base`` (the temporary folder),
    ``data_dir`` (``base/data``), ``socket_dir``, ``log_file``, ``host`` (127.0.0.1), ``port``,
    ``user`` and ``password`` (the superuser), ``owner`` (the system user the server runs as:
    ``postgres`` under root, else the current user).
    """

    def __init__(
        self, bindir: Path, base: Path, port: int, password: str, settings: Mapping[str, str]
    ) -> None:
        self.bindir = bindir
        self.base = base
        self.data_dir = base / "data"
        self.socket_dir = base / "sock"
        self.log_file = base / "server.log"
        self.host = "127.0.0.1"
        self.port = port
        self.user = SUPERUSER
        self.password = password
        self.settings = dict(settings)
        self.owner = OWNER_IF_ROOT if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._stopped = False

    # --- URLs and databases ----------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        """``postgresql://USER:PASSWORD@127.0.0.1:PORT/DBNAME`` (the superuser's by default)."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (``[a-z_][a-z0-9_]*``, ≤ 63 chars) and return its URL.

        Raises ``ValueError`` for another name, ``PostgresError`` when it exists already or the
        server does not answer.
        """
        self._check_name(name)
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, ending the sessions still connected to it."""
        self._check_name(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(
        self, sql: str, dbname: str = "postgres", *, password: str | None = None, timeout: float = 30
    ) -> str:
        """Run ``sql`` through ``psql`` over TCP; return its unaligned, tuples-only output.

        ``password`` overrides the superuser's (to check that a wrong one is refused).
        Raises ``PostgresError`` with psql's message when it fails (exit code ≠ 0).
        """
        env = _clean_env(PGPASSWORD=self.password if password is None else password, PGCONNECT_TIMEOUT="10")
        cmd = [
            str(self.bindir / "psql"),
            "-X",
            "-w",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            dbname,
            "-c",
            sql,
        ]
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if out.returncode != 0:
            raise PostgresError(f"psql failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_NAME.pattern}")

    # --- life cycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether ``pg_ctl status`` finds the server up."""
        status = self.run_as_owner(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
        )
        return status.returncode == 0

    def kill(self) -> None:
        """Take the server down at once (``pg_ctl stop -m immediate``), like a crash; data stays.

        Open connections break; new ones are refused until ``restart()``. No-op when down.
        """
        if self.running:
            self._pg_ctl("stop", "-m", "immediate")

    def restart(self) -> None:
        """Bring the server (back) up on the same port and data folder; kill it first if up.

        Raises ``PostgresError`` (with the server log) when it does not come up, e.g. because
        another process took the port meanwhile.
        """
        self.kill()
        self._start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP to the postmaster and all its children): connections hang
        instead of failing, as with an unreachable or stuck database. ``resume()`` thaws it."""
        for pid in self._pids():
            self._signal(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause()``."""
        for pid in reversed(self._pids()):
            self._signal(pid, signal.SIGCONT)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        """Send ``signum`` to ``pid`` unless it is gone: a backend whose client just closed its
        connection exits between ``_pids()`` listing it and the signal."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def stop(self) -> None:
        """Stop the server and remove its folder. Idempotent; never raises for a dead server."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):
            self.resume()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.run_as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                ],
                check=False,
            )
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # type: ignore[union-attr]  # it finds the server down and exits
            try:
                self._watchdog.wait(10)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- running programs --------------------------------------------------------------------

    def owner_popen_kwargs(self) -> dict[str, Any]:
        """``subprocess`` keyword arguments that run a program as the server's owner.

        Under root: ``user``/``group`` of ``postgres``, no supplementary groups, and a clean
        ``PG*``-free environment with ``HOME`` at the temporary folder; otherwise only the env.
        """
        kwargs: dict[str, Any] = {"env": _clean_env(HOME=str(self.base)), "cwd": str(self.base)}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.owner)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        return kwargs

    def run_as_owner(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the server's owner (e.g. ``pg_controldata``); output captured as text.

        Raises ``PostgresError`` with its output when ``check`` and the exit code ≠ 0.
        """
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **self.owner_popen_kwargs(),
        )
        if check and out.returncode != 0:
            raise PostgresError(
                f"{Path(argv[0]).name} failed ({out.returncode}): {(out.stdout + out.stderr).strip()}"
                f"\n--- server log ---\n{self.log_tail()}"
            )
        return out

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log ("" when there is none)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _pg_ctl(self, *args: str) -> None:
        self.run_as_owner([str(self.bindir / "pg_ctl"), *args, "-D", str(self.data_dir), "-w", "-t", "30"])

    def _start(self) -> None:
        self._pg_ctl("start", "-l", str(self.log_file))

    def _pids(self) -> list[int]:
        """The postmaster's pid, then its children's (read from /proc)."""
        try:
            postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        return pids

    def _init(self) -> None:
        """Run ``initdb`` and write the server settings into ``postgresql.conf``."""
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self.socket_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.owner)
            for path in (self.base, pwfile, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            self.run_as_owner(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        lines = [f"{key} = '{value}'" for key, value in self.settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/postgres_server.py\n" + "\n".join(lines) + "\n")

    def _set_port(self, port: int) -> None:
        self.port = port
        self.settings["port"] = str(port)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"port = '{port}'\n")

    def _start_watchdog(self) -> None:
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.base), str(self.data_dir / "postmaster.pid")],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def start(
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    settings: Mapping[str, str] | None = None,
    bindir: Path | None = None,
) -> PostgresServer:
    """Create, start and return a throw-away server (see the module docstring).

    ``settings`` adds or overrides ``postgresql.conf`` entries (``{"log_statement": "all"}``).

    Raises ``PostgresNotInstalled`` when the binaries (or, as root, the ``postgres`` user) are
    missing, ``PostgresError`` when initdb or the start fails (the message holds the log).
    """
    bindir = bindir or find_bindir()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OWNER_IF_ROOT)
        except KeyError:
            raise PostgresNotInstalled(
                f"no '{OWNER_IF_ROOT}' system user to run the server as. {_INSTALL_HINT}"
            ) from None
    base = Path(tempfile.mkdtemp(prefix="pgtest-", dir=_temp_parent()))
    password = secrets.token_hex(16)
    port = _free_port()
    conf = {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(base / "sock"),
        "max_connections": str(max_connections),
        "fsync": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        **(settings or {}),
    }
    server = PostgresServer(bindir, base, port, password, conf)
    atexit.register(server.stop)
    try:
        server._init()
        server._start_watchdog()
        for attempt in range(3):
            try:
                server._start()
                break
            except PostgresError as exc:
                # Another process may have taken the port between picking and binding it.
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                server._set_port(_free_port())
    except BaseException:
        server.stop()
        raise
    return server


if __name__ == "__main__":
    began = time.monotonic()
    srv = start()
    up = time.monotonic()
    print(f"started in {up - began:.2f} s: {srv.url()} (owner {srv.owner}, data {srv.data_dir})")
    print("select 1 ->", srv.psql("select 1"))
    srv.restart()
    print(f"restart in {time.monotonic() - up:.2f} s")
    srv.stop()
