"""The Zammad REST client: the archiver's only way to read tickets and write tags and notes.

Implements :class:`app.workflow.ports.ZammadPort` over an :class:`aiohttp.ClientSession` that
the caller (the app lifespan) owns. Endpoints, status codes and error bodies follow
``docs/reference/zammad.md`` §3 (Zammad 6.x, ``config/routes/{ticket,tag}.rb``,
``app/controllers/application_controller/handles_errors.rb``) and Zammad's API docs
(https://docs.zammad.org/en/latest/api/intro.html).

Every failure surfaces as :class:`app.errors.ZammadApiError`:

* a non-2xx answer → ``status`` = the HTTP status, message
  ``"<METHOD> <path> answered <status>: <Zammad's error_human/error or a text excerpt>"``;
  a refusal of the API token itself (:func:`refuses_credentials`: every 401, and a 403
  ``API token access disabled!`` or ``Authentication required``) as
  :class:`app.errors.ZammadUnauthorized` (Transient, ``zammad_unauthorized``), a 403
  ``Maintenance mode enabled!`` as :class:`app.errors.ZammadMaintenance` (Transient,
  ``zammad_maintenance``), anything else as a plain :class:`~app.errors.ZammadApiError`;
* no answer (connection refused, DNS, TLS, reset, timeout) → ``status=None``, message
  naming the cause, e.g. ``"GET /api/v1/tickets/4711 failed: timed out after 30 s"``;
* a 2xx answer that is not JSON at all (a body cut short on the way, a proxy's page) →
  Transient (``transient=True``): the job is tried again. Its message gives the body's length,
  ``Content-Type`` and where parsing stopped, never the body: a 2xx body is ticket data
  (customer names, article text);
* a 2xx answer that is JSON of another shape than the endpoint documents → ``status`` = the
  HTTP status, message ``"... answered 200 with ..."``.

Only a non-2xx body is quoted (clipped to :data:`EXCERPT_CHARS`): Zammad's ``error_human`` or a
proxy's error page.

The API token is sent only in the ``Authorization`` header. It never appears in a message,
in ``repr()`` or in a log line: text that comes from outside (response bodies, exception
strings) is scrubbed of it before use.

One module for all endpoints (over 450 lines): they share one request path, one error mapping
and one token scrubber, which a split would scatter.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from app.errors import ZammadApiError, ZammadMaintenance, ZammadUnauthorized
from app.zammad.articles import lazy_articles

__all__ = ["ZammadClient", "refuses_credentials"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
#: Longest excerpt of a non-JSON error body or of an exception text kept in a message.
EXCERPT_CHARS = 160
_REDACTED = "[redacted]"
_WHITESPACE = re.compile(r"\s+")
_HTML_TAG = re.compile(r"<[^>]*>")
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 :._-]+")

#: Ticket search (:meth:`ZammadClient.search_tickets`): tickets per page (Zammad's default; at
#: most 200), pause between pages, most pages per search, asks per page after a 429/503, and the
#: longest wait for one ``Retry-After``.
SEARCH_PAGE_SIZE, SEARCH_PAGE_PAUSE_SECONDS, SEARCH_MAX_PAGES = 50, 1.0, 200
SEARCH_MAX_WAITS, SEARCH_MAX_WAIT_SECONDS = 3, 60.0
_THROTTLED = (429, 503)
PREALLOCATE_FROM_BYTES = 1024 * 1024
"""Answers of at least this many bytes are read into one buffer of their declared size."""
TOKEN_ACCESS_DISABLED = "api token access disabled"
"""Zammad's 403 when its setting ``api_token_access`` is off (``API token access disabled!``,
``app/controllers/application_controller/authenticates.rb``; older versions answered 401), lower case."""
NO_CREDENTIALS = "authentication required"
"""Zammad's 403 when a request carries no credentials at all (``Authentication required``,
``docs/reference/zammad.md`` §2): ours always do, so a proxy between us dropped the
``Authorization`` header, for every request alike. Lower case."""
MAINTENANCE_MODE = "maintenance mode"
"""In Zammad's 403 ``Maintenance mode enabled!`` (to every user but admins), lower case."""


def refuses_credentials(status: int, detail: str) -> bool:
    """Does a non-2xx answer refuse the service's API token, rather than this one request?

    Args:
        status: the HTTP status.
        detail: Zammad's error text (``error_human``/``error``, else ``X-Failure``, else an
            excerpt of the body), as :class:`ZammadClient` quotes it.

    Returns:
        ``True`` for every 401 (Zammad 6.x/7.x: ``Can't find User for Token``, ``Not authorized
        (token expired)!``, an inactive user; ``docs/reference/zammad.md`` §3.1, §3.6), and for a
        403 whose text says ``API token access disabled`` or ``Authentication required`` (no
        credentials reached Zammad: a proxy dropped the header; case-insensitive). ``False`` for
        any other 403 (``Not authorized``: no access to this ticket's group or article; a tag the
        user may not create; ``Maintenance mode enabled!``) and every other status.
    """
    if status == 401:
        return True
    lowered = detail.lower()
    return status == 403 and (TOKEN_ACCESS_DISABLED in lowered or NO_CREDENTIALS in lowered)


class ZammadClient:
    """Async client for the Zammad REST API v1 (token auth, JSON in and out).

    Args:
        session: an open session; the client never closes it.
        base_url: Zammad's root URL, e.g. ``https://support.example`` (no ``/api/v1``).
        api_token: a personal access token (Zammad permission ``ticket.agent``), sent as
            ``Authorization: Token token=<token>`` (``docs/reference/zammad.md`` §3.1).
        timeout_seconds: total time allowed per request (connect, send, read), > 0.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_token: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not base_url:
            raise ValueError("base_url must not be empty")
        if not api_token:
            raise ValueError("api_token must not be empty")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds!r}")
        self._session = session
        self._base_url = base_url.rstrip("/")
        # Parsed once; each request's URL is this one with its path (an ASCII path of ids
        # needs no quoting), not a string parsed anew.
        self._base = URL(self._base_url)
        self._base_path = self._base.raw_path.rstrip("/")
        self._token = api_token
        self._timeout_seconds = float(timeout_seconds)
        self._timeout = aiohttp.ClientTimeout(total=self._timeout_seconds)
        self._headers = {
            "Authorization": f"Token token={api_token}",
            "Accept": "application/json",
        }
        self._refused: str | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_token='***', "
            f"timeout_seconds={self._timeout_seconds:g})"
        )

    @property
    def base_url(self) -> str:
        """Zammad's root URL without a trailing slash."""
        return self._base_url

    @property
    def credentials_refused(self) -> str | None:
        """The message of Zammad's last refusal of the API token (:func:`refuses_credentials`;
        e.g. ``"GET /api/v1/tags answered 401: Can't find User for Token"``, no secret in it),
        or ``None`` when none came since the last 2xx answer (or no answer came yet). Read at
        scrape time for the metric ``zammad_credentials_refused``."""
        return self._refused

    # -- ZammadPort --------------------------------------------------------------------

    async def get_ticket(self, ticket_id: int) -> dict[str, Any]:
        """``GET /api/v1/tickets/{id}?expand=true``: the ticket's columns plus the name strings
        ``group``, ``organization``, ``state``, ``priority``, ``owner``, ``customer``,
        ``created_by``, ``updated_by``, ``create_article_type``, ``create_article_sender`` and
        ``article_ids`` (``docs/reference/zammad.md`` §3.2, §3.3). A missing ticket answers 404.
        """
        return (await self.get_ticket_raw(ticket_id))[0]

    async def get_ticket_raw(self, ticket_id: int) -> tuple[dict[str, Any], bytes]:
        """As :meth:`get_ticket`, plus the response body exactly as Zammad sent it (the
        original the archive embeds)."""
        path = f"/api/v1/tickets/{_positive_id(ticket_id, 'ticket_id')}"
        data, raw = await self._json_raw("GET", path, params={"expand": "true"})
        return self._expect(data, dict, "GET", path, "a ticket object"), raw

    async def get_tags(self, ticket_id: int) -> list[str]:
        """``GET /api/v1/tags?object=Ticket&o_id={id}`` → ``{"tags": [...]}``; returns the list
        (``docs/reference/zammad.md`` §3.2)."""
        tid = _positive_id(ticket_id, "ticket_id")
        path = "/api/v1/tags"
        data = await self._json("GET", path, params={"object": "Ticket", "o_id": str(tid)})
        data = self._expect(data, dict, "GET", path, '{"tags": [...]}')
        tags = data.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ZammadApiError(
                f'GET {path} answered 200 without a "tags" list of strings',
                status=200,
                method="GET",
                path=path,
            )
        return tags

    async def list_articles(self, ticket_id: int, *, containing: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/v1/ticket_articles/by_ticket/{id}``: every article the token's user may
        see, as a JSON array in Zammad's order (oldest first), not paginated
        (``docs/reference/zammad.md`` §3.2, §3.3).

        With ``containing`` (plain text: letters, digits, space and ``:._-`` only, which no
        JSON encoder escapes), the answer is parsed only if its body holds that text;
        otherwise ``[]`` is returned: no article can contain it. A big ticket's articles
        are then never parsed just to look for a marker. Other text is looked for after
        a full parse. A body that does not end as an array does (cut short on the way) is
        parsed too, for its error: the text may have been in the part that was cut off.
        """
        if containing is None or not _PLAIN_TEXT.fullmatch(containing):
            return list((await self.list_articles_raw(ticket_id))[0])
        path = f"/api/v1/ticket_articles/by_ticket/{_positive_id(ticket_id, 'ticket_id')}"
        _, raw, content_type = await self._request("GET", path)
        if containing.encode() not in raw and raw.lstrip()[:1] == b"[" and raw.rstrip()[-1:] == b"]":
            return []
        return await self._articles_from(raw, path, content_type)

    async def list_articles_raw(self, ticket_id: int) -> tuple[Sequence[dict[str, Any]], bytes]:
        """As :meth:`list_articles`, plus the response body exactly as Zammad sent it. A big
        answer has its articles parsed one at a time when read
        (:func:`app.zammad.articles.lazy_articles`), so a big ticket's articles are never all
        in memory as objects; a smaller one comes as a list."""
        path = f"/api/v1/ticket_articles/by_ticket/{_positive_id(ticket_id, 'ticket_id')}"
        _, raw, content_type = await self._request("GET", path)
        lazy = lazy_articles(raw)
        if lazy is not None:
            return lazy, raw
        return await self._articles_from(raw, path, content_type), raw

    async def _articles_from(self, raw: bytes, path: str, content_type: str | None) -> list[dict[str, Any]]:
        data = self._parse(raw, "GET", path, 200, content_type)
        data = self._expect(data, list, "GET", path, "an array of articles")
        if not all(isinstance(a, dict) for a in data):
            raise ZammadApiError(
                f"GET {path} answered 200 with an array holding non-objects",
                status=200,
                method="GET",
                path=path,
            )
        return data

    async def add_tag(self, ticket_id: int, tag: str) -> None:
        """``POST /api/v1/tags/add`` ``{"object": "Ticket", "o_id": id, "item": tag}``.

        Zammad answers 201 ``true`` and is idempotent; it answers 403 when the tag does not
        exist yet and the user may not create tags (``docs/reference/zammad.md`` §3.2, §5).
        """
        body = _tag_body(ticket_id, tag)
        await self._json("POST", "/api/v1/tags/add", json_body=body)

    async def remove_tag(self, ticket_id: int, tag: str) -> None:
        """``DELETE /api/v1/tags/remove`` with the JSON body ``{"object", "o_id", "item"}``.

        Zammad answers 200 ``true`` (its docs say 201) and is idempotent
        (``docs/reference/zammad.md`` §3.2).
        """
        body = _tag_body(ticket_id, tag)
        await self._json("DELETE", "/api/v1/tags/remove", json_body=body)

    async def create_internal_note(self, ticket_id: int, *, subject: str, body_html: str) -> dict[str, Any]:
        """``POST /api/v1/ticket_articles`` creating an internal HTML note; returns the article.

        Always ``type: note`` (an ``email`` would be sent even when internal) and
        ``sender: Agent``. Zammad answers 201 with the article; 422 for an empty body or one
        over 1,500,000 characters. The POST is not idempotent (``docs/reference/zammad.md`` §3.4).
        """
        tid = _positive_id(ticket_id, "ticket_id")
        path = "/api/v1/ticket_articles"
        body = {
            "ticket_id": tid,
            "type": "note",
            "internal": True,
            "sender": "Agent",
            "content_type": "text/html",
            "subject": subject,
            "body": body_html,
        }
        data = await self._json("POST", path, json_body=body)
        return self._expect(data, dict, "POST", path, "the created article")

    # -- beyond the port ---------------------------------------------------------------

    async def search_tickets(
        self,
        query: str,
        *,
        per_page: int = SEARCH_PAGE_SIZE,
        pause_seconds: float = SEARCH_PAGE_PAUSE_SECONDS,
        max_pages: int = SEARCH_MAX_PAGES,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every ticket Zammad's search finds for ``query`` (Elasticsearch ``query_string``, e.g.
        ``tags:"pdf:sign"``), as expanded tickets (like ``GET /tickets/{id}?expand=true``, no tags).

        ``GET /api/v1/tickets/search?query=…&expand=true&page=N&per_page=M&sort_by=id&order_by=asc``
        (``TicketsController#search``; ``docs/reference/zammad.md`` §3.2), page by page, sorted by
        id so pages do not overlap while tickets change; stops at the first short page or after
        ``max_pages`` (logged). ``per_page`` 1-200, ``pause_seconds`` between pages; a page
        answered 429/503 is asked again after its ``Retry-After`` (else a doubling pause), at
        most :data:`SEARCH_MAX_WAITS` times. Without Elasticsearch Zammad searches title, number
        and article text with SQL ``LIKE``, which knows no fields: ``tags:`` then finds nothing.

        Raises:
            ZammadApiError: a page failed (see the module docstring), or stayed throttled.
            ValueError: for an out-of-range argument.
        """
        if not 1 <= per_page <= 200:
            raise ValueError(f"per_page must be 1-200, got {per_page!r}")
        if pause_seconds < 0 or max_pages < 1:
            raise ValueError("pause_seconds must be >= 0 and max_pages >= 1")
        path = "/api/v1/tickets/search"
        for page in range(1, max_pages + 1):
            if page > 1:
                await asyncio.sleep(pause_seconds)
            params = {
                "query": query,
                "expand": "true",
                "page": str(page),
                "per_page": str(per_page),
                "sort_by": "id",
                "order_by": "asc",
            }
            data = await self._throttled_json(path, params, pause_seconds)
            tickets = self._expect(data, list, "GET", path, "an array of tickets")
            for ticket in tickets:
                if isinstance(ticket, dict):
                    yield ticket
            if len(tickets) < per_page:
                return
        log.warning(
            "zammad ticket search stopped after %d pages; the rest waits for the next search", max_pages
        )

    async def _throttled_json(self, path: str, params: dict[str, str], pause_seconds: float) -> Any:
        """``GET path`` as JSON, asked again after a 429/503 (see :meth:`search_tickets`)."""
        waits = 0
        while True:
            try:
                return await self._json("GET", path, params=params)
            except ZammadApiError as exc:
                if exc.status not in _THROTTLED or waits >= SEARCH_MAX_WAITS:
                    raise
                waits += 1
                delay = exc.retry_after if exc.retry_after is not None else max(pause_seconds, 1.0) * 2**waits
                delay = min(delay, SEARCH_MAX_WAIT_SECONDS)
                log.info("zammad GET %s answered %s; asking again in %.1f s", path, exc.status, delay)
                await asyncio.sleep(delay)

    async def get_links(self, ticket_id: int) -> dict[str, Any]:
        """``GET /api/v1/links?link_object=Ticket&link_object_value={id}`` →
        ``{"links": [{"link_type", "link_object", "link_object_value"}], "assets": {...}}``
        (``LinksController#index``, ``docs/reference/zammad.md`` §3.8): each link as seen from
        this ticket (``parent``: the other ticket is its parent), ``assets`` the linked objects
        (``Ticket`` by id string, with ``number``). A ticket without links answers
        ``{"links": [], "assets": {}}``; linked tickets the token's user may not see are left
        out. Only the answer's being an object is checked here; its parts are read by the caller.
        """
        tid = _positive_id(ticket_id, "ticket_id")
        path = "/api/v1/links"
        data = await self._json("GET", path, params={"link_object": "Ticket", "link_object_value": str(tid)})
        return self._expect(data, dict, "GET", path, '{"links": [...], "assets": {...}}')

    async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
        """``GET /api/v1/ticket_attachment/{ticket}/{article}/{attachment}``: the raw bytes.

        Zammad answers 403 when the article is not in that ticket or the file not in that
        article (``docs/reference/zammad.md`` §3.2, §4).
        """
        path = (
            f"/api/v1/ticket_attachment/{_positive_id(ticket_id, 'ticket_id')}"
            f"/{_positive_id(article_id, 'article_id')}/{_positive_id(attachment_id, 'attachment_id')}"
        )
        _, raw, _ = await self._request("GET", path)
        return raw

    async def get_article_plain(self, article_id: int) -> bytes:
        """``GET /api/v1/ticket_article_plain/{id}``: the raw RFC 822 message of an e-mail
        article (``message/rfc822``; ``docs/reference/zammad.md`` §3.2, §4). Articles without a stored
        mail answer with an empty body: ``b""`` is returned then."""
        path = f"/api/v1/ticket_article_plain/{_positive_id(article_id, 'article_id')}"
        _, raw, _ = await self._request("GET", path)
        return raw

    # -- plumbing ----------------------------------------------------------------------

    async def _json_raw(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> tuple[Any, bytes]:
        """Send one request; return the parsed JSON (``None`` for an empty body) and the raw body."""
        status, raw, content_type = await self._request(method, path, params=params, json_body=json_body)
        return self._parse(raw, method, path, status, content_type), raw

    def _parse(self, raw: bytes, method: str, path: str, status: int, content_type: str | None) -> Any:
        """The JSON in the 2xx body ``raw`` (``None`` for an empty body).

        Raises:
            ZammadApiError: Transient (``transient=True``) if ``raw`` is not JSON: a 2xx body
                that does not parse was cut short on the way or replaced by a proxy, which a
                later try may not meet. The message names the length, ``Content-Type``
                (``content_type``, the header as sent) and where parsing stopped, and quotes
                nothing of the body: it is ticket data, and the message goes into logs and notes.
        """
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = ZammadApiError(
                f"{method} {path} answered {status} with a body that is not JSON "
                f"({len(raw)} bytes, Content-Type {self._scrub(_clip(content_type or 'not given'))}; "
                f"parsing stopped at byte {exc.pos}: {self._scrub(_clip(exc.msg))}); "
                "the body is not quoted, it is ticket data",
                status=status,
                method=method,
                path=path,
            )
            error.transient = True
            raise error from None

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        return (await self._json_raw(method, path, params=params, json_body=json_body))[0]

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> tuple[int, bytes, str | None]:
        """Send one request; return ``(status, body, Content-Type header or None)`` for a 2xx
        answer, raise otherwise."""
        headers = self._headers
        data: bytes | None = None
        if json_body is not None:
            headers = {**headers, "Content-Type": "application/json; charset=utf-8"}
            data = orjson.dumps(json_body)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self._session.request(
                method,
                self._base.with_path(self._base_path + path, encoded=True),
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # a redirect could carry the token elsewhere
            ) as response:
                raw = await _read_body(response)
                status = response.status
                content_type = response.headers.get("Content-Type")
                if not 200 <= status < 300:
                    detail = self._error_detail(raw, response.headers.get("X-Failure"), response.reason)
                    log.info("zammad %s %s -> %s", method, path, status)
                    message = f"{method} {path} answered {status}: {detail}"
                    if refuses_credentials(status, detail):
                        self._refused = message
                        raise ZammadUnauthorized(message, status=status, method=method, path=path)
                    if status == 403 and MAINTENANCE_MODE in detail.lower():
                        raise ZammadMaintenance(message, status=status, method=method, path=path)
                    raise ZammadApiError(
                        message,
                        status=status,
                        method=method,
                        path=path,
                        retry_after=_retry_after(response.headers.get("Retry-After"))
                        if status in _THROTTLED
                        else None,
                    )
                self._refused = None
        except TimeoutError:  # asyncio.TimeoutError and aiohttp's Server/Socket/ConnectionTimeoutError
            raise ZammadApiError(
                f"{method} {path} failed: timed out after {self._timeout_seconds:g} s",
                status=None,
                method=method,
                path=path,
            ) from None
        except aiohttp.ClientError as exc:
            raise ZammadApiError(
                f"{method} {path} failed: {self._describe(exc)}",
                status=None,
                method=method,
                path=path,
            ) from None
        log.debug("zammad %s %s -> %s in %.3f s", method, path, status, loop.time() - started)
        return status, raw, content_type

    def _expect(self, data: Any, kind: type, method: str, path: str, what: str) -> Any:
        if not isinstance(data, kind):
            raise ZammadApiError(
                f"{method} {path} answered with {type(data).__name__} where {what} was expected",
                status=200,
                method=method,
                path=path,
            )
        return data

    def _error_detail(self, raw: bytes, x_failure: str | None, reason: str | None) -> str:
        """Zammad's ``error_human``/``error`` (§3.6), else ``X-Failure``, else a text excerpt."""
        try:
            parsed = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            for key in ("error_human", "error"):
                value = parsed.get(key)
                if isinstance(value, str) and value.strip():
                    return self._scrub(_clip(value))
        if x_failure:
            return self._scrub(_clip(x_failure))
        if raw.strip() and parsed is None:
            return repr(self._excerpt(raw))
        return self._scrub(reason or "no error message")

    def _excerpt(self, raw: bytes) -> str:
        """A clipped, tag-stripped, token-scrubbed excerpt of a non-2xx body (a proxy's error
        page); never used for a 2xx body, which is ticket data."""
        text = raw.decode("utf-8", errors="replace")
        text = _HTML_TAG.sub(" ", text)
        return self._scrub(_clip(text))

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.ClientConnectorError):
            try:  # certificate errors subclass this without an os_error
                reason = exc.os_error.strerror or str(exc.os_error)
            except AttributeError:
                reason = f"{type(exc).__name__}: {exc}"
            text = f"cannot connect to {exc.host}:{exc.port} ({reason})"
        elif isinstance(exc, aiohttp.ServerDisconnectedError):
            text = "server disconnected"
        else:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return self._scrub(_clip(text))

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, _REDACTED) if self._token in text else text


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of ``response``. A big one (:data:`PREALLOCATE_FROM_BYTES` or more, its
    ``Content-Length`` given, no ``Content-Encoding``) is copied chunk by chunk into one
    ``bytearray`` of that size as it arrives (returned as it is: bytes-like), instead of
    ``read()``'s list of chunks joined into a second copy: a 16 MB ``by_ticket`` answer then
    takes 16 MB, not 32 MB, at its peak.

    Raises:
        aiohttp.ClientPayloadError: the body is longer or shorter than its ``Content-Length``.
    """
    length = response.content_length
    if length is None or length < PREALLOCATE_FROM_BYTES or response.headers.get("Content-Encoding"):
        return await response.read()
    body = bytearray(length)
    view, position = memoryview(body), 0
    async for chunk in response.content.iter_any():
        end = position + len(chunk)
        if end > length:
            raise aiohttp.ClientPayloadError(f"body longer than its Content-Length ({length})")
        view[position:end] = chunk
        position = end
    if position != length:
        raise aiohttp.ClientPayloadError(f"body of {position} bytes, Content-Length said {length}")
    view.release()
    return body


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3);
    ``None`` when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _clip(text: str) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _positive_id(value: int, name: str) -> int:
    """Zammad ids are positive integers; anything else would build a wrong path."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _tag_body(ticket_id: int, tag: str) -> dict[str, Any]:
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    return {"object": "Ticket", "o_id": _positive_id(ticket_id, "ticket_id"), "item": tag}
