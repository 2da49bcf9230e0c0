"""The simulator's server: the aiohttp application, its request pipeline, and its routes.

Every request (except the simulator's own ``/_sim/…``) is recorded, then held by matching
delays, answered by a matching fault, authenticated (§3.1), and only then routed. The routes
of every module named in :data:`ROUTE_MODULES` are served: one more part of Zammad's API is a
module of this package with ``add_routes(router: web.UrlDispatcher, state: SimulatorState)
-> None`` and one more line there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from devtools.zammad_simulator.faults import FaultPlan
from devtools.zammad_simulator.responses import JSON_KEY, json_response, zammad_error
from devtools.zammad_simulator.state import SimulatorState

ROUTE_MODULES = (
    "search",  # ticket search (before tickets: /tickets/{id} would take /tickets/search)
    "tickets",  # tickets and articles, creating the note
    "attachments",  # attachment bytes and raw e-mails
    "tags",  # list, add, remove
    "links",  # a ticket's links (merged tickets: the parent link to their target)
)
"""The route modules of this package that are served, each with ``add_routes(router, state)``."""

MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Largest request body the simulator reads (aiohttp's ``client_max_size``)."""

_TOKEN_AUTH = re.compile(r'^Token\s+token="?([^",\s]+)"?', re.IGNORECASE)
_BEARER_AUTH = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the simulator received (``/_sim/*`` excluded).

    Attributes:
        method: upper-case HTTP method.
        path: the URL path without query.
        query: the query parameters (last value wins).
        json: the parsed JSON body, or ``None`` when the body was empty or not JSON.
        headers: request headers minus ``Authorization``.
        body: the raw body bytes.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    body: bytes = b""


class ZammadSimulator(SimulatorState):
    """An in-memory Zammad that speaks the REST API over a real socket.

    The tickets, articles and tags (and how to seed them) are those of
    :class:`~devtools.zammad_simulator.state.SimulatorState`; this class adds the server, the
    one accepted API token, the record of requests and the fault injection.

    Args:
        api_token: the one token accepted (``Authorization: Token token=…`` or ``Bearer …``).
            Tests may change :attr:`api_token` while it runs: the client's token is then
            unknown (a deleted or rotated token: 401 ``Can't find User for Token``).
        user_login, user_id, user_name: the API user (see :class:`SimulatorState`).

    Attributes:
        api_token_access: Zammad's setting ``api_token_access`` (Settings → System → API);
            ``False``: every token request is answered 403 ``API token access disabled!``.
    """

    def __init__(
        self,
        api_token: str = "test-token",
        *,
        user_login: str = "pdf-archiver",
        user_id: int = 14,
        user_name: str = "PDF Archiver",
    ) -> None:
        super().__init__(user_login=user_login, user_id=user_id, user_name=user_name)
        self.api_token = api_token
        self.api_token_access = True
        self.requests: list[RecordedRequest] = []
        """Every request received, oldest first (tests may clear it)."""
        self.faults = FaultPlan()
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # -- fault injection (see FaultPlan) -------------------------------------------------------

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
        """Answer matching requests with ``status``; see :meth:`FaultPlan.fail`."""
        self.faults.fail(
            method, path_regex, status, times=times, body=body, text=text, every=every, match_body=match_body
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
        """Hold matching requests (or only their answers, ``after``); see :meth:`FaultPlan.delay`."""
        self.faults.delay(method, path_regex, seconds, after=after, match_body=match_body)

    def clear_faults(self) -> None:
        """Remove all injected faults and delays."""
        self.faults.clear()

    # -- lifecycle -----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application: every route module's routes, the simulator's own
        ``/_sim/state/{id}``, and the request pipeline around them."""
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_REQUEST_BYTES)
        for name in ROUTE_MODULES:
            module = importlib.import_module(f"{__package__}.{name}")
            module.add_routes(app.router, self)
        app.router.add_get("/_sim/state/{id}", self._sim_state)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); returns the base URL.

        Raises:
            RuntimeError: it is running already.
        """
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; pending delays end at once. Safe to call twice."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- the request pipeline ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        raw = await request.read()
        parsed: Any = None
        if raw.strip():
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
        request[JSON_KEY] = parsed
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=parsed,
                headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
                body=raw,
            )
        )
        faults = self.faults
        searchable = raw.decode("utf-8", "replace") + "\n" + request.query_string if faults else ""
        for seconds in faults.delays_for(request, searchable, after=False):
            await self._hold(seconds)
        fault = faults.fault_for(request, searchable)
        if fault is not None:
            return fault
        response = await self._serve(request, raw, parsed, handler)
        for seconds in faults.delays_for(request, searchable, after=True):
            await self._hold(seconds)
        return response

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _serve(
        self, request: web.Request, raw: bytes, parsed: Any, handler: Handler
    ) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            # Rails routes before authenticating: unknown routes are 404 for everyone.
            return zammad_error(404, f"No route matches [{request.method}] {request.path}")
        auth_failure = self._check_auth(request.headers.get("Authorization"))
        if auth_failure is not None:
            return auth_failure
        if raw.strip() and parsed is None:
            return zammad_error(400, "The request body is not valid JSON")
        return await handler(request)

    def _check_auth(self, header: str | None) -> web.Response | None:
        """§3.1: no credentials → 403; token access switched off → 403; an unknown token →
        401; each with ``X-Failure`` (Zammad's ``authenticates.rb``)."""
        if not header or not header.strip():
            return zammad_error(403, "Authentication required")
        match = _TOKEN_AUTH.match(header.strip()) or _BEARER_AUTH.match(header.strip())
        if match is not None and not self.api_token_access:
            return zammad_error(403, "API token access disabled!")
        if match is None:
            if header.strip().lower().startswith("basic "):
                return zammad_error(401, "Invalid BasicAuth credentials")
            return zammad_error(401, "Can't find User for Token")
        if not secrets.compare_digest(match.group(1).encode(), self.api_token.encode()):
            return zammad_error(401, "Can't find User for Token")
        return None

    async def _sim_state(self, request: web.Request) -> web.Response:
        """``GET /_sim/state/{id}`` (no auth, not recorded): ``{"tags": [...], "notes": [...]}``."""
        ticket = self.lookup_ticket(request.match_info["id"])
        if isinstance(ticket, web.Response):
            return ticket
        ticket_id = ticket.columns["id"]
        return json_response({"tags": self.tags(ticket_id), "notes": self.notes(ticket_id)})
