"""How the PostgreSQL store records webhooks (:mod:`app.jobs.pg_admission` and ``accept_jobs``):
across replicas at once, committed and flushed, and reading a few rows per webhook."""

from __future__ import annotations

import asyncio

import asyncpg

from app.jobs.pg_schema import SCHEMA
from app.jobs.records import AdmissionStatus, JobRequest
from tests.jobs.support import (
    closed,
    opened,
    replica,
)


async def test_concurrent_webhooks_on_two_replicas_make_one_job_and_dedupe_deliveries(
    postgres_url: str,
) -> None:
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


async def test_commits_wait_for_the_wal_flush_whatever_the_database_default(postgres_url: str) -> None:
    admin = await asyncpg.connect(postgres_url)
    try:
        dbname = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    finally:
        await admin.close()
    a = replica(postgres_url)
    await opened(a)
    assert await a.database.call(lambda conn: conn.fetchval("SHOW synchronous_commit")) == "on"
    in_accept = await a.database.call(
        lambda conn: conn.fetchval(
            f"SELECT current_setting('synchronous_commit') FROM {SCHEMA}.accept_jobs('{{1}}', '{{NULL}}', "
            "'{webhook}', '{f}', '{0}', '{x}', 0, 60, 100) LIMIT 1"
        )
    )
    assert in_accept == "on"
    await closed(a)


async def test_admission_reads_a_few_rows_per_webhook_whatever_the_number_of_live_delivery_ids(
    postgres_url: str,
) -> None:
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
                    f"SELECT o_status FROM {SCHEMA}.accept_jobs($1::bigint[], $2::text[], $3::text[], "
                    "$4::boolean[], $5::integer[], $6::text[], 1000, 3600, $7)",
                    tickets,
                    deliveries,
                    ["webhook"] * len(tickets),
                    [False] * len(tickets),
                    groups,
                    [f"job-{d}" for d in deliveries],
                    max_pending,
                )
                read = await conn.fetchval(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                    "FROM pg_stat_xact_user_tables WHERE schemaname = $1 AND relname = 'deliveries'",
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


async def test_the_requests_of_one_turn_share_one_call_each_group_all_or_nothing(postgres_url: str) -> None:
    """Two ``/ingest/batch`` calls and an ``/ingest`` in one loop turn: one ``accept_jobs`` call
    (one transaction), and each caller's group keeps its own all-or-nothing rule on capacity."""
    a = replica(postgres_url, max_pending=3)
    await opened(a)
    before = a.commits
    fits, too_big, single = await asyncio.gather(
        a.accept_many([JobRequest(1), JobRequest(2)]),
        a.accept_many([JobRequest(3), JobRequest(4)]),  # one more would do, two do not
        a.accept_many([JobRequest(5, delivery_id="d5")]),
    )
    assert a.commits - before == 1
    assert [x.status for x in fits] == [AdmissionStatus.ACCEPTED] * 2
    assert [x.status for x in too_big] == [AdmissionStatus.FULL] * 2
    assert single[0].status == AdmissionStatus.ACCEPTED and single[0].new
    assert a.pending_count == 3
    await closed(a)
