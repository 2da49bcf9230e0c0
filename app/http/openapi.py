"""The OpenAPI 3.1 description of the service, served at ``/openapi.json``.

``docs/openapi.yaml`` is this same document as YAML (``python -m app.http.openapi`` writes
it; a test keeps the two equal).
"""

from __future__ import annotations

import sys
from typing import Any

from app import __version__
from app.http.names import MAX_DELIVERY_ID_CHARS
from app.http.webhook import MAX_TICKET_ID

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TICKET_ID_DIGITS = "^0*[1-9][0-9]{0,18}$"
"""A ticket id as digits: 1 to 9223372036854775807 (the 19-digit numbers above it match too,
and are refused with 422: no pattern of reasonable size tells them apart)."""
_TICKET_ID = {
    "name": "ticket_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _TICKET_ID_DIGITS},
    "description": "Zammad ticket id (1 to 9223372036854775807)",
}
_WEBHOOK_HEADERS = [
    {
        "name": "X-Hub-Signature",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`sha1=<hex>` (what Zammad sends) or `sha256=<hex>`: "
        "HMAC of the raw body with the webhook secret",
    },
    {
        "name": "X-Zammad-Delivery",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": MAX_DELIVERY_ID_CHARS},
        "description": "Zammad's delivery id (a UUID); repeats within WORKFLOW_DELIVERY_ID_TTL_SECONDS "
        "are answered as duplicates; a longer one than maxLength is 400 invalid_delivery_id",
    },
    {"name": "X-Zammad-Trigger", "in": "header", "required": False, "schema": {"type": "string"}},
]
_ADMIN_AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"hubSignature": []}]
_COMMON_EDGE = {
    "408": _err("The body did not arrive within HARDENING_BODY_READ_TIMEOUT_SECONDS"),
    "413": _err("Body larger than HARDENING_BODY_MAX_BYTES"),
    "429": {**_err("Rate limited"), "headers": {"Retry-After": {"schema": {"type": "string"}}}},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "zammad-pdf-archiver",
        "version": __version__,
        "description": "Archives Zammad tickets as signed PDF files. Every 4xx/5xx answer has the shape "
        '`{"error": code, "detail": text}`.',
    },
    "paths": {
        "/ingest": {
            "post": {
                "summary": "Accept one Zammad webhook",
                "parameters": _WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
                    },
                },
                "responses": {
                    "202": _ok("Queued, or a duplicate delivery", {"$ref": "#/components/schemas/Accepted"}),
                    "400": _err(
                        "Body is not JSON, X-Zammad-Delivery longer than its maxLength, "
                        "or X-Zammad-Delivery missing while required"
                    ),
                    "403": _err("Missing or wrong X-Hub-Signature"),
                    "422": _err("No valid ticket id in the payload"),
                    "503": _err(
                        "Queue full, shutting down, job store failing, or no webhook secret configured"
                    ),
                    **_COMMON_EDGE,
                },
            }
        },
        "/ingest/batch": {
            "post": {
                "summary": "Accept several webhook payloads at once",
                "parameters": _WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/WebhookPayload"},
                                    },
                                    {
                                        "type": "object",
                                        "required": ["payloads"],
                                        "properties": {
                                            "payloads": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/WebhookPayload"},
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": _ok("All payloads queued", {"$ref": "#/components/schemas/BatchAccepted"}),
                    "400": _err(
                        "Body is not JSON, X-Zammad-Delivery longer than its maxLength, "
                        "or X-Zammad-Delivery missing while required"
                    ),
                    "403": _err("Missing or wrong X-Hub-Signature"),
                    "422": _err(
                        "A payload without a valid ticket id (its index is named), or too many payloads"
                    ),
                    "503": _err(
                        "Queue full, shutting down, job store failing, or no webhook secret configured"
                    ),
                    **_COMMON_EDGE,
                },
            }
        },
        "/retry/{ticket_id}": {
            "post": {
                "summary": "Queue one explicit retry (bypasses delivery-id dedupe)",
                "security": _ADMIN_AUTH,
                "parameters": [
                    _TICKET_ID,
                    {
                        "name": "force",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                        "description": "re-archive a ticket that is already pdf:signed "
                        '(a signed body must then carry "force": true)',
                    },
                ],
                "responses": {
                    "202": _ok("Queued", {"$ref": "#/components/schemas/Accepted"}),
                    "403": _err("No valid bearer token or signature"),
                    "422": _err("The ticket id is not a positive integer, or force is not true or false"),
                    "503": _err("Queue full, shutting down, or job store failing"),
                    **_COMMON_EDGE,
                },
            }
        },
        "/jobs/{ticket_id}": {
            "get": {
                "summary": "The ticket's latest job from the job store",
                "security": _ADMIN_AUTH,
                "parameters": [
                    _TICKET_ID,
                    {
                        "name": "requested_at",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        "description": "Unix seconds; with X-Hub-Signature over "
                        "'/jobs/{ticket_id}?requested_at=…' (5 minutes)",
                    },
                ],
                "responses": {
                    "200": _ok("Job state", {"$ref": "#/components/schemas/JobStatus"}),
                    "403": _err("No valid bearer token or signature"),
                    "422": _err("The ticket id is not a positive integer"),
                    "503": _err("The job store cannot be read (its database is unreachable)"),
                    **_COMMON_EDGE,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness; readiness with deep=true",
                "parameters": [
                    {
                        "name": "deep",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                        "description": "true: readiness checks (storage, signer, queue, job store, fonts)",
                    }
                ],
                "responses": {
                    "200": _ok("Healthy", {"$ref": "#/components/schemas/Health"}),
                    "422": _err("deep is not true or false"),
                    "503": _ok(
                        "Not ready: the failing checks are named", {"$ref": "#/components/schemas/NotReady"}
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (OBSERVABILITY_METRICS_ENABLED=true)",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _err("METRICS_BEARER_TOKEN is set and was not sent"),
                    "404": _err("Metrics are disabled"),
                    "429": _COMMON_EDGE["429"],
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"}), **_COMMON_EDGE},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "ADMIN_BEARER_TOKEN"},
            "hubSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Hub-Signature",
                "description": "sha1=/sha256= HMAC of the request body with WEBHOOK_HMAC_SECRET",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            },
            "WebhookPayload": {
                "type": "object",
                "description": 'Zammad\'s default payload ({"ticket": {"id": N, …}, "article": {…}}) or a '
                "custom one with a top-level ticket_id (integer or string of digits)",
                "properties": {
                    "ticket_id": {
                        "oneOf": [
                            {"type": "integer", "minimum": 1, "maximum": MAX_TICKET_ID},
                            {"type": "string", "pattern": _TICKET_ID_DIGITS},
                        ]
                    },
                    "ticket": {
                        "type": "object",
                        "properties": {"id": {"type": "integer", "minimum": 1, "maximum": MAX_TICKET_ID}},
                    },
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["status", "ticket_id"],
                "properties": {
                    "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                    "ticket_id": {"type": "integer"},
                },
            },
            "BatchAccepted": {
                "type": "object",
                "required": ["status", "count"],
                "properties": {
                    "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                    "count": {"type": "integer"},
                },
            },
            "JobStatus": {
                "type": "object",
                "required": ["ticket_id", "in_flight", "shutting_down", "state"],
                "properties": {
                    "ticket_id": {"type": "integer"},
                    "in_flight": {"type": "boolean"},
                    "shutting_down": {"type": "boolean"},
                    "state": {
                        "type": "string",
                        "enum": ["none", "pending", "running", "done", "failed", "dead"],
                    },
                    "job_id": {"type": "string"},
                    "reason": {"type": "string"},
                    "force": {"type": "boolean"},
                    "attempts": {"type": "integer"},
                    "next_attempt_at": {"type": ["number", "null"]},
                    "last_error": {"type": ["string", "null"]},
                    "last_step": {"type": ["string", "null"]},
                    "classification": {"type": ["string", "null"]},
                    "output_path": {"type": ["string", "null"]},
                    "sha256": {"type": ["string", "null"]},
                    "result": {"type": ["string", "null"]},
                    "follow_up": {"type": "boolean"},
                    "reported": {"type": "boolean"},
                    "report_error": {"type": ["string", "null"]},
                    "delivery_id": {"type": ["string", "null"]},
                    "created_at": {"type": "number"},
                    "updated_at": {"type": "number"},
                    "started_at": {"type": ["number", "null"]},
                    "finished_at": {"type": ["number", "null"]},
                    "lease": {
                        "type": "object",
                        "description": "PostgreSQL job store only, while a replica holds the job "
                        "(running, or its report not delivered yet); absent otherwise",
                        "required": ["owner", "expires_at", "expired"],
                        "properties": {
                            "owner": {
                                "type": "string",
                                "description": "the holding replica: host:pid:random",
                            },
                            "expires_at": {
                                "type": "number",
                                "description": "Unix seconds; renewed every quarter lease while "
                                "the holder lives",
                            },
                            "expired": {
                                "type": "boolean",
                                "description": "true: the holder stopped renewing (died, froze, "
                                "lost the database); another replica reclaims the job once it "
                                "has a free worker",
                            },
                        },
                    },
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok"]},
                    "service": {"type": "string"},
                    "version": {"type": "string"},
                    "checks": {"type": "object"},
                    "degraded": {
                        "type": "array",
                        "description": "deep=true: scripts no font covers (still ready); "
                        "install the Debian package to fix",
                        "items": {
                            "type": "object",
                            "required": ["script", "package", "font"],
                            "properties": {
                                "script": {"type": "string"},
                                "package": {"type": "string"},
                                "font": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "NotReady": {
                "type": "object",
                "required": ["error", "detail", "status", "checks"],
                "properties": {
                    "error": {"type": "string"},
                    "detail": {"type": "string"},
                    "status": {"type": "string", "enum": ["fail"]},
                    "checks": {"type": "object"},
                },
            },
        },
    },
}


def to_yaml() -> str:
    """The document as YAML (needs PyYAML, a test/dev dependency)."""
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints (a dev-only dependency)

    return (
        "# Generated by `python -m app.http.openapi > docs/openapi.yaml`; edit app/http/openapi.py.\n"
        + yaml.safe_dump(OPENAPI, sort_keys=False, allow_unicode=True, width=100)
    )


if __name__ == "__main__":
    sys.stdout.write(to_yaml())
