"""The job store's vocabulary and records (:mod:`app.jobs.records`): the enums name exactly the
strings stored and answered before them, and a record reads the same from either database."""

from __future__ import annotations

import json
from typing import Any

import orjson

from app.http.openapi import OPENAPI
from app.jobs.records import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Admission,
    AdmissionStatus,
    JobRecord,
    JobState,
    OutcomeStatus,
    admission_status,
)

ROW: dict[str, Any] = {
    "job_id": "0" * 32,
    "ticket_id": 4711,
    "state": "done",
    "reason": "webhook",
    "force": 0,
    "delivery_id": "d1",
    "attempts": 2,
    "next_attempt_at": None,
    "archived_at": "2026-12-07T10:00:00+00:00",
    "last_error": None,
    "last_step": None,
    "classification": None,
    "output_path": "2026/12/4711.pdf",
    "sha256": "ab" * 32,
    "result": "archived",
    "follow_up": 0,
    "follow_up_force": 0,
    "report": '{"add":["pdf:signed"],"remove":[],"subject":"s","body_html":"b"}',
    "reported": 0,
    "report_error": None,
    "created_at": 1.0,
    "updated_at": 2.0,
    "started_at": 1.5,
    "finished_at": 2.0,
}


def test_the_values_are_todays_words() -> None:
    assert [s.value for s in JobState] == ["pending", "running", "done", "failed", "dead"]
    assert [s.value for s in OutcomeStatus] == ["archived", "skipped", "failed"]
    assert [s.value for s in AdmissionStatus] == ["accepted", "coalesced", "duplicate", "full"]
    assert ACTIVE_STATES == ("pending", "running") and TERMINAL_STATES == ("done", "failed", "dead")
    assert all(str(s) == s.value and f"{s}" == s.value for s in JobState)  # in logs and f-strings


def test_a_record_from_a_row_and_its_json_for_jobs() -> None:
    record = JobRecord.from_row(ROW)
    assert record.state is JobState.DONE and record.force is False and record.reported is False
    assert record.report == {"add": ["pdf:signed"], "remove": [], "subject": "s", "body_html": "b"}
    described = record.describe()
    # Starlette's JSONResponse (json) and orjson both write the state as the plain word.
    assert json.dumps(described["state"]) == '"done"' == orjson.dumps(described["state"]).decode()
    assert "follow_up_force" not in described and "report" not in described


def test_the_api_description_lists_the_states() -> None:
    states = OPENAPI["components"]["schemas"]["JobStatus"]["properties"]["state"]["enum"]
    assert states == ["none", *JobState]


def test_admissions() -> None:
    assert admission_status("coalesced") is AdmissionStatus.COALESCED
    assert Admission(AdmissionStatus.DUPLICATE, "j").accepted
    assert not Admission(AdmissionStatus.FULL, None).accepted
