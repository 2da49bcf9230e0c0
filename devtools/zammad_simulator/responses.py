"""What the simulator's answers look like: Zammad's JSON and error bodies (``docs/reference/zammad.md``
§3.6), the masked 5xx, ``Content-Disposition``; and the parsed request body handlers read."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

MASKED_ERROR = "Error ID AbC123xy: Please contact your administrator."
"""Zammad's masked body for every 5xx (and non-validation 422) seen by non-admins (§3.6)."""

JSON_KEY = web.RequestKey("sim_json", object)
"""The request's parsed JSON body (``None``: empty or not JSON), set by the middleware."""


def request_json(request: web.Request) -> Any:
    """The request's JSON body as the middleware parsed it (``None`` when empty or not JSON)."""
    return request.get(JSON_KEY)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with ``Content-Type: application/json; charset=utf-8`` and an ``X-Request-Id``."""
    all_headers = {"X-Request-Id": secrets.token_hex(16), **(headers or {})}
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=all_headers,
    )


def zammad_error(status: int, message: str) -> web.Response:
    """Zammad's error body (§3.6): ``error_human`` repeats ``error``; 401/403 add ``X-Failure``."""
    headers = {"X-Failure": message} if status in (401, 403) else None
    return json_response({"error": message, "error_human": message}, status=status, headers=headers)


_TRADITIONAL_ESCAPED = re.compile(r"[^ A-Za-z0-9!#$+.^_`|~-]")


def content_disposition(disposition: str, filename: str) -> str:
    """``inline``/``attachment`` with an ASCII ``filename`` and the UTF-8 ``filename*`` (RFC 6266),
    as Rails' ``send_data`` writes them (``ActionDispatch::Http::ContentDisposition``): the
    ASCII name transliterated (a character outside ASCII becomes ``?``), then every character
    outside ``[ A-Za-z0-9!#$+.^_`|~-]`` percent-escaped; the UTF-8 name percent-escaped outside
    ``[A-Za-z0-9!#$&+.^_`|~-]``. So a control character in a crafted ticket number never reaches
    the header raw (aiohttp refused the response, and the connection was cut)."""
    ascii_name = _TRADITIONAL_ESCAPED.sub(
        lambda m: "".join(f"%{byte:02X}" for byte in m.group().encode()),
        filename.encode("ascii", "replace").decode("ascii"),
    )
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='!#$&+^`|')}"


def truthy(value: str | None) -> bool:
    """A query flag as Rails reads ``true``/``1``."""
    return value is not None and value.lower() in ("true", "1")
