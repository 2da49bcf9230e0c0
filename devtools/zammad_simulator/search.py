"""The Zammad simulator's ticket search: ``GET /api/v1/tickets/search`` as Zammad answers it.

Zammad's ``TicketsController#search`` (6.x; ``docs/reference/zammad.md`` §3.2, §3.5):

- ``query``: with Elasticsearch (the default here), an Elasticsearch ``query_string`` — the
  subset Zammad's users write is simulated: ``field:value``, ``field:"quoted value"``,
  ``tags:"pdf:sign"`` (or ``tags:pdf\\:sign``), bare words (title, number, article subject,
  body, from, to), ``*``, ``AND`` (also implied between terms, Zammad's default operator),
  ``OR``, ``NOT``/``-``. Parentheses and ranges answer 400 (not simulated). Without
  Elasticsearch (:attr:`SearchBehaviour.search_index` false), Zammad's SQL fallback: the query
  with ``*`` removed is a case-insensitive ``LIKE '%…%'`` over title, number and the articles'
  body, from, to and subject (tickets without articles never match) — so ``tags:…`` matches
  nothing.
- paging: ``per_page`` (or ``limit``; default 50, at most 200) and ``page`` (from 1), read
  with Ruby's ``to_i``; a page past the end is ``[]``; a negative offset or size is refused by
  Elasticsearch, which Zammad answers with its masked 500.
- ``sort_by`` (``id``, ``number``, ``title``, ``created_at``, ``updated_at``; another column
  falls back to the default) and ``order_by`` (``asc``, else ``desc``); default ``updated_at desc``.
- ``expand=true``: a JSON array of expanded tickets (``GET /tickets/{id}?expand=true``'s shape,
  no tags); otherwise ``{"tickets": [ids], "tickets_count": <all matches>, "assets":
  {"Ticket": {"<id>": {…}}}}`` ([inferred] 6.x counts all matches, not only the page).
- a missing ``query`` matches every ticket ([inferred]).

:meth:`SearchBehaviour.throttle` answers the next searches 429 (or 503) with ``Retry-After``, as
a rate-limiting proxy in front of Zammad would (Zammad itself has no API rate limit).

Served through ``ROUTE_MODULES`` (before ``tickets``, whose ``/tickets/{id}`` would take
``/tickets/search``); tests reach the behaviour with :func:`search_behaviour`.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devtools.zammad_simulator.responses import MASKED_ERROR, json_response, zammad_error
from devtools.zammad_simulator.tickets import expanded

if TYPE_CHECKING:
    from devtools.zammad_simulator.state import SimulatorState, TicketRecord

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
SORTABLE = ("id", "number", "title", "created_at", "updated_at")
_RUBY_INT = re.compile(r"^\s*([+-]?\d+)")


@dataclass
class SearchBehaviour:
    """How the simulator's search behaves (one per simulator, :func:`search_behaviour`).

    Attributes:
        search_index: Elasticsearch is configured (else Zammad's SQL fallback).
        throttled: how many more searches are answered ``throttle_status`` with ``Retry-After``.
        throttle_status: 429 or 503.
        retry_after: the ``Retry-After`` value sent (``None``: no header).
    """

    search_index: bool = True
    throttled: int = 0
    throttle_status: int = 429
    retry_after: str | None = "1"

    def throttle(self, times: int = 1, *, status: int = 429, retry_after: str | None = "1") -> None:
        """Answer the next ``times`` searches ``status`` with ``Retry-After: retry_after``."""
        self.throttled, self.throttle_status, self.retry_after = times, status, retry_after


_BEHAVIOURS: weakref.WeakKeyDictionary[Any, SearchBehaviour] = weakref.WeakKeyDictionary()


def search_behaviour(simulator: SimulatorState) -> SearchBehaviour:
    """The search behaviour of ``simulator`` (created on first use)."""
    behaviour = _BEHAVIOURS.get(simulator)
    if behaviour is None:
        behaviour = _BEHAVIOURS[simulator] = SearchBehaviour()
    return behaviour


class UnsupportedQuery(ValueError):
    """Query syntax the simulator does not simulate (answered 400)."""


@dataclass(frozen=True, slots=True)
class _Term:
    field: str | None
    value: str
    negated: bool


def add_routes(router: web.UrlDispatcher, state: SimulatorState) -> None:
    """Serve ``GET /api/v1/tickets/search`` from ``state`` (registered before the
    ``/api/v1/tickets/{id}`` route: see ``ROUTE_MODULES``)."""
    simulator = state

    async def search(request: web.Request) -> web.Response:
        behaviour = search_behaviour(simulator)
        if behaviour.throttled > 0:
            behaviour.throttled -= 1
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else {}
            return web.Response(
                status=behaviour.throttle_status,
                text="<html><body><h1>Too Many Requests</h1></body></html>",
                content_type="text/html",
                headers=headers,
            )
        params = request.query
        raw_limit = params.get("per_page", params.get("limit"))
        limit = min(_ruby_int(raw_limit) if raw_limit is not None else DEFAULT_PER_PAGE, MAX_PER_PAGE)
        page = _ruby_int(params["page"]) if "page" in params else 1
        offset = (page - 1) * limit
        if limit < 0 or offset < 0:
            return json_response({"error": MASKED_ERROR}, status=500)
        tickets = list(simulator.tickets.values())
        query = params.get("query")
        try:
            if query is not None and behaviour.search_index:
                groups = _parse(query)
                tickets = [t for t in tickets if _matches(simulator, t, groups)]
            elif query is not None:
                tickets = [t for t in tickets if _like(simulator, t, query.replace("*", ""))]
        except UnsupportedQuery as exc:
            return zammad_error(400, f"zammad simulator: {exc}")
        sort_by = params.get("sort_by", "updated_at")
        sort_by = sort_by if sort_by in SORTABLE else "updated_at"
        descending = params.get("order_by", "desc").lower() != "asc"
        tickets.sort(key=lambda t: _sort_key(t, sort_by), reverse=descending)
        window = tickets[offset : offset + limit] if limit else []
        if params.get("expand", "").lower() in ("true", "1"):
            return json_response([expanded(t) for t in window])
        return json_response(
            {
                "tickets": [t.columns["id"] for t in window],
                "tickets_count": len(tickets),
                "assets": {"Ticket": {str(t.columns["id"]): _asset(t) for t in window}},
            }
        )

    router.add_get("/api/v1/tickets/search", search)


def _ruby_int(text: str) -> int:
    """Ruby's ``String#to_i``: the leading integer, else 0."""
    match = _RUBY_INT.match(text)
    return int(match.group(1)) if match else 0


def _sort_key(ticket: TicketRecord, column: str) -> tuple[int, Any]:
    value = ticket.columns.get(column)
    if value is None:
        return (0, "")
    return (1, int(value) if column == "id" else str(value))


def _asset(ticket: TicketRecord) -> dict[str, Any]:
    return {
        **ticket.columns,
        "article_ids": list(ticket.article_ids),
        "ticket_time_accounting_ids": list(ticket.time_accounting_ids),
    }


def _parse(query: str) -> list[list[_Term]]:
    """The query as OR-groups of AND-ed terms.

    Raises:
        UnsupportedQuery: parentheses, ranges, or an operator without a term.
    """
    groups: list[list[_Term]] = [[]]
    negate = False
    for token in _tokens(query):
        if token in ("AND", "&&"):
            continue
        if token in ("OR", "||"):
            if not groups[-1] or negate:
                raise UnsupportedQuery(f"OR without a term before it in {query!r}")
            groups.append([])
            continue
        if token == "NOT":
            negate = True
            continue
        negated = negate
        negate = False
        if token[:1] in ("-", "!"):
            negated, token = True, token[1:]
        elif token[:1] == "+":
            token = token[1:]
        field, value = _split_field(token)
        if value[:1] in ("[", "{", ">", "<"):
            raise UnsupportedQuery(f"ranges are not simulated: {token!r}")
        groups[-1].append(_Term(field, value, negated))
    if negate or (not groups[-1] and len(groups) > 1):
        raise UnsupportedQuery(f"an operator without a term after it in {query!r}")
    return [group for group in groups if group]


def _tokens(query: str) -> list[str]:
    """Whitespace-separated tokens; quotes keep spaces; a backslash keeps the next character."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in query:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char in "()" and not quoted:
            raise UnsupportedQuery("parentheses are not simulated")
        elif char.isspace() and not quoted:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if quoted:
        raise UnsupportedQuery(f"unbalanced quotes in {query!r}")
    if current:
        tokens.append("".join(current))
    return tokens


def _split_field(token: str) -> tuple[str | None, str]:
    """``field:value`` at the first unescaped, unquoted colon; the value unquoted and unescaped."""
    field: str | None = None
    index, quoted = 0, False
    while index < len(token):
        char = token[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted and field is None and index > 0:
            field, token = token[:index], token[index + 1 :]
            break
        index += 1
    value = token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token
    return field, re.sub(r"\\(.)", r"\1", value)


def _matches(simulator: SimulatorState, ticket: TicketRecord, groups: list[list[_Term]]) -> bool:
    return any(all(_term(simulator, ticket, term) != term.negated for term in group) for group in groups)


def _term(simulator: SimulatorState, ticket: TicketRecord, term: _Term) -> bool:
    want = term.value.lower()
    if term.field is None:
        if want.strip("*") == "":
            return True
        return any(want.strip("*") in text.lower() for text in _texts(simulator, ticket))
    if term.field == "tags":
        values = list(ticket.tags)
    else:
        expanded = {**ticket.columns, **ticket.names}
        if term.field not in expanded or expanded[term.field] is None:
            return False
        values = [str(expanded[term.field])]
    return any(fnmatch.fnmatchcase(value.lower(), want) for value in values)


def _texts(simulator: SimulatorState, ticket: TicketRecord) -> list[str]:
    texts = [str(ticket.columns.get("title") or ""), str(ticket.columns.get("number") or "")]
    for article_id in ticket.article_ids:
        article = simulator.articles.get(article_id, {})
        texts += [str(article.get(key) or "") for key in ("subject", "body", "from", "to")]
    return texts


def _like(simulator: SimulatorState, ticket: TicketRecord, needle: str) -> bool:
    """Zammad's SQL fallback: ``LIKE '%needle%'`` over title, number and the articles' fields."""
    if not ticket.article_ids:
        return False
    return any(needle.lower() in text.lower() for text in _texts(simulator, ticket))
