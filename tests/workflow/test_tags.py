"""The tag protocol: transitions and their order."""

from __future__ import annotations

from app.workflow.tags import (
    TagTransition,
    failure_transition,
    revert_transition,
    start_transition,
    success_transition,
)

TRIGGER = "pdf:sign"


def test_tag_protocol_end_states():
    tags = ["rechnung", "pdf:sign", "pdf:error"]
    processing = start_transition(TRIGGER).apply(tags)
    assert processing == ["rechnung", "pdf:processing"]
    assert success_transition(TRIGGER).apply(processing) == ["rechnung", "pdf:signed"]
    assert failure_transition(TRIGGER, transient=True).apply(processing) == [
        "rechnung",
        "pdf:error",
        "pdf:sign",
    ]
    assert failure_transition(TRIGGER, transient=False).apply(processing) == ["rechnung", "pdf:error"]
    assert revert_transition(TRIGGER).apply(processing) == ["rechnung", "pdf:sign"]


def test_needed_leaves_out_calls_that_change_nothing():
    start = start_transition(TRIGGER)
    assert start.needed(["rechnung", "pdf:sign"]) == TagTransition(
        add=("pdf:processing",), remove=("pdf:sign",)
    )
    # A resumed run: pdf:processing is there already, a stale pdf:error goes.
    assert start.needed(["pdf:processing", "pdf:error"]) == TagTransition(add=(), remove=("pdf:error",))
    for tags in (["rechnung", "pdf:sign", "pdf:error"], ["pdf:signed"], []):
        assert start.needed(tags).apply(tags) == start.apply(tags)


def test_transitions_add_before_remove_so_a_state_tag_always_exists():
    # Applying the adds first, then each removal one by one, never leaves the ticket without
    # one of pdf:processing/pdf:signed/pdf:error.
    for transition in (
        success_transition(TRIGGER),
        failure_transition(TRIGGER, transient=True),
        failure_transition(TRIGGER, transient=False),
    ):
        tags = ["pdf:processing"]
        for tag in transition.add:
            tags.append(tag)
        for tag in transition.remove:
            tags = [t for t in tags if t != tag]
            assert {"pdf:processing", "pdf:signed", "pdf:error"} & set(tags)
