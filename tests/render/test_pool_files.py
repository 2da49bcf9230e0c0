"""The render pool's file path: snapshot and PDF through files; the layout stack only in render processes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from app.errors import RenderError
from app.render.options import RenderOptions
from app.render.pool import InlineRenderer, ProcessPoolRenderer, _SpooledOriginals, _write_snapshot
from app.workflow.ports import EmbeddedFile, OmittedFile, TicketSnapshot

REPO = Path(__file__).resolve().parents[2]
ARCHIVED_AT = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
LAYOUT_STACK = ("fpdf", "fontTools", "PIL", "lxml", "uharfbuzz", "inscriptis", "nh3")


def article(index: int) -> dict:
    return {
        "id": 100 + index,
        "type": "email",
        "sender": "Customer",
        "from": "Kundin <k@example.com>",
        "subject": f"Nachricht {index}",
        "content_type": "text/plain",
        "internal": index % 3 == 0,
        "created_at": f"2025-03-03T08:{index:02d}:00Z",
        "body": f"Grüße aus Mühlenbach, Nachricht {index}.\n\n" + "Die Rechnung stimmt nicht. " * 40,
    }


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` of process ``pid``, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def snapshot(count: int = 30, *, raw: bool = True) -> TicketSnapshot:
    articles = [article(i) for i in range(count)]
    articles_raw = orjson.dumps(articles)
    return TicketSnapshot(
        ticket={"id": 7, "number": "25007", "title": "Rechnung doppelt"},
        articles=articles,
        tags=["rechnung"],
        archived_at=ARCHIVED_AT,
        articles_raw=articles_raw if raw else None,
        embedded=(
            EmbeddedFile("articles.json", articles_raw, "application/json", "Source"),
            *(
                EmbeddedFile(
                    f"article-{a['id']}-body.txt",
                    a["body"].encode(),
                    "text/plain",
                    "Source",
                    article_id=a["id"],
                )
                for a in articles
            ),
        ),
        omitted=(OmittedFile("huge.iso", 10**9, "larger than PDF_EMBED_MAX_BYTES (1000)"),),
    )


@pytest.mark.parametrize("raw", [True, False])
async def test_render_file_writes_the_same_pdf_as_an_inline_render(tmp_path: Path, raw: bool):
    snap = snapshot(raw=raw)
    inline = await InlineRenderer(RenderOptions()).render(snap)
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    target = tmp_path / "rendered.pdf"
    try:
        rendered = await pool.render_file(snap, target)
    finally:
        pool.close()
    assert rendered.path == target and rendered.data == b""
    assert target.read_bytes() == inline.data  # byte for byte, articles parsed in the render process or not
    assert (rendered.page_count, rendered.articles_included, rendered.embedded, rendered.pdfa) == (
        inline.page_count,
        inline.articles_included,
        inline.embedded,
        inline.pdfa,
    )
    assert rendered.embedded[0] == (
        "articles.json",
        hashlib.sha256(snap.articles_raw or orjson.dumps(snap.articles)).hexdigest(),
        len(orjson.dumps(snap.articles)),
    )
    assert files_in(tmp_path) == ["rendered.pdf"]  # the snapshot file is gone


async def test_originals_spooled_by_the_workflow_are_embedded_byte_for_byte(tmp_path: Path):
    """Originals whose bytes wait in files (``EmbeddedFile.path``) give the same PDF as
    the same originals in memory, through the pool's file path and inline."""
    snap = snapshot(5)
    spool = tmp_path / "originals"
    spool.mkdir()
    spooled = []
    for number, original in enumerate(snap.embedded):
        path = spool / f"{number:06d}"
        path.write_bytes(original.data)
        spooled.append(dataclasses.replace(original, data=b"", path=str(path)))
    expected = await InlineRenderer(RenderOptions()).render(snap)
    on_disk = dataclasses.replace(snap, embedded=tuple(spooled))
    assert (await InlineRenderer(RenderOptions()).render(on_disk)).data == expected.data
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        rendered = await pool.render_file(on_disk, tmp_path / "rendered.pdf")
    finally:
        pool.close()
    assert (tmp_path / "rendered.pdf").read_bytes() == expected.data
    assert rendered.embedded == expected.embedded
    assert [size for _, _, size in rendered.embedded] == [len(o.data) for o in snap.embedded]
    (spool / "000002").unlink()  # a spooled original gone: a render error, not a crash
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        with pytest.raises(RenderError, match="render spool"):
            await pool.render_file(on_disk, tmp_path / "again.pdf")
    finally:
        pool.close()


def test_the_articles_answer_goes_into_the_snapshot_once(tmp_path: Path):
    """``articles.json`` is the snapshot's ``articles_raw``: written once, read back as both."""
    snap = snapshot(5)
    path = tmp_path / "s.snapshot"
    _write_snapshot(snap, path)
    assert snap.articles_raw is not None and path.read_bytes().count(snap.articles_raw) == 1
    with open(path, "rb") as source:
        pickle.load(source)
        originals = list(_SpooledOriginals(source, pickle.load(source), snap.articles_raw))
    assert originals == list(snap.embedded)


async def test_render_file_never_overwrites_and_cleans_up(tmp_path: Path):
    target = tmp_path / "rendered.pdf"
    target.write_bytes(b"someone else's file")
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        with pytest.raises(RenderError, match="cannot write the PDF file") as info:
            await pool.render_file(snapshot(3), target)
        assert info.value.transient is False
        with pytest.raises(RenderError, match="render spool") as missing:
            await pool.render_file(snapshot(3), tmp_path / "no-such-folder" / "rendered.pdf")
        assert missing.value.transient is False
    finally:
        pool.close()
    assert files_in(tmp_path) == ["rendered.pdf"]
    assert target.read_bytes() == b"someone else's file"


def test_the_main_process_never_loads_the_layout_stack(tmp_path: Path):
    """A whole archive run (Zammad simulator, workflow, render pool, storage) in a fresh
    process: the PDF is made, yet the process never imported fpdf2, fontTools, Pillow, lxml
    or HarfBuzz (they load in the render processes only)."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from datetime import UTC, datetime
        from pathlib import Path
        import aiohttp
        import app.__main__, app.main  # everything the service imports at start
        from devtools.zammad_simulator import ZammadSimulator
        from app.render.images import image_references
        from app.render.options import RenderOptions
        from app.render.pool import ProcessPoolRenderer
        from app.signing.signer import UnsignedPassthrough
        from app.storage.store import ArchiveStore
        from app.workflow.archive import ArchiveWorkflow
        from app.workflow.originals import EmbedPolicy
        from app.zammad.client import ZammadClient

        async def main():
            sim = ZammadSimulator(api_token="t")
            sim.seed_fixture_ticket(Path({str(REPO / "tests/fixtures/zammad")!r}))
            base = await sim.start("127.0.0.1", 0)
            pool = ProcessPoolRenderer(RenderOptions(), processes=1)
            root, spool = Path({str(tmp_path / "archive")!r}), Path({str(tmp_path / "spool")!r})
            root.mkdir(); spool.mkdir()
            try:
                async with aiohttp.ClientSession() as session:
                    workflow = ArchiveWorkflow(
                        zammad=ZammadClient(session, base, "t"), renderer=pool, signer=UnsignedPassthrough(),
                        storage=ArchiveStore(root, fsync=False), image_references=image_references,
                        embed=EmbedPolicy(), spool_dir=spool,
                    )
                    outcome = await workflow.run(4711, job_id="job-1")
            finally:
                pool.close()
                await sim.stop()
            print(outcome.status, len(list(root.rglob("*.pdf"))), len(list(spool.iterdir())))
            print(sorted(m for m in {LAYOUT_STACK!r} if m in sys.modules))

        asyncio.run(main())
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-2:] == ["archived 1 0", "[]"], result.stdout + result.stderr[-2000:]


async def test_a_big_ticket_stays_within_a_generous_memory_bound(tmp_path: Path):
    """2,000 articles with their bodies embedded as originals, through the real pool: the
    render process's peak RSS stays well under what it was when fonts, snapshot and PDF all
    sat in memory at once (over 200 MiB then; ~100 MiB now; ``benchmarks.memory`` has the figures)."""
    articles = [article(i % 60) | {"id": 1000 + i} for i in range(2000)]
    raw = orjson.dumps(articles)
    snap = TicketSnapshot(
        ticket={"id": 8, "number": "25008", "title": "Lang"},
        articles=articles,
        tags=[],
        archived_at=ARCHIVED_AT,
        articles_raw=raw,
        embedded=(
            EmbeddedFile("articles.json", raw, "application/json", "Source"),
            *(
                EmbeddedFile(
                    f"article-{a['id']}-body.txt",
                    a["body"].encode(),
                    "text/plain",
                    "Source",
                    article_id=a["id"],
                )
                for a in articles
            ),
        ),
    )
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        rendered = await pool.render_file(snap, tmp_path / "big.pdf")
        (pid,) = pool._pool._processes  # the one render process
        peak_mib = peak_rss_kib(pid) / 1024
    finally:
        pool.close()
    assert rendered.page_count > 500 and len(rendered.embedded) == 2001
    assert peak_mib < 160, f"render process peak RSS {peak_mib:.0f} MiB"


def test_close_ends_a_running_render_and_the_process_exits_at_once():
    """The service closes its renderer on shutdown, after the worker pool stopped: a render
    still running (a cancelled run's) is ended, not waited for at interpreter exit."""
    script = textwrap.dedent("""
        import asyncio, os
        from datetime import UTC, datetime
        from app.render.options import RenderOptions
        from app.render.pool import ProcessPoolRenderer
        from app.workflow.ports import TicketSnapshot
        from benchmarks.tickets import make_articles

        async def main():
            pool = ProcessPoolRenderer(RenderOptions(), processes=1)
            await pool.font_coverage()  # the render process is up
            ticket, articles = {"number": "1", "title": "long"}, make_articles(6000)
            long = TicketSnapshot(ticket, articles, [], datetime.now(UTC))
            render = asyncio.ensure_future(pool.render(long))
            await asyncio.sleep(1.0)
            print("running" if not render.done() else "done", flush=True)
            pool.close()
            render.cancel()
            print("closed", flush=True)

        if __name__ == "__main__":
            asyncio.run(main())
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "running"  # a render of 6,000 articles takes many seconds
    assert proc.stdout.readline().strip() == "closed"
    closed = time.monotonic()
    proc.wait(timeout=120)
    exit_seconds = time.monotonic() - closed
    assert proc.returncode == 0, proc.stderr.read()[-2000:] if proc.stderr else ""
    assert exit_seconds < 3.0


def test_render_processes_end_with_a_service_killed_by_sigkill():
    """A service killed with SIGKILL cannot stop its pool: its render processes notice and exit
    within SERVICE_CHECK_SECONDS, and the pool's fork server and resource tracker follow (they
    ran on as orphans before: ~100 MB per render process, kept by process managers that do
    not kill the whole process group)."""
    script = textwrap.dedent("""
        import asyncio, os, time
        from app.render.options import RenderOptions
        from app.render.pool import ProcessPoolRenderer

        async def main():
            pool = ProcessPoolRenderer(RenderOptions(), processes=2)
            await asyncio.gather(pool.font_coverage(), pool.font_coverage())  # render processes up
            pids = list(pool._pool._processes)
            for _ in range(300):  # each one's initialiser has run: its service-watch thread is up
                if all(len(os.listdir(f"/proc/{pid}/task")) > 1 for pid in pids):
                    break
                time.sleep(0.1)
            print(" ".join(str(pid) for pid in pids), flush=True)
            time.sleep(600)

        if __name__ == "__main__":
            asyncio.run(main())
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None
    children = [int(pid) for pid in proc.stdout.readline().split()]
    helpers = [
        int(pid)
        for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if int(pid) not in children
    ]  # the fork server and the resource tracker
    assert children and helpers
    proc.kill()  # and not reaped until the end: a zombie service counts as ended
    deadline = time.monotonic() + 10
    left = children + helpers
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [pid for pid in left if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert left == [], "processes left behind by the killed service"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie waiting for PID 1)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_a_render_process_killed_fails_its_render_transient_and_the_next_render_works(tmp_path: Path):
    """A render process the kernel kills (OOM killer on a hostile ticket) or that crashes fails
    the render it ran as Transient; the renders after it run in a fresh pool (a broken
    ``ProcessPoolExecutor`` refused every later call: no ticket could be archived until the
    service restarted)."""
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        await pool.font_coverage()  # the render process is up
        (pid,) = list(pool._pool._processes)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(RenderError, match="the render process died") as died:
            await pool.render_file(snapshot(3), tmp_path / "first.pdf")
        assert died.value.transient is True
        rendered = await pool.render_file(snapshot(3), tmp_path / "second.pdf")
        assert rendered.page_count >= 1 and (tmp_path / "second.pdf").read_bytes().startswith(b"%PDF-")
        assert (await pool.font_coverage()) is not None
    finally:
        pool.close()


async def test_a_render_over_the_time_limit_fails_permanent_and_the_next_render_works(tmp_path: Path):
    """A layout that runs too long (here 40,000 characters of Hebrew: fpdf2 shapes right-to-left
    text at a few thousand characters a second, ~14 s; a 5 MB body would take half an hour) is
    ended at ``timeout_seconds`` and fails Permanent; its render process is gone and later
    renders run in a fresh pool. Without a limit, a render process ran such a ticket to its end,
    however long that took."""
    hostile = dataclasses.replace(
        snapshot(1, raw=False),
        articles=[{**article(0), "content_type": "text/plain", "body": "שלום עולם " * 4000}],
        embedded=(),
    )
    pool = ProcessPoolRenderer(RenderOptions(), processes=1, timeout_seconds=2.0)
    try:
        await pool.font_coverage()  # the render process is up
        (pid,) = list(pool._pool._processes)
        started = time.monotonic()
        with pytest.raises(RenderError, match="RENDER_TIMEOUT_SECONDS=2") as slow:
            await pool.render_file(hostile, tmp_path / "hostile.pdf")
        assert slow.value.transient is False
        assert time.monotonic() - started < 6
        await asyncio.to_thread(_wait_gone, pid, 5.0)
        assert not _running(pid), "the render process still runs the hostile layout"
        rendered = await pool.render_file(snapshot(3), tmp_path / "next.pdf")
        assert rendered.page_count >= 1
    finally:
        pool.close()


def _wait_gone(pid: int, seconds: float) -> None:
    """Wait up to ``seconds`` for process ``pid`` to end."""
    deadline = time.monotonic() + seconds
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
