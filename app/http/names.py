"""Names and limits of the HTTP edge, each defined once: headers, scope keys, paths, sizes.

Header names are lower case, as ASGI carries them in ``scope["headers"]``; the ``*_RAW``
forms are the same names as bytes, for the middlewares that scan the raw header list.
The Zammad headers are those of ``lib/user_agent.rb`` and ``app/jobs/trigger_webhook_job.rb``
(``docs/reference/zammad.md`` §1.3).
"""

from __future__ import annotations

# -- headers -----------------------------------------------------------------------------------

SIGNATURE_HEADER = "x-hub-signature"
"""Zammad's ``sha1=<hex>`` HMAC over the raw body (see :func:`app.http.webhook.signature_ok`)."""
SIGNATURE_HEADER_RAW = SIGNATURE_HEADER.encode()
DELIVERY_HEADER = "x-zammad-delivery"
"""Zammad's delivery id: the same on every retry of one webhook job; deduped by the job store."""
DELIVERY_HEADER_RAW = DELIVERY_HEADER.encode()
REQUEST_ID_HEADER_RAW = b"x-request-id"
FORWARDED_FOR_HEADER_RAW = b"x-forwarded-for"
CONTENT_LENGTH_HEADER_RAW = b"content-length"
AUTHORIZATION_HEADER = "authorization"
RETRY_AFTER_HEADER = "retry-after"
RETRY_AFTER_HEADER_RAW = RETRY_AFTER_HEADER.encode()
CONNECTION_HEADER_RAW = b"connection"
CONTENT_TYPE_HEADER_RAW = b"content-type"

# -- scope keys (set by one layer, read by another) -------------------------------------------

RAW_BODY_KEY = "app.raw_body"
"""The request body the HMAC middleware read and checked, for the route (no second read)."""
REQUEST_ID_KEY = "app.request_id"
"""The request id of the request-log middleware (:mod:`app.http.request_log`)."""
TICKET_ID_KEY = "app.ticket_id"
"""The ticket id a route found, for the request's log line."""

# -- paths ------------------------------------------------------------------------------------

INGEST_PATHS = frozenset({"/ingest", "/ingest/batch"})
"""The webhook paths: signature-checked by the HMAC middleware, counted by status in the metrics."""

# -- query parameters ---------------------------------------------------------------------------

QUERY_FLAG_VALUES = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}
"""The accepted spellings (lower-cased) of a yes/no query parameter, ``?force=`` of ``/retry``
and ``?deep=`` of ``/healthz``; any other value is 422 ``invalid_query``."""

# -- limits -----------------------------------------------------------------------------------

MAX_DELIVERY_ID_CHARS = 200
"""Longest ``X-Zammad-Delivery`` accepted (Zammad's is a 36-character UUID): a longer one is
refused with 400 ``invalid_delivery_id``, never cut, as it is the duplicate key (the request's
log line shows this much of it)."""
MAX_REQUEST_ID_CHARS = 128
"""Longest client ``X-Request-ID`` echoed; a longer (or unprintable) one is replaced."""
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest request body by default (``HARDENING_BODY_MAX_BYTES``)."""
DEFAULT_BODY_READ_TIMEOUT_SECONDS = 30.0
"""Seconds a request body may take to arrive by default (``HARDENING_BODY_READ_TIMEOUT_SECONDS``)."""
SIGNED_REQUEST_MAX_AGE_SECONDS = 300
"""How old the ``requested_at`` of an HMAC-signed ``/retry`` or ``/jobs`` request may be."""
