"""One name per step: what a run records is what notes, the job store and the metric say."""

from __future__ import annotations

from pathlib import Path

from app.observability.metrics import Metrics
from app.workflow.steps import FETCH_STEPS, METRIC_STEPS, Step
from tests.workflow.fakes import TICKET, Rig


def step_counts(metrics: Metrics) -> dict[str, float]:
    text = metrics.exposition()[0].decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("zammad_pdf_archiver_step_duration_seconds_count{"):
            label, value = line.split('step="', 1)[1].split('"} ')
            counts[label] = float(value)
    return counts


async def test_every_timed_step_of_a_run_reaches_the_metric(tmp_path: Path):
    outcome = await Rig(tmp_path).workflow.execute(TICKET, job_id="j")
    metrics = Metrics()
    metrics.record_job(outcome.status, None, 0.1, outcome.step_seconds)
    assert step_counts(metrics) == {"fetch": 1.0, "render": 1.0, "sign": 1.0, "store": 1.0}
    # Every key a run records is a step's name, and each counts under one label.
    assert set(outcome.step_seconds or {}) <= set(Step)
    assert set(outcome.step_seconds or {}) - FETCH_STEPS == {Step.RENDER, Step.SIGN, Step.STORE}


def test_the_metric_labels_are_steps():
    assert [str(s) for s in METRIC_STEPS] == ["fetch", "render", "sign", "store"]
    assert set(step_counts(Metrics())) == {"fetch", "render", "sign", "store"}
