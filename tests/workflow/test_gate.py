"""The should-process gate: which tickets a run archives."""

from __future__ import annotations

import pytest

from app.workflow.gate import should_process

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
