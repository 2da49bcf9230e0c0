"""The webhook routes: ``POST /ingest`` and ``POST /ingest/batch`` record jobs and answer 202.

The signature was checked by the HMAC middleware (:mod:`app.http.hmac_auth`), which also
hands over the body it read (``scope["app.raw_body"]``). A job is on record in the job store
before the 202 leaves (:meth:`app.jobs.pool.WorkerPool.submit_many`); anything that keeps it
from being recorded is a 503 Zammad retries.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.http.names import (
    DELIVERY_HEADER,
    DELIVERY_HEADER_RAW,
    MAX_DELIVERY_ID_CHARS,
    RAW_BODY_KEY,
    RETRY_AFTER_HEADER,
    TICKET_ID_KEY,
)
from app.http.responses import JSONResponse, error_response, send_error, send_json
from app.http.webhook import InvalidPayload, extract_ticket_id
from app.jobs.pool import ShuttingDown
from app.jobs.records import Admission, AdmissionStatus, JobRequest, JobStoreUnavailable
from app.runtime import Runtime

log = logging.getLogger("app.http")

RETRY_SOON = {RETRY_AFTER_HEADER: "5"}
"""``Retry-After`` of a 503 that a moment may cure (the queue full, the workers not started)."""
RETRY_LATER = {RETRY_AFTER_HEADER: "10"}
"""``Retry-After`` of a 503 that takes longer (shutting down, the job store unavailable)."""


def _not_started() -> Response:
    return error_response(503, "not_started", "the service has not started its workers", RETRY_SOON)


def _queue_full() -> Response:
    return error_response(503, "queue_full", "the job queue is full; retry later", RETRY_SOON)


def _shutting_down() -> Response:
    return error_response(503, "shutting_down", "the service is shutting down", RETRY_LATER)


def job_store_unavailable(what: str) -> Response:
    """503 ``job_store_unavailable``: ``what`` could not be done (the store logged why)."""
    return error_response(
        503, "job_store_unavailable", f"{what} (see the service log); retry later", RETRY_LATER
    )


async def admit(runtime: Runtime, requests: list[JobRequest]) -> list[Admission] | Response:
    """Record requests durably; a 503 response when refused (not started, queue full, shutting
    down, or the job store failing to commit or to sync: Zammad's retry is the right answer.
    Nothing was recorded, except when the WAL sync failed after the commit: then the job is on
    record and runs after a restart, and the retry is answered as a duplicate)."""
    pool = runtime.pool
    if pool is None:
        return _not_started()
    if pool.shutting_down:
        return _shutting_down()
    try:
        admissions = await pool.submit_many(requests)
    except ShuttingDown:
        return _shutting_down()
    except Exception as exc:  # any store failure is a 503 that Zammad retries, never a 500
        if isinstance(exc, JobStoreUnavailable):  # the store logged its reason once, with the cause
            log.warning("job store refused the job", extra={"reason": str(exc)})
        else:
            log.exception("job store refused the job")
        return job_store_unavailable("the job could not be recorded")
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


class DeliveryIdTooLong(ValueError):
    """``X-Zammad-Delivery`` is longer than :data:`MAX_DELIVERY_ID_CHARS` (``length`` characters)."""

    def __init__(self, length: int) -> None:
        super().__init__(
            f"X-Zammad-Delivery is {length} characters long; at most {MAX_DELIVERY_ID_CHARS} are accepted "
            "(Zammad sends a 36-character UUID)"
        )
        self.length = length


def clean_delivery_id(raw: str | None) -> str | None:
    """``X-Zammad-Delivery`` as recorded: stripped, or ``None`` when absent or blank.

    Raises:
        DeliveryIdTooLong: longer than :data:`MAX_DELIVERY_ID_CHARS` once stripped. It is the
            duplicate key: cut short, two different ids would be one.
    """
    if raw is None:
        return None
    delivery_id = raw.strip()
    if len(delivery_id) > MAX_DELIVERY_ID_CHARS:
        raise DeliveryIdTooLong(len(delivery_id))
    return delivery_id or None


NOT_CHECKED = (
    "forbidden",
    "the request did not pass the webhook signature check",
)
"""403 of a webhook route reached without the HMAC middleware's check (no
:data:`~app.http.names.RAW_BODY_KEY`): a path the middleware and the router read differently.
Refused, never read unchecked."""


def _log_not_checked(scope: Scope) -> None:
    log.error(
        "webhook route reached without the signature check; refused",
        extra={"path": scope.get("path"), "root_path": scope.get("root_path")},
    )


class IngestEndpoint:
    """``POST /ingest``: accept one Zammad webhook.

    Answers 202 ``{"status": "accepted", "ticket_id": N}`` once the job is committed to the
    job store (a request for a ticket that already has a job is merged into it), or
    ``{"status": "duplicate", …}`` for a delivery id accepted within its TTL; 400 for a body
    that is not JSON (``invalid_json``) or an ``X-Zammad-Delivery`` longer than
    :data:`MAX_DELIVERY_ID_CHARS` (``invalid_delivery_id``); 422 for a payload without a valid
    ticket id; 503 when the queue is full or the service is shutting down. The delivery id is
    recorded in the same transaction as the job, so a refused request can be retried by Zammad.

    A pure-ASGI endpoint (Starlette routes to it like to any ASGI app): the webhook is the
    hot path, and Starlette's ``Request``/``Response`` wrapping cost as much as the rest of
    the route. The body comes from the HMAC middleware (``scope["app.raw_body"]``).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = scope.get(RAW_BODY_KEY)
        if body is None:  # fail closed: only a body the HMAC middleware checked is read
            _log_not_checked(scope)
            await send_error(send, 403, *NOT_CHECKED)
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
                try:
                    delivery_id = clean_delivery_id(value.decode("latin-1"))
                except DeliveryIdTooLong as exc:
                    await send_error(send, 400, "invalid_delivery_id", str(exc))
                    return
                break
        admitted = await admit(self.runtime, [JobRequest(ticket_id, delivery_id=delivery_id)])
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)
            return
        status = "duplicate" if admitted[0].status == AdmissionStatus.DUPLICATE else "accepted"
        await send_json(send, 202, {"status": status, "ticket_id": ticket_id})


async def ingest_batch(runtime: Runtime, request: Request) -> Response:
    """``POST /ingest/batch``: a JSON array of webhook payloads, or ``{"payloads": [...]}``.

    Every element is validated as in ``/ingest`` before any job is recorded; a bad element
    refuses the whole batch with 422 naming its index. At most ``HARDENING_BATCH_MAX_ITEMS``
    elements (422 ``too_many_items`` beyond). The whole batch is recorded in one transaction
    (503 for all when it does not fit). Answers 202 ``{"status": "accepted", "count": N}``
    with one job per payload (jobs for the same ticket coalesce, see :mod:`app.jobs.store`).
    The batch's ``X-Zammad-Delivery`` id, if any, dedupes the batch as a whole (400
    ``invalid_delivery_id`` when longer than :data:`MAX_DELIVERY_ID_CHARS`).
    """
    body = request.scope.get(RAW_BODY_KEY)
    if body is None:  # fail closed, as IngestEndpoint
        _log_not_checked(request.scope)
        return error_response(403, *NOT_CHECKED)
    try:
        payload = orjson.loads(body)
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
    try:
        delivery_id = clean_delivery_id(request.headers.get(DELIVERY_HEADER))
    except DeliveryIdTooLong as exc:
        return error_response(400, "invalid_delivery_id", str(exc))
    admitted = await admit(runtime, [JobRequest(t, delivery_id=delivery_id) for t in ticket_ids])
    if isinstance(admitted, Response):
        return admitted
    status = (
        "duplicate"
        if admitted and all(a.status == AdmissionStatus.DUPLICATE for a in admitted)
        else "accepted"
    )
    return JSONResponse({"status": status, "count": len(ticket_ids)}, status_code=202)
