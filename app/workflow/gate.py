"""Should this ticket be archived now? The should-process gate."""

from __future__ import annotations

from dataclasses import dataclass

from app.workflow.tags import TAG_PROCESSING, TAG_SIGNED

ALREADY_SIGNED = "already_signed"
"""The gate's reason for a ticket that carries ``pdf:signed`` (a job ends as ``"skipped: already_signed"``;
the reconciliation sweep reads it, :mod:`app.reconcile.decisions`)."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer.

    Attributes:
        process: whether to run the archive.
        reason: a short machine-readable reason: ``"trigger_tag_present"``, ``"forced"``,
            ``"tag_not_required"``, ``"already_signed"``, ``"trigger_tag_absent"``, ``"resuming"``.
    """

    process: bool
    reason: str


def should_process(
    tags: list[str], *, trigger_tag: str, require_tag: bool, force: bool = False, resume: bool = False
) -> GateDecision:
    """Decide whether a ticket with ``tags`` is archived.

    Skips a ticket that already carries ``pdf:signed`` (unless ``force``) and, when
    ``require_tag`` is set, one without the trigger tag. ``pdf:processing`` does not block:
    the worker pool already runs one job per ticket at a time, so a ticket that still shows
    ``pdf:processing`` when a new run for it starts was left by an interrupted run, and the
    new run repairs it.

    ``resume`` marks a job that ran before (an automatic retry, or a run interrupted by a
    crash): its own start transition removed the trigger tag, so ``pdf:processing`` stands
    for the request.
    """
    if force:
        return GateDecision(True, "forced")
    if TAG_SIGNED in tags:
        return GateDecision(False, ALREADY_SIGNED)
    if trigger_tag in tags:
        return GateDecision(True, "trigger_tag_present")
    if resume and TAG_PROCESSING in tags:
        return GateDecision(True, "resuming")
    if require_tag:
        return GateDecision(False, "trigger_tag_absent")
    return GateDecision(True, "tag_not_required")
