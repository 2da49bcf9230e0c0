"""Reconciliation on PostgreSQL: which job each ticket has, and whose turn a sweep is.

The reconciliation sweep (:mod:`app.reconcile`) asks the store two things that only it needs:
the latest job of many tickets at once, and whether this replica runs a sweep now. With
several replicas one sweeps at a time: a session-level advisory lock (released with its
connection should the replica die) and the ``sweeps`` table, which records when a sweep of
each name last ended, on any replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from app.jobs import pg_schema
from app.jobs.pg_database import UNREACHABLE, PgDatabase
from app.jobs.pg_schema import SCHEMA
from app.jobs.records import JobRecord

__all__ = ["latest_jobs", "sweep_turn"]

_LOCK = "SELECT pg_{}advisory_{}($1::integer, hashtext($2))"


async def latest_jobs(
    database: PgDatabase, ticket_ids: Sequence[int], *, now: float | None = None
) -> dict[int, JobRecord]:
    """The latest job (an active one first) of each ticket in ``ticket_ids`` that has one, in
    one statement: ``{ticket_id: record}``; with ``now`` (Unix seconds, the store's clock) each
    held job's :class:`~app.jobs.records.Lease` too, as
    :meth:`app.jobs.postgres.PostgresJobStore.latest` reads it.

    Raises:
        JobStoreUnavailable: the database cannot be reached.
    """
    ids = sorted(set(ticket_ids))
    if not ids:
        return {}
    rows = await database.call(
        lambda conn: conn.fetch(
            f"SELECT DISTINCT ON (ticket_id) * FROM {SCHEMA}.jobs WHERE ticket_id = ANY($1::bigint[]) "
            "ORDER BY ticket_id, state IN ('pending', 'running') DESC, created_at DESC",
            ids,
        )
    )
    return {row["ticket_id"]: JobRecord.from_row(row, now=now) for row in rows}


@contextlib.asynccontextmanager
async def sweep_turn(
    database: PgDatabase,
    name: str,
    *,
    min_interval_seconds: float,
    clock: Callable[[], float],
    owner: str,
) -> AsyncIterator[bool]:
    """Whether this replica runs sweep ``name`` now (``async with … as mine``): only while it
    holds the sweep's advisory lock, and only when no sweep of that name ended, on any
    replica, within ``min_interval_seconds`` (Unix seconds of ``clock``). The lock is
    session-level on one pooled connection, kept for the ``async with`` body and released
    after it. The end (with ``owner``) is recorded however the body ends.

    Raises:
        JobStoreUnavailable: the database cannot be reached.
    """
    async with database.connection() as conn:
        locked = mine = False
        try:
            try:
                locked = await conn.fetchval(_LOCK.format("try_", "lock"), pg_schema.SWEEP_LOCK_CLASS, name)
                last = (
                    await conn.fetchval(f"SELECT finished_at FROM {SCHEMA}.sweeps WHERE name = $1", name)
                    if locked
                    else None
                )
            except UNREACHABLE as exc:
                conn.terminate()  # a session in doubt is not given back to the pool
                raise database.failed(exc) from exc
            mine = bool(locked) and (last is None or last <= clock() - min_interval_seconds)
            try:
                yield mine
            finally:
                if mine:
                    with contextlib.suppress(*UNREACHABLE):
                        await conn.execute(
                            f"INSERT INTO {SCHEMA}.sweeps (name, finished_at, owner) VALUES ($1, $2, $3) "
                            "ON CONFLICT (name) DO UPDATE SET finished_at = excluded.finished_at, "
                            "owner = excluded.owner",
                            name,
                            clock(),
                            owner,
                        )
        finally:
            if locked:
                try:
                    await conn.execute(_LOCK.format("", "unlock"), pg_schema.SWEEP_LOCK_CLASS, name)
                except UNREACHABLE:
                    # The lock may still be held by this session: end the session rather than
                    # give it back to the pool (the server releases the lock with it).
                    conn.terminate()
