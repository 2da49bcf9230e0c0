"""How the SQLite job store turns requests into jobs: deduplication, coalescing, capacity.

Functions of the connection, run inside the store's batch transaction
(:mod:`app.jobs.sqlite_batches`). The rules (the same as ``accept_jobs`` in
:mod:`app.jobs.pg_schema`):

- a delivery id seen within its TTL answers ``duplicate`` with the job it was accepted for,
  and changes nothing; a refused (``full``) request's delivery id is not remembered;
- a request for a ticket with a pending job is merged into it (``coalesced``; ``force`` is
  kept if either asked for it); one for a ticket with a running job sets ``follow_up`` on it
  (the follow-up job is created when the running one ends);
- an operator's retry (:data:`~app.jobs.records.RETRY_REASON`) merged into a pending job that
  ran before makes it a fresh request: ``attempts`` back to 0 and, when it waited for its next
  attempt, ``next_attempt_at`` cleared (:attr:`~app.jobs.records.Admission.due_now`: the worker
  pool runs it now). A webhook or the reconciliation sweep leaves the wait alone;
- a new job is refused (``full``) when ``max_pending`` jobs are pending; a batch
  (``/ingest/batch``) is all or nothing on capacity.
"""

from __future__ import annotations

import sqlite3

from app.jobs.records import RETRY_REASON, Admission, AdmissionStatus, JobRequest, new_job_id

NOTHING_TO_WRITE, SET_FORCE, SET_FOLLOW_UP, RESTART, RESTART_NOW = 0, 1, 2, 3, 4
"""What merging a request into its ticket's active job writes (see :func:`merge`)."""
_ACTIVE_JOB = (
    # The job id and what a merge must write, decided here: one column instead of the four
    # flags it is decided from (each column read costs about as much as the comparisons).
    "SELECT job_id, CASE WHEN state='pending' THEN (?2 AND NOT force) "
    "WHEN NOT follow_up OR (?2 AND NOT follow_up_force) THEN 2 ELSE 0 END FROM jobs "
    "WHERE ticket_id=?1 AND state IN ('pending','running') ORDER BY created_at DESC LIMIT 1"
)
_ACTIVE_JOB_FOR_RETRY = (
    # As _ACTIVE_JOB, for an operator's retry (rare: the webhooks' query stays as it was): a
    # pending job that waits for its next attempt (4) or ran before (3) is restarted.
    "SELECT job_id, CASE WHEN state='pending' THEN CASE WHEN next_attempt_at IS NOT NULL THEN 4 "
    "WHEN attempts > 0 THEN 3 ELSE (?2 AND NOT force) END "
    "WHEN NOT follow_up OR (?2 AND NOT follow_up_force) THEN 2 ELSE 0 END FROM jobs "
    "WHERE ticket_id=?1 AND state IN ('pending','running') ORDER BY created_at DESC LIMIT 1"
)
_INSERT_JOB = (
    "INSERT INTO jobs (job_id, ticket_id, state, reason, force, delivery_id, created_at, updated_at) "
    "VALUES (?,?,'pending',?,?,?,?,?)"
)
_CLAIM_DELIVERY = (
    "INSERT INTO deliveries (delivery_id, job_id, expires_at) VALUES (?,?,?) ON CONFLICT (delivery_id) "
    "DO UPDATE SET job_id=excluded.job_id, expires_at=excluded.expires_at WHERE deliveries.expires_at <= ?"
)
_LIVE_DELIVERY = "SELECT job_id FROM deliveries WHERE delivery_id=? AND expires_at>?"


def admit_one(
    conn: sqlite3.Connection, req: JobRequest, now: float, *, pending: int, max_pending: int, ttl: float
) -> Admission:
    """Record one request (every ``/ingest``) in few statements: the delivery id is claimed with
    one upsert whose row count says whether it was already live, instead of a look-up and an
    insert.

    Args:
        now: Unix seconds.
        pending: pending jobs before this request.
        max_pending: most pending jobs.
        ttl: seconds a delivery id counts as seen.
    """
    active = conn.execute(
        _ACTIVE_JOB_FOR_RETRY if req.reason == RETRY_REASON else _ACTIVE_JOB, (req.ticket_id, req.force)
    ).fetchone()
    if active is None and pending + 1 > max_pending:
        duplicate = live_delivery(conn, req.delivery_id, now)
        if duplicate is not None:
            return Admission(AdmissionStatus.DUPLICATE, duplicate)
        return Admission(AdmissionStatus.FULL, None)
    job_id = active[0] if active is not None else new_job_id()
    if (
        req.delivery_id is not None
        and conn.execute(_CLAIM_DELIVERY, (req.delivery_id, job_id, now + ttl, now)).rowcount == 0
    ):
        return Admission(AdmissionStatus.DUPLICATE, live_delivery(conn, req.delivery_id, now))
    if active is not None:
        if active[1]:
            merge(conn, req, job_id, active[1], now)
            if active[1] == RESTART_NOW:
                return Admission(AdmissionStatus.COALESCED, job_id, due_now=True)
        return Admission(AdmissionStatus.COALESCED, job_id)
    conn.execute(
        _INSERT_JOB,
        (job_id, req.ticket_id, req.reason, int(req.force), req.delivery_id, now, now),
    )
    return Admission(AdmissionStatus.ACCEPTED, job_id, new=True)


def admit_many(
    conn: sqlite3.Connection,
    requests: list[JobRequest],
    now: float,
    *,
    pending: int,
    max_pending: int,
    ttl: float,
) -> list[Admission]:
    """Record several requests, all or nothing on capacity: when the new jobs they need do not
    fit under ``max_pending``, every one is answered ``full`` (a live delivery id still
    ``duplicate``). One :class:`Admission` per request, in order; arguments as for
    :func:`admit_one`."""
    # Per request: its kind, the job id found (a live delivery's or the active job's) and, for
    # an active job, what merging into it writes.
    plans: list[tuple[JobRequest, str, str | None, int]] = []
    new_tickets: set[int] = set()
    for req in requests:
        if req.delivery_id is not None:
            row = conn.execute(_LIVE_DELIVERY, (req.delivery_id, now)).fetchone()
            if row is not None:
                plans.append((req, "duplicate", row[0], NOTHING_TO_WRITE))
                continue
        active = conn.execute(
            _ACTIVE_JOB_FOR_RETRY if req.reason == RETRY_REASON else _ACTIVE_JOB, (req.ticket_id, req.force)
        ).fetchone()
        if active is None:
            new_tickets.add(req.ticket_id)
            plans.append((req, "new", None, NOTHING_TO_WRITE))
        else:
            plans.append((req, "active", active[0], active[1]))
    if new_tickets and pending + len(new_tickets) > max_pending:
        return [
            Admission(AdmissionStatus.DUPLICATE, found)
            if kind == "duplicate"
            else Admission(AdmissionStatus.FULL, None)
            for req, kind, found, write in plans
        ]
    out: list[Admission] = []
    created: dict[int, str] = {}
    for req, kind, found, write in plans:
        if kind == "duplicate":
            out.append(Admission(AdmissionStatus.DUPLICATE, found))
            continue
        if kind == "active" or req.ticket_id in created:
            if kind == "active":
                assert found is not None
                job_id = found
            else:  # created (pending) by an earlier request of this batch: force it when asked
                job_id, write = created[req.ticket_id], SET_FORCE if req.force else NOTHING_TO_WRITE
            if write:
                merge(conn, req, job_id, write, now)
            admission = Admission(AdmissionStatus.COALESCED, job_id, due_now=write == RESTART_NOW)
        else:
            job_id = new_job_id()
            conn.execute(
                _INSERT_JOB, (job_id, req.ticket_id, req.reason, int(req.force), req.delivery_id, now, now)
            )
            created[req.ticket_id] = job_id
            admission = Admission(AdmissionStatus.ACCEPTED, job_id, new=True)
        if req.delivery_id is not None:
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (delivery_id, job_id, expires_at) VALUES (?,?,?)",
                (req.delivery_id, admission.job_id, now + ttl),
            )
        out.append(admission)
    return out


def live_delivery(conn: sqlite3.Connection, delivery_id: str | None, now: float) -> str | None:
    """The job id a delivery id was accepted for, while it has not expired."""
    if delivery_id is None:
        return None
    row = conn.execute(_LIVE_DELIVERY, (delivery_id, now)).fetchone()
    return row[0] if row is not None else None


def merge(conn: sqlite3.Connection, req: JobRequest, job_id: str, write: int, now: float) -> None:
    """Merge ``req`` into its ticket's active job ``job_id``, writing what the active-job query
    decided: :data:`SET_FORCE` (a pending job without ``force``, asked for with it),
    :data:`SET_FOLLOW_UP` (a running job without a follow-up, or without a forced one asked for
    now), :data:`RESTART` or :data:`RESTART_NOW` (an operator's retry into a pending job that
    ran before, or also waits for its next attempt: attempts from zero, due now, ``force`` if
    asked for). Nothing is written otherwise (the hot path under a burst of webhooks for one
    ticket)."""
    if write == SET_FORCE:
        conn.execute("UPDATE jobs SET force=1, updated_at=? WHERE job_id=?", (now, job_id))
    elif write == SET_FOLLOW_UP:
        conn.execute(
            "UPDATE jobs SET follow_up=1, follow_up_force = follow_up_force OR ?, updated_at=? "
            "WHERE job_id=?",
            (int(req.force), now, job_id),
        )
    elif write in (RESTART, RESTART_NOW):
        conn.execute(
            "UPDATE jobs SET next_attempt_at=NULL, attempts=0, force = force OR ?, updated_at=? "
            "WHERE job_id=?",
            (int(req.force), now, job_id),
        )
