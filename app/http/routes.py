"""The HTTP routes.

``POST /ingest`` and ``POST /ingest/batch`` (Zammad webhooks, signature checked by the HMAC
middleware), ``POST /retry/{ticket_id}`` and ``GET /jobs/{ticket_id}`` (bearer token or
HMAC signature), ``GET /healthz`` (liveness; ``?deep=true`` for readiness), ``GET /metrics``
(Prometheus, when enabled) and ``GET /openapi.json``. Routes are raw Starlette endpoints;
they read the service's runtime from ``request.app.state.runtime`` (:class:`app.main.Runtime`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app import SERVICE_NAME, __version__
from app.http.hmac_auth import RAW_BODY_KEY, ClientDisconnected, read_body
from app.http.openapi import OPENAPI
from app.http.request_log import TICKET_ID_KEY
from app.http.responses import JSONResponse, error_response, send_error, send_json
from app.http.webhook import InvalidPayload, extract_ticket_id, signature_ok
from app.jobs.pool import ShuttingDown
from app.jobs.records import Admission, AdmissionStatus, JobRequest, JobStoreUnavailable

log = logging.getLogger("app.http")

DELIVERY_HEADER = "x-zammad-delivery"
DELIVERY_HEADER_RAW = DELIVERY_HEADER.encode()
MAX_DELIVERY_ID_CHARS = 200


def _queue_full() -> Response:
    return error_response(503, "queue_full", "the job queue is full; retry later", {"Retry-After": "5"})


def _shutting_down() -> Response:
    return error_response(503, "shutting_down", "the service is shutting down", {"Retry-After": "10"})


def _job_store_unavailable(what: str) -> Response:
    return error_response(
        503, "job_store_unavailable", f"{what} (see the service log); retry later", {"Retry-After": "10"}
    )


async def _admit(runtime: Any, requests: list[JobRequest]) -> list[Admission] | Response:
    """Record requests durably; a 503 response when refused (queue full, shutting down, or the
    job store failing to commit or to sync: Zammad's retry is the right answer. Nothing was
    recorded, except when the WAL sync failed after the commit: then the job is on record and
    runs after a restart, and the retry is answered as a duplicate)."""
    if runtime.pool.shutting_down:
        return _shutting_down()
    try:
        admissions = await runtime.pool.submit_many(requests)
    except ShuttingDown:
        return _shutting_down()
    except Exception as exc:
        if isinstance(exc, JobStoreUnavailable):  # the store logged its reason once, with the cause
            log.warning("job store refused the job", extra={"reason": str(exc)})
        else:
            log.exception("job store refused the job")
        return _job_store_unavailable("the job could not be recorded")
    duplicates = 0
    for admission in admissions:  # a loop, not any()/sum() over generators: this runs per webhook
        status = admission.status
        if status == AdmissionStatus.FULL:
            return _queue_full()
        if status == AdmissionStatus.DUPLICATE:
            duplicates += 1
    if duplicates:
        runtime.metrics.dedupe_hits_total.inc(duplicates)
    return admissions


async def _json_body(request: Request) -> Any:
    body = request.scope.get(RAW_BODY_KEY)
    if body is None:
        body = await request.body()
    return orjson.loads(body)


def _clean_delivery_id(raw: str | None) -> str | None:
    """``X-Zammad-Delivery`` as recorded: stripped, at most :data:`MAX_DELIVERY_ID_CHARS`, or ``None``."""
    if raw is None:
        return None
    return raw.strip()[:MAX_DELIVERY_ID_CHARS] or None


def _delivery_id(request: Request) -> str | None:
    return _clean_delivery_id(request.headers.get(DELIVERY_HEADER))


class IngestEndpoint:
    """``POST /ingest``: accept one Zammad webhook.

    Answers 202 ``{"status": "accepted", "ticket_id": N}`` once the job is committed to the
    job store (a request for a ticket that already has a job is merged into it), or
    ``{"status": "duplicate", …}`` for a delivery id accepted within its TTL; 400 for a body
    that is not JSON; 422 for a payload without a valid ticket id; 503 when the queue is full
    or the service is shutting down. The delivery id is recorded in the same transaction as
    the job, so a refused request can be retried by Zammad.

    A pure-ASGI endpoint (Starlette routes to it like to any ASGI app): the webhook is the
    hot path, and Starlette's ``Request``/``Response`` wrapping cost as much as the rest of
    the route. The body comes from the HMAC middleware (``scope["app.raw_body"]``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = scope["app"].state.runtime
        body = scope.get(RAW_BODY_KEY)
        if body is None:
            try:
                body = await read_body(receive)
            except ClientDisconnected:
                return
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            await send_error(send, 400, "invalid_json", "the body is not valid JSON")
            return
        try:
            ticket_id = extract_ticket_id(payload)
        except InvalidPayload as exc:
            log.warning("webhook rejected", extra={"reason": str(exc)})
            await send_error(send, 422, "invalid_payload", str(exc))
            return
        scope[TICKET_ID_KEY] = ticket_id
        delivery_id = None
        for name, value in scope["headers"]:
            if name == DELIVERY_HEADER_RAW:
                delivery_id = _clean_delivery_id(value.decode("latin-1"))
                break
        admitted = await _admit(runtime, [JobRequest(ticket_id, delivery_id=delivery_id)])
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)
            return
        status = "duplicate" if admitted[0].status == AdmissionStatus.DUPLICATE else "accepted"
        await send_json(send, 202, {"status": status, "ticket_id": ticket_id})


ingest = IngestEndpoint()


async def ingest_batch(request: Request) -> Response:
    """``POST /ingest/batch``: a JSON array of webhook payloads, or ``{"payloads": [...]}``.

    Every element is validated as in ``/ingest`` before any job is recorded; a bad element
    refuses the whole batch with 422 naming its index. At most ``HARDENING_BATCH_MAX_ITEMS``
    elements (422 ``too_many_items`` beyond). The whole batch is recorded in one transaction
    (503 for all when it does not fit). Answers 202 ``{"status": "accepted", "count": N}``
    with one job per payload (jobs for the same ticket coalesce, see :mod:`app.jobs.store`).
    The batch's ``X-Zammad-Delivery`` id, if any, dedupes the batch as a whole.
    """
    runtime = request.app.state.runtime
    try:
        payload = await _json_body(request)
    except orjson.JSONDecodeError:
        return error_response(400, "invalid_json", "the body is not valid JSON")
    items = payload.get("payloads") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        return error_response(
            422, "invalid_payload", 'expected a JSON array of payloads or {"payloads": [...]}'
        )
    limit = runtime.settings.hardening_batch_max_items
    if len(items) > limit:
        return error_response(
            422, "too_many_items", f"a batch may hold at most {limit} payloads, got {len(items)}"
        )
    ticket_ids = []
    for index, item in enumerate(items):
        try:
            ticket_ids.append(extract_ticket_id(item))
        except InvalidPayload as exc:
            return error_response(422, "invalid_payload", f"payload at index {index}: {exc}")
    delivery_id = _delivery_id(request)
    admitted = await _admit(runtime, [JobRequest(t, delivery_id=delivery_id) for t in ticket_ids])
    if isinstance(admitted, Response):
        return admitted
    status = (
        "duplicate"
        if admitted and all(a.status == AdmissionStatus.DUPLICATE for a in admitted)
        else "accepted"
    )
    return JSONResponse({"status": status, "count": len(ticket_ids)}, status_code=202)


RETRY_SIGNATURE_MAX_AGE_SECONDS = 300


def _bearer_ok(request: Request) -> bool:
    """Whether ``Authorization: Bearer`` carries ``ADMIN_BEARER_TOKEN`` (constant-time)."""
    token = request.app.state.runtime.settings.admin_bearer_token
    auth = request.headers.get("authorization", "")
    return (
        bool(token)
        and auth.startswith("Bearer ")
        and hmac.compare_digest(auth[7:].strip().encode(), token.reveal().encode())
    )


def _authorized(request: Request, body: bytes) -> str | None:
    """``"bearer"`` or ``"hmac"`` (a signature over ``body``) for an authorised request, else
    ``None``. A bearer token that is sent but wrong is refused outright."""
    runtime = request.app.state.runtime
    if runtime.settings.admin_bearer_token and request.headers.get("authorization", "").startswith("Bearer "):
        return "bearer" if _bearer_ok(request) else None
    secret = runtime.settings.webhook_hmac_secret
    if secret and signature_ok(body, request.headers.get("x-hub-signature"), secret.reveal().encode()):
        return "hmac"
    return None


def _fresh_retry_body(body: bytes, ticket_id: int, *, force: bool) -> bool:
    """A signed retry must sign ``{"ticket_id": N, "requested_at": <unix seconds>}`` for this
    ticket, at most :data:`RETRY_SIGNATURE_MAX_AGE_SECONDS` old, and with ``"force": true``
    when it asks for ``?force=true``: a captured request can be replayed neither for another
    ticket, nor days later, nor turned into a forced re-archive."""
    try:
        data = orjson.loads(body)
        requested_at = float(data["requested_at"])
        same_ticket = int(data["ticket_id"]) == ticket_id
        signed_force = data.get("force") is True
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return False
    return (
        same_ticket
        and abs(time.time() - requested_at) <= RETRY_SIGNATURE_MAX_AGE_SECONDS
        and (signed_force or not force)
    )


FORCE_VALUES = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


def _ticket_id_param(request: Request) -> int | None:
    raw = request.path_params["ticket_id"]
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63 else None


_FORBIDDEN = (
    "forbidden",
    "send Authorization: Bearer <ADMIN_BEARER_TOKEN> or an X-Hub-Signature over the body",
)


async def retry(request: Request) -> Response:
    """``POST /retry/{ticket_id}``: queue one explicit retry, bypassing delivery-id dedupe.

    Needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>``, or an ``X-Hub-Signature`` made with
    the webhook secret over the body ``{"ticket_id": N, "requested_at": <unix seconds>}``
    (at most 5 minutes old; ``scripts/ops/retry.sh`` builds and signs it).
    ``?force=true`` re-archives a ticket that is already ``pdf:signed``; a signed body must
    then carry ``"force": true`` too. Another ``force`` value than true/false/1/0/yes/no is 422.
    """
    body = await request.body()
    method = _authorized(request, body)
    if method is None:
        return error_response(403, *_FORBIDDEN)
    ticket_id = _ticket_id_param(request)
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    force = FORCE_VALUES.get(request.query_params.get("force", "").lower())
    if force is None:
        return error_response(422, "invalid_query", "force must be true or false")
    if method == "hmac" and not _fresh_retry_body(body, ticket_id, force=force):
        return error_response(
            403,
            "forbidden",
            'a signed retry must sign {"ticket_id": N, "requested_at": '
            "<unix seconds>} for this ticket, at most 5 minutes old, "
            'with "force": true for ?force=true',
        )
    request.scope[TICKET_ID_KEY] = ticket_id
    admitted = await _admit(request.app.state.runtime, [JobRequest(ticket_id, reason="retry", force=force)])
    if isinstance(admitted, Response):
        return admitted
    return JSONResponse({"status": "accepted", "ticket_id": ticket_id}, status_code=202)


def _fresh_jobs_signature(request: Request, ticket_id: int) -> bool:
    """A signed ``GET /jobs/{id}`` signs its request target, ``/jobs/{id}?requested_at=<unix
    seconds>``, at most :data:`RETRY_SIGNATURE_MAX_AGE_SECONDS` old: a captured request
    neither reads another ticket nor works days later."""
    raw = request.query_params.get("requested_at", "")
    try:
        requested_at = int(raw)
    except ValueError:
        return False
    if abs(time.time() - requested_at) > RETRY_SIGNATURE_MAX_AGE_SECONDS:
        return False
    secret = request.app.state.runtime.settings.webhook_hmac_secret
    target = f"/jobs/{ticket_id}?requested_at={raw}".encode()
    return bool(secret) and signature_ok(
        target, request.headers.get("x-hub-signature"), secret.reveal().encode()
    )


async def job_status(request: Request) -> Response:
    """``GET /jobs/{ticket_id}``: the ticket's latest job from the job store — ``state``
    (pending, running, done, failed, dead, or none), ``attempts``, ``next_attempt_at``,
    ``last_error``, ``classification``, ``output_path``, timestamps — plus ``in_flight`` and
    ``shutting_down``. 503 ``job_store_unavailable`` when the job store cannot be read (the
    PostgreSQL database unreachable).

    Needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>``, or ``?requested_at=<unix seconds>``
    with an ``X-Hub-Signature`` over the request target ``/jobs/{ticket_id}?requested_at=…``
    made with the webhook secret (``scripts/ops/jobs.sh`` signs it).
    """
    ticket_id = _ticket_id_param(request)
    if not _bearer_ok(request) and (ticket_id is None or not _fresh_jobs_signature(request, ticket_id)):
        return error_response(
            403,
            "forbidden",
            "send Authorization: Bearer <ADMIN_BEARER_TOKEN>, or "
            "?requested_at=<unix seconds> with an X-Hub-Signature over the "
            "request target /jobs/{id}?requested_at=…",
        )
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    pool = request.app.state.runtime.pool
    try:
        status = await pool.status(ticket_id)
    except JobStoreUnavailable as exc:  # the store logged its reason once, with the cause
        log.warning("job store could not be read", extra={"reason": str(exc)})
        return _job_store_unavailable("the job store cannot be read now")
    return JSONResponse({"ticket_id": ticket_id, "shutting_down": pool.shutting_down, **status})


def _probe_storage(root: str) -> None:
    probe = os.path.join(root, f".healthz-{uuid.uuid4().hex}")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(probe)


async def _readiness(runtime: Any) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(_probe_storage, str(runtime.settings.storage_root)), 5)
        checks["storage"] = "ok"
    except (OSError, TimeoutError) as exc:
        checks["storage"] = (
            f"fail: the storage root is not writable ({getattr(exc, 'strerror', None) or exc!r})"
        )
    error = runtime.signer_error()
    if not runtime.settings.signing_enabled:
        checks["signer"] = "ok (signing disabled)"
    else:
        checks["signer"] = "ok" if error is None else f"fail: {error}"
    checks["queue"] = "fail: the job queue is full" if runtime.pool.saturated else "ok"
    unavailable = runtime.store.unavailable
    checks["job_store"] = "ok" if unavailable is None else f"fail: {unavailable}"
    if runtime.pool.shutting_down:
        checks["lifecycle"] = "fail: shutting down"
    return checks


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness ``{"status": "ok", "service", "version"}``.

    ``?deep=true`` (readiness) also checks that the storage root is writable, the signer is
    loaded and the queue is not saturated; it answers 503 ``not_ready`` naming the failing
    checks. ``HEALTHZ_OMIT_VERSION=true`` leaves out ``service`` and ``version``.
    """
    runtime = request.app.state.runtime
    body: dict[str, Any] = {"status": "ok"}
    if not runtime.settings.healthz_omit_version:
        body.update(service=SERVICE_NAME, version=__version__)
    if request.query_params.get("deep", "").lower() in {"1", "true", "yes"}:
        checks = await _readiness(runtime)
        failing = [name for name, verdict in checks.items() if not verdict.startswith("ok")]
        body["checks"] = checks
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


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format, only with ``OBSERVABILITY_METRICS_ENABLED=true``
    (404 otherwise); with ``METRICS_BEARER_TOKEN`` set, 401 without ``Authorization: Bearer …``."""
    runtime = request.app.state.runtime
    settings = runtime.settings
    if not settings.observability_metrics_enabled:
        return error_response(404, "not_found", "metrics are disabled (OBSERVABILITY_METRICS_ENABLED=false)")
    token = settings.metrics_bearer_token
    if token:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.reveal().encode()):
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


routes = [
    Route("/ingest", ingest, methods=["POST"]),
    Route("/ingest/batch", ingest_batch, methods=["POST"]),
    Route("/retry/{ticket_id}", retry, methods=["POST"]),
    Route("/jobs/{ticket_id}", job_status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
