"""Rendering off the event loop: a process pool running :func:`app.render.pdf.render_ticket_pdf`.

Layout is CPU-bound and holds the GIL, so threads would stall ``/ingest``; processes do not.
Arguments and results are plain picklable data (dicts, bytes, dataclasses).

The layout code (fpdf2, fontTools, Pillow, lxml) is imported in the render processes only,
when their first task arrives: the service's main process never loads it (tens of MB it
would otherwise hold for its whole life without using them).

:meth:`ProcessPoolRenderer.render_file` keeps big tickets out of the main process's memory:
the snapshot goes to the render process as a file (pickled straight to disk, unpickled
from it) and the PDF comes back as a file, not as bytes through the pool's pipes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import orjson

from app.errors import TRANSIENT_ERRNOS, RenderError
from app.memory import release_free_memory
from app.render.options import RenderOptions
from app.zammad.articles import lazy_articles

if TYPE_CHECKING:
    from app.render.coverage import FontCoverage
from app.workflow.ports import EmbeddedFile, RenderedPdf, TicketSnapshot

MAX_TASKS_PER_CHILD = 1000
"""Children are replaced after this many renders, bounding leaks, open font handles and the
fallback fonts (CJK, emoji and others: ~125 MiB) a child loaded for one ticket. A new child
imports the layout stack and fills its font caches on its first render (~1 s of CPU), a cost
spread over this many tickets; a child's memory and open files stay flat from its 200th to its
1,000th render. The fork server preloads nothing: each child forked from a warm fork server
would count its memory again in RSS (``docs/performance.md``, "Render: tuning without a row
of its own")."""

TRIM_AFTER_BYTES = 4 * 1024 * 1024
"""Free heap pages are handed back to the OS (:func:`app.memory.release_free_memory`, a few
ms, on the event loop in the main process) only after a job whose snapshot and PDF files
together reach this size: a small ticket's few MB are reused by the next one anyway."""

RENDER_NICENESS = 10
"""Render children run at this lower CPU priority (``nice``): layout is background work, and
the event loop answering webhooks must get a core first when the pool renders at full load."""

SERVICE_CHECK_SECONDS = 1.0
"""How often a render process checks that the service that started it still runs. A service
killed with SIGKILL cannot stop its pool: its render processes would run on (orphans of PID 1,
~100 MB each), and with them the pool's fork server and resource tracker, which exit only
after their last child; a process manager that does not kill the whole process group keeps
them forever."""


TIMEOUT_CHECK_SECONDS = 0.5
"""How often a render waiting in the pool's queue is checked for having started (its time
limit, ``RENDER_TIMEOUT_SECONDS``, runs from then)."""


class _RenderTimeout(Exception):
    """A render ran for longer than its pool's ``timeout_seconds``."""


#: EmbeddedFile's fields in order: how an original travels through the spool (a tuple).
_EMBEDDED_FIELDS = tuple(field.name for field in dataclasses.fields(EmbeddedFile))


def _start_render_process(service_pid: int) -> None:
    """The render processes' initialiser: a lower CPU priority (:data:`RENDER_NICENESS`),
    fpdf2's replaced internals (:func:`app.render.patches.install`), and an exit as soon as
    the service ``service_pid`` is gone (:func:`_exit_with`)."""
    from app.render import patches  # imports fpdf2: in the render process only

    with contextlib.suppress(OSError):  # not permitted in some sandboxes: render at normal priority
        os.nice(RENDER_NICENESS)
    _exit_with(service_pid)
    patches.install()


def _process_start(pid: int) -> bytes | None:
    """When process ``pid`` started (``starttime``, field 22 of ``/proc/PID/stat``, proc(5)),
    or ``None`` when it does not exist, has ended (a zombie its parent has not reaped yet) or
    there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # after the command name: field 3 on
    except (OSError, IndexError):
        return None
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
        return None
    return fields[19]


def _exit_with(service_pid: int) -> None:
    """Start a daemon thread that ends this process (``os._exit``) once ``service_pid`` has
    ended, checked every :data:`SERVICE_CHECK_SECONDS`: by its start time in ``/proc`` (a
    new process given the same pid is not the service), else by ``os.kill(pid, 0)``. The
    render under way is lost with it; its service is gone."""
    started = _process_start(service_pid)

    def running() -> bool:
        if started is not None:
            return _process_start(service_pid) == started
        try:
            os.kill(service_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, another user's: not ours, but not proof of our service's end
            return True
        return True

    def watch() -> None:
        while running():
            time.sleep(SERVICE_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="service-watch", daemon=True).start()


def _render(snapshot: TicketSnapshot, options: RenderOptions) -> RenderedPdf:
    """Lay ``snapshot`` out (in whichever process calls it); the PDF as bytes."""
    from app.render.pdf import render_ticket_pdf  # the layout stack loads in the render process only

    return render_ticket_pdf(
        snapshot.ticket,
        snapshot.articles,
        snapshot.tags,
        archived_at=snapshot.archived_at,
        options=options,
        images=dict(snapshot.images),
        embedded=tuple(snapshot.embedded),
        omitted=tuple(snapshot.omitted),
        merged_into=snapshot.merged_into,
    )


def _check_fonts(font_dirs: tuple[str, ...]) -> FontCoverage:
    """In a render process: :func:`app.render.coverage.check_fonts` (fontTools loads there only)."""
    from app.render.coverage import check_fonts

    return check_fonts(font_dirs)


def _render_file(snapshot_path: str, target: str, options: RenderOptions) -> RenderedPdf:
    """In a render process: read the snapshot :func:`_write_snapshot` wrote at
    ``snapshot_path``, write the PDF to ``target`` (created, must not exist); the facts of
    the layout, with ``data=b""`` and ``path=target``.

    The originals are read from the file one by one as the layout embeds them (a
    :class:`_SpooledOriginals`), so their uncompressed bytes are never all in memory.

    Raises:
        RenderError: as :func:`app.render.pdf.render_ticket_pdf`, or the spool files cannot
            be read or written (transient for a full disk).
    """
    from app.render.pdf import render_ticket_pdf  # the layout stack loads in the render process only

    try:
        source = open(snapshot_path, "rb")  # noqa: SIM115 - closed below, after the layout read it
    except OSError as exc:
        raise _spool_error("read the snapshot", exc) from None
    try:
        try:
            snapshot: TicketSnapshot = pickle.load(source)
            originals = _SpooledOriginals(source, pickle.load(source), snapshot.articles_raw)
        except OSError as exc:
            raise _spool_error("read the snapshot", exc) from None
        ticket, tags, archived_at = snapshot.ticket, snapshot.tags, snapshot.archived_at
        images, omitted = dict(snapshot.images), tuple(snapshot.omitted)
        merged_into = snapshot.merged_into
        articles = [_articles_of(snapshot)]
        del snapshot
        # The articles (and the answer they are read from) are handed over without a reference
        # here, so the layout can let them go before the output.
        rendered = render_ticket_pdf(
            ticket,
            articles.pop(),
            tags,
            archived_at=archived_at,
            options=options,
            images=images,
            embedded=originals,
            omitted=omitted,
            target=target,
            merged_into=merged_into,
        )
    finally:
        source.close()
        # This process lives on for more renders: after a big one, keep it small between them.
        if _size(snapshot_path) + _size(target) >= TRIM_AFTER_BYTES:
            release_free_memory()
    return dataclasses.replace(rendered, path=Path(target))


def _size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _articles_of(snapshot: TicketSnapshot) -> Sequence[dict[str, Any]]:
    """The snapshot's articles: from ``articles_raw`` when it has them, as the Zammad client
    reads them (:func:`app.zammad.articles.lazy_articles`: a big answer one article at a time,
    a smaller one parsed whole), else ``articles`` as they are."""
    raw = snapshot.articles_raw
    if raw is None:
        return snapshot.articles
    lazy = lazy_articles(raw)
    return lazy if lazy is not None else orjson.loads(raw)


class _SpooledOriginals(Sequence[EmbeddedFile]):
    """The originals of one render, read from the snapshot file as they are iterated (once).

    :func:`app.render.originals.embed_originals` iterates them once and keeps only the
    compressed stream of each, so only one original's bytes are in memory at a time.

    Args:
        source: the snapshot file, positioned at the first original.
        count: how many originals follow (each its own pickle).
        articles_raw: the snapshot's ``articles_raw``: an original pickled with ``data`` of
            ``None`` is that answer (:func:`_write_snapshot` writes those bytes once).
    """

    def __init__(self, source: BinaryIO, count: int, articles_raw: bytes | None = None) -> None:
        self._source = source
        self._count = count
        self._articles_raw = articles_raw
        self._read = False

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> NoReturn:
        raise TypeError("the originals of a render can only be iterated, once")

    def __iter__(self) -> Iterator[EmbeddedFile]:
        if self._read:
            raise RuntimeError("the originals of a render can only be iterated once")
        self._read = True
        for _ in range(self._count):
            fields = pickle.load(self._source)
            if fields[1] is None:
                fields = (fields[0], self._articles_raw, *fields[2:])
            yield EmbeddedFile(*fields)
        self._articles_raw = None  # all read: the answer is the articles' business now


def _spool_error(what: str, exc: OSError) -> RenderError:
    return RenderError(
        f"cannot {what} in the render spool: {exc.strerror or exc}",
        transient=exc.errno in TRANSIENT_ERRNOS,
    )


def _write_snapshot(snapshot: TicketSnapshot, path: Path) -> None:
    """Pickle ``snapshot`` straight into a new file (no whole-blob copy in memory): the
    snapshot without its originals, their count, then each original as its own pickle of
    the tuple of its fields (so that :func:`_render_file` can read them one at a time); an
    original spooled to a file (``path``) is read from it one at a time and goes in as bytes;
    one whose bytes are the snapshot's ``articles_raw`` (``articles.json``) goes in with
    ``data`` of ``None``, as those bytes are in the snapshot already.

    Raises:
        OSError: the file cannot be written, or a spooled original cannot be read.
    """
    with open(path, "xb") as out:
        pickle.dump(dataclasses.replace(snapshot, embedded=()), out, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(len(snapshot.embedded), out, protocol=pickle.HIGHEST_PROTOCOL)
        for original in snapshot.embedded:  # as a tuple: a slotted dataclass unpickles slowly
            if original.path is not None:  # spooled by the workflow: its bytes go into the snapshot
                original = dataclasses.replace(original, data=original.content(), path=None)
            elif snapshot.articles_raw is not None and original.data is snapshot.articles_raw:
                original = dataclasses.replace(original, data=None)  # type: ignore[arg-type]  # "= articles_raw"
            pickle.dump(
                tuple(getattr(original, name) for name in _EMBEDDED_FIELDS),
                out,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            del original


class ProcessPoolRenderer:
    """Implements :class:`app.workflow.ports.RendererPort` on a ``ProcessPoolExecutor``.

    Args:
        options: layout options passed to every render.
        processes: pool size; 0 means one per CPU.
        on_missing_glyphs: called in this process with each render's
            :attr:`~app.workflow.ports.RenderedPdf.missing_by_script` when it is not empty
            (the render processes count, the count comes back with the result).

        timeout_seconds: the longest render (:meth:`render`, :meth:`render_file`), from when
            the pool hands it to a render process; 0 = no limit. A longer one fails Permanent
            and the pool's processes are ended (the others' renders under way fail Transient):
            fpdf2 lays right-to-left and shaped text out at a few thousand characters a second
            (40,000 characters of Hebrew: ~14 s; a 5 MB body: half an hour).

    A render process that dies (the kernel's OOM killer, a crash in a C library) fails the
    calls it was running with a Transient :class:`~app.errors.RenderError`, and the pool is
    replaced: later renders run in fresh processes.
    """

    def __init__(
        self,
        options: RenderOptions,
        *,
        processes: int = 0,
        on_missing_glyphs: Callable[[tuple[tuple[str, int], ...]], None] | None = None,
        timeout_seconds: float = 0.0,
    ) -> None:
        self.options = options
        self.timeout_seconds = timeout_seconds
        self.on_missing_glyphs = on_missing_glyphs
        self.processes = processes or os.cpu_count() or 1
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("forkserver"),
            max_tasks_per_child=MAX_TASKS_PER_CHILD,
            initializer=_start_render_process,
            initargs=(os.getpid(),),
        )

    def _died(self, pool: ProcessPoolExecutor, exc: BrokenProcessPool) -> RenderError:
        """The error of a call that ``pool`` lost because a render process died (killed by
        the kernel's OOM killer, a crash in a C library on hostile input); ``pool`` is
        replaced by a fresh one first, unless that happened already or the renderer is
        closed: ``concurrent.futures`` marks a pool whose process died as broken for good, so
        every later render would fail too."""
        self._replace(pool)
        return RenderError(f"the render process died ({exc})", transient=True)

    def _replace(self, pool: ProcessPoolExecutor, *, terminate: bool = False) -> None:
        """A fresh pool in place of ``pool`` (unless replaced already or closed); ``pool``
        shut down, its processes ended with ``terminate``."""
        if pool is not self._pool or self._closed:
            return
        self._pool = self._new_pool()
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        if terminate:
            for process in processes:
                with contextlib.suppress(OSError, ValueError):  # exited meanwhile, or closed
                    process.terminate()

    async def render(self, snapshot: TicketSnapshot) -> RenderedPdf:
        """Render ``snapshot`` in a child process; the PDF comes back as bytes.

        Raises:
            RenderError: the layout failed or took longer than ``timeout_seconds``
                (Permanent), or the pool broke (a child died; Transient).
        """
        return await self._run(functools.partial(_render, snapshot, self.options))

    async def render_file(self, snapshot: TicketSnapshot, target: Path) -> RenderedPdf:
        """Render ``snapshot`` in a child process into the new file ``target``.

        The snapshot travels as the file ``<target>.snapshot`` (removed afterwards), so
        neither it nor the PDF is ever held whole in this process's memory; when it has
        ``articles_raw``, the articles go as those bytes and are parsed in the render
        process (the parsed list here can be let go before the snapshot is written). ``target``'s
        folder must be writable by the render processes (same user) and is best on disk,
        not tmpfs.

        Returns:
            The layout's facts with ``data=b""`` and ``path=target``; the caller removes
            ``target`` when done with it.

        Raises:
            RenderError: the layout failed or took longer than ``timeout_seconds``
                (Permanent), the pool broke (a child died; Transient), or a spool file
                could not be written (Transient for a full disk).
        """
        snapshot_path = target.with_name(target.name + ".snapshot")
        if snapshot.articles_raw is not None:  # the render process parses the articles itself
            snapshot = dataclasses.replace(snapshot, articles=[])
        try:
            await asyncio.to_thread(_write_snapshot, snapshot, snapshot_path)
        except OSError as exc:
            snapshot_path.unlink(missing_ok=True)
            raise _spool_error("write the snapshot", exc) from None
        del snapshot  # on disk now: the caller may let its copy go while the layout runs
        if _size(snapshot_path) >= TRIM_AFTER_BYTES:
            release_free_memory()
        try:
            return await self._run(
                functools.partial(_render_file, str(snapshot_path), str(target), self.options)
            )
        finally:
            snapshot_path.unlink(missing_ok=True)

    async def font_coverage(self) -> FontCoverage:
        """Which scripts the fonts for ``options.font_dirs`` cover, checked in a render process
        (:func:`app.render.coverage.check_fonts`).

        Raises:
            RenderError: the pool broke (a child died; Transient).
        """
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _check_fonts, self.options.font_dirs
            )
        except BrokenProcessPool as exc:
            raise self._died(pool, exc) from None

    async def _run(self, call: functools.partial[RenderedPdf]) -> RenderedPdf:
        pool = self._pool
        try:
            submitted = pool.submit(call)
            rendered = await self._result(submitted)
        except BrokenProcessPool as exc:
            raise self._died(pool, exc) from None
        except _RenderTimeout:
            self._replace(pool, terminate=True)
            raise RenderError(
                f"the layout took longer than RENDER_TIMEOUT_SECONDS={self.timeout_seconds:g} s and was "
                "ended: a body the layout cannot handle (the originals hold it), or raise the limit",
                transient=False,
            ) from None
        if rendered.missing_by_script and self.on_missing_glyphs is not None:
            self.on_missing_glyphs(rendered.missing_by_script)
        return rendered

    async def _result(self, submitted: concurrent.futures.Future[RenderedPdf]) -> RenderedPdf:
        """The result of ``submitted``; :class:`_RenderTimeout` once it has run for longer than
        :attr:`timeout_seconds` (counted from when the pool marks it running: handed to a
        render process's queue, which holds at most one call more than there are processes)."""
        waiting = asyncio.wrap_future(submitted)
        if not self.timeout_seconds:
            return await waiting
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            pause = TIMEOUT_CHECK_SECONDS if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait((waiting,), timeout=pause)
            if done:
                return waiting.result()
            if deadline is None:
                if submitted.running():
                    deadline = loop.time() + self.timeout_seconds
            elif loop.time() >= deadline:
                waiting.cancel()
                raise _RenderTimeout

    def close(self) -> None:
        """Shut the pool down and end the renders still running.

        By the time the service closes its renderer, the worker pool has stopped: a render
        still running belongs to a run that was cancelled and will be resumed (here or by
        another replica), and its PDF would be thrown away. Its process is terminated rather
        than waited for, so the service exits within ``SHUTDOWN_GRACE_SECONDS`` and its
        margin, not after the slowest render (``concurrent.futures`` joins its workers at
        interpreter exit even after ``shutdown(wait=False)``).
        """
        # The executor's own processes: Python 3.11's ProcessPoolExecutor has no public way
        # to end them (terminate_workers() came in 3.14).
        self._closed = True
        processes = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(OSError, ValueError):  # exited meanwhile, or closed
                process.terminate()


class InlineRenderer:
    """Renders in a worker thread of this process: for tools and tests that need no pool.

    Installs :mod:`app.render.patches` in this process at its first render.
    """

    def __init__(self, options: RenderOptions) -> None:
        self.options = options

    async def render(self, snapshot: TicketSnapshot) -> RenderedPdf:
        """Render ``snapshot`` with :func:`asyncio.to_thread`."""
        from app.render import patches
        from app.render.pdf import render_ticket_pdf

        patches.install()

        return await asyncio.to_thread(
            render_ticket_pdf,
            snapshot.ticket,
            snapshot.articles,
            snapshot.tags,
            archived_at=snapshot.archived_at,
            options=self.options,
            images=snapshot.images,
            embedded=snapshot.embedded,
            omitted=snapshot.omitted,
        )

    def close(self) -> None:
        """Nothing to release."""
