"""The probe routes: ``GET /healthz`` (liveness; ``?deep=true`` readiness), ``GET /metrics``
(Prometheus) and ``GET /openapi.json`` (this service's OpenAPI document)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import SERVICE_NAME, __version__
from app.http.admin import bearer_token_ok
from app.http.names import AUTHORIZATION_HEADER, QUERY_FLAG_VALUES
from app.http.openapi import OPENAPI
from app.http.responses import JSONResponse, error_response
from app.runtime import Runtime

STORAGE_PROBE_TIMEOUT_SECONDS = 5
"""How long the readiness check waits for its test write under the storage root."""

FONT_CHECK_WAIT_SECONDS = 10
"""How long the readiness check waits for the start's font check (:mod:`app.render.coverage`)
when it has not finished yet (a render process starting under load)."""


async def font_coverage(runtime: Runtime) -> tuple[str, list[dict[str, str]]]:
    """The font check's verdict (always ``"ok…"``: missing fonts degrade, they do not make the
    service unready) and the ``degraded`` entries: ``{"script", "package", "font"}`` per
    script without a font."""
    task = runtime.font_check
    if task is None:
        return "ok (not checked)", []
    try:
        coverage = await asyncio.wait_for(asyncio.shield(task), FONT_CHECK_WAIT_SECONDS)
    except TimeoutError:
        return "ok (font check still running)", []
    except asyncio.CancelledError:
        if task.cancelled():  # the service is stopping
            return "ok (font check cancelled)", []
        raise
    except Exception as exc:  # noqa: BLE001 - a failed font check is reported, never a 500
        return f"ok (font check failed: {exc})", []
    if not coverage.missing:
        return "ok", []
    scripts = ", ".join(script for script, _ in coverage.missing)
    return f"ok (degraded: no font for {scripts})", coverage.describe()


async def readiness(runtime: Runtime) -> dict[str, str]:
    """The readiness checks by name: ``"ok…"`` or ``"fail: <why>"`` each (storage root
    writable, from a test write at most a second old shared by concurrent callers,
    :class:`app.storage.probe.StorageProbe`; signer loaded, queue not full, job store usable,
    not shutting down)."""
    checks: dict[str, str] = {}
    root = str(runtime.settings.storage_root)
    failure = await runtime.storage_probe.check(root, STORAGE_PROBE_TIMEOUT_SECONDS)
    checks["storage"] = "ok" if failure is None else f"fail: the storage root is not writable ({failure})"
    error = runtime.signer_error()
    if not runtime.settings.signing_enabled:
        checks["signer"] = "ok (signing disabled)"
    else:
        checks["signer"] = "ok" if error is None else f"fail: {error}"
    pool, store = runtime.pool, runtime.store
    if pool is None or store is None:
        checks["lifecycle"] = "fail: not started"
        return checks
    checks["queue"] = "fail: the job queue is full" if pool.saturated else "ok"
    unavailable = store.unavailable
    checks["job_store"] = "ok" if unavailable is None else f"fail: {unavailable}"
    if pool.shutting_down:
        checks["lifecycle"] = "fail: shutting down"
    return checks


async def healthz(runtime: Runtime, request: Request) -> Response:
    """``GET /healthz``: liveness ``{"status": "ok", "service", "version"}``.

    ``?deep=true`` (readiness) also checks that the storage root is writable, the signer is
    loaded and the queue is not saturated; it answers 503 ``not_ready`` naming the failing
    checks. Scripts the fonts do not cover keep it 200: ``checks.fonts`` says so and
    ``degraded`` lists them, ``{"script", "package", "font"}`` each (the Debian package to
    install and the font file it brings). ``HEALTHZ_OMIT_VERSION=true`` leaves out ``service``
    and ``version``. Another ``deep`` value than true/false/1/0/yes/no is 422 ``invalid_query``,
    as ``?force=`` of ``/retry``.
    """
    deep = QUERY_FLAG_VALUES.get(request.query_params.get("deep", "").lower())
    if deep is None:
        return error_response(422, "invalid_query", "deep must be true or false")
    body: dict[str, Any] = {"status": "ok"}
    if not runtime.settings.healthz_omit_version:
        body.update(service=SERVICE_NAME, version=__version__)
    if deep:
        checks = await readiness(runtime)
        checks["fonts"], degraded = await font_coverage(runtime)
        failing = [name for name, verdict in checks.items() if not verdict.startswith("ok")]
        body["checks"] = checks
        if degraded:
            body["degraded"] = degraded
        if failing:
            return JSONResponse(
                {
                    "error": "not_ready",
                    "detail": "failing checks: " + ", ".join(failing),
                    **body,
                    "status": "fail",
                },
                status_code=503,
            )
    return JSONResponse(body)


async def metrics(runtime: Runtime, request: Request) -> Response:
    """``GET /metrics``: Prometheus text format, only with ``OBSERVABILITY_METRICS_ENABLED=true``
    (404 otherwise); with ``METRICS_BEARER_TOKEN`` set, 401 without ``Authorization: Bearer …``."""
    settings = runtime.settings
    if not settings.observability_metrics_enabled:
        return error_response(404, "not_found", "metrics are disabled (OBSERVABILITY_METRICS_ENABLED=false)")
    token = settings.metrics_bearer_token
    if token and not bearer_token_ok(request.headers.get(AUTHORIZATION_HEADER, ""), token):
        return error_response(
            401,
            "unauthorized",
            "send Authorization: Bearer <METRICS_BEARER_TOKEN>",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    payload, content_type = runtime.metrics.exposition()
    return Response(payload, media_type=content_type)


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI 3.1 description of this service (``docs/openapi.yaml``)."""
    return JSONResponse(OPENAPI)
