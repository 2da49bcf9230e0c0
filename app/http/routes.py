"""The HTTP routes: ``/ingest``, ``/retry/{ticket_id}``, ``/jobs/{ticket_id}``, ``/healthz``.

Routes are raw Starlette endpoints. They read the service's runtime (worker pool, dedupe
cache, settings) from ``request.app.state.runtime`` (see :class:`app.main.Runtime`).
"""

from __future__ import annotations

import hmac
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import SERVICE_NAME, __version__
from app.http.hmac_auth import RAW_BODY_KEY
from app.http.responses import JSONResponse, error_response
from app.http.webhook import InvalidPayload, extract_ticket_id, signature_ok
from app.jobs.pool import Job, SubmitResult

log = logging.getLogger("app.http")

DELIVERY_HEADER = "x-zammad-delivery"
MAX_DELIVERY_ID_CHARS = 200


def _refused(result: SubmitResult) -> Response:
    if result is SubmitResult.FULL:
        return error_response(503, "queue_full", "the job queue is full; retry later", {"Retry-After": "5"})
    return error_response(503, "shutting_down", "the service is shutting down", {"Retry-After": "10"})


async def ingest(request: Request) -> Response:
    """``POST /ingest``: accept one Zammad webhook (signature already checked by the middleware).

    Answers 202 ``{"status": "accepted", "ticket_id": N}`` once the job is queued, or
    ``{"status": "duplicate", …}`` for a delivery id seen within its TTL; 400 for a body that
    is not JSON; 422 for a payload without a valid ticket id; 503 when the queue is full or
    the service is shutting down.
    """
    runtime = request.app.state.runtime
    body = request.scope.get(RAW_BODY_KEY)
    if body is None:
        body = await request.body()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_response(400, "invalid_json", "the body is not valid JSON")
    try:
        ticket_id = extract_ticket_id(payload)
    except InvalidPayload as exc:
        log.warning("webhook rejected", extra={"reason": str(exc)})
        return error_response(422, "invalid_payload", str(exc))

    delivery_id = request.headers.get(DELIVERY_HEADER) or None
    if delivery_id is not None:
        delivery_id = delivery_id.strip()[:MAX_DELIVERY_ID_CHARS] or None
    if runtime.pool.shutting_down:
        return _refused(SubmitResult.SHUTTING_DOWN)
    if delivery_id is not None and runtime.dedupe.seen(delivery_id):
        return JSONResponse({"status": "duplicate", "ticket_id": ticket_id}, status_code=202)
    result = runtime.pool.submit(Job(ticket_id, delivery_id=delivery_id))
    if not result.accepted:
        return _refused(result)
    if delivery_id is not None:
        runtime.dedupe.claim(delivery_id)
    return JSONResponse({"status": "accepted", "ticket_id": ticket_id}, status_code=202)


def _authorized(request: Request, body: bytes) -> bool:
    runtime = request.app.state.runtime
    token = runtime.settings.admin_bearer_token
    auth = request.headers.get("authorization", "")
    if token and auth.startswith("Bearer "):
        return hmac.compare_digest(auth[7:].strip().encode(), token.reveal().encode())
    secret = runtime.settings.webhook_hmac_secret
    if secret:
        return signature_ok(body, request.headers.get("x-hub-signature"), secret.reveal().encode())
    return False


def _ticket_id_param(request: Request) -> int | None:
    raw = request.path_params["ticket_id"]
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63 else None


async def retry(request: Request) -> Response:
    """``POST /retry/{ticket_id}``: queue one explicit retry (no delivery-id dedupe).

    Needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>`` or an ``X-Hub-Signature`` over the
    request body made with the webhook secret (``scripts/ops/retry.sh`` signs the request).
    ``?force=true`` re-archives a ticket that is already ``pdf:signed``.
    """
    body = await request.body()
    if not _authorized(request, body):
        return error_response(403, "forbidden", "a valid bearer token or X-Hub-Signature is required")
    ticket_id = _ticket_id_param(request)
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    force = request.query_params.get("force", "").lower() in {"1", "true", "yes"}
    result = request.app.state.runtime.pool.submit(Job(ticket_id, reason="retry", force=force))
    if not result.accepted:
        return _refused(result)
    return JSONResponse({"status": "accepted", "ticket_id": ticket_id}, status_code=202)


async def job_status(request: Request) -> Response:
    """``GET /jobs/{ticket_id}``: what the worker pool knows about a ticket (protected like /retry)."""
    if not _authorized(request, b""):
        return error_response(403, "forbidden", "a valid bearer token or X-Hub-Signature is required")
    ticket_id = _ticket_id_param(request)
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    pool = request.app.state.runtime.pool
    return JSONResponse({"ticket_id": ticket_id, "in_flight": pool.status(ticket_id)["state"] == "running",
                         "shutting_down": pool.shutting_down, **pool.status(ticket_id)})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness, ``{"status": "ok", "service", "version"}``."""
    return JSONResponse({"status": "ok", "service": SERVICE_NAME, "version": __version__})


routes = [
    Route("/ingest", ingest, methods=["POST"]),
    Route("/retry/{ticket_id}", retry, methods=["POST"]),
    Route("/jobs/{ticket_id}", job_status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
