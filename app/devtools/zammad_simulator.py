"""A stateful Zammad REST API simulator (aiohttp.web) for tests and the demo.

It answers the endpoints the archiver uses the way Zammad 6.x does (``docs/reference/zammad.md`` §3,
Zammad's ``config/routes/{ticket,tag}.rb`` and ``app/controllers/{tickets,ticket_articles,
tags}_controller.rb``): same paths, status codes, JSON shapes and error bodies
``{"error": …, "error_human": …}``; ``X-Failure`` on 401/403; masked 5xx bodies.

Python API (tests)::

    sim = ZammadSimulator(api_token="test-token")
    ticket_id = sim.seed_fixture_ticket(Path("tests/fixtures/zammad"))   # 4711
    base_url = await sim.start()                                         # http://127.0.0.1:<port>
    ...
    sim.tags(4711); sim.notes(4711); sim.requests
    sim.fail("POST", r"^/api/v1/ticket_articles$", 500, times=1)
    sim.fail("*", r"^/api/v1/", 503, every=2)              # every 2nd API call fails
    sim.fail("POST", r"^/api/v1/tags/add$", 503, match_body=r"pdf:error", times=4)
    sim.delay("GET", r"^/api/v1/tickets/", 5.0)
    sim.delay("POST", r"^/api/v1/ticket_articles$", 5.0, after=True)  # handled, answer held
    sim.clone_ticket(4711, 5001)                           # a copy with new ids and number
    await sim.stop()

CLI (demo)::

    python -m app.devtools.zammad_simulator --host 127.0.0.1 --port 0 --token T \\
        --seed tests/fixtures/zammad

prints exactly one line ``LISTENING http://127.0.0.1:<port>`` on stdout once it accepts
connections and serves until SIGTERM/SIGINT. ``GET /_sim/state/{ticket_id}`` (no auth, not
recorded) returns ``{"tags": [...], "notes": [...]}``.

Not simulated: users, groups and permissions (one token, full access), merged tickets,
search, ``PUT /tickets``, ticket history, pagination, gzip, ``ETag``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import email.contentmanager
import email.policy
import hashlib
import json
import re
import secrets
import signal
import struct
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from app.devtools.simulator_search import register_search

__all__ = ["RecordedRequest", "ZammadSimulator", "main"]

#: Longest article body Zammad accepts through the API (``Ticket::Article#check_body``).
MAX_ARTICLE_BODY_CHARS = 1_500_000
#: Zammad's masked body for every 5xx (and non-validation 422) seen by non-admins (§3.6).
MASKED_ERROR = "Error ID AbC123xy: Please contact your administrator."

#: The name strings ``?expand=true`` adds to a ticket (§3.2).
TICKET_NAME_KEYS = (
    "group",
    "organization",
    "state",
    "priority",
    "owner",
    "customer",
    "created_by",
    "updated_by",
    "create_article_type",
    "create_article_sender",
)
#: Keys that exist only in rendered articles, not in ``?all=true`` ``TicketArticle`` assets.
_ARTICLE_NAME_KEYS = ("type", "sender", "created_by", "updated_by", "origin_by", "time_unit")
#: Ticket keys that are not columns (``?expand=true`` / asset extras).
_TICKET_EXTRA_KEYS = ("article_ids", "ticket_time_accounting_ids")

# Zammad's seeded lookup tables (db/seeds).
_STATES = {
    1: "new",
    2: "open",
    3: "pending reminder",
    4: "closed",
    5: "merged",
    6: "pending close",
    7: "removed",
}
_PRIORITIES = {1: "1 low", 2: "2 normal", 3: "3 high"}
_ARTICLE_TYPES = {
    1: "email",
    2: "sms",
    3: "chat",
    4: "fax",
    5: "phone",
    6: "twitter status",
    7: "twitter direct-message",
    8: "facebook feed post",
    9: "facebook feed comment",
    10: "note",
    11: "web",
    12: "telegram personal-message",
}
_ARTICLE_TYPE_IDS = {name: type_id for type_id, name in _ARTICLE_TYPES.items()}
_SENDERS = {1: "Agent", 2: "Customer", 3: "System"}
_SENDER_IDS = {name: sender_id for sender_id, name in _SENDERS.items()}

_INLINE_URL = re.compile(r"/api/v1/ticket_attachment/(\d+)/(\d+)/(\d+)")
_TOKEN_AUTH = re.compile(r'^Token\s+token="?([^",\s]+)"?', re.IGNORECASE)
_BEARER_AUTH = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)
#: The request's parsed JSON body, set by the middleware.
_JSON_KEY = web.RequestKey("sim_json", object)
_DEFAULT_ERRORS = {
    400: "Bad Request",
    401: "Can't find User for Token",
    403: "Not authorized",
    404: "Couldn't find the requested record",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}


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


@dataclass(slots=True)
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int | None
    body: dict[str, Any] | None
    text: str | None
    every: int = 1
    seen: int = 0
    match_body: re.Pattern[str] | None = None


@dataclass(slots=True)
class _Delay:
    method: str
    pattern: re.Pattern[str]
    seconds: float
    after: bool = False
    match_body: re.Pattern[str] | None = None


@dataclass(slots=True)
class _Ticket:
    columns: dict[str, Any]
    names: dict[str, Any]
    tags: list[str]
    article_ids: list[int]
    time_accounting_ids: list[int]
    all_extras: dict[str, Any] = field(default_factory=dict)


class ZammadSimulator:
    """An in-memory Zammad that speaks the REST API over a real socket.

    Args:
        api_token: the one token accepted (``Authorization: Token token=…`` or ``Bearer …``).
        user_login, user_id: the API user; articles created through the API carry them as
            ``created_by``/``created_by_id`` (like ``note-created.json``).
        user_name: the ``from`` of created articles.
    """

    def __init__(
        self,
        api_token: str = "test-token",
        *,
        user_login: str = "pdf-archiver",
        user_id: int = 14,
        user_name: str = "PDF Archiver",
    ) -> None:
        self.api_token = api_token
        self.user_login = user_login
        self.user_id = user_id
        self.user_name = user_name
        #: Every request received, oldest first (tests may clear it).
        self.requests: list[RecordedRequest] = []
        self._tickets: dict[int, _Ticket] = {}
        self._articles: dict[int, dict[str, Any]] = {}
        self._created_article_ids: set[int] = set()
        self._hidden_attachments: dict[int, list[dict[str, Any]]] = {}
        self._attachment_data: dict[int, bytes] = {}
        self._faults: list[_Fault] = []
        self._delays: list[_Delay] = []
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url: str | None = None

    # -- state set-up ------------------------------------------------------------------

    def add_ticket(
        self,
        ticket: dict[str, Any],
        articles: list[dict[str, Any]],
        tags: list[str],
        *,
        names: dict[str, Any] | None = None,
        all_extras: dict[str, Any] | None = None,
    ) -> int:
        """Store a ticket with its articles and tags; returns the ticket id.

        Args:
            ticket: the ticket record (columns with ``_id``s, e.g. the ``assets.Ticket`` entry
                of ``ticket-all.json``). Name strings and ``article_ids`` in it are moved
                aside; ``ticket_time_accounting_ids`` is kept for ``?expand``/``?all``.
            articles: articles as ``by_ticket`` returns them (``type``/``sender``/
                ``created_by`` names; missing names are derived from the ids). Inline images
                referenced as ``/api/v1/ticket_attachment/{t}/{a}/{id}`` in a body but absent
                from ``attachments`` are registered as hidden PNG attachments, as Zammad
                hides inline attachments it has rewritten (§4).
            tags: the ticket's tags.
            names: the ``?expand=true`` name strings (``group``, ``state``, ``owner``, …);
                missing ones are derived from the ids (``owner_id`` 1 → ``-``).
            all_extras: extra ``?all=true`` parts: ``assets`` (e.g. ``User``,
                ``Organization``, ``Group``), ``links``, ``mentions``, ``time_accountings``,
                ``form_meta``.
        """
        columns = copy.deepcopy(ticket)
        ticket_id = columns.get("id")
        if not isinstance(ticket_id, int) or ticket_id <= 0:
            raise ValueError(f"ticket needs a positive int 'id', got {ticket_id!r}")
        given_names = {key: columns.pop(key) for key in TICKET_NAME_KEYS if key in columns}
        columns.pop("article_ids", None)
        time_ids = list(columns.pop("ticket_time_accounting_ids", []) or [])
        merged_names = {**_default_names(columns), **given_names, **(names or {})}
        article_ids: list[int] = []
        for article in articles:
            stored = copy.deepcopy(article)
            article_id = stored.get("id")
            if not isinstance(article_id, int) or article_id <= 0:
                raise ValueError(f"article needs a positive int 'id', got {article_id!r}")
            stored["ticket_id"] = ticket_id
            stored.setdefault("type", _ARTICLE_TYPES.get(stored.get("type_id"), "note"))
            stored.setdefault("sender", _SENDERS.get(stored.get("sender_id"), "Agent"))
            stored.setdefault("created_by", _user_name(stored.get("created_by_id")))
            stored.setdefault("updated_by", _user_name(stored.get("updated_by_id")))
            stored.setdefault("attachments", [])
            self._articles[article_id] = stored
            self._hidden_attachments[article_id] = _inline_attachments(stored, ticket_id)
            article_ids.append(article_id)
        self._tickets[ticket_id] = _Ticket(
            columns=columns,
            names=merged_names,
            tags=_dedupe([t.strip() for t in tags if t.strip()]),
            article_ids=article_ids,
            time_accounting_ids=time_ids,
            all_extras=copy.deepcopy(all_extras or {}),
        )
        return ticket_id

    def seed_fixture_ticket(self, fixtures_dir: Path) -> int:
        """Load ticket 4711 from ``ticket-all.json``, ``articles-by-ticket.json``, ``tags.json``
        (names from ``ticket-expand.json`` when present); returns the ticket id."""
        fixtures_dir = Path(fixtures_dir)

        def load(name: str) -> Any:
            return json.loads((fixtures_dir / name).read_text(encoding="utf-8"))

        everything = load("ticket-all.json")
        ticket_id = int(everything["ticket_id"])
        ticket = everything["assets"]["Ticket"][str(ticket_id)]
        names = None
        if (fixtures_dir / "ticket-expand.json").exists():
            expanded = load("ticket-expand.json")
            names = {key: expanded[key] for key in TICKET_NAME_KEYS if key in expanded}
        extras = {
            "assets": {k: v for k, v in everything["assets"].items() if k not in ("Ticket", "TicketArticle")},
            **{
                k: everything[k]
                for k in ("links", "mentions", "time_accountings", "form_meta")
                if k in everything
            },
        }
        return self.add_ticket(
            ticket, load("articles-by-ticket.json"), load("tags.json")["tags"], names=names, all_extras=extras
        )

    def clone_ticket(
        self,
        source_id: int,
        new_id: int,
        *,
        number: str | None = None,
        tags: list[str] | None = None,
        article_ids: list[int] | None = None,
    ) -> int:
        """Add a copy of ticket ``source_id`` as ``new_id`` (number ``number``, default
        ``str(new_id)``; tags ``tags``, default the source's), with copies of its articles
        (of those in ``article_ids`` only, when given) under fresh article ids. Inline image
        URLs in the bodies are rewritten to the new ticket and article ids; attachment ids are
        kept. Notes created through the API are not copied. Returns ``new_id``."""
        if new_id in self._tickets:
            raise ValueError(f"ticket {new_id} exists already")
        source = self._ticket(source_id)
        next_article = max(self._articles, default=0) + 1
        articles = []
        for old_id in source.article_ids:
            if old_id in self._created_article_ids or (article_ids is not None and old_id not in article_ids):
                continue  # notes the archiver posted belong to the source ticket only
            article = copy.deepcopy(self._articles[old_id])
            article["id"] = next_article
            article["body"] = str(article.get("body") or "").replace(
                f"/api/v1/ticket_attachment/{source_id}/{old_id}/",
                f"/api/v1/ticket_attachment/{new_id}/{next_article}/",
            )
            article.pop("ticket_id", None)
            articles.append(article)
            next_article += 1
        columns = {**copy.deepcopy(source.columns), "id": new_id, "number": number or str(new_id)}
        return self.add_ticket(
            columns,
            articles,
            list(source.tags) if tags is None else tags,
            names=copy.deepcopy(source.names),
            all_extras=source.all_extras,
        )

    # -- inspection --------------------------------------------------------------------

    def tags(self, ticket_id: int) -> list[str]:
        """The ticket's current tags (a copy)."""
        return list(self._ticket(ticket_id).tags)

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Articles created through ``POST /api/v1/ticket_articles`` for the ticket, oldest first."""
        ticket = self._ticket(ticket_id)
        return [
            copy.deepcopy(self._articles[a]) for a in ticket.article_ids if a in self._created_article_ids
        ]

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """The stored ticket columns (a copy)."""
        return copy.deepcopy(self._ticket(ticket_id).columns)

    # -- fault injection ---------------------------------------------------------------

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
        (``None`` = until :meth:`clear_faults`). The body is ``body`` as JSON, else ``text`` as
        ``text/html``, else Zammad's: the masked ``{"error": "Error ID …"}`` for 5xx,
        ``{"error", "error_human"}`` otherwise (plus ``X-Failure`` on 401/403). Faults are
        checked before authentication, after delays.
        """
        if times is not None and times <= 0:
            raise ValueError("times must be positive or None")
        if every < 1:
            raise ValueError("every must be at least 1")
        self._faults.append(
            _Fault(
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
        """Wait ``seconds`` before handling matching requests (until :meth:`clear_faults`).

        With ``after=True`` the request is handled first and only its answer is held: the
        change is made in the simulator's state, but the client does not know yet (a crash
        of the client in that window is a "written, but not confirmed" case). ``match_body``
        as for :meth:`fail`.
        """
        self._delays.append(
            _Delay(
                method.upper(),
                re.compile(path_regex),
                float(seconds),
                after=after,
                match_body=re.compile(match_body) if match_body is not None else None,
            )
        )

    def clear_faults(self) -> None:
        """Remove all injected faults and delays."""
        self._faults.clear()
        self._delays.clear()

    # -- lifecycle ---------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (routes + auth/recording/fault middleware)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        r = app.router
        register_search(self, r)  # GET /api/v1/tickets/search (app.devtools.simulator_search)
        r.add_get("/api/v1/tickets/{id}", self._get_ticket)
        r.add_get("/api/v1/ticket_articles/by_ticket/{id}", self._articles_by_ticket)
        r.add_get("/api/v1/ticket_articles/{id}", self._get_article)
        r.add_post("/api/v1/ticket_articles", self._create_article)
        r.add_get("/api/v1/ticket_attachment/{ticket_id}/{article_id}/{id}", self._get_attachment)
        r.add_get("/api/v1/ticket_article_plain/{id}", self._article_plain)
        r.add_get("/api/v1/tags", self._list_tags)
        r.add_post("/api/v1/tags/add", self._add_tag)
        r.add_delete("/api/v1/tags/remove", self._remove_tag)
        r.add_get("/_sim/state/{id}", self._sim_state)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); returns the base URL."""
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

    # -- middleware --------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        raw = await request.read()
        parsed: Any = None
        if raw.strip():
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
        request[_JSON_KEY] = parsed
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
        searchable = (
            raw.decode("utf-8", "replace") + "\n" + request.query_string
            if self._delays or self._faults
            else ""
        )
        for delay in list(self._delays):
            if not delay.after and _matches(
                delay.method, delay.pattern, request, delay.match_body, searchable
            ):
                await self._hold(delay.seconds)
        for fault in list(self._faults):
            if _matches(fault.method, fault.pattern, request, fault.match_body, searchable):
                fault.seen += 1
                if fault.seen % fault.every:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0 and fault in self._faults:
                        self._faults.remove(fault)
                return _fault_response(fault)
        response = await self._serve(request, raw, parsed, handler)
        for delay in list(self._delays):
            if delay.after and _matches(delay.method, delay.pattern, request, delay.match_body, searchable):
                await self._hold(delay.seconds)
        return response

    async def _hold(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _serve(self, request: web.Request, raw: bytes, parsed: Any, handler: Any) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            # Rails routes before authenticating: unknown routes are 404 for everyone.
            return _error(404, f"No route matches [{request.method}] {request.path}")
        auth_failure = self._check_auth(request.headers.get("Authorization"))
        if auth_failure is not None:
            return auth_failure
        if raw.strip() and parsed is None:
            return _error(400, "The request body is not valid JSON")
        return await handler(request)

    def _check_auth(self, header: str | None) -> web.Response | None:
        """§3.1: no credentials → 403; an unknown token → 401; both with ``X-Failure``."""
        if not header or not header.strip():
            return _error(403, "Authentication required")
        match = _TOKEN_AUTH.match(header.strip()) or _BEARER_AUTH.match(header.strip())
        if match is None:
            if header.strip().lower().startswith("basic "):
                return _error(401, "Invalid BasicAuth credentials")
            return _error(401, "Can't find User for Token")
        if not secrets.compare_digest(match.group(1).encode(), self.api_token.encode()):
            return _error(401, "Can't find User for Token")
        return None

    # -- handlers: tickets -------------------------------------------------------------

    async def _get_ticket(self, request: web.Request) -> web.Response:
        """``GET /api/v1/tickets/{id}``: columns; ``?expand=true`` adds names and
        ``article_ids``; ``?all=true`` the ``ticket-all.json`` shape (§3.2, §3.3)."""
        ticket = self._lookup_ticket(request.match_info["id"])
        if isinstance(ticket, web.Response):
            return ticket
        if _truthy(request.query.get("expand")):
            return _json(self._expanded(ticket))
        if _truthy(request.query.get("all")):
            return _json(self._all(ticket))
        return _json(ticket.columns)

    def _expanded(self, ticket: _Ticket) -> dict[str, Any]:
        data = {
            **ticket.columns,
            **ticket.names,
            "article_ids": list(ticket.article_ids),
            "ticket_time_accounting_ids": list(ticket.time_accounting_ids),
        }
        return dict(sorted(data.items()))

    def _all(self, ticket: _Ticket) -> dict[str, Any]:
        ticket_id = ticket.columns["id"]
        record = {
            **copy.deepcopy(ticket.columns),
            "article_ids": list(ticket.article_ids),
            "ticket_time_accounting_ids": list(ticket.time_accounting_ids),
        }
        assets: dict[str, Any] = {"Ticket": {str(ticket_id): record}}
        assets.update(copy.deepcopy(ticket.all_extras.get("assets", {})))
        assets["TicketArticle"] = {
            str(a): {k: v for k, v in copy.deepcopy(self._articles[a]).items() if k not in _ARTICLE_NAME_KEYS}
            for a in ticket.article_ids
        }
        extras = ticket.all_extras
        return {
            "ticket_id": ticket_id,
            "ticket_article_ids": list(ticket.article_ids),
            "assets": assets,
            "links": copy.deepcopy(extras.get("links", [])),
            "tags": list(ticket.tags),
            "mentions": copy.deepcopy(extras.get("mentions", [])),
            "time_accountings": copy.deepcopy(extras.get("time_accountings", [])),
            "form_meta": copy.deepcopy(extras.get("form_meta", {})),
        }

    # -- handlers: articles ------------------------------------------------------------

    async def _articles_by_ticket(self, request: web.Request) -> web.Response:
        """``GET /api/v1/ticket_articles/by_ticket/{id}``: every article, not paginated."""
        ticket = self._lookup_ticket(request.match_info["id"])
        if isinstance(ticket, web.Response):
            return ticket
        return _json([self._articles[a] for a in ticket.article_ids])

    async def _get_article(self, request: web.Request) -> web.Response:
        """``GET /api/v1/ticket_articles/{id}``."""
        article = self._lookup_article(request.match_info["id"])
        if isinstance(article, web.Response):
            return article
        return _json(article)

    async def _create_article(self, request: web.Request) -> web.Response:
        """``POST /api/v1/ticket_articles`` (§3.4): 201 + the article; 422 without a body or
        with one over 1,500,000 chars (``Ticket::Article#check_body``)."""
        params = request[_JSON_KEY]
        if not isinstance(params, dict):
            params = {}
        if params.get("ticket_id") in (None, ""):
            return _error(404, "Couldn't find Ticket without an ID")
        ticket = self._lookup_ticket(str(params["ticket_id"]))
        if isinstance(ticket, web.Response):
            return ticket
        body = params.get("body")
        if body is None or not str(body).strip():
            return _error(422, "Need at least an 'article body' field.")
        body = str(body)
        if len(body) > MAX_ARTICLE_BODY_CHARS:
            return _error(
                422,
                f"body of article is too large, {len(body)} chars - only {MAX_ARTICLE_BODY_CHARS} allowed",
            )
        type_name = params.get("type") or "note"
        sender_name = params.get("sender") or "Agent"
        if type_name not in _ARTICLE_TYPE_IDS:
            return _error(422, f"Unable to find Ticket::Article::Type with name '{type_name}'")
        if sender_name not in _SENDER_IDS:
            return _error(422, f"Unable to find Ticket::Article::Sender with name '{sender_name}'")
        attachments = self._decode_attachments(params.get("attachments"))
        if isinstance(attachments, web.Response):
            return attachments
        now = _now()
        article_id = max(self._articles, default=0) + 1
        article = {
            "id": article_id,
            "ticket_id": ticket.columns["id"],
            "type_id": _ARTICLE_TYPE_IDS[type_name],
            "sender_id": _SENDER_IDS[sender_name],
            "from": params.get("from") or self.user_name,
            "to": params.get("to"),
            "cc": params.get("cc"),
            "subject": params.get("subject"),
            "reply_to": None,
            "message_id": None,
            "message_id_md5": None,
            "in_reply_to": None,
            "content_type": params.get("content_type") or "text/plain",
            "references": None,
            "body": body,
            "internal": bool(params.get("internal", False)),
            "preferences": {},
            "updated_by_id": self.user_id,
            "created_by_id": self.user_id,
            "origin_by_id": None,
            "created_at": now,
            "updated_at": now,
            "detected_language": None,
            "type": type_name,
            "sender": sender_name,
            "created_by": self.user_login,
            "updated_by": self.user_login,
            "attachments": attachments,
            "time_unit": None,
        }
        self._articles[article_id] = article
        self._hidden_attachments[article_id] = []
        self._created_article_ids.add(article_id)
        ticket.article_ids.append(article_id)
        # Creating an article is a ticket update (§3.4, §5).
        ticket.columns["article_count"] = len(ticket.article_ids)
        ticket.columns["updated_at"] = now
        ticket.columns["updated_by_id"] = self.user_id
        ticket.names["updated_by"] = self.user_login
        return _json(copy.deepcopy(article), status=201)

    def _decode_attachments(self, raw: Any) -> list[dict[str, Any]] | web.Response:
        """``attachments: [{"filename", "data" (base64), "mime-type"}]``; 422 on a missing key
        or bad base64 (§3.4)."""
        if not raw:
            return []
        if not isinstance(raw, list):
            return _error(422, "Attachments need to be an array")
        result = []
        next_id = max(self._all_attachment_ids(), default=0) + 1
        for item in raw:
            if not isinstance(item, dict) or not all(item.get(k) for k in ("filename", "data", "mime-type")):
                return _error(422, "Attachment needs 'filename', 'data' and 'mime-type' params.")
            try:
                data = base64.b64decode(str(item["data"]), validate=True)
            except (binascii.Error, ValueError):
                return _error(422, "Invalid base64 for attachment with index '0'")
            self._attachment_data[next_id] = data
            result.append(
                {
                    "id": next_id,
                    "filename": item["filename"],
                    "size": str(len(data)),
                    "preferences": {"Content-Type": item["mime-type"], "Mime-Type": item["mime-type"]},
                }
            )
            next_id += 1
        return result

    def _all_attachment_ids(self) -> list[int]:
        ids = [att["id"] for a in self._articles.values() for att in a.get("attachments", [])]
        ids += [att["id"] for hidden in self._hidden_attachments.values() for att in hidden]
        return ids

    # -- handlers: attachments and raw mail ----------------------------------------------

    async def _get_attachment(self, request: web.Request) -> web.Response:
        """``GET /api/v1/ticket_attachment/{t}/{a}/{id}``: generated bytes typed from the
        stored preferences; 403 when the article is not in the ticket or the file not in the
        article (``TicketArticlesController#attachment``)."""
        ticket = self._lookup_ticket(request.match_info["ticket_id"])
        if isinstance(ticket, web.Response):
            return ticket
        article = self._lookup_article(request.match_info["article_id"])
        if isinstance(article, web.Response):
            return article
        if article["ticket_id"] != ticket.columns["id"]:
            return _error(403, "No access, article_id/ticket_id is not matching.")
        wanted = request.match_info["id"]
        entries = list(article.get("attachments", [])) + self._hidden_attachments.get(article["id"], [])
        entry = next((e for e in entries if str(e.get("id")) == wanted), None)
        if entry is None:
            return _error(403, "Requested file id is not linked with article_id.")
        preferences = entry.get("preferences") or {}
        content_type = (
            preferences.get("Content-Type") or preferences.get("Mime-Type") or "application/octet-stream"
        )
        mime = (preferences.get("Mime-Type") or content_type).split(";")[0].strip().lower()
        data = self._attachment_data.get(entry["id"])
        if data is None:
            data = _generated_file(mime, entry["id"], _int_or(entry.get("size"), 64))
        disposition = request.query.get("disposition", "inline")
        if disposition not in ("inline", "attachment"):
            return _error(
                403, f"Invalid disposition {disposition} requested. Only inline, attachment are valid."
            )
        return web.Response(
            body=data,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": _content_disposition(
                    disposition, str(entry.get("filename") or "file")
                ),
            },
        )

    async def _article_plain(self, request: web.Request) -> web.Response:
        """``GET /api/v1/ticket_article_plain/{id}``: a generated RFC 822 message for e-mail
        articles; other articles have no stored mail and get an empty 204 ([inferred] §3.2)."""
        article = self._lookup_article(request.match_info["id"])
        if isinstance(article, web.Response):
            return article
        if article.get("type") != "email":
            return web.Response(status=204)
        ticket = self._tickets[article["ticket_id"]]
        filename = f"ticket-{ticket.columns.get('number', ticket.columns['id'])}-{article['id']}.eml"
        return web.Response(
            body=self._eml(article),
            headers={
                "Content-Type": "message/rfc822",
                "Content-Disposition": _content_disposition("inline", filename),
            },
        )

    def _eml(self, article: dict[str, Any]) -> bytes:
        """The article as an RFC 822 message (``email.policy.SMTP``), the same bytes every time.

        Simple articles (no attachments, short ASCII headers of plain names and addresses,
        no ``Message-ID``/``In-Reply-To``/``References``) are written directly by
        :func:`_simple_eml`, byte for byte what the ``email`` package writes for them (~15×
        faster: its header parsing dominates); all others go through ``EmailMessage``.
        """
        try:
            created = datetime.fromisoformat(str(article.get("created_at")).replace("Z", "+00:00"))
        except ValueError:
            created = datetime.now(UTC)
        fast = _simple_eml(article, created)
        return fast if fast is not None else self._make_eml(article)

    def _make_eml(self, article: dict[str, Any]) -> bytes:
        msg = EmailMessage(policy=email.policy.SMTP)
        for header, key in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to")):
            if article.get(key):
                msg[header] = str(article[key])
        msg["Subject"] = str(article.get("subject") or "")
        try:
            created = datetime.fromisoformat(str(article.get("created_at")).replace("Z", "+00:00"))
        except ValueError:
            created = datetime.now(UTC)
        msg["Date"] = format_datetime(created)
        for header, key in (
            ("Message-ID", "message_id"),
            ("In-Reply-To", "in_reply_to"),
            ("References", "references"),
        ):
            if article.get(key):
                msg[header] = str(article[key])
        subtype = "html" if article.get("content_type") == "text/html" else "plain"
        msg.set_content(str(article.get("body") or ""), subtype=subtype, charset="utf-8")
        for entry in article.get("attachments", []):
            preferences = entry.get("preferences") or {}
            if preferences.get("original-format"):
                continue  # the message.html pseudo-attachment is the body itself
            mime = (preferences.get("Mime-Type") or "application/octet-stream").lower()
            maintype, _, subtype = mime.partition("/")
            data = self._attachment_data.get(entry["id"]) or _generated_file(
                mime, entry["id"], _int_or(entry.get("size"), 64)
            )
            msg.add_attachment(
                data, maintype=maintype, subtype=subtype or "octet-stream", filename=entry["filename"]
            )
        if msg.is_multipart():
            # Zammad serves the stored mail, the same bytes every time: no random boundary.
            msg.set_boundary(f"=_zammad-simulator-{article.get('id')}")
        return msg.as_bytes()

    # -- handlers: tags ----------------------------------------------------------------

    async def _list_tags(self, request: web.Request) -> web.Response:
        """``GET /api/v1/tags?object=Ticket&o_id={id}`` → ``{"tags": [...]}``."""
        ticket = self._tag_target(dict(request.query))
        if isinstance(ticket, web.Response):
            return ticket
        return _json({"tags": list(ticket.tags)})

    async def _add_tag(self, request: web.Request) -> web.Response:
        """``POST /api/v1/tags/add`` → 201 ``true``; idempotent; the item is stripped."""
        target = self._tag_change(request)
        if isinstance(target, web.Response):
            return target
        ticket, item = target
        if item not in ticket.tags:
            ticket.tags.append(item)
        return _json(True, status=201)

    async def _remove_tag(self, request: web.Request) -> web.Response:
        """``DELETE /api/v1/tags/remove`` with a JSON body → 200 ``true``; idempotent."""
        target = self._tag_change(request)
        if isinstance(target, web.Response):
            return target
        ticket, item = target
        if item in ticket.tags:
            ticket.tags.remove(item)
        return _json(True, status=200)

    def _tag_change(self, request: web.Request) -> tuple[_Ticket, str] | web.Response:
        """The ticket and stripped item of a tag add/remove (query and JSON body merged), or the
        error Zammad answers."""
        params = {**request.query, **(request[_JSON_KEY] if isinstance(request[_JSON_KEY], dict) else {})}
        ticket = self._tag_target(params)
        if isinstance(ticket, web.Response):
            return ticket
        item = str(params.get("item") or "").strip()
        if not item:
            return _error(422, "Need 'item' param.")
        return ticket, item

    def _tag_target(self, params: dict[str, Any]) -> _Ticket | web.Response:
        if params.get("object") != "Ticket":
            return _error(422, f"Invalid object '{params.get('object')}', only Ticket is simulated")
        if params.get("o_id") in (None, ""):
            return _error(404, "Couldn't find Ticket without an ID")
        return self._lookup_ticket(str(params["o_id"]))

    # -- handlers: simulator -----------------------------------------------------------

    async def _sim_state(self, request: web.Request) -> web.Response:
        ticket = self._lookup_ticket(request.match_info["id"])
        if isinstance(ticket, web.Response):
            return ticket
        ticket_id = ticket.columns["id"]
        return _json({"tags": self.tags(ticket_id), "notes": self.notes(ticket_id)})

    # -- lookups -----------------------------------------------------------------------

    def _ticket(self, ticket_id: int) -> _Ticket:
        try:
            return self._tickets[ticket_id]
        except KeyError:
            raise KeyError(f"no ticket {ticket_id} in the simulator") from None

    def _lookup_ticket(self, raw_id: str) -> _Ticket | web.Response:
        ticket = self._tickets.get(int(raw_id)) if raw_id.isdigit() else None
        if ticket is None:
            return _error(404, f"Couldn't find Ticket with 'id'={raw_id}")
        return ticket

    def _lookup_article(self, raw_id: str) -> dict[str, Any] | web.Response:
        article = self._articles.get(int(raw_id)) if raw_id.isdigit() else None
        if article is None:
            return _error(404, f"Couldn't find Ticket::Article with 'id'={raw_id}")
        return article


# -- responses ---------------------------------------------------------------------------


#: Header values :func:`_simple_eml` writes as they are: short printable ASCII that the
#: ``email`` package would neither encode, quote, fold nor reformat.
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_ADDR_SPEC = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_PLAIN_ADDRESS = re.compile(rf"(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_ADDR_SPEC}>|{_ADDR_SPEC})")
_ADDRESS_HEADERS = (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to"))
_EML_POLICY = email.policy.SMTP


def _simple_eml(article: dict[str, Any], created: datetime) -> bytes | None:
    """``EmailMessage`` output for a simple article (see :meth:`ZammadSimulator._eml`), or ``None``."""
    if article.get("attachments") or any(article.get(k) for k in ("message_id", "in_reply_to", "references")):
        return None
    headers = []
    for header, key in _ADDRESS_HEADERS:
        value = article.get(key)
        if value:
            value = str(value)
            if (
                not _PLAIN_ADDRESS.fullmatch(value)
                or len(header) + 2 + len(value) > _EML_POLICY.max_line_length
            ):
                return None
            headers.append(f"{header}: {value}")
    subject = str(article.get("subject") or "")
    if (
        not _PLAIN_TEXT.fullmatch(subject)
        or "=?" in subject
        or len(subject) + 9 > _EML_POLICY.max_line_length
    ):
        return None
    headers.append(f"Subject: {subject}")
    headers.append(f"Date: {format_datetime(created)}")
    subtype = "html" if article.get("content_type") == "text/html" else "plain"
    cte, payload = email.contentmanager._encode_text(
        str(article.get("body") or ""), "utf-8", None, _EML_POLICY
    )
    headers += [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
        "MIME-Version: 1.0",
        "",
        "",
    ]
    body = payload.encode("ascii", "surrogateescape").replace(b"\n", b"\r\n")
    return "\r\n".join(headers).encode("ascii") + body


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with ``Content-Type: application/json; charset=utf-8`` and an ``X-Request-Id``."""
    all_headers = {"X-Request-Id": secrets.token_hex(16), **(headers or {})}
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=all_headers,
    )


def _error(status: int, message: str) -> web.Response:
    """Zammad's error body (§3.6): ``error_human`` repeats ``error``; 401/403 add ``X-Failure``."""
    headers = {"X-Failure": message} if status in (401, 403) else None
    return _json({"error": message, "error_human": message}, status=status, headers=headers)


def _fault_response(fault: _Fault) -> web.Response:
    if fault.body is not None:
        message = str(fault.body.get("error_human") or fault.body.get("error") or "")
        headers = {"X-Failure": message} if fault.status in (401, 403) and message else None
        return _json(fault.body, status=fault.status, headers=headers)
    if fault.text is not None:
        return web.Response(text=fault.text, status=fault.status, content_type="text/html", charset="utf-8")
    if fault.status >= 500:
        return _json({"error": MASKED_ERROR}, status=fault.status)
    return _error(fault.status, _DEFAULT_ERRORS.get(fault.status, f"HTTP {fault.status}"))


def _matches(
    method: str,
    pattern: re.Pattern[str],
    request: web.Request,
    body_pattern: re.Pattern[str] | None = None,
    searchable: str = "",
) -> bool:
    return (
        method in ("*", request.method)
        and pattern.search(request.path) is not None
        and (body_pattern is None or body_pattern.search(searchable) is not None)
    )


def _content_disposition(disposition: str, filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- helpers -----------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _user_name(user_id: Any) -> str | None:
    if user_id is None:
        return None
    return "-" if user_id == 1 else f"user-{user_id}"


def _default_names(columns: dict[str, Any]) -> dict[str, Any]:
    """Name strings derived from ids when the caller gives none (Zammad's seeded tables)."""

    def named(key: str, table: dict[int, str] | None = None, prefix: str = "") -> Any:
        value = columns.get(key)
        if value is None:
            return None
        if table is not None:
            return table.get(value, f"{prefix}{value}")
        return f"{prefix}{value}"

    return {
        "group": named("group_id", prefix="group-"),
        "organization": named("organization_id", prefix="organization-"),
        "state": named("state_id", _STATES, "state-"),
        "priority": named("priority_id", _PRIORITIES, "priority-"),
        "owner": _user_name(columns.get("owner_id")),
        "customer": _user_name(columns.get("customer_id")),
        "created_by": _user_name(columns.get("created_by_id")),
        "updated_by": _user_name(columns.get("updated_by_id")),
        "create_article_type": named("create_article_type_id", _ARTICLE_TYPES, "type-"),
        "create_article_sender": named("create_article_sender_id", _SENDERS, "sender-"),
    }


def _inline_attachments(article: dict[str, Any], ticket_id: int) -> list[dict[str, Any]]:
    """Inline images the body references but ``attachments`` hides (§4 ``insert_urls``)."""
    listed = {att.get("id") for att in article.get("attachments", [])}
    hidden = []
    for t, a, att_id in _INLINE_URL.findall(str(article.get("body") or "")):
        if int(t) == ticket_id and int(a) == article["id"] and int(att_id) not in listed:
            listed.add(int(att_id))
            hidden.append(
                {
                    "id": int(att_id),
                    "filename": f"image{att_id}.png",
                    "size": "0",
                    "preferences": {"Mime-Type": "image/png", "Content-Disposition": "inline"},
                }
            )
    return hidden


# -- generated files ---------------------------------------------------------------------


def _generated_file(mime: str, attachment_id: int, size: int) -> bytes:
    """Deterministic stand-in content: a valid PNG/PDF, an HTML/text page, else pseudo-random bytes."""
    if mime == "image/png":
        return tiny_png(attachment_id)
    if mime == "application/pdf":
        return tiny_pdf(f"Simulated attachment {attachment_id}")
    if mime == "text/html":
        return f"<html><body><p>Simulated attachment {attachment_id}</p></body></html>".encode()
    if mime.startswith("text/"):
        return f"Simulated attachment {attachment_id}\n".encode()
    size = max(1, min(size, 1 << 20))
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{attachment_id}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def tiny_png(seed: int = 0, width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` pixels, its colour derived from ``seed``."""
    rgb = hashlib.sha256(str(seed).encode()).digest()[:3]
    raw = b"".join(b"\x00" + rgb * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiny_pdf(text: str = "Simulated attachment") -> bytes:
    """A valid one-page PDF 1.4 (A4) showing ``text`` (ASCII) in Helvetica, with a correct xref."""
    safe = (
        text.encode("ascii", "replace")
        .decode("ascii")
        .replace("\\", "\\\\")
        .replace("(", "\\(")
        .replace(")", "\\)")
    )
    stream = f"BT /F1 12 Tf 72 770 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# -- CLI ---------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    simulator = ZammadSimulator(api_token=args.token)
    if args.seed:
        simulator.seed_fixture_ticket(Path(args.seed))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base_url = await simulator.start(args.host, args.port)
    sys.stdout.write(f"LISTENING {base_url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m app.devtools.zammad_simulator``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m app.devtools.zammad_simulator", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--token", default="test-token", help="the API token to accept")
    parser.add_argument("--seed", metavar="FIXTURES_DIR", help="load ticket 4711 from these fixtures")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
