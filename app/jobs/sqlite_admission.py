"""How the SQLite job store turns requests into jobs: deduplication, coalescing, capacity.

Functions of the connection, run inside the store's batch transaction
(:mod:`app.jobs.sqlite_batches`). The rules (the same as ``accept_jobs`` in
:mod:`app.jobs.pg_schema`):

- a delivery id seen within its TTL answers ``duplicate`` with the job it was accepted for,
  and changes nothing; a refused (``full``) request's delivery id is not remembered;
- a request for a ticket with a pending job is merged into it (``coalesced``; ``force`` is
  kept if either asked for it); one for a ticket with a running job sets ``follow_up`` on it
  (the follow-up job is created when the running one ends);
- a new job is refused (``full``) when ``max_pending`` jobs are pending; a batch
  (``/ingest/batch``) is all or nothing on capacity.
"""

from __future__ import annotations

import sqlite3

from app.jobs.records import Admission, AdmissionStatus, JobRequest, JobState, new_job_id

_ACTIVE_JOB = (
    "SELECT job_id, state, force, follow_up, follow_up_force FROM jobs "
    "WHERE ticket_id=? AND state IN ('pending','running') ORDER BY created_at DESC LIMIT 1"
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
    active = conn.execute(_ACTIVE_JOB, (req.ticket_id,)).fetchone()
    if active is None and pending + 1 > max_pending:
        duplicate = live_delivery(conn, req.delivery_id, now)
        if duplicate is not None:
            return Admission(AdmissionStatus.DUPLICATE, duplicate)
        return Admission(AdmissionStatus.FULL, None)
    job_id = active["job_id"] if active is not None else new_job_id()
    if (
        req.delivery_id is not None
        and conn.execute(_CLAIM_DELIVERY, (req.delivery_id, job_id, now + ttl, now)).rowcount == 0
    ):
        return Admission(AdmissionStatus.DUPLICATE, live_delivery(conn, req.delivery_id, now))
    if active is not None:
        merge(conn, req, active, now)
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
    plans: list[tuple[JobRequest, str, sqlite3.Row | None]] = []
    new_tickets: set[int] = set()
    for req in requests:
        if req.delivery_id is not None:
            row = conn.execute(_LIVE_DELIVERY, (req.delivery_id, now)).fetchone()
            if row is not None:
                plans.append((req, "duplicate", row))
                continue
        active = conn.execute(_ACTIVE_JOB, (req.ticket_id,)).fetchone()
        if active is None and req.ticket_id not in new_tickets:
            new_tickets.add(req.ticket_id)
        plans.append((req, "active" if active is not None else "new", active))
    if new_tickets and pending + len(new_tickets) > max_pending:
        return [
            Admission(AdmissionStatus.DUPLICATE, row["job_id"])
            if kind == "duplicate" and row is not None
            else Admission(AdmissionStatus.FULL, None)
            for req, kind, row in plans
        ]
    out: list[Admission] = []
    created: dict[int, str] = {}
    for req, kind, row in plans:
        if kind == "duplicate":
            assert row is not None
            out.append(Admission(AdmissionStatus.DUPLICATE, row["job_id"]))
            continue
        if kind == "active" or req.ticket_id in created:
            job_id = row["job_id"] if row is not None else created[req.ticket_id]
            merge(conn, req, row, now, job_id)
            admission = Admission(AdmissionStatus.COALESCED, job_id)
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
    return row["job_id"] if row is not None else None


def merge(
    conn: sqlite3.Connection,
    req: JobRequest,
    row: sqlite3.Row | None,
    now: float,
    job_id: str | None = None,
) -> None:
    """Merge ``req`` into its ticket's active job ``row`` (or, with ``row`` ``None``, into
    ``job_id`` created earlier in the same transaction); writes only what changes (the hot
    path under a burst of webhooks for one ticket writes nothing here)."""
    job_id = row["job_id"] if row is not None else job_id
    if row is None or row["state"] == JobState.PENDING:
        if req.force and (row is None or not row["force"]):
            conn.execute("UPDATE jobs SET force=1, updated_at=? WHERE job_id=?", (now, job_id))
    elif not row["follow_up"] or (req.force and not row["follow_up_force"]):
        conn.execute(
            "UPDATE jobs SET follow_up=1, follow_up_force = follow_up_force OR ?, updated_at=? "
            "WHERE job_id=?",
            (int(req.force), now, job_id),
        )
