"""How the PostgreSQL job store reaches its database: the connection pool, outages, ``LISTEN``.

:class:`PgDatabase` opens asyncpg's pool (waiting for a database that is still starting),
runs each statement on a pooled connection, and turns connection-level failures into
:class:`~app.jobs.records.JobStoreUnavailable` while remembering the cause for readiness
(:attr:`PgDatabase.unavailable`) until the database answers again. asyncpg's pool opens new
connections by itself, so the store recovers when the database returns. ``JOB_STORE_URL`` is a
secret: it is only ever logged or raised through :func:`app.config.redact_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from app.config import redact_url
from app.jobs.records import JobStoreUnavailable

log = logging.getLogger("app.jobs.store")

START_RETRY_SECONDS = 2.0
"""Pause between connection attempts while the database is not reachable at start."""
CONNECT_TIMEOUT_SECONDS = 5.0
"""Longest wait for a new connection, or for a free one from the pool."""
COMMAND_TIMEOUT_SECONDS = 15.0
"""Longest wait for one statement's answer."""
APPLICATION_NAME = "zammad-pdf-archiver"
"""``application_name`` of the store's connections (``pg_stat_activity``) when it is given no
other (a store without a settings fingerprint, :func:`app.config_fingerprint.application_name`)."""

UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, too many connections
    asyncpg.exceptions.InternalClientError,  # a session the server ended between statements
)
"""What makes the database unreachable for now (not a fault of the statement).

``InternalClientError`` is here because a server that ends an idle session
(``pg_terminate_backend``, a failover, ``idle_session_timeout``) sends its ``FATAL`` message
before it closes the socket: asyncpg reads the message, and until it sees the close it
refuses every statement on that connection with ``InternalClientError`` ("another operation
is in progress"). Such a connection is terminated, never given back to the pool."""


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, for logs and ``unavailable``."""
    return f"{type(exc).__name__}: {exc}".strip()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back: nothing to undo.

    The store leaves no session state on a pooled connection: settings are transaction-local
    (``set_config(..., true)``), advisory locks transaction-level, no cursors outside a
    transaction, ``LISTEN`` on a connection of its own; asyncpg still rolls back a transaction
    left open before it calls this. asyncpg's default reset (``pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL``) costs one more round trip per statement, and each admission
    batch would wait for it before its webhooks are answered.
    """


class PgDatabase:
    """The store's connections to PostgreSQL (see the module docstring).

    Args:
        url: ``JOB_STORE_URL``.
        pool_size: most pooled connections (``LISTEN`` takes one more).
        start_wait_seconds: how long :meth:`connect` keeps trying while the database is
            unreachable (it may still be starting) before it gives up.
        application_name: the ``application_name`` of every connection (at most 63 bytes).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        start_wait_seconds: float = 30.0,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        if len(application_name.encode()) > 63:  # PostgreSQL would cut it short silently
            raise ValueError("application_name is longer than 63 bytes")
        self.url = url
        self.application_name = application_name
        self.pool_size = pool_size
        self.start_wait_seconds = start_wait_seconds
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._error: str | None = None
        # Calls are numbered as they begin; the newest-begun call that failed, and that
        # succeeded, decide what ``unavailable`` says (see call and failed).
        self._begun = 0
        self._newest_failed = -1
        self._newest_ok = -1
        self.closed = False

    async def connect(self) -> None:
        """Open the pool, trying again every :data:`START_RETRY_SECONDS` while the database is
        unreachable, for up to ``start_wait_seconds``.

        Raises:
            JobStoreUnavailable: still unreachable at the end of the wait, or the server
                refuses the login or the database (final at once).
        """
        deadline = time.monotonic() + self.start_wait_seconds
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    command_timeout=COMMAND_TIMEOUT_SECONDS,
                    reset=_keep_session,
                    server_settings={"synchronous_commit": "on", "application_name": self.application_name},
                )
                return
            except UNREACHABLE as exc:  # the database may still be starting (compose, a failover)
                cause = f"cannot connect to the job store {redact_url(self.url)}: {describe_error(exc)}"
                if time.monotonic() >= deadline:
                    raise JobStoreUnavailable(cause) from None
                log.warning("waiting for the job store", extra={"cause": cause})
                await asyncio.sleep(START_RETRY_SECONDS)
            except asyncpg.PostgresError as exc:  # wrong password, no such database: final
                raise JobStoreUnavailable(
                    f"cannot use the job store {redact_url(self.url)}: {describe_error(exc)}"
                ) from None

    async def call(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """Run ``fn(connection)`` on a pooled connection and return its result.

        Connection-level failures (:data:`UNREACHABLE`) become :class:`JobStoreUnavailable`, and
        :attr:`unavailable` says so until a call that began after the failed one succeeds
        (one already under way when the database went away may still come back with its
        answer). Likewise a failure of a call that began before one that has since succeeded
        (a connection attempt from before the database came back, failing late) raises but
        leaves :attr:`unavailable` as that newer call left it. Errors of the statement itself
        (``asyncpg.PostgresError``) pass through, and so does a :class:`JobStoreUnavailable`
        that ``fn`` raises itself (a refusal, not an outage).
        """
        if self.closed or self._pool is None:
            raise JobStoreUnavailable("the job store is closed")
        began = self.begin()
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                try:
                    result = await fn(conn)
                except asyncpg.exceptions.InternalClientError:
                    conn.terminate()  # see UNREACHABLE: the pool opens a new connection instead
                    raise
        except JobStoreUnavailable:
            # ``fn``'s own verdict (the schema's refusals: Zammad's database, a newer schema),
            # with the database answering: passed on as it is, not as an outage. It is an
            # OSError, so UNREACHABLE below would take it for one.
            raise
        except UNREACHABLE as exc:
            raise self.failed(exc, began) from exc
        self._succeeded(began)
        return result

    def begin(self) -> int:
        """Number a call as it begins (for :meth:`failed`)."""
        began = self._begun
        self._begun += 1
        return began

    def _succeeded(self, began: int) -> None:
        self._newest_ok = max(self._newest_ok, began)
        if began > self._newest_failed and self._error is not None:
            log.info("job store reachable again", extra={"store": redact_url(self.url)})
            self._error = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """One pooled connection held for the ``async with`` body, for session-level state
        (an advisory lock); given back to the pool after it.

        Raises:
            JobStoreUnavailable: closed, or no connection within the connect timeout.
        """
        if self.closed or self._pool is None:
            raise JobStoreUnavailable("the job store is closed")
        began = self.begin()
        try:
            conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS)
        except UNREACHABLE as exc:
            raise self.failed(exc, began) from exc
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    def failed(self, exc: BaseException, began: int | None = None) -> JobStoreUnavailable:
        """Record that the database could not be reached (logged once per outage); returns the
        error to raise.

        Args:
            began: the failed call's number (:meth:`begin`); ``None``: it began just now. A
                call older than the newest that succeeded does not make the store unavailable.
        """
        reason = f"the PostgreSQL job store is unreachable: {describe_error(exc)}"
        if began is None:
            began = self.begin()
        if began < self._newest_ok:  # the database answered a call begun after this one
            return JobStoreUnavailable(reason)
        self._newest_failed = max(self._newest_failed, began)
        if self._error is None:
            log.error("job store unavailable", extra={"reason": reason, "store": redact_url(self.url)})
        self._error = reason
        return JobStoreUnavailable(reason)

    @property
    def unavailable(self) -> str | None:
        """Why statements cannot run now (closed, or the database unreachable at the last
        call), else ``None``."""
        if self.closed:
            return "the job store is closed"
        return self._error

    async def listen(self, channel: str, callback: Callable[..., None]) -> bool:
        """Keep a connection of its own ``LISTEN``-ing on ``channel`` (``callback`` gets asyncpg's
        notification arguments); returns ``True`` when it was (re)connected just now, so that a
        ``NOTIFY`` missed meanwhile can be made up for.

        Raises:
            JobStoreUnavailable: the connection could not be made.
        """
        if self._listener is not None and not self._listener.is_closed():
            return False
        began = self.begin()
        try:
            self._listener = await asyncpg.connect(
                self.url,
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={"application_name": self.application_name},
            )
            await self._listener.add_listener(channel, callback)
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError, TimeoutError) as exc:
            self._listener = None
            raise self.failed(exc, began) from exc
        return True

    async def close(self) -> None:
        """Refuse further calls, close the ``LISTEN`` connection and the pool (terminated when it
        does not close within 5 s). Idempotent."""
        self.closed = True
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                pool.terminate()
