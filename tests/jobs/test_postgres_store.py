"""The PostgreSQL job store as several replicas see it: a real PostgreSQL, two or three store
instances (replicas) on one database, an injectable clock for leases."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.jobs.pg_schema import MIGRATIONS, SCHEMA
from app.jobs.postgres import PostgresJobStore, redact_url
from app.jobs.records import JobRequest, JobStoreUnavailable, LeaseLost

REPORT = {"add": ["pdf:signed"], "remove": [], "subject": "PDF archived", "body_html": "b"}
AT = "2026-12-07T10:00:00+00:00"


class Clock:
    """A settable clock shared by the replicas of a test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replica(url: str, clock: Clock | None = None, **kw) -> PostgresJobStore:
    return PostgresJobStore(
        url,
        delivery_ttl_seconds=kw.pop("ttl", 3600),
        max_pending=kw.pop("max_pending", 100),
        lease_seconds=kw.pop("lease", 60),
        clock=clock or Clock(),
        **kw,
    )


async def opened(*stores: PostgresJobStore) -> None:
    await asyncio.gather(*(s.open() for s in stores))


async def closed(*stores: PostgresJobStore) -> None:
    await asyncio.gather(*(s.close() for s in stores))


async def test_two_replicas_starting_together_migrate_once(postgres_url):
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


async def test_concurrent_webhooks_on_two_replicas_make_one_job_and_dedupe_deliveries(postgres_url):
    a, b = replica(postgres_url), replica(postgres_url)
    await opened(a, b)
    # The same delivery id at both replicas at once: one accepts, the other answers duplicate.
    answers = await asyncio.gather(
        a.accept(JobRequest(1, delivery_id="d1")), b.accept(JobRequest(1, delivery_id="d1"))
    )
    assert sorted(x.status for x in answers) == ["accepted", "duplicate"]
    assert answers[0].job_id == answers[1].job_id
    # Many webhooks for one ticket spread over both replicas: still one active job.
    many = await asyncio.gather(
        *((a if i % 2 else b).accept(JobRequest(2, delivery_id=f"e{i}")) for i in range(40))
    )
    assert sum(x.new for x in many) == 1 and len({x.job_id for x in many}) == 1
    assert {x.status for x in many} == {"accepted", "coalesced"}
    await closed(a, b)


async def test_a_job_runs_on_one_replica_only_and_a_dead_replicas_job_is_reclaimed(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await a.accept(JobRequest(5))
    record = await a.start(job.job_id, AT)
    assert record is not None and record.attempts == 1
    assert await b.start(job.job_id, AT) is None
    assert await b.claim_due(5, AT) == []
    # Webhooks while it runs coalesce into one follow-up, whichever replica takes them.
    assert (await b.accept(JobRequest(5))).status == "coalesced"
    # Replica a dies (no renewals); within the lease nothing changes, after it b reclaims.
    a._maintainer.cancel()
    clock.now += 9
    assert await b.claim_due(5, AT) == []
    clock.now += 2
    reclaimed = await b.claim_due(5, AT)
    assert [r.job_id for r in reclaimed] == [job.job_id] and reclaimed[0].attempts == 2
    assert reclaimed[0].archived_at == AT  # the same archive path as the first run
    # The old owner's late writes change nothing (the fence moved on).
    with pytest.raises(LeaseLost):
        await a.finish(job.job_id, state="done", result="archived", report=REPORT)
    with pytest.raises(LeaseLost):
        await a.retry_later(job.job_id, at=0, error="e", step="s", classification="Transient")
    follow = await b.finish(job.job_id, state="done", result="archived", report=REPORT)
    assert follow is not None
    row = await b.get(job.job_id)
    assert (row.state, row.reported, row.attempts) == ("done", False, 2)
    await closed(a, b)


async def test_the_pending_count_drops_only_when_the_claimed_jobs_are_handed_over(postgres_url):
    """The worker pool counts itself idle when the store's pending count is 0 and nothing is
    queued: the count must not drop while ``claim_due`` still holds the jobs it claimed."""
    a, b = replica(postgres_url), replica(postgres_url)
    await opened(a)
    job = await a.accept(JobRequest(6))
    await opened(b)
    assert b.pending_count == 1
    claim = asyncio.ensure_future(b.claim_due(5, AT))
    seen = []
    while not claim.done():
        seen.append(b.pending_count)
        await asyncio.sleep(0)
    assert [r.job_id for r in claim.result()] == [job.job_id]
    assert seen and 0 not in seen, seen
    assert b.pending_count == 0
    await closed(a, b)


async def test_a_ticket_waits_for_its_report_and_an_orphaned_report_is_taken_over(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await a.accept(JobRequest(7))
    await a.start(job.job_id, AT)
    await b.accept(JobRequest(7, reason="retry"))  # follow-up requested while it runs
    follow = await a.finish(job.job_id, state="done", result="archived", report=REPORT)
    # The follow-up is pending, but not claimable while the report is undelivered.
    assert (await b.get(follow)).state == "pending"
    assert await b.claim_due(5, AT) == [] and await b.start(follow, AT) is None
    assert await b.claim_reports(5) == []  # a's lease on the report holds
    a._maintainer.cancel()  # a dies before delivering
    clock.now += 11
    taken = await b.claim_reports(5)
    assert [r.job_id for r in taken] == [job.job_id] and taken[0].report == REPORT
    with pytest.raises(LeaseLost):
        await a.mark_reported(job.job_id)
    await b.mark_reported(job.job_id)
    claimed = await b.claim_due(5, AT)
    assert [r.job_id for r in claimed] == [follow] and claimed[0].reason == "follow_up"
    await closed(a, b)


async def test_renewals_keep_a_lease_and_a_lost_lease_is_reported(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    lost: list[str] = []
    a.on_lease_lost = lost.append
    job = await a.accept(JobRequest(8))
    await a.start(job.job_id, AT)
    for _ in range(5):  # 25 s of renewals every 5 s keep it
        clock.now += 5
        await a.renew_leases()
        assert await b.claim_due(5, AT) == []
    assert lost == []
    clock.now += 11  # a missed its renewals: b takes over, and a learns it at its next renewal
    assert len(await b.claim_due(5, AT)) == 1
    await a.renew_leases()
    assert lost == [job.job_id]
    await closed(a, b)


async def test_a_retry_runs_on_whichever_replica_claims_it_when_due(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    job = await a.accept(JobRequest(9))
    await a.start(job.job_id, AT)
    await a.retry_later(
        job.job_id, at=clock.now + 30, error="Zammad 503", step="fetch ticket", classification="Transient"
    )
    assert await b.claim_due(5, AT) == [] and await b.start(job.job_id, AT) is None
    clock.now += 31
    claimed = await b.claim_due(5, AT)
    assert [(r.job_id, r.attempts, r.last_error) for r in claimed] == [(job.job_id, 2, "Zammad 503")]
    await closed(a, b)


async def test_close_gives_back_running_jobs_and_reports(postgres_url):
    clock = Clock()
    a, b = replica(postgres_url, clock), replica(postgres_url, clock)
    await opened(a, b)
    running = await a.accept(JobRequest(1))
    await a.start(running.job_id, AT)
    reporting = await a.accept(JobRequest(2))
    await a.start(reporting.job_id, AT)
    await a.finish(reporting.job_id, state="done", result="archived", report=REPORT)
    await a.close()
    # No lease wait: b takes both at once.
    claimed = await b.claim_due(5, AT)
    assert [(r.job_id, r.attempts) for r in claimed] == [
        (running.job_id, 1)
    ]  # the given-back run did not count
    assert [r.job_id for r in await b.claim_reports(5)] == [reporting.job_id]
    await closed(b)


async def test_purge_removes_expired_deliveries_and_old_jobs_but_keeps_each_tickets_latest(postgres_url):
    clock = Clock()
    a = replica(postgres_url, clock, ttl=60, retention_seconds=3600)
    await opened(a)
    old = await a.accept(JobRequest(1, delivery_id="old"))
    await a.start(old.job_id, AT)
    await a.finish(old.job_id, state="done", result="archived")
    clock.now += 10
    newer = await a.accept(JobRequest(1, delivery_id="newer"))
    await a.start(newer.job_id, AT)
    await a.finish(newer.job_id, state="done", result="archived")
    lone = await a.accept(JobRequest(2))
    await a.start(lone.job_id, AT)
    await a.finish(lone.job_id, state="done", result="archived")
    clock.now += 7200
    assert await a.purge_deliveries() == 2
    assert await a.get(old.job_id) is None
    assert await a.get(newer.job_id) is not None and await a.get(lone.job_id) is not None
    assert (await a.accept(JobRequest(1, delivery_id="old"))).status == "accepted"  # forgotten, so new again
    await closed(a)


async def test_commits_wait_for_the_wal_flush_whatever_the_database_default(postgres_url):
    admin = await asyncpg.connect(postgres_url)
    try:
        dbname = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    finally:
        await admin.close()
    a = replica(postgres_url)
    await opened(a)
    assert await a._call(lambda conn: conn.fetchval("SHOW synchronous_commit")) == "on"
    in_accept = await a._call(
        lambda conn: conn.fetchval(
            f"SELECT current_setting('synchronous_commit') FROM {SCHEMA}.accept_jobs('{{1}}', '{{NULL}}', '{{webhook}}', "
            "'{f}', '{0}', '{x}', 0, 60, 100) LIMIT 1"
        )
    )
    assert in_accept == "on"
    await closed(a)


async def test_zammads_own_database_is_refused(postgres_url):
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(
            "CREATE TABLE public.tickets (id int); CREATE TABLE public.ticket_articles (id int)"
        )
    finally:
        await admin.close()
    store = replica(postgres_url)
    with pytest.raises(JobStoreUnavailable, match="Zammad's own database"):
        await store.open()
    await store.close()


async def test_database_down_then_back(postgres_server, postgres_url):
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


async def _until_reachable(store: PostgresJobStore, clock: Clock) -> None:
    """Renew ``store``'s leases (at ``clock``'s time) until the database answers again."""
    for _ in range(100):  # the pool reconnects by itself
        try:
            await store.renew_leases()
            return
        except JobStoreUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("the database did not come back")


@pytest.mark.parametrize("end", ["finish", "retry_later"])
async def test_a_run_whose_end_was_not_recorded_keeps_its_lease_until_it_is(
    postgres_server, postgres_url, end
):
    """The database was unreachable when the run ended: the store keeps the job's fence, so the
    same write succeeds once the database is back (the pool writes again, ``_recorded``), and no
    other replica takes the job meanwhile."""
    clock = Clock()
    a, b = replica(postgres_url, clock, lease=10), replica(postgres_url, clock, lease=10)
    await opened(a, b)
    job = await a.accept(JobRequest(1))
    await a.start(job.job_id, AT)

    async def write() -> None:
        if end == "finish":
            await a.finish(job.job_id, state="done", result="archived", report=REPORT)
        else:
            await a.retry_later(
                job.job_id,
                at=clock.now + 100,
                error="Zammad 503",
                step="fetch ticket",
                classification="Transient",
            )

    postgres_server.kill()
    with pytest.raises(JobStoreUnavailable):
        await write()
    postgres_server.restart()
    await _until_reachable(a, clock)
    assert await b.claim_due(5, AT) == []
    await write()
    row = await b.get(job.job_id)
    assert row.state == ("done" if end == "finish" else "pending") and row.attempts == 1
    assert await b.claim_due(5, AT) == []  # ended, or waiting for its retry time
    await closed(a, b)


async def test_a_call_begun_before_a_failure_does_not_clear_unavailable(postgres_url):
    """An answer that was on its way when another call found the database gone says nothing
    about the database now: only a call begun after the failure clears ``unavailable``. (The
    lease renewal's ``SELECT 1`` answered just after the kill and made the outage vanish.)"""
    a = replica(postgres_url)
    await opened(a)
    slow = asyncio.create_task(a._call(lambda conn: conn.fetchval("SELECT pg_sleep(0.3)")))
    await asyncio.sleep(0.05)

    async def broken(conn: asyncpg.Connection) -> None:
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(JobStoreUnavailable, match="unreachable"):
        await a._call(broken)
    await slow
    assert a.unavailable is not None and "unreachable" in a.unavailable
    assert await a._call(lambda conn: conn.fetchval("SELECT 1")) == 1
    assert a.unavailable is None
    await closed(a)


def test_the_password_never_shows_in_the_url_we_log():
    assert redact_url("postgresql://u:s3cr3t@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"


async def test_a_claim_made_while_leases_are_renewed_is_not_taken_for_lost(postgres_url):
    a = replica(postgres_url)
    await opened(a)
    lost: list[str] = []
    a.on_lease_lost = lost.append
    first = await a.accept(JobRequest(1))
    await a.start(first.job_id, AT)
    second = await a.accept(JobRequest(2))
    plain_call = a._call
    claimed: list[object] = []

    async def claim_in_between(fn):  # the renewal's UPDATE has run; a claim lands before it is judged
        result = await plain_call(fn)
        if not claimed:
            claimed.append(None)
            claimed.append(await a.start(second.job_id, AT))
        return result

    a._call = claim_in_between
    await a.renew_leases()
    a._call = plain_call
    assert claimed[1] is not None and lost == []
    await a.finish(second.job_id, state="done", result="archived")  # its fence is still known
    await closed(a)


async def test_admission_reads_a_few_rows_per_webhook_whatever_the_number_of_live_delivery_ids(postgres_url):
    """``accept_jobs`` looks delivery ids and active jobs up by index, one request at a time: it
    reads a few rows per webhook, never all live delivery ids. (A join over them, planned once
    per connection while the table was small, kept reading the whole table for every webhook
    as it grew: with a TTL of an hour, hundreds of thousands of rows at a busy edge.) Counted
    with the transaction's own table statistics (``pg_stat_xact_user_tables``)."""
    a = replica(postgres_url)
    await opened(a)
    assert (await a.accept(JobRequest(1, delivery_id="first"))).status == "accepted"
    await closed(a)
    conn = await asyncpg.connect(postgres_url)
    try:

        async def rows_read(
            tickets: list[int],
            deliveries: list[str],
            groups: list[int],
            max_pending: int,
        ) -> tuple[list[str], int]:
            async with conn.transaction():
                answers = await conn.fetch(
                    f"SELECT o_status FROM {SCHEMA}.accept_jobs($1::bigint[], $2::text[], $3::text[], $4::boolean[], "
                    "$5::integer[], $6::text[], 1000, 3600, $7)",
                    tickets,
                    deliveries,
                    ["webhook"] * len(tickets),
                    [False] * len(tickets),
                    groups,
                    [f"job-{d}" for d in deliveries],
                    max_pending,
                )
                read = await conn.fetchval(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                    "WHERE schemaname = $1 AND relname = 'deliveries'",
                    SCHEMA,
                )
                return [r["o_status"] for r in answers], read

        # While the table is small: enough webhooks, each its own /ingest (group), at and
        # below the limit, for PostgreSQL to settle on generic plans for this connection.
        for round_ in range(2):
            statuses, _ = await rows_read([1] * 8, [f"w{round_}-{i}" for i in range(8)], list(range(8)), 2)
            assert statuses == ["coalesced"] * 8
        # Then the table grows.
        await conn.execute(
            f"INSERT INTO {SCHEMA}.deliveries SELECT 'seed-' || g, 'j', 1e12 "
            "FROM generate_series(1, 5000) AS g"
        )
        # Far from the limit: webhooks for known and new tickets, one a duplicate.
        statuses, read = await rows_read([1, 1, 2, 3], ["x1", "x2", "first", "x3"], [0, 1, 2, 3], 100)
        assert statuses == ["coalesced", "coalesced", "duplicate", "accepted"]
        assert read <= 2 * 4, read
        # At the limit (two pending jobs, no room): the capacity count runs too.
        statuses, read = await rows_read([4, 5, 1, 1], ["y1", "y2", "seed-7", "y3"], [0, 0, 1, 2], 2)
        assert statuses == ["full", "full", "duplicate", "coalesced"]
        assert read <= 3 * 4, read
    finally:
        await conn.close()


async def test_a_pooled_connection_is_given_back_without_a_reset_round_trip_and_holds_no_lock(postgres_url):
    """The store leaves no session state on its pooled connections, so the pool gives them back
    without asyncpg's reset statement (one more round trip before each batch was answered);
    the migration's advisory lock ends with its transaction."""
    a = replica(postgres_url)
    await opened(a)
    await a.accept(JobRequest(1, delivery_id="d1"))
    admin = await asyncpg.connect(postgres_url)
    try:
        last = [
            r["query"]
            for r in await admin.fetch(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'zammad-pdf-archiver' AND pid <> "
                "pg_backend_pid() AND query NOT LIKE 'LISTEN%'"
            )
        ]
        assert last and all("RESET ALL" not in q for q in last), last
        assert any("accept_jobs" in q for q in last), last
        assert await admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await admin.close()
    await closed(a)
