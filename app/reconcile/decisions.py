"""Which tickets does the reconciliation sweep queue a job for? Pure decisions, no I/O.

A webhook is the only other way a ticket reaches the archiver, and it can be lost: Zammad gives
up after five attempts in about 100 seconds, a trigger does not fire on a tag-only change
(https://github.com/zammad/zammad/issues/2438), an operator adds the trigger tag in bulk. The
sweep (:mod:`app.reconcile.sweep`) searches Zammad for two kinds of ticket and asks this module
which of them need a job, given the latest job of each in our job store:

- **trigger tag** (``WORKFLOW_TRIGGER_TAG``, ``pdf:sign``): queued unless the ticket's latest
  job is pending or running, or finished with its report (tags, note) still on its way to
  Zammad. A job that gave up (``dead``) puts the trigger tag back on the ticket; such a ticket
  is queued again only once ``RECONCILE_STALE_SECONDS`` have passed since the job ended, so a
  ticket that keeps failing is retried at that pace instead of on every sweep. A ticket that
  carries ``pdf:signed`` as well (added by hand next to the trigger tag) is skipped by the gate
  without a write, so it keeps the trigger tag: once its latest job ended skipped as
  ``already_signed``, it is queued again only after Zammad changed the ticket (``updated_at``
  later than that job's end: e.g. ``pdf:signed`` removed, to archive it again), not on every
  sweep. ``/retry?force=true`` archives it again at once. A job that failed (Permanent) removes
  the trigger tag, except when it failed before its run changed any tag (e.g. Zammad answered
  403 to reading the tags): then the tag stays, next to ``pdf:error`` and the failure note.
  After a ``failed`` job whose report reached Zammad the ticket is queued again only once
  Zammad changed it more than :data:`OWN_WRITES_SECONDS` (60 s) after that delivery
  (``updated_at``; the report's own ``pdf:error`` and note touch it), so a ticket that fails
  the same way gets one note per change, not one per sweep: fixing the cause and then removing
  ``pdf:error``, adding the trigger tag back, or any other edit asks again;
  ``/retry/{ticket_id}`` runs it at once. Without ``updated_at`` in the search result it is
  queued once ``RECONCILE_STALE_SECONDS`` have passed since the delivery, as after a ``dead``
  job: never lost, never on every sweep.
- **stale** ``pdf:processing``: a run started and neither finished nor was retried — its
  replica died before the store learnt of it, or the tag revert at a shutdown did not reach
  Zammad. Queued when Zammad last changed the ticket (``updated_at``; every tag change touches
  it) more than ``RECONCILE_STALE_SECONDS`` ago and no job of the ticket is running or
  reporting here. A pending job is not in the way: the queued request coalesces into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from app.jobs.records import ACTIVE_STATES, TERMINAL_STATES
from app.workflow.gate import ALREADY_SIGNED

SKIPPED_AS_SIGNED = f"skipped: {ALREADY_SIGNED}"
"""``jobs.result`` of a job the gate skipped because the ticket carries ``pdf:signed``."""
OWN_WRITES_SECONDS = 60.0
"""Seconds after a failed job's report reached Zammad within which a change of the ticket
(``updated_at``) is taken for the report's own writes, not for a new request: its ``pdf:error``
and note touch the ticket just before the delivery is recorded, Zammad's clock may run a little
ahead of ours, and a trigger may react to the note."""


class ReconcileReason(StrEnum):
    """Why the sweep queues a ticket (the ``reason`` label of ``reconcile_tickets_total``)."""

    TRIGGER_TAG = "trigger_tag"
    STALE_PROCESSING = "stale_processing"


@dataclass(frozen=True, slots=True)
class TicketHit:
    """A ticket as the search found it.

    Attributes:
        ticket_id: Zammad's ticket id.
        updated_at: Zammad's ``updated_at`` as Unix seconds, ``None`` when missing or unreadable.
    """

    ticket_id: int
    updated_at: float | None = None

    @classmethod
    def from_ticket(cls, ticket: Mapping[str, Any]) -> TicketHit | None:
        """From an expanded ticket of the search (``id``, ``updated_at`` as ISO 8601 with ``Z``);
        ``None`` without a positive integer ``id``."""
        ticket_id = ticket.get("id")
        if isinstance(ticket_id, bool) or not isinstance(ticket_id, int) or ticket_id <= 0:
            return None
        return cls(ticket_id, parse_zammad_time(ticket.get("updated_at")))


class LatestJob(Protocol):
    """What the decisions read of a ticket's latest job (a :class:`~app.jobs.records.JobRecord`)."""

    @property
    def state(self) -> str: ...

    @property
    def reported(self) -> bool: ...

    @property
    def finished_at(self) -> float | None: ...

    @property
    def result(self) -> str | None: ...

    @property
    def updated_at(self) -> float:
        """Unix seconds of the job's last change in the store: for an ended job whose report was
        delivered (``reported``), when the delivery was recorded."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """A ticket the sweep queues a job for."""

    ticket_id: int
    reason: ReconcileReason


@dataclass(frozen=True, slots=True)
class Skip:
    """A ticket the search found that needs no job now.

    Attributes:
        ticket_id: the ticket.
        reason: the search that found it.
        why: words for the operator, e.g. ``"job running"``.
    """

    ticket_id: int
    reason: ReconcileReason
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What one sweep found: ``queue`` (a job each, by ticket id) and ``skipped``."""

    queue: list[Finding]
    skipped: list[Skip]


def decide(
    tagged: Iterable[TicketHit],
    processing: Iterable[TicketHit],
    latest: Mapping[int, LatestJob],
    *,
    now: float,
    stale_seconds: float,
) -> Decision:
    """Decide which tickets get a job (rules in the module docstring).

    Args:
        tagged: tickets the search found with the trigger tag.
        processing: tickets the search found with ``pdf:processing``.
        latest: each ticket's latest job in our store (an active one first); a ticket without
            a job is absent.
        now: Unix seconds.
        stale_seconds: ``RECONCILE_STALE_SECONDS``.

    Returns:
        The tickets to queue and the skipped ones, each sorted by ticket id; a ticket found by
        both searches is decided once, as a trigger-tag ticket.
    """
    queue: dict[int, Finding] = {}
    skipped: dict[int, Skip] = {}

    def place(hit: TicketHit, reason: ReconcileReason, why: str | None) -> None:
        if why:
            skipped[hit.ticket_id] = Skip(hit.ticket_id, reason, why)
        else:
            queue[hit.ticket_id] = Finding(hit.ticket_id, reason)

    for hit in tagged:
        if hit.ticket_id in queue or hit.ticket_id in skipped:
            continue
        job = latest.get(hit.ticket_id)
        place(
            hit,
            ReconcileReason.TRIGGER_TAG,
            _busy(job, pending_blocks=True)
            or _cooling_down(job, now, stale_seconds)
            or _still_signed(job, hit)
            or _failed_unchanged(job, hit, now, stale_seconds),
        )
    for hit in processing:
        if hit.ticket_id in queue or hit.ticket_id in skipped:
            continue
        if hit.updated_at is None:
            why: str | None = "no updated_at in the search result"
        elif now - hit.updated_at <= stale_seconds:
            why = f"changed {max(0.0, now - hit.updated_at):.0f} s ago (stale after {stale_seconds:g} s)"
        else:
            why = _busy(latest.get(hit.ticket_id), pending_blocks=False)
        place(hit, ReconcileReason.STALE_PROCESSING, why)
    return Decision(
        [queue[t] for t in sorted(queue)],
        [skipped[t] for t in sorted(skipped)],
    )


def _busy(job: LatestJob | None, *, pending_blocks: bool) -> str | None:
    """Why the ticket's latest job stands in the way of a new one, else ``None``."""
    if job is None:
        return None
    if job.state == "running" or (pending_blocks and job.state in ACTIVE_STATES):
        return f"job {job.state}"
    if job.state in TERMINAL_STATES and not job.reported:
        return f"job {job.state}, its report not yet delivered"
    return None


def _cooling_down(job: LatestJob | None, now: float, stale_seconds: float) -> str | None:
    """Why a ticket whose last job gave up waits, else ``None``."""
    if job is None or job.state != "dead" or job.finished_at is None:
        return None
    waited = now - job.finished_at
    if waited >= stale_seconds:
        return None
    return f"its last job gave up {max(0.0, waited):.0f} s ago (tried again after {stale_seconds:g} s)"


def _still_signed(job: LatestJob | None, hit: TicketHit) -> str | None:
    """Why a ticket whose last job was skipped as ``already_signed`` waits (Zammad has not
    changed it since: the gate would skip it again), else ``None``. Without ``updated_at``
    it is queued, as before."""
    if job is None or job.state != "done" or job.result != SKIPPED_AS_SIGNED or job.finished_at is None:
        return None
    if hit.updated_at is None or hit.updated_at > job.finished_at:
        return None
    return (
        "already signed: pdf:signed next to the trigger tag, unchanged since its last job skipped it "
        "(remove the trigger tag; /retry?force=true archives it again)"
    )


def _failed_unchanged(job: LatestJob | None, hit: TicketHit, now: float, stale_seconds: float) -> str | None:
    """Why a ticket whose last job failed (Permanent) waits, else ``None``: Zammad has not
    changed it since that job's report was delivered (more than :data:`OWN_WRITES_SECONDS`
    later), so a new job would fail the same way and post the same note. Without
    ``updated_at`` it waits ``stale_seconds`` from the delivery instead."""
    if job is None or job.state != "failed" or not job.reported:
        return None
    if hit.updated_at is None:
        waited = now - job.updated_at
        if waited >= stale_seconds:
            return None
        return (
            f"its last job failed, reported {max(0.0, waited):.0f} s ago, and the search gave no "
            f"updated_at (tried again after {stale_seconds:g} s; /retry runs it now)"
        )
    if hit.updated_at > job.updated_at + OWN_WRITES_SECONDS:
        return None
    return (
        "failed: unchanged in Zammad since its last job's failure note (fix the cause, then change "
        "the ticket, e.g. remove pdf:error; /retry runs it now)"
    )


def parse_zammad_time(value: object) -> float | None:
    """Unix seconds of a Zammad time (``"2025-05-13T08:37:16.844Z"``, ISO 8601 in UTC), or
    ``None`` for anything else (missing, not a string, unreadable, no time zone)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
