"""``GET /healthz``'s query: ``deep`` takes the spellings ``?force=`` of ``/retry`` takes, and
any other value is 422 ``invalid_query`` (as for ``force``), not a silent liveness answer.

The route is called directly with a runtime that was never started (no server): a deep
check then reports ``lifecycle: fail: not started``, which is enough to tell deep from shallow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request

from app.config import load_settings
from app.http.health import healthz
from app.runtime import Runtime


def runtime(tmp_path: Path) -> Runtime:
    return Runtime(
        settings=load_settings(
            {
                "ZAMMAD_BASE_URL": "https://zammad.example",
                "ZAMMAD_API_TOKEN": "unit-token",
                "STORAGE_ROOT": str(tmp_path),
                "SIGNING_ENABLED": "false",
            }
        )
    )


async def get_healthz(tmp_path: Path, query: str) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "query_string": query.encode(),
        "headers": [],
    }
    response = await healthz(runtime(tmp_path), Request(scope))
    return response.status_code, orjson.loads(response.body)


@pytest.mark.parametrize("query", ["deep=maybe", "deep=2", "deep=on", "deep=truee"])
async def test_an_invalid_deep_value_is_422_invalid_query(tmp_path: Path, query: str) -> None:
    status, body = await get_healthz(tmp_path, query)
    assert status == 422 and body["error"] == "invalid_query" and "deep" in body["detail"], body


@pytest.mark.parametrize("query", ["", "deep=", "deep=false", "deep=0", "deep=no", "deep=FALSE"])
async def test_no_or_a_false_deep_is_liveness(tmp_path: Path, query: str) -> None:
    status, body = await get_healthz(tmp_path, query)
    assert status == 200 and body["status"] == "ok" and "checks" not in body, body


@pytest.mark.parametrize("query", ["deep=true", "deep=1", "deep=yes", "deep=True"])
async def test_a_true_deep_is_readiness(tmp_path: Path, query: str) -> None:
    status, body = await get_healthz(tmp_path, query)
    assert status == 503 and body["checks"]["lifecycle"] == "fail: not started", body
