"""How the SQLite store turns requests into jobs, function by function, on a real (in-memory)
database: deduplication, coalescing into a pending or a running job, capacity."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from app.jobs.records import Admission, AdmissionStatus, JobRequest
from app.jobs.sqlite_admission import admit_many, admit_one
from app.jobs.sqlite_schema import connect

NOW = 1000.0


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    conn = connect(None)
    yield conn
    conn.close()


def one(conn: sqlite3.Connection, req: JobRequest, *, pending: int = 0, max_pending: int = 10) -> Admission:
    return admit_one(conn, req, NOW, pending=pending, max_pending=max_pending, ttl=60)


def row(conn: sqlite3.Connection, job_id: str | None) -> dict[str, object]:
    found = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    assert found is not None
    return dict(found)


def test_a_new_ticket_gets_a_pending_job_and_its_delivery_id_is_remembered(conn: sqlite3.Connection) -> None:
    admission = one(conn, JobRequest(1, delivery_id="d1", reason="retry", force=True))
    assert (admission.status, admission.new) == (AdmissionStatus.ACCEPTED, True)
    job = row(conn, admission.job_id)
    assert (job["state"], job["reason"], job["force"], job["delivery_id"]) == ("pending", "retry", 1, "d1")
    assert [tuple(r) for r in conn.execute("SELECT job_id, expires_at FROM deliveries")] == [
        (admission.job_id, NOW + 60)
    ]
    again = one(conn, JobRequest(2, delivery_id="d1"))  # the same delivery id, whatever the ticket
    assert again == Admission(AdmissionStatus.DUPLICATE, admission.job_id)


def test_an_expired_delivery_id_is_taken_over(conn: sqlite3.Connection) -> None:
    first = one(conn, JobRequest(1, delivery_id="d1"))
    conn.execute("UPDATE deliveries SET expires_at = ?", (NOW,))  # its TTL ran out
    second = one(conn, JobRequest(2, delivery_id="d1"))
    assert second.status == AdmissionStatus.ACCEPTED and second.job_id != first.job_id
    assert [tuple(r) for r in conn.execute("SELECT job_id FROM deliveries")] == [(second.job_id,)]


def test_a_request_merges_into_the_pending_job_and_keeps_force(conn: sqlite3.Connection) -> None:
    first = one(conn, JobRequest(1))
    merged = one(conn, JobRequest(1, force=True))
    assert merged == Admission(AdmissionStatus.COALESCED, first.job_id)
    assert row(conn, first.job_id)["force"] == 1
    one(conn, JobRequest(1))  # a later request without force does not take it back
    assert row(conn, first.job_id)["force"] == 1
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1


def test_a_request_for_a_running_job_asks_for_one_follow_up(conn: sqlite3.Connection) -> None:
    first = one(conn, JobRequest(1))
    conn.execute("UPDATE jobs SET state = 'running'")
    assert one(conn, JobRequest(1)).status == AdmissionStatus.COALESCED
    job = row(conn, first.job_id)
    assert (job["follow_up"], job["follow_up_force"], job["force"]) == (1, 0, 0)
    one(conn, JobRequest(1, force=True))
    assert row(conn, first.job_id)["follow_up_force"] == 1


def test_a_new_job_beyond_the_limit_is_refused_and_nothing_is_recorded(conn: sqlite3.Connection) -> None:
    pending = one(conn, JobRequest(1))
    full = one(conn, JobRequest(2, delivery_id="d2"), pending=1, max_pending=1)
    assert full == Admission(AdmissionStatus.FULL, None)
    assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    # A request for a ticket with a job needs no new one: coalesced even at the limit.
    assert one(conn, JobRequest(1), pending=1, max_pending=1).job_id == pending.job_id


def test_a_batch_is_all_or_nothing_on_capacity(conn: sqlite3.Connection) -> None:
    known = one(conn, JobRequest(1, delivery_id="d1"))
    batch = [JobRequest(1, delivery_id="d1"), JobRequest(2), JobRequest(3), JobRequest(3)]
    refused = admit_many(conn, batch, NOW, pending=1, max_pending=2, ttl=60)
    assert [a.status for a in refused] == ["duplicate", "full", "full", "full"]
    assert refused[0].job_id == known.job_id
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    admitted = admit_many(
        conn, [*batch, JobRequest(2, delivery_id="d9")], NOW, pending=1, max_pending=3, ttl=60
    )
    assert [a.status for a in admitted] == ["duplicate", "accepted", "accepted", "coalesced", "coalesced"]
    assert [a.new for a in admitted] == [False, True, True, False, False]
    assert admitted[2].job_id == admitted[3].job_id and admitted[1].job_id == admitted[4].job_id
    assert (
        conn.execute("SELECT job_id FROM deliveries WHERE delivery_id = 'd9'").fetchone()[0]
        == admitted[1].job_id
    )


def test_a_batch_merges_force_and_follow_ups_as_single_requests_do(conn: sqlite3.Connection) -> None:
    pending = one(conn, JobRequest(1))
    running = one(conn, JobRequest(2))
    conn.execute("UPDATE jobs SET state = 'running' WHERE job_id = ?", (running.job_id,))
    batch = [
        JobRequest(1, force=True),  # into the pending job: force
        JobRequest(2),  # into the running job: a follow-up
        JobRequest(2, force=True),  # … a forced one
        JobRequest(3),  # a new job
        JobRequest(3, force=True),  # into the job the batch just created: force
    ]
    admitted = admit_many(conn, batch, NOW, pending=1, max_pending=10, ttl=60)
    assert [a.status for a in admitted] == ["coalesced", "coalesced", "coalesced", "accepted", "coalesced"]
    assert row(conn, pending.job_id)["force"] == 1
    job = row(conn, running.job_id)
    assert (job["follow_up"], job["follow_up_force"], job["force"]) == (1, 1, 0)
    assert admitted[4].job_id == admitted[3].job_id and row(conn, admitted[3].job_id)["force"] == 1
    # Nothing left to write: a repeat of the batch changes no row.
    changes = conn.total_changes
    admit_many(conn, batch[:3], NOW, pending=2, max_pending=10, ttl=60)
    assert conn.total_changes == changes


def test_an_operators_retry_restarts_a_pending_job_that_ran_before(conn: sqlite3.Connection) -> None:
    """A retry merged into a pending job that waits for its next attempt makes it due now
    (``due_now``: the pool runs it), into one that ran before (recovered after a crash) counts
    its attempts afresh; a webhook, the sweep or a batch's webhook into a waiting job leave it
    waiting; a second retry finds nothing left to write."""
    waiting = one(conn, JobRequest(1))
    ran = one(conn, JobRequest(2))
    conn.execute("UPDATE jobs SET attempts = 2, next_attempt_at = ? WHERE ticket_id = 1", (NOW + 600,))
    conn.execute("UPDATE jobs SET attempts = 1 WHERE ticket_id = 2")
    changes = conn.total_changes
    for reason in ("webhook", "reconcile"):
        assert one(conn, JobRequest(1, reason=reason)) == Admission(AdmissionStatus.COALESCED, waiting.job_id)
    admitted = admit_many(conn, [JobRequest(1), JobRequest(2)], NOW, pending=2, max_pending=10, ttl=60)
    assert [(a.status, a.due_now) for a in admitted] == [("coalesced", False)] * 2
    assert conn.total_changes == changes
    retried = one(conn, JobRequest(1, reason="retry"))
    assert retried == Admission(AdmissionStatus.COALESCED, waiting.job_id, due_now=True)
    assert (row(conn, waiting.job_id)["next_attempt_at"], row(conn, waiting.job_id)["attempts"]) == (None, 0)
    [batched] = admit_many(conn, [JobRequest(2, reason="retry")], NOW, pending=2, max_pending=10, ttl=60)
    assert batched == Admission(AdmissionStatus.COALESCED, ran.job_id, due_now=False)
    assert row(conn, ran.job_id)["attempts"] == 0
    changes = conn.total_changes
    assert one(conn, JobRequest(1, reason="retry")).due_now is False
    assert conn.total_changes == changes
