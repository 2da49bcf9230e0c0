"""The PostgreSQL store's schema (:mod:`app.jobs.pg_schema`) on a real PostgreSQL: created and
migrated once by replicas starting together, refused on Zammad's database or a newer schema,
and written in the words of :mod:`app.jobs.records`."""

from __future__ import annotations

import re

import asyncpg
import pytest

from app.jobs.pg_schema import ACCEPT_FUNCTION, ACCEPT_FUNCTION_VERSION, MIGRATIONS, SCHEMA
from app.jobs.postgres import PostgresJobStore
from app.jobs.records import AdmissionStatus, JobState, JobStoreUnavailable
from tests.jobs.support import (
    closed,
    opened,
    replica,
)


async def test_two_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [replica(postgres_url) for _ in range(3)]
    await opened(*stores)
    conn = await asyncpg.connect(postgres_url)
    try:
        versions = await conn.fetch(f"SELECT version FROM {SCHEMA}.schema_version")
        assert [r["version"] for r in versions] == list(range(1, len(MIGRATIONS) + 1))
        indexes = {
            r["indexname"]
            for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", SCHEMA)
        }
        assert "jobs_one_active_per_ticket" in indexes
    finally:
        await conn.close()
    await closed(*stores)


def _refused_as_such(
    exc: JobStoreUnavailable, store: PostgresJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal is not an outage: the start's message is the refusal itself, the store does not
    log ``job store unavailable`` nor count itself unreachable. Found by starting a replica on a
    schema of version 3: ``start failed: the PostgreSQL job store is unreachable:
    JobStoreUnavailable: the job store's schema is version 3, …``, after an error ``job store
    unavailable``, although the database answered."""
    assert "unreachable" not in str(exc)
    assert "job store unavailable" not in [r.getMessage() for r in caplog.records]
    assert store.unavailable is None


async def test_zammads_own_database_is_refused(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(
            "CREATE TABLE public.tickets (id int); CREATE TABLE public.ticket_articles (id int)"
        )
    finally:
        await admin.close()
    store = replica(postgres_url)
    with pytest.raises(JobStoreUnavailable, match="Zammad's own database") as refused:
        await store.open()
    _refused_as_such(refused.value, store, caplog)
    await store.close()


async def test_a_schema_newer_than_this_release_is_refused(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = replica(postgres_url)
    await opened(store)
    await closed(store)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"INSERT INTO {SCHEMA}.schema_version VALUES ($1, 0)", len(MIGRATIONS) + 1)
    finally:
        await admin.close()
    newer = replica(postgres_url)
    with pytest.raises(
        JobStoreUnavailable,
        match=f"^the job store's schema is version {len(MIGRATIONS) + 1}, newer than this release",
    ) as refused:
        await newer.open()
    _refused_as_such(refused.value, newer, caplog)
    await newer.close()


async def _accept_jobs_source(conn: asyncpg.Connection) -> str:
    source: str = await conn.fetchval(
        "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = $1 AND p.proname = 'accept_jobs'",
        SCHEMA,
    )
    return source


async def test_a_newer_admission_function_is_not_replaced_by_an_older_release(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every start (re)created ``accept_jobs``: in a rolling upgrade a replica of the older
    release, restarted, put its older function back for every replica (found with the batch
    fix: the batch's payloads deduped each other again). The version in ``functions`` now
    keeps a newer function; an equal or older one is replaced, and the version recorded."""
    store = replica(postgres_url)
    await opened(store)
    await closed(store)
    conn = await asyncpg.connect(postgres_url)
    try:
        assert (
            await conn.fetchval(f"SELECT version FROM {SCHEMA}.functions WHERE name = 'accept_jobs'")
            == ACCEPT_FUNCTION_VERSION
        )
        newer = ACCEPT_FUNCTION.replace("BEGIN", "BEGIN\n    -- a newer release's function", 1)
        await conn.execute(newer)
        await conn.execute(
            f"UPDATE {SCHEMA}.functions SET version = $1 WHERE name = 'accept_jobs'",
            ACCEPT_FUNCTION_VERSION + 1,
        )
        store = replica(postgres_url)
        await opened(store)  # this release is the older one now
        await closed(store)
        assert "a newer release's function" in await _accept_jobs_source(conn)
        assert any(r.getMessage().startswith("a newer release's admission function") for r in caplog.records)
        await conn.execute(f"UPDATE {SCHEMA}.functions SET version = 1 WHERE name = 'accept_jobs'")
        store = replica(postgres_url)
        await opened(store)  # this release's is the newer one: replaced
        await closed(store)
        assert "a newer release's function" not in await _accept_jobs_source(conn)
        assert (
            await conn.fetchval(f"SELECT version FROM {SCHEMA}.functions WHERE name = 'accept_jobs'")
            == ACCEPT_FUNCTION_VERSION
        )
    finally:
        await conn.close()


def test_the_schema_speaks_the_records_vocabulary() -> None:
    """The states the table allows are :class:`JobState`'s values, and ``accept_jobs`` answers
    with :class:`AdmissionStatus`'s values: one vocabulary in the code and the database."""
    check = re.search(r"state text NOT NULL CHECK \(state IN \(([^)]*)\)\)", MIGRATIONS[0])
    assert check is not None
    assert re.findall(r"'(\w+)'", check.group(1)) == [s.value for s in JobState]
    answered = set(re.findall(r"(?:o_status|status) := '(\w+)'", ACCEPT_FUNCTION))
    answered |= set(re.findall(r"THEN '(\w+)' ELSE '(\w+)'", ACCEPT_FUNCTION)[0])
    assert answered == {s.value for s in AdmissionStatus}
