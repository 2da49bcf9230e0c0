"""The PostgreSQL job store's schema: tables, indexes, the admission function, and migrations.

Everything lives in its own schema, :data:`SCHEMA` (``zammad_pdf_archiver``), in the database
that ``JOB_STORE_URL`` names — a database of its own, never Zammad's (:func:`migrate`
refuses one that holds Zammad's ``tickets`` table). :data:`MIGRATIONS` are applied in order
at start under an advisory lock, so replicas that start together apply each one once; the
version reached is kept in ``schema_version``.

The semantics are those of the SQLite store (:mod:`app.jobs.sqlite`), made safe for several
writers:

- one active (pending or running) job per ticket is a partial unique index
  (``jobs_one_active_per_ticket``), not only a rule of the code;
- :data:`ACCEPT_FUNCTION` records a batch of webhooks in one statement (one round trip): the
  ticket's active job is locked (``FOR UPDATE``) first, then the delivery id is claimed for
  that job (or the new one) with an upsert that only takes over an expired id, and a new job
  is inserted with ``ON CONFLICT DO NOTHING`` on that index (another replica inserted first:
  merge into its job instead, and point the delivery id at it). Two or three index look-ups
  per webhook, whatever the size of the tables. An operator's retry merged into a pending job
  that ran before restarts it (:data:`~app.jobs.records.RETRY_REASON`: attempts from zero, and a
  wait for its next attempt ended, with a ``NOTIFY`` so that a replica's claimer takes it now);
- running jobs and undelivered reports carry a lease (``lease_owner``, ``lease_expires_at``)
  and a fencing counter (``fence``, raised by every claim): a replica writes to a job only
  while ``fence`` is the value its claim returned.
"""

from __future__ import annotations

import logging

import asyncpg

from app.jobs.records import RETRY_REASON, JobStoreUnavailable

log = logging.getLogger("app.jobs.store")

SCHEMA = "zammad_pdf_archiver"
"""The PostgreSQL schema holding the store's tables (created when missing)."""

NOTIFY_CHANNEL = "zammad_pdf_archiver_jobs"
"""``LISTEN``/``NOTIFY`` channel: a job became claimable (new, requeued, retried, its wait for
a next attempt ended by an operator's retry, or its ticket's report was delivered). Not
durable: replicas poll as well."""

MIGRATION_LOCK = 0x7A70_6461_0001
"""``pg_advisory_xact_lock`` key held while the schema is created or migrated."""

PURGE_LOCK = 0x7A70_6461_0002
"""``pg_try_advisory_xact_lock`` key: one replica at a time prunes old rows."""

SWEEP_LOCK_CLASS = 0x7A70_6461
"""First key of ``pg_try_advisory_lock(int, int)`` held while a replica runs a sweep (the
second is ``hashtext(<sweep name>)``; the two-key space is apart from the one-key locks above)."""

ACCEPT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.accept_jobs(
    p_tickets bigint[], p_deliveries text[], p_reasons text[], p_forces boolean[], p_groups integer[],
    p_job_ids text[], p_now double precision, p_ttl double precision, p_max_pending bigint)
RETURNS TABLE (o_status text, o_job_id text, o_created boolean)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(p_tickets, 1), 0);
    i integer := 1;
    j integer;
    k integer;
    pending bigint;
    need bigint;
    counted bigint[];
    act record;
    active boolean;
    jid text;
    claimed text;
    status text;
    created boolean;
    group_deliveries text[];
BEGIN
    -- A 202 is answered after this commits: make the commit wait for the WAL flush whatever
    -- the server's or the role's default (transaction-local, like SET LOCAL).
    PERFORM set_config('synchronous_commit', 'on', true);
    SELECT count(*) INTO pending FROM {SCHEMA}.jobs WHERE state = 'pending';
    WHILE i <= n LOOP
        j := i;  -- the group [i, j]: one /ingest, or one /ingest/batch (all or nothing on capacity)
        WHILE j < n AND p_groups[j + 1] = p_groups[i] LOOP
            j := j + 1;
        END LOOP;
        -- Capacity: the group needs a new job for each of its tickets that has no active job,
        -- counting only requests whose delivery id is not live (those answer duplicate). At most
        -- one per request, so the count is only needed near the limit; it is made with one
        -- index look-up per request (a join over the live delivery ids would read them all).
        IF pending + (j - i + 1) > p_max_pending THEN
            need := 0;
            counted := '{{}}';
            FOR k IN i..j LOOP
                IF NOT (p_tickets[k] = ANY (counted))
                   AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.jobs a
                                    WHERE a.ticket_id = p_tickets[k] AND a.state IN ('pending', 'running'))
                   AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries d
                                    WHERE d.delivery_id = p_deliveries[k] AND d.expires_at > p_now) THEN
                    counted := counted || p_tickets[k];
                    need := need + 1;
                END IF;
            END LOOP;
            IF need > 0 AND pending + need > p_max_pending THEN
                FOR k IN i..j LOOP  -- nothing recorded; a live delivery id still answers duplicate
                    SELECT d.job_id INTO jid FROM {SCHEMA}.deliveries d
                     WHERE d.delivery_id = p_deliveries[k] AND d.expires_at > p_now;
                    o_status := CASE WHEN jid IS NULL THEN 'full' ELSE 'duplicate' END;
                    o_job_id := jid;
                    o_created := false;
                    RETURN NEXT;
                END LOOP;
                i := j + 1;
                CONTINUE;
            END IF;
        END IF;
        -- Delivery ids this group claimed: the payloads of one /ingest/batch share its
        -- X-Zammad-Delivery, which dedupes the delivery, not its payloads against each other.
        group_deliveries := '{{}}';
        <<requests>>
        FOR k IN i..j LOOP
            claimed := NULL;  -- the job id the delivery id was recorded with
            LOOP
                -- The ticket's active job, locked: the webhook is merged into it.
                SELECT a.job_id, a.state, a.force, a.follow_up, a.follow_up_force, a.attempts,
                       a.next_attempt_at INTO act
                  FROM {SCHEMA}.jobs a
                 WHERE a.ticket_id = p_tickets[k] AND a.state IN ('pending', 'running')
                   FOR UPDATE;
                active := FOUND;
                jid := CASE WHEN active THEN act.job_id ELSE p_job_ids[k] END;
                IF p_deliveries[k] IS NOT NULL AND claimed IS NULL
                   AND NOT (p_deliveries[k] = ANY (group_deliveries)) THEN
                    -- Claim the delivery id for that job, or take over one whose TTL ran out.
                    INSERT INTO {SCHEMA}.deliveries AS d (delivery_id, job_id, expires_at)
                    VALUES (p_deliveries[k], jid, p_now + p_ttl)
                    ON CONFLICT (delivery_id) DO UPDATE
                       SET job_id = excluded.job_id, expires_at = excluded.expires_at
                     WHERE d.expires_at <= p_now
                    RETURNING d.job_id INTO claimed;
                    IF claimed IS NULL THEN  -- a live delivery id: nothing changes
                        SELECT d.job_id INTO jid FROM {SCHEMA}.deliveries d
                         WHERE d.delivery_id = p_deliveries[k];
                        o_status := 'duplicate';
                        o_job_id := jid;
                        o_created := false;
                        RETURN NEXT;
                        CONTINUE requests;
                    END IF;
                    group_deliveries := group_deliveries || p_deliveries[k];
                END IF;
                IF active THEN
                    IF act.state = 'pending' THEN
                        IF p_reasons[k] = '{RETRY_REASON}'
                           AND (act.next_attempt_at IS NOT NULL OR act.attempts > 0) THEN
                            -- An operator's retry: a fresh request, due now (records.RETRY_REASON).
                            UPDATE {SCHEMA}.jobs
                               SET next_attempt_at = NULL, attempts = 0, force = force OR p_forces[k],
                                   updated_at = p_now
                             WHERE job_id = act.job_id;
                            IF act.next_attempt_at IS NOT NULL THEN
                                PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
                            END IF;
                        ELSIF p_forces[k] AND NOT act.force THEN
                            UPDATE {SCHEMA}.jobs SET force = true, updated_at = p_now
                             WHERE job_id = act.job_id;
                        END IF;
                    ELSIF NOT act.follow_up OR (p_forces[k] AND NOT act.follow_up_force) THEN
                        UPDATE {SCHEMA}.jobs
                           SET follow_up = true, follow_up_force = follow_up_force OR p_forces[k],
                               updated_at = p_now
                         WHERE job_id = act.job_id;
                    END IF;
                    status := 'coalesced';
                    created := false;
                    EXIT;
                END IF;
                INSERT INTO {SCHEMA}.jobs
                       (job_id, ticket_id, state, reason, force, delivery_id, created_at, updated_at)
                VALUES (p_job_ids[k], p_tickets[k], 'pending', p_reasons[k], p_forces[k], p_deliveries[k],
                        p_now, p_now)
                ON CONFLICT (ticket_id) WHERE state IN ('pending', 'running') DO NOTHING;
                IF FOUND THEN
                    status := 'accepted';
                    created := true;
                    pending := pending + 1;
                    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
                    EXIT;
                END IF;
                -- Another writer's job for this ticket committed meanwhile: merge into it.
            END LOOP;
            IF claimed IS NOT NULL AND claimed <> jid THEN
                UPDATE {SCHEMA}.deliveries SET job_id = jid WHERE delivery_id = p_deliveries[k];
            END IF;
            o_status := status;
            o_job_id := jid;
            o_created := created;
            RETURN NEXT;
        END LOOP;
        i := j + 1;
    END LOOP;
END
$fn$;
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    f"""
    CREATE TABLE {SCHEMA}.jobs (
        job_id text PRIMARY KEY,
        ticket_id bigint NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'dead')),
        reason text NOT NULL,
        force boolean NOT NULL DEFAULT false,
        delivery_id text,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        archived_at text,
        last_error text,
        last_step text,
        classification text,
        output_path text,
        sha256 text,
        result text,
        follow_up boolean NOT NULL DEFAULT false,
        follow_up_force boolean NOT NULL DEFAULT false,
        report text,
        reported boolean NOT NULL DEFAULT true,
        report_error text,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision,
        lease_owner text,
        lease_expires_at double precision,
        fence bigint NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX jobs_one_active_per_ticket ON {SCHEMA}.jobs (ticket_id)
        WHERE state IN ('pending', 'running');
    CREATE INDEX jobs_by_ticket ON {SCHEMA}.jobs (ticket_id, created_at);
    CREATE INDEX jobs_pending ON {SCHEMA}.jobs (created_at) WHERE state = 'pending';
    CREATE INDEX jobs_running_lease ON {SCHEMA}.jobs (lease_expires_at) WHERE state = 'running';
    CREATE INDEX jobs_unreported ON {SCHEMA}.jobs (ticket_id) WHERE NOT reported;
    CREATE INDEX jobs_finished ON {SCHEMA}.jobs (finished_at) WHERE state IN ('done', 'failed', 'dead');
    CREATE TABLE {SCHEMA}.deliveries (
        delivery_id text PRIMARY KEY,
        job_id text NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE INDEX deliveries_by_expiry ON {SCHEMA}.deliveries (expires_at);
    """,
    # 2: when each sweep (the reconciliation, app.reconcile) last ended, on any replica.
    f"""
    CREATE TABLE {SCHEMA}.sweeps (
        name text PRIMARY KEY,
        finished_at double precision NOT NULL,
        owner text
    );
    """,
    # 3: the version of each function the replicas share (ACCEPT_FUNCTION_VERSION). Its first
    # change, the batch's delivery id claimed once per batch, came with it: releases before it
    # refuse this schema, so none of their replicas, restarted in a rolling upgrade, puts its
    # older accept_jobs back for all.
    f"""
    CREATE TABLE {SCHEMA}.functions (
        name text PRIMARY KEY,
        version integer NOT NULL
    );
    """,
)
"""Schema migrations, in order: entry ``n`` (0-based) brings the schema to version ``n + 1``.
Only ever append; :data:`ACCEPT_FUNCTION` is (re)created after them at every start, unless the
database holds a newer one (:data:`ACCEPT_FUNCTION_VERSION`)."""

ACCEPT_FUNCTION_VERSION = 2
"""The version of :data:`ACCEPT_FUNCTION`, recorded in ``functions``; raise it with every change
of the function. A replica replaces the database's function only with one at least as new, so
a replica of an older release (restarted during a rolling upgrade) leaves the newer one in
place. 1: before versions were recorded; 2: a batch's delivery id is claimed once for the
batch, not once per payload."""

BOOTSTRAP = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version integer NOT NULL,
    applied_at double precision NOT NULL
);
"""


async def migrate(conn: asyncpg.Connection, *, now: float, database: str) -> None:
    """Create or migrate the schema on ``conn``, one replica at a time (an advisory lock held
    for the transaction), and (re)create :data:`ACCEPT_FUNCTION` unless the database holds a
    newer version of it (:data:`ACCEPT_FUNCTION_VERSION`; a warning is logged then).

    Args:
        now: Unix seconds, recorded with each migration applied.
        database: the database's name for messages (``JOB_STORE_URL`` without its password).

    Raises:
        JobStoreUnavailable: the database is Zammad's own (it holds ``tickets`` and
            ``ticket_articles``), or its schema is newer than this release knows.
    """
    zammads = await conn.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_name IN ('tickets', 'ticket_articles')"
    )
    if zammads == 2:
        raise JobStoreUnavailable(
            f"{database} is Zammad's own database; give the archiver a "
            "database of its own (CREATE DATABASE zammad_pdf_archiver)"
        )
    async with conn.transaction():
        # Held until this transaction ends (also when it fails): replicas migrate one at a time.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(BOOTSTRAP)
        version = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version")
        if version > len(MIGRATIONS):
            raise JobStoreUnavailable(
                f"the job store's schema is version {version}, newer than this "
                f"release knows ({len(MIGRATIONS)}); upgrade the service"
            )
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(migration)
            await conn.execute(f"INSERT INTO {SCHEMA}.schema_version VALUES ($1, $2)", number, now)
            log.info("job store schema migrated", extra={"version": number})
        installed = await conn.fetchval(f"SELECT version FROM {SCHEMA}.functions WHERE name = 'accept_jobs'")
        if installed is not None and installed > ACCEPT_FUNCTION_VERSION:
            log.warning(
                "a newer release's admission function is in place; this replica uses it "
                "(upgrade this replica)",
                extra={"installed": installed, "ours": ACCEPT_FUNCTION_VERSION},
            )
            return
        await conn.execute(ACCEPT_FUNCTION)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.functions VALUES ('accept_jobs', $1) "
            "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
            ACCEPT_FUNCTION_VERSION,
        )
