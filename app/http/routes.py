"""The route table: which path and method reach which endpoint.

``POST /ingest`` and ``POST /ingest/batch`` (Zammad webhooks, :mod:`app.http.ingest`; the
signature is checked by the HMAC middleware before), ``POST /retry/{ticket_id}`` and
``GET /jobs/{ticket_id}`` (bearer token or HMAC signature, :mod:`app.http.admin`),
``GET /healthz`` (liveness; ``?deep=true`` for readiness), ``GET /metrics`` (Prometheus, when
enabled) and ``GET /openapi.json`` (:mod:`app.http.health`).

Endpoints get the service's :class:`~app.runtime.Runtime` as their first argument, bound here
once per application (Starlette calls a ``functools.partial`` like the function it wraps).
"""

from __future__ import annotations

import re
from functools import partial

from starlette.routing import Route

from app.http import admin, health, ingest
from app.runtime import Runtime


def exact(route: Route) -> Route:
    """``route`` matching its path and nothing else: its pattern ends in ``\\Z``, not ``$``.

    Starlette compiles ``"/ingest"`` to ``^/ingest$``, and Python's ``$`` also matches before a
    final newline: ``POST /ingest%0A`` (the path ``"/ingest\\n"``) reached the webhook route
    while the HMAC middleware, which protects the exact paths, let it through unsigned.
    """
    pattern = route.path_regex.pattern
    if pattern.endswith("$"):
        route.path_regex = re.compile(pattern[:-1] + r"\Z")
    return route


def build_routes(runtime: Runtime) -> list[Route]:
    """The routes of one application, each endpoint bound to ``runtime``; every route matches
    its path exactly (:func:`exact`)."""
    routes = [
        Route("/ingest", ingest.IngestEndpoint(runtime), methods=["POST"]),
        Route("/ingest/batch", partial(ingest.ingest_batch, runtime), methods=["POST"]),
        Route("/retry/{ticket_id}", partial(admin.retry, runtime), methods=["POST"]),
        Route("/jobs/{ticket_id}", partial(admin.job_status, runtime), methods=["GET"]),
        Route("/healthz", partial(health.healthz, runtime), methods=["GET"]),
        Route("/metrics", partial(health.metrics, runtime), methods=["GET"]),
        Route("/openapi.json", health.openapi, methods=["GET"]),
    ]
    return [exact(route) for route in routes]
