"""Rendering off the event loop: a process pool running :func:`app.render.pdf.render_ticket_pdf`.

Layout is CPU-bound and holds the GIL, so threads would stall ``/ingest``; processes do not.
Arguments and results are plain picklable data (dicts, bytes, dataclasses).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from app.errors import RenderError
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import RenderedPdf, TicketSnapshot

MAX_TASKS_PER_CHILD = 50
"""Children are replaced after this many renders, bounding leaks and open font handles."""

RENDER_NICENESS = 10
"""Render children run at this lower CPU priority (``nice``): layout is background work, and
the event loop answering webhooks must get a core first when the pool renders at full load."""


FORKSERVER_PRELOAD = ["__main__", "app.render.preload"]
"""Modules the fork server imports before forking render children: ``__main__`` (the
default) and :mod:`app.render.preload`, which fills the render caches once for all children."""


def _lower_priority() -> None:
    try:
        os.nice(RENDER_NICENESS)
    except OSError:  # not permitted in some sandboxes: render at normal priority
        pass


class ProcessPoolRenderer:
    """Implements :class:`app.workflow.ports.RendererPort` on a ``ProcessPoolExecutor``.

    Args:
        options: layout options passed to every render.
        processes: pool size; 0 means one per CPU.
    """

    def __init__(self, options: RenderOptions, *, processes: int = 0) -> None:
        self.options = options
        self.processes = processes or os.cpu_count() or 1
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(FORKSERVER_PRELOAD)  # no effect once the fork server runs
        self._pool = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=context,
            max_tasks_per_child=MAX_TASKS_PER_CHILD,
            initializer=_lower_priority,
        )

    async def render(self, snapshot: TicketSnapshot) -> RenderedPdf:
        """Render ``snapshot`` in a child process.

        Raises:
            RenderError: the layout failed, or the pool broke (a child died; Transient).
        """
        call = functools.partial(render_ticket_pdf, snapshot.ticket, snapshot.articles, snapshot.tags,
                                 archived_at=snapshot.archived_at, options=self.options,
                                 images=dict(snapshot.images), embedded=tuple(snapshot.embedded),
                                 omitted=tuple(snapshot.omitted))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except BrokenProcessPool as exc:
            raise RenderError(f"the render process died ({exc})", transient=True) from None

    def close(self) -> None:
        """Shut the pool down without waiting for running renders."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class InlineRenderer:
    """Renders in a worker thread of this process: for tools and tests that need no pool."""

    def __init__(self, options: RenderOptions) -> None:
        self.options = options

    async def render(self, snapshot: TicketSnapshot) -> RenderedPdf:
        """Render ``snapshot`` with :func:`asyncio.to_thread`."""
        return await asyncio.to_thread(render_ticket_pdf, snapshot.ticket, snapshot.articles, snapshot.tags,
                                       archived_at=snapshot.archived_at, options=self.options,
                                       images=snapshot.images, embedded=snapshot.embedded,
                                       omitted=snapshot.omitted)

    def close(self) -> None:
        """Nothing to release."""
