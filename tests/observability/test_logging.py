"""The JSON log lines and the access log's fast path: timestamps, and each line out on the
stream when written, whether or not the stream is line-buffered."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from app.observability.logging import ACCESS_LOG, _timestamp, configure_logging

pytestmark = pytest.mark.usefixtures("logging_restored")  # tests/conftest.py


def test_timestamps_are_utc_with_milliseconds() -> None:
    second = datetime(2026, 12, 7, 10, 47, 58, tzinfo=UTC).timestamp()
    assert _timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert _timestamp(second + 0.0999) == "2026-12-07T10:47:58.099Z"
    assert _timestamp(second + 0.9999) == "2026-12-07T10:47:58.999Z"  # cut, never rounded up
    assert _timestamp(second + 1.5) == "2026-12-07T10:47:59.500Z"
    assert _timestamp(second + 0.0075) == "2026-12-07T10:47:58.007Z"


@pytest.mark.parametrize(("line_buffering", "write_through"), [(False, False), (True, False), (False, True)])
def test_each_access_line_reaches_the_file_when_written(line_buffering: bool, write_through: bool) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(
        io.BufferedWriter(raw, 1 << 16),
        encoding="utf-8",
        line_buffering=line_buffering,
        write_through=write_through,
    )
    configure_logging("INFO", stream=stream)
    ACCESS_LOG.write_request("r-1", "POST", "/ingest", 202, 1.5, 4711, "d-1")
    line = orjson.loads(raw.getvalue())  # out of both buffers already
    assert (line["request_id"], line["status"], line["duration_ms"]) == ("r-1", 202, 1.5)
    logging.getLogger("app.test").warning("after")  # the handler's own lines keep their order
    ACCESS_LOG.write_request("r-2", "GET", "/healthz", None, 0.25)
    lines = [orjson.loads(text) for text in raw.getvalue().splitlines()]
    assert [entry["msg"] for entry in lines] == ["request", "after", "request"]
    assert lines[2]["status"] is None and "ticket_id" not in lines[2]


def test_a_new_stream_on_the_handler_is_flushed_too() -> None:
    configure_logging("INFO", stream=io.TextIOWrapper(io.BytesIO(), line_buffering=True))
    raw = io.BytesIO()
    handler = ACCESS_LOG._handler
    assert handler is not None
    handler.setStream(io.TextIOWrapper(io.BufferedWriter(raw, 1 << 16), encoding="utf-8"))
    ACCESS_LOG.write_request("r-3", "POST", "/ingest", 202, 2.0)
    assert orjson.loads(raw.getvalue())["request_id"] == "r-3"


def test_lines_to_an_unbuffered_file_as_stderr_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with io.TextIOWrapper(io.FileIO(path, "w"), encoding="utf-8", write_through=True) as stream:
        configure_logging("INFO", stream=stream)
        ACCESS_LOG.write_request("r-4", "POST", "/ingest", 202, 2.0)
        assert orjson.loads(path.read_bytes())["request_id"] == "r-4"


def test_a_validation_failure_pyhanko_logs_as_a_warning_is_one_line_without_its_traceback() -> None:
    from pyhanko_certvalidator.errors import PathBuildingError

    stream = io.StringIO()
    configure_logging("INFO", stream=stream)

    def logged(logger: str, exc: Exception, level: int = logging.WARNING) -> dict[str, str]:
        try:
            raise exc
        except Exception:
            logging.getLogger(logger).log(level, "Failed to build path for Test TSA", exc_info=True)
        return orjson.loads(stream.getvalue().splitlines()[-1])

    no_path = PathBuildingError("no issuer matching Test Root CA was found")
    line = logged("pyhanko.sign.validation.generic_cms", no_path)
    assert (
        "exc" not in line and line["error"] == "PathBuildingError: no issuer matching Test Root CA was found"
    )
    assert line["msg"] == "Failed to build path for Test TSA"
    # A defect inside the library, its ERROR, and our own lines keep their traceback.
    assert "Traceback" in logged("pyhanko.sign.validation.generic_cms", KeyError("bug"))["exc"]
    assert "Traceback" in logged("pyhanko_certvalidator", no_path, logging.ERROR)["exc"]
    assert "Traceback" in logged("app.signing.lta_cli", no_path)["exc"]
