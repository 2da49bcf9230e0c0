"""Every line logged while a worker runs a job or delivers its report names the job: also
the lines of code that knows no job, such as the Zammad client's ``zammad POST … -> 500``."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from app.observability.logging import JsonFormatter, job_log_context


class _Capture(logging.Handler):
    """Formats with :class:`JsonFormatter` into ``stream``; not a JSON handler itself, so the
    service's ``configure_logging`` (which replaces those) leaves it on the root logger."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__()
        self.stream, self.json = stream, JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.json.format(record) + "\n")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger's lines at INFO, as the service writes them (:class:`JsonFormatter`)."""
    stream = io.StringIO()
    handler = _Capture(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_zammad_error_during_the_run_and_during_the_report_names_the_job(
    archiver, simulator, json_lines: io.StringIO
) -> None:
    simulator.fail("POST", r"^/api/v1/tags/add$", 500, times=1, match_body="pdf:processing")
    simulator.fail("POST", r"^/api/v1/tags/add$", 500, times=1, match_body="pdf:signed")
    service = await archiver(WORKFLOW_RETRY_BASE_SECONDS="0.2")

    await service.ingest({"ticket_id": 4711}, delivery_id="log-context-1")
    deadline = time.monotonic() + 60
    while not (
        "pdf:signed" in simulator.tags(4711)
        and (job := await service.runtime.store.latest(4711)) is not None
        and job.reported
    ):
        assert time.monotonic() < deadline, simulator.tags(4711)
        await asyncio.sleep(0.05)

    refused = [e for e in parsed(json_lines) if e["msg"] == "zammad POST /api/v1/tags/add -> 500"]
    assert len(refused) == 2, parsed(json_lines)  # the run's first tag write, the report's
    assert all((e.get("job_id"), e.get("ticket_id")) == (job.job_id, 4711) for e in refused), refused


def test_a_field_the_line_names_itself_wins_over_the_context(json_lines: io.StringIO) -> None:
    log = logging.getLogger("app.test")
    with job_log_context(job_id="job-a", ticket_id=1):
        log.info("inside", extra={"ticket_id": 2})
    log.info("outside")

    inside, outside = parsed(json_lines)
    assert (inside["job_id"], inside["ticket_id"]) == ("job-a", 2)
    assert "job_id" not in outside and "ticket_id" not in outside
