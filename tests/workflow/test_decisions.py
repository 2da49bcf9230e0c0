"""Pure decisions of the workflow: gate, tag transitions, classification, notes."""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.errors import RenderError, SigningError, StorageError, ZammadApiError
from app.workflow.classify import MAX_CAUSE_CHARS, Classification, classify
from app.workflow.gate import should_process
from app.workflow.notes import failure_note, success_note
from app.workflow.ports import RenderedPdf, SignedPdf, StoredArchive
from app.workflow.tags import (
    TagTransition,
    failure_transition,
    revert_transition,
    start_transition,
    success_transition,
)

TRIGGER = "pdf:sign"


@pytest.mark.parametrize(
    ("tags", "require", "force", "process", "reason"),
    [
        (["pdf:sign"], True, False, True, "trigger_tag_present"),
        (["x"], True, False, False, "trigger_tag_absent"),
        (["x"], False, False, True, "tag_not_required"),
        (["pdf:sign", "pdf:signed"], True, False, False, "already_signed"),
        (["pdf:signed"], False, False, False, "already_signed"),
        (["pdf:signed"], True, True, True, "forced"),
        (["pdf:processing", "pdf:sign"], True, False, True, "trigger_tag_present"),
    ],
)
def test_gate(tags, require, force, process, reason):
    decision = should_process(tags, trigger_tag=TRIGGER, require_tag=require, force=force)
    assert (decision.process, decision.reason) == (process, reason)


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


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ZammadApiError("boom", status=500), Classification.TRANSIENT),
        (ZammadApiError("boom", status=503), Classification.TRANSIENT),
        (ZammadApiError("slow", status=None), Classification.TRANSIENT),
        (ZammadApiError("rate", status=429), Classification.TRANSIENT),
        (ZammadApiError("auth", status=401), Classification.PERMANENT),
        (ZammadApiError("forbidden", status=403), Classification.PERMANENT),
        (ZammadApiError("gone", status=404), Classification.PERMANENT),
        (ZammadApiError("invalid", status=422), Classification.PERMANENT),
        (StorageError("full", errno=errno.ENOSPC), Classification.TRANSIENT),
        (StorageError("io", errno=errno.EIO), Classification.TRANSIENT),
        (StorageError("ro", errno=errno.EROFS), Classification.PERMANENT),
        (StorageError("denied", errno=errno.EACCES), Classification.PERMANENT),
        (SigningError("tsa down", transient=True), Classification.TRANSIENT),
        (SigningError("bad password", transient=False), Classification.PERMANENT),
        (RenderError("pool died", transient=True), Classification.TRANSIENT),
        (TimeoutError(), Classification.TRANSIENT),
        (KeyError("bug"), Classification.PERMANENT),
    ],
)
def test_classification(exc, expected):
    assert classify(exc).classification is expected


def test_cause_is_bounded_and_one_line():
    failure = classify(ZammadApiError("line one\nline two " + "x" * 2000, status=500))
    assert "\n" not in failure.cause
    assert len(failure.cause) == MAX_CAUSE_CHARS
    assert failure.cause.startswith("line one line two")


def test_success_note_names_path_checksum_signer_and_escapes_html():
    stored = StoredArchive(Path("/srv/a/<b>.pdf"), "a/<b>.pdf", "ab" * 32, 1234)
    signed = SignedPdf(b"", True, "B-B", "CN=Archiver", "cd" * 32)
    rendered = RenderedPdf(b"", 3, 4, 4)
    note = success_note(stored, signed, rendered, job_id="job1", delivery_id="d1")
    assert note.subject == "PDF archived"
    assert note.body_html.startswith("<p><b>PDF archived</b></p>")
    assert "a/&lt;b&gt;.pdf" in note.body_html and "<b>.pdf" not in note.body_html
    assert "ab" * 32 in note.body_html and "CN=Archiver" in note.body_html and "job1" in note.body_html


def test_unsigned_success_note_says_so():
    note = success_note(
        StoredArchive(Path("/x"), "x", "0" * 64, 1),
        SignedPdf(b"", False),
        RenderedPdf(b"", 1, 1, 1),
        job_id="j",
        delivery_id=None,
    )
    assert "not signed" in note.body_html


def test_failure_note_gives_classification_and_cause():
    failure = classify(ZammadApiError("GET /api/v1/tickets/4711 answered 500", status=500))
    note = failure_note(failure, job_id="j1", delivery_id=None, step="fetch ticket")
    assert note.subject == "PDF archiver error"
    assert (
        "Transient" in note.body_html
        and "answered 500" in note.body_html
        and "fetch ticket" in note.body_html
    )
    permanent = failure_note(
        classify(ZammadApiError("gone", status=404)), job_id="j", delivery_id=None, step="s"
    )
    assert "Permanent" in permanent.body_html


def test_datetime_in_signed_note():
    ts = datetime(2025, 3, 6, 13, 20, 11, tzinfo=UTC)
    note = success_note(
        StoredArchive(Path("/x"), "x", "0" * 64, 1),
        SignedPdf(b"", True, "B-T", "CN=A", None, ts),
        RenderedPdf(b"", 1, 1, 1),
        job_id="j",
        delivery_id=None,
    )
    assert "2025-03-06T13:20:11+00:00" in note.body_html and "B-T" in note.body_html
