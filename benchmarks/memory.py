"""Benchmark: peak memory of the service while it archives one 5,000-article ticket.

Three tickets, each in a fresh stack (:class:`benchmarks.stack.Stack`, signing on, default
settings: ``WORKERS=2``, one render process per CPU) that gets one webhook for it:

* **HTML**: 5,000 articles of the Zammad mix without its images (``zammad-text``:
  :func:`benchmarks.tickets.make_mixed_ticket` with ``images=False``, the 20-article pattern
  250 times: 85 % ``text/html``, every raw e-mail and attachment fetched as an original) —
  the ticket of the 300 MiB target;
* **HTML with images**, for information: the full Zammad mix (1,500 inline images of 51 MB
  fetched and drawn, 85 MB of raw e-mails embedded as originals). Images and originals are
  held in memory by the workflow and the render process as they are today, so this ticket's
  peak grows with their size, not with the layout;
* **plain**: 5,000 plain-text articles of ~1,000 characters (7.2 MB of article JSON).

While it runs, every process of the service's tree is sampled every 0.1 s for ``VmHWM`` (the
kernel's peak resident set, ``/proc/<pid>/status``), keeping each process's highest value.

Reported: the main process, the largest render child, and the sum over the whole tree
(main process, forkserver, render processes, resource tracker, the job store's WAL sync
helper, ~9 MiB) — the target (under
300 MiB) is on the sum. Summing per-process peaks overstates the true peak: the peaks need
not coincide, and pages the render children share with the forkserver count once per child.
For information only, the highest summed PSS (``Pss`` of ``/proc/<pid>/smaps_rollup``: shared
pages split between the processes sharing them) seen at one sampling instant.

Run alone: ``python -m benchmarks.memory [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path

from benchmarks.common import Result, print_rows
from benchmarks.stack import Stack, peak_rss_mib, process_tree

ARTICLES = 5000
TARGET_MIB = 300.0
SAMPLE_SECONDS = 0.1
#: (mix, row label, whether the row carries the target): the HTML ticket of the target is the
#: Zammad mix without its images; the full mix (1,500 images, 85 MB of raw e-mails embedded as
#: originals) is shown for information — see the module docstring.
MIXES = (
    ("zammad-text", "HTML (Zammad mix without images)", True),
    ("zammad", "HTML (Zammad mix, 1,500 images)", False),
    ("plain", "plain text", True),
)


def pss_mib(pid: int) -> float:
    """Proportional set size of one process in MiB (``Pss`` of ``smaps_rollup``; 0 when it is gone)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


async def measure(
    articles: int, budget_seconds: float, mix: str = "plain"
) -> tuple[dict[int, float], int, float, float, list[int], float]:
    """Archive one ticket of ``articles`` articles of ``mix``; per-pid peaks, main pid, idle MiB,
    seconds, missing (not archived within ``budget_seconds``), highest summed PSS (MiB)."""
    with Stack(tickets=1, articles=articles, mix=mix) as stack:
        assert stack.service is not None
        main_pid = stack.service.pid
        idle = peak_rss_mib(main_pid)
        peaks: dict[int, float] = {}
        pss_peak = 0.0
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal pss_peak
            while not done.is_set():
                tree = process_tree(main_pid)
                for pid in tree:
                    peaks[pid] = max(peaks.get(pid, 0.0), peak_rss_mib(pid))
                pss_peak = max(pss_peak, sum(pss_mib(pid) for pid in tree))
                await asyncio.sleep(SAMPLE_SECONDS)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        try:
            if await stack.post(stack.ticket_ids):
                raise RuntimeError("the webhook was refused")
            ended, missing = await stack.wait_signed(stack.ticket_ids, budget_seconds)
        finally:
            done.set()
            await sampler
        for pid in process_tree(main_pid):  # a last look, before anything stops
            peaks[pid] = max(peaks.get(pid, 0.0), peak_rss_mib(pid))
        return peaks, main_pid, idle, ended - started, missing, pss_peak


def rows_of(mix: str, label: str, articles: int, timeout: float, target: bool = True) -> list[Result]:
    """The rows of one archive run of an ``articles``-article ticket of ``mix``; the summed
    peak row carries the target unless ``target`` is false."""
    peaks, main_pid, idle, seconds, missing, pss_peak = asyncio.run(measure(articles, timeout, mix))
    children = {pid: mib for pid, mib in peaks.items() if pid != main_pid}
    total = sum(peaks.values())
    return [
        Result(
            "memory",
            f"{label}: {articles}-article ticket archived (signed) in",
            round(seconds, 1),
            "s",
            "archived",
            not missing,
        ),
        Result("memory", f"{label}: service main process at start, RSS", round(idle, 1), "MiB"),
        Result(
            "memory", f"{label}: peak RSS, service main process", round(peaks.get(main_pid, 0.0), 1), "MiB"
        ),
        Result(
            "memory",
            f"{label}: peak RSS, largest of {len(children)} child processes",
            round(max(children.values(), default=0.0), 1),
            "MiB",
        ),
        Result(
            "memory",
            f"{label}: peak RSS, the other child processes together (forkserver, tracker, idle "
            "renderers, WAL sync helper)",
            round(sum(children.values()) - max(children.values(), default=0.0), 1),
            "MiB",
        ),
        Result(
            "memory",
            f"{label}: peak RSS, sum over service tree ({len(peaks)} processes), {articles} articles",
            round(total, 1),
            "MiB",
            *((f"< {TARGET_MIB:g}", total < TARGET_MIB and not missing) if target else ()),
        ),
        Result(
            "memory",
            f"{label}: highest summed PSS of the tree at one instant (information)",
            round(pss_peak, 1),
            "MiB",
        ),
    ]


def run(quick: bool = False) -> list[Result]:
    """One archive run of a 5,000-article ticket (1,000 with ``quick``) of each of :data:`MIXES`;
    peak RSS figures."""
    articles, timeout = (1000, 90.0) if quick else (ARTICLES, 240.0)
    rows: list[Result] = []
    for mix, label, target in MIXES:
        rows += rows_of(mix, label, articles, timeout, target)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1,000-article ticket instead of 5,000")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
