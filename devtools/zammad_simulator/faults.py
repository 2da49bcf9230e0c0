"""Fault injection: answer matching requests with an error, or hold them for a while.

Faults and delays match on the method, a regular expression searched in the path, and
optionally one searched in the raw body and query string; the simulator's middleware
(:mod:`devtools.zammad_simulator.server`) applies them before authentication.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devtools.zammad_simulator.responses import MASKED_ERROR, json_response, zammad_error

DEFAULT_ERRORS = {
    400: "Bad Request",
    401: "Can't find User for Token",
    403: "Not authorized",
    404: "Couldn't find the requested record",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}
"""Zammad's ``error`` text for an injected 4xx without a body of its own."""


@dataclass(slots=True)
class Fault:
    """An injected error answer (see :meth:`FaultPlan.fail`)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int | None
    body: dict[str, Any] | None
    text: str | None
    every: int = 1
    seen: int = 0
    match_body: re.Pattern[str] | None = None

    def response(self) -> web.Response:
        """The answer: ``body`` as JSON, else ``text`` as HTML, else Zammad's own error body."""
        if self.body is not None:
            message = str(self.body.get("error_human") or self.body.get("error") or "")
            headers = {"X-Failure": message} if self.status in (401, 403) and message else None
            return json_response(self.body, status=self.status, headers=headers)
        if self.text is not None:
            return web.Response(text=self.text, status=self.status, content_type="text/html", charset="utf-8")
        if self.status >= 500:
            return json_response({"error": MASKED_ERROR}, status=self.status)
        return zammad_error(self.status, DEFAULT_ERRORS.get(self.status, f"HTTP {self.status}"))


@dataclass(slots=True)
class Delay:
    """An injected wait before a request is handled, or before its answer (``after``)."""

    method: str
    pattern: re.Pattern[str]
    seconds: float
    after: bool = False
    match_body: re.Pattern[str] | None = None


class FaultPlan:
    """The faults and delays in force, in the order they were added."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.delays: list[Delay] = []

    def __bool__(self) -> bool:
        return bool(self.faults or self.delays)

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int | None = None,
        body: dict[str, Any] | None = None,
        text: str | None = None,
        every: int = 1,
        match_body: str | None = None,
    ) -> None:
        """Answer matching requests with ``status`` instead of serving them.

        ``method`` is compared case-insensitively (``"*"`` = any); ``path_regex`` is searched
        in the path (anchor it for an exact match); ``match_body``, when given, is searched in
        the raw request body and the query string (e.g. ``r"pdf:error"`` for one tag).
        ``every`` = N fires on every N-th matching request only (the N-th, 2N-th, …; the
        others are served), deterministically. ``times`` limits how often the fault fires
        (``None`` = until :meth:`clear`). The body is ``body`` as JSON, else ``text`` as
        ``text/html``, else Zammad's: the masked ``{"error": "Error ID …"}`` for 5xx,
        ``{"error", "error_human"}`` otherwise (plus ``X-Failure`` on 401/403). Faults are
        checked before authentication, after delays.

        Raises:
            ValueError: ``times`` is not positive, or ``every`` is below 1.
        """
        if times is not None and times <= 0:
            raise ValueError("times must be positive or None")
        if every < 1:
            raise ValueError("every must be at least 1")
        self.faults.append(
            Fault(
                method.upper(),
                re.compile(path_regex),
                status,
                times,
                body,
                text,
                every=every,
                match_body=re.compile(match_body) if match_body is not None else None,
            )
        )

    def delay(
        self,
        method: str,
        path_regex: str,
        seconds: float,
        *,
        after: bool = False,
        match_body: str | None = None,
    ) -> None:
        """Wait ``seconds`` before handling matching requests (until :meth:`clear`).

        With ``after=True`` the request is handled first and only its answer is held: the
        change is made in the simulator's state, but the client does not know yet (a crash
        of the client in that window is a "written, but not confirmed" case). ``match_body``
        as for :meth:`fail`.
        """
        self.delays.append(
            Delay(
                method.upper(),
                re.compile(path_regex),
                float(seconds),
                after=after,
                match_body=re.compile(match_body) if match_body is not None else None,
            )
        )

    def clear(self) -> None:
        """Remove all faults and delays."""
        self.faults.clear()
        self.delays.clear()

    def delays_for(self, request: web.Request, searchable: str, *, after: bool) -> list[float]:
        """The seconds of each delay (before handling, or ``after``) that matches the request."""
        return [
            delay.seconds
            for delay in list(self.delays)
            if delay.after == after
            and _matches(delay.method, delay.pattern, request, delay.match_body, searchable)
        ]

    def fault_for(self, request: web.Request, searchable: str) -> web.Response | None:
        """The answer of the first fault that fires for the request (counting it), or ``None``."""
        for fault in list(self.faults):
            if _matches(fault.method, fault.pattern, request, fault.match_body, searchable):
                fault.seen += 1
                if fault.seen % fault.every:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0 and fault in self.faults:
                        self.faults.remove(fault)
                return fault.response()
        return None


def _matches(
    method: str,
    pattern: re.Pattern[str],
    request: web.Request,
    body_pattern: re.Pattern[str] | None,
    searchable: str,
) -> bool:
    return (
        method in ("*", request.method)
        and pattern.search(request.path) is not None
        and (body_pattern is None or body_pattern.search(searchable) is not None)
    )
