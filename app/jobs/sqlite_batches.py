"""Group commit for the SQLite job store: operations queued from the event loop, written in batches.

Each store call is an *op*, a function of the connection. Ops queued during one turn of the
event loop are written on the next turn as one transaction, on the event loop itself: the
statements and the ``COMMIT`` take microseconds and never wait for a lock (the store has the
only connection), and with ``synchronous=NORMAL`` the ``COMMIT`` writes the WAL without
waiting for the disk. A durable store then asks the WAL sync helper
(:class:`~app.jobs.sqlite_walsync.WalSyncProcess`) to ``fdatasync`` the WAL and answers the
batch's callers only once it has: a 202 survives power loss, not only a crash. Whatever
queues while a sync is in flight goes into the next transaction together: one sync per
batch, not per request. Every :data:`CHECKPOINT_BATCHES` batches a ``PASSIVE`` checkpoint runs
in the store's thread while new ops queue (SQLite's automatic checkpoint is off: it would run
inside a ``COMMIT`` on the loop, with two fsyncs).

An op that raises does not sink its batch: the batch is rolled back and written again op by
op, each in a savepoint. Once a WAL sync failed (or the store is closing), a batch runs in a
transaction that is rolled back: reads still get their answers, writes get
:class:`~app.jobs.records.JobStoreUnavailable`. A batch whose sync failed is committed but was
not answered: it is recovered from the WAL at the next start (or, after a power loss,
Zammad's retry brings it).

Without the helper (``in_thread``: SQLite's own ``synchronous=FULL``, the design the helper
replaced) each batch, statements and ``COMMIT``, runs in the store's thread instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from app.jobs.records import JobStoreUnavailable
from app.jobs.sqlite_thread import StoreThread, resolve
from app.jobs.sqlite_walsync import WalSyncProcess

log = logging.getLogger("app.jobs.store")

Op = Callable[[sqlite3.Connection], Any]
"""One store call: statements on the connection, inside the batch's transaction; returns its answer."""
Batch = list[tuple[Op, asyncio.Future[Any]]]
"""Queued ops with the futures their callers await."""

CHECKPOINT_BATCHES = 100
"""Durable batches between two checkpoints (a few hundred WAL pages at most; SQLite's automatic
checkpoint, switched off here, would run at 1,000, inside a ``COMMIT`` on the event loop)."""


class GroupCommit:
    """Writes queued ops in batches, one transaction each (see the module docstring).

    Args:
        thread: the store's thread (checkpoints; every batch with ``in_thread``).
        on_rollback: called with the connection after a rollback, to set what the ops counted
            in memory from the database again (the store's pending count).
    """

    def __init__(self, thread: StoreThread, *, on_rollback: Callable[[sqlite3.Connection], None]) -> None:
        self._thread = thread
        self._on_rollback = on_rollback
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._wal_sync: WalSyncProcess | None = None
        self._in_thread = False
        self._ops: Batch = []
        self._flushing = False
        self._batches_since_checkpoint = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.commits = 0
        """Transactions committed so far."""

    def attach(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        wal_sync: WalSyncProcess | None,
        in_thread: bool = False,
    ) -> None:
        """Write to ``conn`` from now on, on ``loop`` (or in the store's thread, ``in_thread``),
        each batch answered after ``wal_sync``'s sync (``None``: at once)."""
        self._conn, self._loop, self._wal_sync, self._in_thread = conn, loop, wal_sync, in_thread

    def detach(self) -> sqlite3.Connection | None:
        """Give the connection back (to be closed); ops queued later fail."""
        conn, self._conn = self._conn, None
        return conn

    async def drained(self) -> None:
        """Wait until no op is queued and no batch is being written."""
        await self._idle.wait()

    def refusal(self) -> JobStoreUnavailable | None:
        """Why writes are refused now (a failed WAL sync, the store closing), else ``None``."""
        return self._wal_sync.refusal() if self._wal_sync is not None else None

    def run(self, fn: Op) -> asyncio.Future[Any]:
        """Queue ``fn(conn)`` for the next batch; the future gets its result once committed (and
        synced), or its exception (a plain function returning the future, not a coroutine: one
        frame fewer per request)."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._ops.append((fn, future))
        if not self._flushing:
            # Nothing in flight: write on the loop's next turn, together with whatever the
            # other requests of this turn queue (one transaction; one fsync on disk).
            self._flushing = True
            self._idle.clear()
            loop.call_soon(self._flush_batch)
        return future

    # -- one batch -------------------------------------------------------------------------------
    def _flush_batch(self) -> None:
        """Write the queued ops as one transaction; answer them (after the WAL sync, if any)."""
        batch, self._ops = self._ops, []
        refusal = self.refusal()
        if refusal is not None:
            self._read_only(batch, refusal)
            self._next_batch()
            return
        fns = [f for f, _ in batch]
        if self._in_thread:
            self._thread.submit(functools.partial(self._write, fns), functools.partial(self._written, batch))
            return
        try:
            results = self._write(fns)
        except Exception as exc:  # noqa: BLE001 - BEGIN or COMMIT failed: handed to every op of the batch
            self._settle(batch, None, exc)
            self._next_batch()
            return
        if self._wal_sync is None:
            self._settle(batch, results, None)
            self._next_batch()
        else:
            self._wal_sync.request(functools.partial(self._synced, batch, results))

    def _write(self, fns: list[Op]) -> list[tuple[bool, Any]]:
        """The ops in one committed transaction; ``(ok, result or exception)`` per op. Raises
        what ``BEGIN`` or ``COMMIT`` raised (after rolling back)."""
        results = self._run_statements(fns)
        if results is None:  # an op failed: redo the batch op by op, each in a savepoint
            return self._execute_isolated(fns)
        self._commit()
        return results

    def _written(self, batch: Batch, ok: bool, value: Any) -> None:
        """A batch written in the store's thread (``in_thread``): answer it, write the next."""
        self._settle(batch, value if ok else None, None if ok else value)
        self._next_batch()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JobStoreUnavailable("the job store is closed")
        return self._conn

    def _rolled_back(self, conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        self._on_rollback(conn)

    def _run_statements(self, fns: list[Op]) -> list[tuple[bool, Any]] | None:
        """``BEGIN`` and every op of a batch, without savepoints (the common case); ``None``
        after a rollback when an op raised, so the caller can isolate the bad one."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            return [(True, fn(conn)) for fn in fns]
        except Exception:  # noqa: BLE001 - retried op by op
            self._rolled_back(conn)
            return None
        except BaseException:
            self._rolled_back(conn)
            raise

    def _commit(self) -> None:
        """``COMMIT`` the open transaction (raises ``sqlite3.Error`` after rolling back)."""
        conn = self._connection()
        try:
            conn.commit()
        except BaseException:
            self._rolled_back(conn)
            raise
        self.commits += 1

    def _execute_isolated(self, fns: list[Op]) -> list[tuple[bool, Any]]:
        conn = self._connection()
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            rolled_back = False
            for fn in fns:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, fn(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # noqa: BLE001 - one bad op does not sink the batch
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
                    rolled_back = True
            if rolled_back:  # an op may have counted a change that was just undone
                self._on_rollback(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._rolled_back(conn)
            raise
        self.commits += 1
        return results

    def _read_only(self, batch: Batch, error: JobStoreUnavailable) -> None:
        """Once writes cannot be made durable: run the batch's ops in a transaction that is rolled
        back; an op that changed nothing (a read: ``GET /jobs``, recovery's look-ups) gets its
        result, one that wrote gets ``error``."""
        try:
            conn = self._connection()
            conn.execute("BEGIN")
        except Exception as exc:  # noqa: BLE001 - handed to every op
            self._settle(batch, None, exc)
            return
        try:
            for fn, future in batch:
                before = conn.total_changes
                try:
                    value = fn(conn)
                except Exception as exc:  # noqa: BLE001 - handed to its op
                    resolve(future, False, exc)
                    continue
                unchanged = conn.total_changes == before
                resolve(future, unchanged, value if unchanged else error)
        finally:
            self._rolled_back(conn)

    def _synced(self, batch: Batch, results: list[tuple[bool, Any]], error: BaseException | None) -> None:
        """The WAL sync for ``batch`` ended: answer its callers, then write the next batch (after
        a checkpoint every :data:`CHECKPOINT_BATCHES` batches)."""
        self._settle(batch, None if error is not None else results, error)
        self._batches_since_checkpoint += 1
        if error is None and self._batches_since_checkpoint >= CHECKPOINT_BATCHES:
            self._batches_since_checkpoint = 0
            # The connection goes to the store's thread meanwhile; new ops queue (_flushing stays set).
            self._thread.submit(self._checkpoint, self._checkpointed)
            return
        self._next_batch()

    def _checkpoint(self) -> tuple[int, int, int]:
        """``PRAGMA wal_checkpoint(PASSIVE)`` (in the store's thread): copies the WAL's pages into
        the database file, syncing the WAL before and the database after (``synchronous=NORMAL``);
        returns SQLite's ``(busy, log frames, checkpointed frames)``."""
        busy, frames, done = self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, done

    def _checkpointed(self, ok: bool, value: Any) -> None:
        if not ok:  # the WAL only grows until the next one succeeds; durability is not affected
            log.warning("job store checkpoint failed", extra={"error": f"{type(value).__name__}: {value}"})
        self._next_batch()

    @staticmethod
    def _settle(batch: Batch, results: list[tuple[bool, Any]] | None, error: BaseException | None) -> None:
        if results is None:
            for _, future in batch:
                resolve(future, False, error)
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            resolve(future, ok, value)

    def _next_batch(self) -> None:
        if self._ops:
            self._flush_batch()
        else:
            self._flushing = False
            self._idle.set()
