"""The operator routes: ``POST /retry/{ticket_id}`` and ``GET /jobs/{ticket_id}``.

Neither is ever anonymous: each needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>``, or an
``X-Hub-Signature`` made with the webhook secret over a fresh request (at most
:data:`~app.http.names.SIGNED_REQUEST_MAX_AGE_SECONDS` old, naming its ticket), so a captured
request can be replayed neither for another ticket nor days later. ``scripts/ops/retry.sh``
and ``scripts/ops/jobs.sh`` build and sign them.
"""

from __future__ import annotations

import hmac
import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.config import Secret
from app.http.ingest import admit, job_store_unavailable
from app.http.names import (
    AUTHORIZATION_HEADER,
    QUERY_FLAG_VALUES,
    SIGNATURE_HEADER,
    SIGNED_REQUEST_MAX_AGE_SECONDS,
    TICKET_ID_KEY,
)
from app.http.responses import JSONResponse, error_response
from app.http.webhook import as_ticket_id, signature_ok, ticket_id_from_digits
from app.jobs.records import RETRY_REASON, JobRequest, JobStoreUnavailable
from app.runtime import Runtime

log = logging.getLogger("app.http")

_MAX_AGE_TEXT = f"at most {SIGNED_REQUEST_MAX_AGE_SECONDS // 60} minutes old"


def bearer_credentials(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (stripped), or ``None``
    for another scheme. The scheme is matched case-insensitively (RFC 9110 §11.1:
    ``bearer``, ``BEARER`` and ``Bearer`` are one scheme)."""
    scheme, sep, token = authorization.strip().partition(" ")
    if not sep or scheme.lower() != "bearer":
        return None
    return token.strip()


def bearer_token_ok(authorization: str, token: Secret | None) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant-time; the
    scheme in any case, :func:`bearer_credentials`).

    Both sides are compared without surrounding whitespace: HTTP takes it off a header value
    (RFC 9110 §5.5), so a configured token ending in a newline (a secret file's last line)
    could otherwise never be sent. ``False`` when no token (or only whitespace) is configured.
    """
    if not token:
        return False
    want = token.reveal().strip()
    given = bearer_credentials(authorization)
    return bool(want) and given is not None and hmac.compare_digest(given.encode(), want.encode())


def _bearer_ok(runtime: Runtime, request: Request) -> bool:
    """Whether ``Authorization: Bearer`` carries ``ADMIN_BEARER_TOKEN`` (constant-time)."""
    return bearer_token_ok(request.headers.get(AUTHORIZATION_HEADER, ""), runtime.settings.admin_bearer_token)


def _authorized(runtime: Runtime, request: Request, body: bytes) -> str | None:
    """``"bearer"`` or ``"hmac"`` (a signature over ``body``) for an authorised request, else
    ``None``. A bearer token that is sent but wrong is refused outright."""
    authorization = request.headers.get(AUTHORIZATION_HEADER, "")
    if runtime.settings.admin_bearer_token and bearer_credentials(authorization) is not None:
        return "bearer" if _bearer_ok(runtime, request) else None
    secret = runtime.settings.webhook_hmac_secret
    if secret and signature_ok(body, request.headers.get(SIGNATURE_HEADER), secret.reveal().encode()):
        return "hmac"
    return None


def _fresh_retry_body(body: bytes, ticket_id: int, *, force: bool) -> bool:
    """A signed retry must sign ``{"ticket_id": N, "requested_at": <unix seconds>}`` for this
    ticket, at most :data:`SIGNED_REQUEST_MAX_AGE_SECONDS` old, and with ``"force": true``
    when it asks for ``?force=true``: a captured request can be replayed neither for another
    ticket, nor days later, nor turned into a forced re-archive."""
    try:
        data = orjson.loads(body)
        requested_at = float(data["requested_at"])
        # As a webhook names its ticket (an integer or a string of digits; InvalidPayload is a
        # ValueError): int() made 4711.9 ticket 4711 and true ticket 1.
        same_ticket = as_ticket_id(data["ticket_id"], "ticket_id") == ticket_id
        signed_force = data.get("force") is True
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return False
    return (
        same_ticket
        and abs(time.time() - requested_at) <= SIGNED_REQUEST_MAX_AGE_SECONDS
        and (signed_force or not force)
    )


def _ticket_id_param(request: Request) -> int | None:
    return ticket_id_from_digits(request.path_params["ticket_id"])


_FORBIDDEN = (
    "forbidden",
    "send Authorization: Bearer <ADMIN_BEARER_TOKEN> or an X-Hub-Signature over the body",
)


async def retry(runtime: Runtime, request: Request) -> Response:
    """``POST /retry/{ticket_id}``: queue one explicit retry, bypassing delivery-id dedupe.

    Needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>``, or an ``X-Hub-Signature`` made with
    the webhook secret over the body ``{"ticket_id": N, "requested_at": <unix seconds>}``
    (at most 5 minutes old; ``scripts/ops/retry.sh`` builds and signs it).
    Merged into the ticket's pending job, the retry makes it a fresh request that is due now
    (a wait for its next attempt ends, its attempts count from zero: see
    :data:`~app.jobs.records.RETRY_REASON`). ``?force=true`` re-archives a ticket that is
    already ``pdf:signed``; a signed body must then carry ``"force": true`` too. Another
    ``force`` value than true/false/1/0/yes/no is 422.
    """
    body = await request.body()
    method = _authorized(runtime, request, body)
    if method is None:
        return error_response(403, *_FORBIDDEN)
    ticket_id = _ticket_id_param(request)
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    force = QUERY_FLAG_VALUES.get(request.query_params.get("force", "").lower())
    if force is None:
        return error_response(422, "invalid_query", "force must be true or false")
    if method == "hmac" and not _fresh_retry_body(body, ticket_id, force=force):
        return error_response(
            403,
            "forbidden",
            'a signed retry must sign {"ticket_id": N, "requested_at": '
            f"<unix seconds>}} for this ticket, {_MAX_AGE_TEXT}, "
            'with "force": true for ?force=true',
        )
    request.scope[TICKET_ID_KEY] = ticket_id
    admitted = await admit(runtime, [JobRequest(ticket_id, reason=RETRY_REASON, force=force)])
    if isinstance(admitted, Response):
        return admitted
    return JSONResponse({"status": "accepted", "ticket_id": ticket_id}, status_code=202)


def _fresh_jobs_signature(runtime: Runtime, request: Request, ticket_id: int) -> bool:
    """A signed ``GET /jobs/{id}`` signs its request target, ``/jobs/{id}?requested_at=<unix
    seconds>``, at most :data:`SIGNED_REQUEST_MAX_AGE_SECONDS` old: a captured request
    neither reads another ticket nor works days later."""
    raw = request.query_params.get("requested_at", "")
    try:
        requested_at = int(raw)
    except ValueError:
        return False
    if abs(time.time() - requested_at) > SIGNED_REQUEST_MAX_AGE_SECONDS:
        return False
    secret = runtime.settings.webhook_hmac_secret
    if not secret:
        return False
    target = f"/jobs/{ticket_id}?requested_at={raw}".encode()
    return signature_ok(target, request.headers.get(SIGNATURE_HEADER), secret.reveal().encode())


async def job_status(runtime: Runtime, request: Request) -> Response:
    """``GET /jobs/{ticket_id}``: the ticket's latest job from the job store — ``state``
    (pending, running, done, failed, dead, or none), ``attempts``, ``next_attempt_at``,
    ``last_error``, ``classification``, ``output_path``, timestamps — plus ``in_flight`` and
    ``shutting_down``. With the PostgreSQL store, a running job (or one whose report is not
    delivered yet) also has ``lease``: ``owner`` (the replica holding it, ``host:pid:random``),
    ``expires_at`` (Unix seconds) and ``expired`` (true: its replica stopped renewing and the
    job waits to be reclaimed). 503 ``job_store_unavailable`` when the job store cannot be read
    (the PostgreSQL database unreachable).

    Needs ``Authorization: Bearer <ADMIN_BEARER_TOKEN>``, or ``?requested_at=<unix seconds>``
    with an ``X-Hub-Signature`` over the request target ``/jobs/{ticket_id}?requested_at=…``
    made with the webhook secret (``scripts/ops/jobs.sh`` signs it).
    """
    ticket_id = _ticket_id_param(request)
    if not _bearer_ok(runtime, request) and (
        ticket_id is None or not _fresh_jobs_signature(runtime, request, ticket_id)
    ):
        return error_response(
            403,
            "forbidden",
            "send Authorization: Bearer <ADMIN_BEARER_TOKEN>, or "
            "?requested_at=<unix seconds> with an X-Hub-Signature over the "
            "request target /jobs/{id}?requested_at=…",
        )
    if ticket_id is None:
        return error_response(422, "invalid_ticket_id", "the ticket id must be a positive integer")
    pool = runtime.pool
    if pool is None:
        return job_store_unavailable("the job store is not open yet")
    try:
        status = await pool.status(ticket_id)
    except JobStoreUnavailable as exc:  # the store logged its reason once, with the cause
        log.warning("job store could not be read", extra={"reason": str(exc)})
        return job_store_unavailable("the job store cannot be read now")
    return JSONResponse({"ticket_id": ticket_id, "shutting_down": pool.shutting_down, **status})
