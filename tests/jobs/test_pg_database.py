"""How the PostgreSQL store reaches its database (:mod:`app.jobs.pg_database`): waiting at
start, outages and recovery, what ``unavailable`` says, pooled connections, the URL's password."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import asyncpg
import pytest

from app.jobs import pg_schema
from app.jobs.pg_database import PgDatabase
from app.jobs.pg_leases import SERVER_CLOCK
from app.jobs.records import JobRequest, JobStoreUnavailable
from tests.jobs.support import HeldCloseProxy, closed, opened, replica
from tests.postgres_server import PostgresServer


async def test_database_down_then_back(postgres_server: PostgresServer, postgres_url: str) -> None:
    a = replica(postgres_url)
    await opened(a)
    assert (await a.accept(JobRequest(1))).status == "accepted"
    postgres_server.kill()
    with pytest.raises(JobStoreUnavailable, match="unreachable"):
        await a.accept(JobRequest(2))
    assert a.unavailable is not None and "unreachable" in a.unavailable
    assert "@" not in a.unavailable or "***" in a.unavailable
    postgres_server.restart()
    for _ in range(50):  # the pool reconnects by itself
        try:
            answer = await a.accept(JobRequest(2))
            break
        except JobStoreUnavailable:
            await asyncio.sleep(0.1)
    assert answer.status == "accepted" and a.unavailable is None
    await closed(a)


async def test_a_late_failure_of_a_call_begun_before_a_success_leaves_the_store_available(
    postgres_url: str,
) -> None:
    """A call already under way when a newer call succeeded, failing afterwards (a connection
    attempt begun while the database restarted, refused late), says nothing about the database
    now: ``unavailable`` stays clear. (After a restart the LISTEN reconnect's refusal came in
    after the first accepted webhook and left the store "unreachable" with the database up.)"""
    a = replica(postgres_url)
    await opened(a)
    slow = asyncio.create_task(a.database.call(lambda conn: conn.fetchval("SELECT pg_sleep(5)")))
    await asyncio.sleep(0.2)
    assert await a.database.call(lambda conn: conn.fetchval("SELECT 1")) == 1  # begun later, answered
    other = await asyncpg.connect(postgres_url)
    try:  # the slow call's session ends under it: a connection-level failure
        killed = await other.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()"
        )
        assert killed == 1
    finally:
        await other.close()
    with pytest.raises(JobStoreUnavailable, match="unreachable"):
        await slow
    assert a.unavailable is None
    with pytest.raises(JobStoreUnavailable):  # a failure of a call begun now still counts
        raise a.database.failed(ConnectionRefusedError("refused"))
    assert a.unavailable is not None and "refused" in a.unavailable
    assert await a.database.call(lambda conn: conn.fetchval("SELECT 1")) == 1
    assert a.unavailable is None
    await closed(a)


async def test_a_call_begun_before_a_failure_does_not_clear_unavailable(postgres_url: str) -> None:
    """An answer that was on its way when another call found the database gone says nothing
    about the database now: only a call begun after the failure clears ``unavailable``. (The
    lease renewal's ``SELECT 1`` answered just after the kill and made the outage vanish.)"""
    a = replica(postgres_url)
    await opened(a)
    slow = asyncio.create_task(a.database.call(lambda conn: conn.fetchval("SELECT pg_sleep(0.3)")))
    await asyncio.sleep(0.05)

    async def broken(conn: asyncpg.Connection) -> None:  # a connection reset, as asyncpg raises it
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(JobStoreUnavailable, match="unreachable"):
        await a.database.call(broken)
    await slow
    assert a.unavailable is not None and "unreachable" in a.unavailable
    assert await a.database.call(lambda conn: conn.fetchval("SELECT 1")) == 1
    assert a.unavailable is None
    await closed(a)


async def test_a_pooled_connection_is_given_back_without_a_reset_round_trip_and_holds_no_lock(
    postgres_url: str,
) -> None:
    """The store leaves no session state on its pooled connections, so the pool gives them back
    without asyncpg's reset statement (one more round trip before each batch was answered);
    the migration's advisory lock ends with its transaction."""
    a = replica(postgres_url)
    await opened(a)
    admin = await asyncpg.connect(postgres_url)
    try:
        for _ in range(250):  # the lease maintenance's first round (ending with the clock check) is
            if await admin.fetchval(  # over; the next is in 15 s
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'zammad-pdf-archiver' "
                "AND datname = current_database() AND query = $1 AND state = 'idle'",
                SERVER_CLOCK,
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the store's lease renewal never ran")
        await a.accept(JobRequest(1, delivery_id="d1"))
        last = [
            r["query"]
            for r in await admin.fetch(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'zammad-pdf-archiver' "
                "AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN%'"
            )
        ]
        assert last and all("RESET ALL" not in q for q in last), last
        assert any("accept_jobs" in q for q in last), last
        assert await admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await admin.close()
    await closed(a)


async def test_a_session_the_server_ends_is_a_transient_failure_and_its_connection_is_not_reused(
    postgres_url: str,
) -> None:
    """A server that ends a session (``pg_terminate_backend``, a failover) sends ``FATAL``
    before it closes the socket; until asyncpg sees the close it refuses every statement on
    that connection with ``InternalClientError``. The proxy holds the close back: the store
    says unavailable (not an unclassified error) and takes a new connection for the next call.

    The database is used without a store around it: a store's lease renewal would be a second
    caller, and on a busy machine its first ``SELECT 1`` can come after the sessions ended and
    take their failure (CI, stop 23)."""
    async with HeldCloseProxy(postgres_url) as proxy:
        db = PgDatabase(proxy.url)
        await db.connect()
        assert await db.call(lambda conn: conn.fetchval("SELECT 1")) == 1
        admin = await asyncpg.connect(postgres_url)
        ours = "application_name = 'zammad-pdf-archiver' AND datname = current_database()"
        try:
            ended = await admin.fetchval(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {ours}"
            )
            assert ended >= 1
            for _ in range(100):  # the sessions are gone on the server; their FATAL is on its way
                if await admin.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {ours}") == 0:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
        finally:
            await admin.close()
        failures = 0
        for _ in range(ended + 1):
            try:
                assert await db.call(lambda conn: conn.fetchval("SELECT 1")) == 1
                break
            except JobStoreUnavailable as exc:
                assert "unreachable" in str(exc)
                assert db.unavailable is not None and "unreachable" in db.unavailable
                failures += 1
        assert 1 <= failures <= ended  # each ended session failed once, then a new one answered
        assert db.unavailable is None
        await db.close()


async def test_at_start_an_unreachable_database_is_waited_for_then_given_up(caplog: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = PgDatabase(f"postgresql://u:s3cr3t@127.0.0.1:{port}/x", start_wait_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(JobStoreUnavailable, match="cannot connect to the job store") as raised:
        await db.connect()
    assert time.monotonic() - started >= 0.5  # it waited (one retry: the database may be starting)
    assert "s3cr3t" not in str(raised.value) and "u:***@" in str(raised.value)
    assert "waiting for the job store" in caplog.text and "s3cr3t" not in caplog.text
    await db.close()


async def test_a_refused_login_is_final_at_once(postgres_server: PostgresServer, postgres_url: str) -> None:
    wrong = postgres_url.replace(f":{postgres_server.password}@", ":not-the-password@")
    assert wrong != postgres_url
    db = PgDatabase(wrong, start_wait_seconds=30)
    started = time.monotonic()
    with pytest.raises(JobStoreUnavailable, match="cannot use the job store") as raised:
        await db.connect()
    assert time.monotonic() - started < 10 and "not-the-password" not in str(raised.value)
    await db.close()


async def test_listen_reports_a_new_connection_once_and_passes_notifications_on(postgres_url: str) -> None:
    db = PgDatabase(postgres_url)
    await db.connect()
    heard = asyncio.Event()
    assert await db.listen(pg_schema.NOTIFY_CHANNEL, lambda *_: heard.set()) is True
    assert await db.listen(pg_schema.NOTIFY_CHANNEL, lambda *_: heard.set()) is False  # still up
    await db.call(lambda conn: conn.execute("SELECT pg_notify($1, '')", pg_schema.NOTIFY_CHANNEL))
    await asyncio.wait_for(heard.wait(), 5)
    await db.close()
    assert db.unavailable == "the job store is closed"
    with pytest.raises(JobStoreUnavailable, match="closed"):
        await db.call(lambda conn: conn.fetchval("SELECT 1"))
