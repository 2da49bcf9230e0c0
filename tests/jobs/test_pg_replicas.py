"""Whether the replicas on one database run with the same settings (:mod:`app.jobs.pg_replicas`):
stores (replicas) with real fingerprints on one real PostgreSQL, their lease maintenance
running every second (lease 4 s)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.config import Secret, Settings
from app.config_fingerprint import APPLICATION_PREFIX, settings_fingerprint
from app.jobs.pg_replicas import REPLICA_CONNECTIONS
from tests.jobs.support import AT, closed, new_job, opened, replica, until

SETTINGS = Settings(
    zammad_base_url="https://zammad.example",
    zammad_api_token=Secret("tok-1234567890"),
    storage_root=Path("/srv/archive"),
    signing_enabled=False,
)
OURS = settings_fingerprint(SETTINGS)
OTHER_TAG = settings_fingerprint(dataclasses.replace(SETTINGS, workflow_trigger_tag="pdf:other"))
OTHER_ROOT = settings_fingerprint(dataclasses.replace(SETTINGS, storage_root=Path("/srv/other")))


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelname == "WARNING" and "differ from this replica" in r.msg]


async def test_a_replica_with_other_settings_makes_both_warn_within_seconds(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two replicas with ``OURS``, one with another ``WORKFLOW_TRIGGER_TAG``: each side warns
    within 2 s, naming the connections, the address and the workflow's settings; once, however
    many rounds follow. When the odd one stops, the others say so at info."""
    caplog.set_level("INFO", logger="app.jobs.store")
    a, b = (replica(postgres_url, time.time, lease=4, settings_fingerprint=OURS) for _ in range(2))
    odd = replica(postgres_url, time.time, lease=4, settings_fingerprint=OTHER_TAG)
    await opened(a, b, odd)
    assert a.settings_check is not None and odd.settings_check is not None
    started = time.monotonic()
    await until(lambda: len(warnings(caplog)) >= 3, 3)
    assert time.monotonic() - started < 2.5
    by_fingerprint = {r.settings_fingerprint: r for r in warnings(caplog)}  # type: ignore[attr-defined]
    assert set(by_fingerprint) == {OURS, OTHER_TAG}, warnings(caplog)
    seen_by_ours = by_fingerprint[OURS]
    assert seen_by_ours.other_fingerprints == [OTHER_TAG]  # type: ignore[attr-defined]
    assert seen_by_ours.groups == ["workflow"]  # type: ignore[attr-defined]
    assert seen_by_ours.addresses == ["127.0.0.1"]  # type: ignore[attr-defined]
    message = seen_by_ours.getMessage()
    assert "from 127.0.0.1 to the job store's database run with settings that differ" in message, message
    assert "these settings, workflow: ZAMMAD_BASE_URL, WORKFLOW_TRIGGER_TAG" in message, message
    assert "storage" not in message and "pdf:" not in message, message  # names, never values
    for secret in SETTINGS.secrets():
        assert secret not in message
    # Counted once every replica has warned, so each has its pool and LISTEN connections open (at
    # its first warning a replica may have seen only the first connection of another).
    settled = await a.settings_check.check()
    assert settled is not None and settled.connections >= 2 and settled.agreeing >= 4
    await until(lambda: False, 1.5)  # more rounds: still one warning each
    assert len(warnings(caplog)) == 3, warnings(caplog)

    await closed(odd)
    agreed = "every replica on the job store's database runs with this replica's settings again"
    await until(lambda: sum(r.msg == agreed for r in caplog.records) >= 2, 3)
    assert sum(r.msg == agreed for r in caplog.records) == 2
    assert await a.settings_check.check() is None
    await closed(a, b)


async def test_replicas_with_equal_settings_do_not_warn(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Equal fingerprints: no warning over three rounds; a store without one (a tool) is not
    compared, and a replica with another ``STORAGE_ROOT`` is told apart by its group."""
    caplog.set_level("INFO", logger="app.jobs.store")
    a, b = (replica(postgres_url, time.time, lease=4, settings_fingerprint=OURS) for _ in range(2))
    tool = replica(postgres_url, time.time, lease=4)
    await opened(a, b, tool)
    assert tool.settings_check is None
    await until(lambda: False, 2.5)
    assert warnings(caplog) == []
    assert a.settings_check is not None and await a.settings_check.check() is None
    odd = replica(postgres_url, time.time, lease=4, settings_fingerprint=OTHER_ROOT)
    await opened(odd)
    difference = await a.settings_check.check()
    assert difference is not None and difference.groups == ("storage",), difference
    await closed(a, b, tool, odd)


@contextlib.asynccontextmanager
async def ordinary_role(postgres_url: str, *grants: str) -> AsyncIterator[str]:
    """A new login role without any privilege but ``grants`` (SQL run as the superuser, ``{role}``
    replaced); yields the URL of this test's database for it. Dropped afterwards, with what it owns."""
    role, password = f"r_{secrets.token_hex(6)}", secrets.token_hex(12)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER PASSWORD '{password}'")
        for grant in grants:
            await admin.execute(grant.format(role=role))
        parts = urlsplit(postgres_url)
        host = parts.netloc.rpartition("@")[2]
        yield urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_an_ordinary_role_sees_the_other_sessions_names(postgres_url: str) -> None:
    """PostgreSQL shows every session's ``application_name`` and database to every role; the
    address and start of another role's session only to its members and
    ``pg_read_all_stats``. The replicas' check works under a role without any privilege."""
    a = replica(postgres_url, time.time, lease=4, settings_fingerprint=OURS)
    await opened(a)
    async with ordinary_role(postgres_url) as url:
        ordinary = await asyncpg.connect(url)
        try:
            rows = await ordinary.fetch(REPLICA_CONNECTIONS, APPLICATION_PREFIX + "%")
        finally:
            await ordinary.close()
    assert rows and {r["application_name"] for r in rows} == {APPLICATION_PREFIX + OURS}
    assert all(r["client_addr"] is None and r["backend_start"] is None for r in rows), rows
    await closed(a)


async def test_a_server_that_hides_pg_stat_activity_costs_one_warning_and_nothing_else(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose ``pg_stat_activity`` the store's role may not read (an administrator
    revoked it): one warning, however many rounds; the store takes and claims jobs as before."""
    caplog.set_level("INFO", logger="app.jobs.store")
    async with ordinary_role(
        postgres_url,
        "GRANT CREATE ON DATABASE " + urlsplit(postgres_url).path.strip("/") + " TO {role}",
        "REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC",
    ) as url:
        a = replica(url, time.time, lease=4, settings_fingerprint=OURS)
        await opened(a)
        assert a.settings_check is not None
        for _ in range(3):
            assert await a.settings_check.check() is None
        job = await new_job(a, 7)
        assert (await a.start(job, AT)) is not None
        refused = [r for r in caplog.records if "cannot compare" in r.getMessage()]
        assert len(refused) == 1 and "InsufficientPrivilegeError" in refused[0].getMessage(), refused
        await closed(a)
