"""The SQLite job store (the default backend): ``STATE_DIR/jobs.sqlite3`` in WAL mode, group commits.

Every accepted webhook is a row in ``jobs`` before ``/ingest`` answers 202; its delivery id
is recorded in ``deliveries`` in the same transaction. A job moves
``pending → running → done | failed | dead`` (or back to ``pending`` with a
``next_attempt_at`` when a Transient failure is retried). Terminal jobs carry their
*report* — the tag transition and the note for Zammad — until it was delivered
(``reported = 1``): an outbox, so a crash between archiving and reporting is repaired on the
next start.

One ticket has at most one active (pending or running) job. A request for a ticket with a
pending job is merged into it; one for a running ticket sets ``follow_up`` and a new pending
job is created when the running one ends, in the same transaction.

Durability and threading: calls from the event loop are queued and written on the loop's
next turn, as one transaction, on the event loop itself (statements and ``COMMIT`` take
microseconds and never wait for a lock: the store has the only connection). The database runs
with ``synchronous=NORMAL``, so the ``COMMIT`` only writes the WAL; before the batch's callers
are answered, the WAL sync helper (:mod:`app.jobs.walsync`, a separate process) calls
``fdatasync`` on the WAL file. That is what ``synchronous=FULL`` adds in WAL mode ("an
additional sync operation of the WAL file happens after each transaction commit",
https://www.sqlite.org/pragma.html#pragma_synchronous): a 202 survives power loss, not only a
crash. Whatever queues while a sync is in flight goes into the next transaction together (group
commit): one sync per batch, not per request. SQLite's automatic checkpoint is off (it would
run inside a ``COMMIT`` on the loop, with two fsyncs); every :data:`CHECKPOINT_BATCHES`
batches a ``PASSIVE`` checkpoint runs in the store's thread while new requests queue.

Why a process and not a thread: a thread that fsyncs must take the GIL back afterwards, and the
busy event loop lets go of the GIL only for moments between system calls; under load the thread
lost that race dozens of times per commit, each loss a futex wake-up and a context switch, and
``/ingest`` lost ~5 % of its throughput to it, a third in one round of eight
(``docs/performance.md``, "The webhook edge: no sync thread").
The helper is driven with one byte each way through pipes that the event loop watches.

Failures: a helper that ends is started again and asked again (at most once a second). A sync
that fails is final: from then on every write fails with :class:`JobStoreUnavailable` (503 at
the edge, ``job_store`` failing in ``/healthz?deep=true``) while reads still answer, until the
service restarts. The batch whose sync failed is committed but was not answered: it is
recovered from the WAL at the next start (or, after a power loss, Zammad's retry brings it). A
sync unanswered for :data:`STALL_SECONDS` fails readiness too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from app.jobs.records import (
    TERMINAL_STATES,
    Admission,
    JobRecord,
    JobRequest,
    JobStoreUnavailable,
    Recovery,
    new_job_id,
)

log = logging.getLogger("app.jobs.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    force INTEGER NOT NULL DEFAULT 0,
    delivery_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    archived_at TEXT,
    last_error TEXT,
    last_step TEXT,
    classification TEXT,
    output_path TEXT,
    sha256 TEXT,
    result TEXT,
    follow_up INTEGER NOT NULL DEFAULT 0,
    follow_up_force INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    reported INTEGER NOT NULL DEFAULT 1,
    report_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_ticket ON jobs (ticket_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_expiry ON deliveries (expires_at);
"""


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _StoreThread:
    """One thread that runs the store's blocking calls (connect, close) in order.

    Lighter than a ``ThreadPoolExecutor``: the hand-off is a ``SimpleQueue`` put (no
    Python-level lock or condition that the two threads would fight over under load) and the
    answer comes back with ``call_soon_threadsafe``. Measured on the ingest benchmark: the
    executor's ``submit`` cost the event loop about as much as the rest of the store.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.AbstractEventLoop, Callable[[bool, Any], None]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, loop, done = item
            try:
                ok, value = True, fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                ok, value = False, exc
            try:
                loop.call_soon_threadsafe(done, ok, value)
            except RuntimeError:  # the loop is closed: no one is waiting any more
                pass

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in the thread; a future of the running loop gets its result or exception."""
        future = asyncio.get_running_loop().create_future()
        self.submit(fn, functools.partial(_resolve, future))
        return future

    def submit(self, fn: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        """Run ``fn()`` in the thread, then ``done(ok, result_or_exception)`` on the running loop."""
        self._queue.put((fn, asyncio.get_running_loop(), done))

    def stop(self) -> None:
        """Finish the queued calls and end the thread."""
        self._queue.put(None)
        self._thread.join()


WALSYNC_SCRIPT = Path(__file__).with_name("walsync.py")
"""The WAL sync helper's program (:mod:`app.jobs.walsync`), run with ``python -I -S``."""


RESPAWN_SECONDS = 1.0
"""A WAL sync helper that ends (without reporting a failed sync) is started again, unless the
previous one was started less than this many seconds before: then the store gives up."""
STALL_SECONDS = 10.0
"""A WAL sync unanswered for longer makes :attr:`SqliteJobStore.unavailable` say so (readiness fails)."""
CHECKPOINT_BATCHES = 100
"""Durable batches between two checkpoints (a few hundred WAL pages at most; SQLite's automatic
checkpoint, switched off here, would run at 1,000, inside a ``COMMIT`` on the event loop)."""
CLOSE_WAIT_SECONDS = 30.0
"""How long :meth:`SqliteJobStore.close` waits for batches in flight before it ends the WAL sync helper."""
HELPER_EXIT_SECONDS = 10.0
"""How long closing waits for the helper to exit after its stdin closed, before killing it."""


class _WalSync:
    """Asks the WAL sync helper process (:mod:`app.jobs.walsync`) for one ``fdatasync`` at a
    time and hands its answer to a callback on the event loop.

    Nothing here blocks or needs another thread: the request is a one-byte pipe write and the
    answer arrives through ``loop.add_reader``. A helper that ends is started again and asked
    again (a new ``fdatasync`` covers what the old one may not have finished), at most once per
    :data:`RESPAWN_SECONDS`. A sync that fails (``EIO``, ``ENOSPC``: the disk may have dropped
    the data) is final: that request and every later one fail with
    :class:`JobStoreUnavailable`.

    Args:
        database: the database file (the helper syncs its ``-wal`` file).
        loop: the event loop that calls :meth:`request` and gets the answers.
    """

    def __init__(self, database: Path, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wal = f"{database}-wal"
        self._waiting: Callable[[BaseException | None], None] | None = None
        self._requested_at = 0.0
        self._closed = False
        self.error: JobStoreUnavailable | None = None
        self._start()

    def _start(self) -> None:
        self._started_at = time.monotonic()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WALSYNC_SCRIPT), self._wal],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._loop.add_reader(self._stdout.fileno(), self._readable)

    def _stop_reading(self) -> None:
        self._loop.remove_reader(self._stdout.fileno())
        self._stdin.close()
        self._stdout.close()

    def request(self, done: Callable[[BaseException | None], None]) -> None:
        """Sync what is committed now; ``done(None)`` once it is on disk, ``done(error)`` if not.
        One request at a time (the store's batches are sequential)."""
        assert self._waiting is None, "one WAL sync at a time"
        refusal = self.refusal()
        if refusal is not None:
            self._loop.call_soon(done, refusal)
            return
        self._waiting = done
        self._requested_at = time.monotonic()
        self._send()

    def _send(self) -> None:
        try:
            self._stdin.write(b"s")
        except (OSError, ValueError):  # the helper is gone; its end is read in _readable
            pass

    def refusal(self) -> JobStoreUnavailable | None:
        """Why writes must be refused now (a failed sync, or the store closing), else ``None``."""
        if self.error is None and self._closed:
            return JobStoreUnavailable("the job store is closed")
        return self.error

    def stalled_for(self) -> float:
        """Seconds the current request has waited (0 with none waiting)."""
        return time.monotonic() - self._requested_at if self._waiting is not None else 0.0

    def _readable(self) -> None:
        try:
            answer = os.read(self._stdout.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            answer = f"E{exc}".encode()
        if answer == b"k":
            done, self._waiting = self._waiting, None
            if done is not None:
                done(None)
        elif answer.startswith(b"E"):
            self._fail("the WAL sync failed: " + answer[1:].decode("utf-8", "replace").strip())
        elif answer or self._closed:
            self._fail(
                f"the WAL sync helper answered {answer[:40]!r}" if answer else "the job store is closed"
            )
        elif time.monotonic() - self._started_at < RESPAWN_SECONDS:
            self._fail(
                f"the WAL sync helper ended again within {RESPAWN_SECONDS:g} s (exit status "
                f"{self._proc.poll()})"
            )
        else:
            log.warning("WAL sync helper ended; starting it again", extra={"exit_status": self._proc.poll()})
            self._stop_reading()
            try:
                self._proc.wait(1)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._start()
            if self._waiting is not None:
                self._send()

    def _fail(self, reason: str) -> None:
        if self.error is None and not self._closed:
            self.error = JobStoreUnavailable(f"the job store cannot make writes durable: {reason}")
            log.error("job store unavailable", extra={"reason": reason})
            self._stop_reading()
        done, self._waiting = self._waiting, None
        if done is not None:
            done(self.error or JobStoreUnavailable(reason))

    async def close(self) -> None:
        """End the helper (it exits when its stdin closes) and wait for it; a request still
        waiting fails. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.error is None:
            self._stop_reading()
        self._fail("the job store was closed before the WAL sync answered")
        try:
            await asyncio.to_thread(self._proc.wait, HELPER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait)


class SqliteJobStore:
    """Jobs and delivery ids in SQLite (see the module docstring); implements
    :class:`app.jobs.store.JobStore` for one instance (``STATE_DIR`` is locked by ``serve``).

    Args:
        path: the database file (its folder is created), or ``None`` for an in-memory
            database (not durable: for tests and the in-memory benchmark baseline).
        delivery_ttl_seconds: how long a delivery id counts as seen.
        max_pending: most pending jobs; beyond it new jobs are refused (``full``).
        clock: Unix seconds; injectable for tests.
    """

    shared = False
    """One instance only: the worker pool hands jobs over in memory and never claims or polls."""
    work_available = None

    def __init__(
        self,
        path: Path | None,
        *,
        delivery_ttl_seconds: float,
        max_pending: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.delivery_ttl = delivery_ttl_seconds
        self.max_pending = max_pending
        self._clock = clock
        self._thread = _StoreThread("job-store")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._ops: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._pending_count = 0
        self._wal_sync: _WalSync | None = None
        self._batches_since_checkpoint = 0
        self.commits = 0

    # -- plumbing --------------------------------------------------------------------------
    def _connect(self) -> None:
        if self.path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # the helper's sync of the -wal file would protect nothing
                conn.close()
                raise sqlite3.OperationalError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
            # NORMAL: COMMIT writes the WAL without waiting for the disk; the WAL sync helper's
            # fdatasync before each batch is answered makes it FULL's durability (module docstring).
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints run in the store's thread (see _synced), not inside a COMMIT on the loop.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.row_factory = sqlite3.Row
        conn.executescript(SCHEMA)
        _add_missing_columns(conn)
        self._conn = conn

    def _run_statements(
        self, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]] | None:
        """``BEGIN`` and every op of a batch, without savepoints (the common case); ``None``
        after a rollback when an op raised, so the caller can isolate the bad one."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            return [(True, fn(conn)) for fn in fns]
        except Exception:  # noqa: BLE001 - retried op by op
            conn.execute("ROLLBACK")
            self._recount(conn)
            return None
        except BaseException:
            conn.execute("ROLLBACK")
            self._recount(conn)
            raise

    def _commit(self) -> None:
        """``COMMIT`` the open transaction (raises ``sqlite3.Error`` after rolling back)."""
        conn = self._conn
        assert conn is not None
        try:
            conn.commit()
        except BaseException:
            conn.execute("ROLLBACK")
            self._recount(conn)
            raise
        self.commits += 1

    def _execute_isolated(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        conn = self._conn
        assert conn is not None
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
                self._recount(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._recount(conn)
            raise
        self.commits += 1
        return results

    def _recount(self, conn: sqlite3.Connection) -> None:
        """Set the pending counter from the database (after a rollback)."""
        self._pending_count = conn.execute("SELECT COUNT(*) FROM jobs WHERE state='pending'").fetchone()[0]

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``fn(conn)`` for the next batch; the future gets its result once committed (a
        plain function returning the future, not a coroutine: one frame fewer per request)."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._ops.append((fn, future))
        if not self._flushing:
            # Nothing in flight: write on the loop's next turn, together with whatever the
            # other requests of this turn queue (one transaction; one fsync on disk).
            self._flushing = True
            loop.call_soon(self._flush_batch)
        return future

    def _flush_batch(self) -> None:
        """Write the queued ops as one transaction, on the event loop: the statements and the
        ``COMMIT`` take microseconds (``synchronous=NORMAL``: the commit writes the WAL without
        waiting for the disk; no other connection can hold a lock). A durable store then asks
        the WAL sync helper to ``fdatasync`` the WAL and answers the batch once it has
        (:meth:`_synced`); requests that arrive meanwhile queue for the next batch, so one
        sync covers a whole batch (group commit)."""
        batch, self._ops = self._ops, []
        refusal = self._wal_sync.refusal() if self._wal_sync is not None else None
        if refusal is not None:
            self._read_only(batch, refusal)
            self._next_batch()
            return
        fns = [f for f, _ in batch]
        try:
            results = self._run_statements(fns)
            if results is None:  # an op failed: redo the batch op by op, each in a savepoint
                results = self._execute_isolated(fns)
            else:
                self._commit()
        except Exception as exc:  # noqa: BLE001 - BEGIN or COMMIT failed: handed to every op of the batch
            self._settle(batch, None, exc)
            self._next_batch()
            return
        if self._wal_sync is None:
            self._settle(batch, results, None)
            self._next_batch()
        else:
            self._wal_sync.request(functools.partial(self._synced, batch, results))

    def _read_only(self, batch: list[tuple[Any, asyncio.Future[Any]]], error: JobStoreUnavailable) -> None:
        """Once writes cannot be made durable: run the batch's ops in a transaction that is rolled
        back; an op that changed nothing (a read: ``GET /jobs``, recovery's look-ups) gets its
        result, one that wrote gets ``error``."""
        conn = self._conn
        assert conn is not None
        try:
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
                    _resolve(future, False, exc)
                    continue
                _resolve(
                    future, conn.total_changes == before, value if conn.total_changes == before else error
                )
        finally:
            conn.execute("ROLLBACK")
            self._recount(conn)

    def _synced(
        self,
        batch: list[tuple[Any, asyncio.Future[Any]]],
        results: list[tuple[bool, Any]],
        error: BaseException | None,
    ) -> None:
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
        conn = self._conn
        assert conn is not None
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, done

    def _checkpointed(self, ok: bool, value: Any) -> None:
        if not ok:  # the WAL only grows until the next one succeeds; durability is not affected
            log.warning("job store checkpoint failed", extra={"error": f"{type(value).__name__}: {value}"})
        self._next_batch()

    @staticmethod
    def _settle(
        batch: list[tuple[Any, asyncio.Future[Any]]],
        results: list[tuple[bool, Any]] | None,
        error: BaseException | None,
    ) -> None:
        if results is None:
            for _, future in batch:
                _resolve(future, False, error)
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            _resolve(future, ok, value)

    def _next_batch(self) -> None:
        if self._ops:
            self._flush_batch()
        else:
            self._flushing = False

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> Recovery:
        """Open (creating the schema) and prepare recovery: jobs that were running are put
        back to pending; returns what to resume."""
        self._loop = asyncio.get_running_loop()
        await self._thread.call(self._connect)
        if self.path is not None:
            self._wal_sync = _WalSync(self.path, self._loop)

        def recover(conn: sqlite3.Connection) -> Recovery:
            now = self._clock()
            interrupted = conn.execute(
                "UPDATE jobs SET state='pending', updated_at=? WHERE state='running'", (now,)
            ).rowcount
            due, scheduled = [], []
            for row in conn.execute(
                "SELECT job_id, ticket_id, next_attempt_at FROM jobs WHERE state='pending' "
                "ORDER BY created_at"
            ):
                if row["next_attempt_at"] and row["next_attempt_at"] > now:
                    scheduled.append((row["job_id"], row["ticket_id"], row["next_attempt_at"]))
                else:
                    due.append((row["job_id"], row["ticket_id"]))
            self._pending_count = len(due) + len(scheduled)
            unreported = [
                JobRecord.from_row(r)
                for r in conn.execute(
                    "SELECT * FROM jobs WHERE reported=0 AND state IN ('done','failed','dead') ORDER BY finished_at"
                )
            ]
            return Recovery(due, scheduled, unreported, interrupted)

        return await self._run(recover)

    async def close(self) -> None:
        """Wait for queued writes, then close the database."""
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while (self._flushing or self._ops) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._wal_sync is not None:
            await self._wal_sync.close()  # a sync still unanswered (a hung disk) fails its batch
            while self._flushing or self._ops:  # what queued behind it is answered read-only
                await asyncio.sleep(0.01)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._thread.call(conn.close)
        self._thread.stop()

    # -- admission -------------------------------------------------------------------------
    async def accept(self, request: JobRequest) -> Admission:
        """Record ``request`` durably (see the module docstring for coalescing); returns once committed."""
        return (await self.accept_many([request]))[0]

    def _accept_one(self, conn: sqlite3.Connection, req: JobRequest, now: float) -> Admission:
        """:meth:`accept_many` for one request (every ``/ingest``), in fewer statements: the
        delivery id is claimed with one upsert whose row count says whether it was already
        live, instead of a look-up and an insert."""
        active = conn.execute(
            "SELECT job_id, state, force, follow_up, follow_up_force FROM jobs "
            "WHERE ticket_id=? AND state IN ('pending','running') "
            "ORDER BY created_at DESC LIMIT 1",
            (req.ticket_id,),
        ).fetchone()
        if active is None and self._pending_count + 1 > self.max_pending:
            duplicate = self._live_delivery(conn, req.delivery_id, now)
            return Admission("duplicate", duplicate) if duplicate is not None else Admission("full", None)
        job_id = active["job_id"] if active is not None else new_job_id()
        if (
            req.delivery_id is not None
            and conn.execute(
                "INSERT INTO deliveries (delivery_id, job_id, expires_at) VALUES (?,?,?) "
                "ON CONFLICT (delivery_id) DO UPDATE SET job_id=excluded.job_id, expires_at=excluded.expires_at "
                "WHERE deliveries.expires_at <= ?",
                (req.delivery_id, job_id, now + self.delivery_ttl, now),
            ).rowcount
            == 0
        ):
            return Admission("duplicate", self._live_delivery(conn, req.delivery_id, now))
        if active is not None:
            self._merge(conn, req, active, now)
            return Admission("coalesced", job_id)
        conn.execute(
            "INSERT INTO jobs (job_id, ticket_id, state, reason, force, delivery_id, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (job_id, req.ticket_id, "pending", req.reason, int(req.force), req.delivery_id, now, now),
        )
        self._pending_count += 1
        return Admission("accepted", job_id, new=True)

    @staticmethod
    def _live_delivery(conn: sqlite3.Connection, delivery_id: str | None, now: float) -> str | None:
        """The job id a delivery id was accepted for, while it has not expired."""
        if delivery_id is None:
            return None
        row = conn.execute(
            "SELECT job_id FROM deliveries WHERE delivery_id=? AND expires_at>?", (delivery_id, now)
        ).fetchone()
        return row["job_id"] if row is not None else None

    @staticmethod
    def _merge(
        conn: sqlite3.Connection,
        req: JobRequest,
        row: sqlite3.Row | None,
        now: float,
        job_id: str | None = None,
    ) -> None:
        """Merge ``req`` into its ticket's active job ``row`` (or, with ``row`` ``None``, into
        ``job_id`` created earlier in the same transaction); writes only what changes (the hot
        path under a burst of webhooks for one ticket writes nothing here)."""
        job_id = row["job_id"] if row is not None else job_id
        if row is None or row["state"] == "pending":
            if req.force and (row is None or not row["force"]):
                conn.execute("UPDATE jobs SET force=1, updated_at=? WHERE job_id=?", (now, job_id))
        elif not row["follow_up"] or (req.force and not row["follow_up_force"]):
            conn.execute(
                "UPDATE jobs SET follow_up=1, follow_up_force = follow_up_force OR ?, "
                "updated_at=? WHERE job_id=?",
                (int(req.force), now, job_id),
            )

    def accept_many(self, requests: list[JobRequest]) -> asyncio.Future[list[Admission]]:
        """Record several requests in one transaction, all or nothing on capacity: when the new
        jobs they need do not fit under ``max_pending``, every one is answered ``full``.

        Returns a future (await it) with one :class:`Admission` per request, in order, set once
        the transaction is committed; it raises what the commit raised (e.g. ``sqlite3.Error``,
        ``OSError`` for a full disk), and :class:`JobStoreUnavailable` once a WAL sync failed —
        also for a delivery id already on record: what the failed sync left is not known to be
        on disk. Queued when called, written on the loop's next turn."""
        refusal = self._wal_sync.refusal() if self._wal_sync is not None else None
        if refusal is not None:
            refused: asyncio.Future[list[Admission]] = asyncio.get_running_loop().create_future()
            refused.set_exception(refusal)
            return refused

        def op(conn: sqlite3.Connection) -> list[Admission]:
            now = self._clock()
            if len(requests) == 1:
                return [self._accept_one(conn, requests[0], now)]
            plans: list[tuple[JobRequest, str, sqlite3.Row | None]] = []
            new_tickets: set[int] = set()
            for req in requests:
                if req.delivery_id is not None:
                    row = conn.execute(
                        "SELECT job_id FROM deliveries WHERE delivery_id=? AND expires_at>?",
                        (req.delivery_id, now),
                    ).fetchone()
                    if row is not None:
                        plans.append((req, "duplicate", row))
                        continue
                active = conn.execute(
                    "SELECT job_id, state, force, follow_up, follow_up_force FROM jobs "
                    "WHERE ticket_id=? AND state IN ('pending','running') "
                    "ORDER BY created_at DESC LIMIT 1",
                    (req.ticket_id,),
                ).fetchone()
                if active is None and req.ticket_id not in new_tickets:
                    new_tickets.add(req.ticket_id)
                plans.append((req, "active" if active is not None else "new", active))
            if new_tickets and self._pending_count + len(new_tickets) > self.max_pending:
                return [
                    Admission("duplicate", row["job_id"]) if kind == "duplicate" else Admission("full", None)
                    for req, kind, row in plans
                ]
            out: list[Admission] = []
            created: dict[int, str] = {}
            for req, kind, row in plans:
                if kind == "duplicate":
                    assert row is not None
                    out.append(Admission("duplicate", row["job_id"]))
                    continue
                if kind == "active" or req.ticket_id in created:
                    job_id = row["job_id"] if row is not None else created[req.ticket_id]
                    self._merge(conn, req, row, now, job_id)
                    admission = Admission("coalesced", job_id)
                else:
                    job_id = new_job_id()
                    conn.execute(
                        "INSERT INTO jobs (job_id, ticket_id, state, reason, force, delivery_id, "
                        "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                        (
                            job_id,
                            req.ticket_id,
                            "pending",
                            req.reason,
                            int(req.force),
                            req.delivery_id,
                            now,
                            now,
                        ),
                    )
                    created[req.ticket_id] = job_id
                    self._pending_count += 1
                    admission = Admission("accepted", job_id, new=True)
                if req.delivery_id is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO deliveries (delivery_id, job_id, expires_at) VALUES (?,?,?)",
                        (req.delivery_id, admission.job_id, now + self.delivery_ttl),
                    )
                out.append(admission)
            return out

        return self._run(op)

    # -- transitions ---------------------------------------------------------------------------
    async def start(self, job_id: str, archived_at: str) -> JobRecord | None:
        """``pending → running``: counts the attempt and fixes the job's archive time on its
        first start (so a resumed job writes to the same path). ``None`` when the job is not
        pending (already started elsewhere, or finished)."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            now = self._clock()
            changed = conn.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, started_at=?, "
                "updated_at=?, next_attempt_at=NULL, archived_at=COALESCE(archived_at, ?) "
                "WHERE job_id=? AND state='pending'",
                (now, now, archived_at, job_id),
            ).rowcount
            if not changed:
                return None
            self._pending_count -= 1
            return JobRecord.from_row(conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone())

        return await self._run(op)

    async def requeue(self, job_id: str) -> None:
        """``running → pending`` for a run interrupted by shutdown; the attempt does not count."""

        def op(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE jobs SET state='pending', attempts=MAX(attempts-1, 0), updated_at=? "
                "WHERE job_id=? AND state='running'",
                (self._clock(), job_id),
            ).rowcount
            self._pending_count += changed

        await self._run(op)

    async def retry_later(
        self, job_id: str, *, at: float, error: str, step: str, classification: str
    ) -> None:
        """``running → pending`` after a Transient failure, to run again at ``at`` (Unix seconds)."""

        def op(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE jobs SET state='pending', next_attempt_at=?, last_error=?, last_step=?, "
                "classification=?, updated_at=? WHERE job_id=? AND state='running'",
                (at, error, step, classification, self._clock(), job_id),
            ).rowcount
            self._pending_count += changed

        await self._run(op)

    async def finish(
        self,
        job_id: str,
        *,
        state: str,
        result: str,
        report: dict[str, Any] | None = None,
        error: str | None = None,
        step: str | None = None,
        classification: str | None = None,
        output_path: str | None = None,
        sha256: str | None = None,
    ) -> str | None:
        """``running → done | failed | dead`` with ``result`` (e.g. ``"archived"``,
        ``"skipped: already_signed"``) and the report to deliver (``None``: nothing to report).
        Creates the follow-up job when one was requested; returns its id."""
        assert state in TERMINAL_STATES

        def op(conn: sqlite3.Connection) -> str | None:
            now = self._clock()
            row = conn.execute(
                "SELECT ticket_id, follow_up, follow_up_force FROM jobs WHERE job_id=?", (job_id,)
            ).fetchone()
            # A job that ends done carries no error (an earlier attempt's error would mislead);
            # a failed or dead job keeps the newest error it has.
            keep = "NULL" if state == "done" else None
            conn.execute(
                "UPDATE jobs SET state=?, result=?, report=?, reported=?, "
                f"last_error={keep or 'COALESCE(?, last_error)'}, "
                f"last_step={keep or 'COALESCE(?, last_step)'}, "
                f"classification={keep or 'COALESCE(?, classification)'}, "
                "output_path=?, sha256=?, finished_at=?, updated_at=?, follow_up=0 WHERE job_id=?",
                (
                    state,
                    result,
                    orjson.dumps(report).decode() if report is not None else None,
                    0 if report is not None else 1,
                    *(() if keep else (error, step, classification)),
                    output_path,
                    sha256,
                    now,
                    now,
                    job_id,
                ),
            )
            if row is None or not row["follow_up"]:
                return None
            follow_id = new_job_id()
            conn.execute(
                "INSERT INTO jobs (job_id, ticket_id, state, reason, force, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (follow_id, row["ticket_id"], "pending", "follow_up", row["follow_up_force"], now, now),
            )
            self._pending_count += 1
            return follow_id

        return await self._run(op)

    async def mark_reported(self, job_id: str, *, given_up: str | None = None) -> None:
        """The job's report reached Zammad, or was given up (``given_up`` says why; it shows
        in ``/jobs`` as ``report_error``)."""
        await self._run(
            lambda conn: conn.execute(
                "UPDATE jobs SET reported=1, report_error=?, updated_at=? WHERE job_id=?",
                (given_up, self._clock(), job_id),
            )
        )

    async def claim_due(self, limit: int, archived_at: str) -> list[JobRecord]:
        """Nothing: one instance knows all its jobs (they come from :meth:`open` and admission)."""
        return []

    async def claim_reports(self, limit: int) -> list[JobRecord]:
        """Nothing: undelivered reports come from :meth:`open`."""
        return []

    # -- queries and housekeeping --------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """One job by id."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            return JobRecord.from_row(row) if row else None

        return await self._run(op)

    async def latest(self, ticket_id: int) -> JobRecord | None:
        """The ticket's most recent job (an active one first)."""

        def op(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(
                "SELECT * FROM jobs WHERE ticket_id=? ORDER BY state IN ('pending','running') DESC, "
                "created_at DESC LIMIT 1",
                (ticket_id,),
            ).fetchone()
            return JobRecord.from_row(row) if row else None

        return await self._run(op)

    async def purge_deliveries(self) -> int:
        """Delete expired delivery ids; returns how many."""
        return await self._run(
            lambda conn: conn.execute("DELETE FROM deliveries WHERE expires_at<=?", (self._clock(),)).rowcount
        )

    # -- reconciliation (app.reconcile) --------------------------------------------------------
    async def latest_jobs(self, ticket_ids: Sequence[int]) -> dict[int, JobRecord]:
        """The latest job (an active one first, as :meth:`latest`) of each ticket in
        ``ticket_ids`` that has one, read in one turn (in chunks of 500 ids)."""
        ids = sorted(set(ticket_ids))

        def op(conn: sqlite3.Connection) -> dict[int, JobRecord]:
            out: dict[int, JobRecord] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(
                    "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY ticket_id ORDER BY "
                    "state IN ('pending','running') DESC, created_at DESC) AS newest FROM jobs "
                    f"WHERE ticket_id IN ({','.join('?' * len(chunk))})) WHERE newest = 1",
                    chunk,
                ):
                    out[row["ticket_id"]] = JobRecord.from_row(row)
            return out

        return await self._run(op) if ids else {}

    @contextlib.asynccontextmanager
    async def sweep_turn(self, name: str, *, min_interval_seconds: float) -> AsyncIterator[bool]:
        """Always this instance's turn: it is the store's only user (``STATE_DIR`` is locked)."""
        yield True

    @property
    def unavailable(self) -> str | None:
        """Why the store cannot make writes durable (see :class:`JobStoreUnavailable`), or why it
        may not (a WAL sync unanswered for more than :data:`STALL_SECONDS`), else ``None``."""
        if self._wal_sync is None:
            return None
        if self._wal_sync.error is not None:
            return str(self._wal_sync.error)
        stalled = self._wal_sync.stalled_for()
        return (
            f"a WAL sync has not answered for {stalled:.0f} s (is the state disk hung?)"
            if stalled > STALL_SECONDS
            else None
        )

    @property
    def pending_count(self) -> int:
        """Pending jobs (due or scheduled), as last committed."""
        return self._pending_count


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a ``jobs`` table made by an older version up to :data:`SCHEMA` (columns are only
    ever added, with NULL or their default)."""
    have = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    for line in SCHEMA.split("CREATE TABLE IF NOT EXISTS jobs (")[1].split(");")[0].splitlines():
        parts = line.strip().rstrip(",").split()
        if parts and parts[0] not in have and parts[0].isidentifier() and "PRIMARY" not in parts:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {' '.join(parts)}")
