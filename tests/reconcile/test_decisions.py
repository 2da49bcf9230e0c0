"""Which tickets the reconciliation sweep queues: pure decisions over small fakes (milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.reconcile.decisions import (
    OWN_WRITES_SECONDS,
    Finding,
    ReconcileReason,
    TicketHit,
    decide,
    parse_zammad_time,
)

NOW = 1_800_000_000.0
STALE = 900.0
TAG = ReconcileReason.TRIGGER_TAG
STALE_PROCESSING = ReconcileReason.STALE_PROCESSING


@dataclass(frozen=True)
class Job:
    """A ticket's latest job as the store has it (the fields the decisions read)."""

    state: str
    reported: bool = True
    finished_at: float | None = None
    result: str | None = None
    updated_at: float = NOW - 3600  # for an ended, reported job: when its report was delivered


def run(tagged=(), processing=(), latest=None):
    return decide(
        [t if isinstance(t, TicketHit) else TicketHit(t) for t in tagged],
        [TicketHit(t, u) for t, u in processing],
        latest or {},
        now=NOW,
        stale_seconds=STALE,
    )


def test_a_tagged_ticket_without_a_job_is_queued():
    decision = run(tagged=[7, 3])
    assert decision.queue == [Finding(3, TAG), Finding(7, TAG)]
    assert decision.skipped == []


@pytest.mark.parametrize(
    ("job", "why"),
    [
        (Job("pending"), "job pending"),
        (Job("running"), "job running"),
        (Job("done", reported=False, finished_at=NOW - 5), "job done, its report not yet delivered"),
        (Job("failed", reported=False, finished_at=NOW - 5), "job failed, its report not yet delivered"),
    ],
)
def test_a_tagged_ticket_whose_job_is_active_or_reporting_is_skipped(job, why):
    decision = run(tagged=[4711], latest={4711: job})
    assert decision.queue == []
    [skip] = decision.skipped
    assert (skip.ticket_id, skip.reason, skip.why) == (4711, TAG, why)


@pytest.mark.parametrize("state", ["done", "failed"])
def test_a_tagged_ticket_whose_last_job_ended_and_reported_is_queued(state):
    # The tag came back after the job ended: someone asked again (a finished job removes it),
    # which changed the ticket after the job's report.
    job = Job(state, finished_at=NOW - 300, updated_at=NOW - 300)
    decision = run(tagged=[TicketHit(4711, NOW - 1)], latest={4711: job})
    assert decision.queue == [Finding(4711, TAG)]


def test_a_job_that_gave_up_is_retried_only_after_the_stale_time():
    # A dead job puts the trigger tag back: without a pause every sweep would start it again.
    recent = run(tagged=[4711], latest={4711: Job("dead", finished_at=NOW - STALE + 10)})
    assert recent.queue == []
    assert "gave up 890 s ago" in recent.skipped[0].why
    later = run(tagged=[4711], latest={4711: Job("dead", finished_at=NOW - STALE - 1)})
    assert later.queue == [Finding(4711, TAG)]


def test_a_signed_ticket_with_the_trigger_tag_is_not_queued_again_until_it_changes():
    # pdf:signed added by hand next to pdf:sign: the gate skips without a write, the tag stays.
    skipped = Job("done", finished_at=NOW - 60, result="skipped: already_signed")
    unchanged = run(tagged=[TicketHit(4711, NOW - 3600)], latest={4711: skipped})
    assert unchanged.queue == []
    assert unchanged.skipped[0].why.startswith("already signed")
    # Changed since (pdf:signed removed to archive again, a reply): the gate decides again.
    changed = run(tagged=[TicketHit(4711, NOW - 30)], latest={4711: skipped})
    assert changed.queue == [Finding(4711, TAG)]
    # Without updated_at, or after another end, as before.
    assert run(tagged=[TicketHit(4711)], latest={4711: skipped}).queue == [Finding(4711, TAG)]
    other = Job("done", finished_at=NOW - 60, result="skipped: trigger_tag_absent")
    assert run(tagged=[TicketHit(4711, NOW - 3600)], latest={4711: other}).queue == [Finding(4711, TAG)]


def test_a_failed_ticket_with_the_trigger_tag_is_not_queued_again_until_it_changes():
    # Failed (Permanent) before its run changed a tag: pdf:sign stays next to pdf:error and the
    # note, whose writes touched updated_at just before the delivery was recorded.
    failed = Job("failed", finished_at=NOW - 600, updated_at=NOW - 599)
    for touched in (NOW - 600, NOW - 599 + OWN_WRITES_SECONDS):  # the report's own writes
        unchanged = run(tagged=[TicketHit(4711, touched)], latest={4711: failed})
        assert unchanged.queue == []
        [skip] = unchanged.skipped
        assert (skip.ticket_id, skip.reason) == (4711, TAG)
        assert skip.why == (
            "failed: unchanged in Zammad since its last job's failure note (fix the cause, then change "
            "the ticket, e.g. remove pdf:error; /retry runs it now)"
        )
    # Changed later (pdf:error removed once the cause is fixed, the trigger tag added back): asked again.
    changed = run(tagged=[TicketHit(4711, NOW - 599 + OWN_WRITES_SECONDS + 1)], latest={4711: failed})
    assert changed.queue == [Finding(4711, TAG)]


def test_a_failed_ticket_without_updated_at_waits_the_stale_time_from_its_report():
    # Zammad's search always gives updated_at; without it the ticket is neither lost nor queued on
    # every sweep: it waits as after a dead job, counted from the report's delivery.
    recent = run(tagged=[4711], latest={4711: Job("failed", finished_at=NOW - 900, updated_at=NOW - 890)})
    assert recent.queue == []
    assert recent.skipped[0].why == (
        "its last job failed, reported 890 s ago, and the search gave no updated_at "
        "(tried again after 900 s; /retry runs it now)"
    )
    later = run(tagged=[4711], latest={4711: Job("failed", finished_at=NOW - 910, updated_at=NOW - STALE)})
    assert later.queue == [Finding(4711, TAG)]


def test_a_processing_ticket_is_queued_only_once_stale_and_not_running():
    decision = run(
        processing=[(1, NOW - STALE - 1), (2, NOW - STALE + 1), (3, NOW - 2 * STALE), (4, None)],
        latest={3: Job("running")},
    )
    assert decision.queue == [Finding(1, STALE_PROCESSING)]
    assert {s.ticket_id: s.why for s in decision.skipped} == {
        2: "changed 899 s ago (stale after 900 s)",
        3: "job running",
        4: "no updated_at in the search result",
    }


@pytest.mark.parametrize(
    ("job", "queued"),
    [
        (Job("pending"), True),  # e.g. a retry waiting: the request coalesces into it
        (Job("running"), False),
        (Job("dead", reported=False, finished_at=NOW - 5), False),  # its report fixes the tags
        (Job("done", finished_at=NOW - 2 * STALE), True),  # a tag revert that never arrived
    ],
)
def test_a_stale_processing_ticket_and_its_latest_job(job, queued):
    decision = run(processing=[(9, NOW - 2 * STALE)], latest={9: job})
    assert (decision.queue == [Finding(9, STALE_PROCESSING)]) is queued


def test_a_ticket_found_by_both_searches_is_decided_once_as_tagged():
    decision = run(tagged=[5], processing=[(5, NOW - 2 * STALE)])
    assert decision.queue == [Finding(5, TAG)]
    busy = run(tagged=[5], processing=[(5, NOW - 2 * STALE)], latest={5: Job("pending")})
    assert busy.queue == [] and [s.reason for s in busy.skipped] == [TAG]


def test_repeated_hits_are_decided_once():
    decision = run(tagged=[5, 5], processing=[(6, NOW - 2 * STALE), (6, NOW - 2 * STALE)])
    assert decision.queue == [Finding(5, TAG), Finding(6, STALE_PROCESSING)]


@pytest.mark.parametrize(
    ("ticket", "hit"),
    [
        ({"id": 4711, "updated_at": "2025-05-13T08:37:16.844Z"}, TicketHit(4711, 1747125436.844)),
        ({"id": 4711}, TicketHit(4711, None)),
        ({"id": 4711, "updated_at": "yesterday"}, TicketHit(4711, None)),
        ({"id": "4711"}, None),
        ({"id": True}, None),
        ({"id": 0}, None),
        ({}, None),
    ],
)
def test_ticket_hits_from_search_results(ticket, hit):
    assert TicketHit.from_ticket(ticket) == hit


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2025-05-13T08:37:16.844Z", 1747125436.844),
        ("2025-05-13T10:37:16+02:00", 1747125436.0),
        ("2025-05-13T08:37:16", None),  # no time zone: not guessed
        (None, None),
        (12, None),
        ("", None),
    ],
)
def test_zammad_times(value, seconds):
    parsed = parse_zammad_time(value)
    assert parsed == pytest.approx(seconds) if seconds is not None else parsed is None
