"""One archive run with small fakes behind the ports: the gate, the tag transitions, the
error path (Transient/Permanent and the pdf:error note), cancellation and the spool."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import tempfile
import threading
from pathlib import Path

import pytest

from app.errors import RenderError, SigningError, StorageError, ZammadApiError
from app.jobs.records import JobRecord
from app.runtime import ArchiveRunner
from app.workflow.archive import HANDED_OVER
from app.workflow.classify import classify
from app.workflow.originals import Attempt, EmbedPolicy
from app.workflow.steps import Step
from tests.workflow.fakes import TICKET, TRIGGER, Rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def test_an_archived_run_ends_signed_with_one_note(rig: Rig):
    outcome = await rig.workflow.run(TICKET, job_id="job-1", delivery_id="d-1")

    assert outcome.status == "archived" and outcome.started
    assert rig.tags() == ["pdf:signed", "rechnung"]
    # The start writes only what the tags just read need; the report removes every other state tag.
    assert rig.zammad.writes() == [
        ("add_tag", TICKET, "pdf:processing"),
        ("remove_tag", TICKET, TRIGGER),
        ("add_tag", TICKET, "pdf:signed"),
        ("remove_tag", TICKET, "pdf:processing"),
        ("remove_tag", TICKET, "pdf:error"),
        ("remove_tag", TICKET, TRIGGER),
        ("create_internal_note", TICKET, "PDF archived"),
    ]
    fields = rig.note_fields()
    assert (fields["Job"], fields["Delivery"], fields["Path"]) == ("job-1", "d-1", "25004711.pdf")
    ((data, sidecar),) = rig.storage.stored
    assert data == b"signed:%PDF-fake ticket 4711"
    assert sidecar["job_id"] == "job-1" and sidecar["delivery_id"] == "d-1" and sidecar["signed"] is True
    # The layout shows the ticket's own tags, not the archiver's.
    assert rig.renderer.snapshots[0].tags == ["rechnung"]
    assert list(rig.spool.iterdir()) == []


@pytest.mark.parametrize(
    ("tags", "force", "resume", "status", "reason"),
    [
        (["rechnung"], False, False, "skipped", "trigger_tag_absent"),
        (["pdf:signed", TRIGGER], False, False, "skipped", "already_signed"),
        (["pdf:signed"], True, False, "archived", ""),
        (["pdf:processing"], False, False, "skipped", "trigger_tag_absent"),
        (["pdf:processing"], False, True, "archived", ""),
    ],
)
async def test_the_gate_decides_before_any_write(tmp_path: Path, tags, force, resume, status, reason):
    rig = Rig(tmp_path, tags=tags)
    outcome = await rig.workflow.execute(TICKET, job_id="j", force=force, resume=resume)
    assert (outcome.status, outcome.reason) == (status, reason)
    if status == "skipped":
        assert rig.zammad.writes() == [] and rig.renderer.snapshots == []
        assert rig.workflow.report(outcome, job_id="j", delivery_id=None) is None
    else:
        assert rig.zammad.tags[TICKET] == ["pdf:processing"]  # until the report


@pytest.mark.parametrize(
    ("break_it", "step", "classification", "code", "tags"),
    [
        (
            lambda r: r.zammad.fail("get_ticket_raw", ZammadApiError("GET answered 503", status=503)),
            "fetch ticket",
            "Transient",
            "zammad_api_error",
            ["pdf:error", TRIGGER, "rechnung"],
        ),
        (
            lambda r: r.zammad.fail("list_articles_raw", ZammadApiError("GET answered 403", status=403)),
            "fetch articles",
            "Permanent",
            "zammad_api_error",
            ["pdf:error", "rechnung"],
        ),
        (
            lambda r: setattr(r.renderer, "error", RenderError("4 articles over PDF_MAX_ARTICLES=1")),
            "render",
            "Permanent",
            "render_error",
            ["pdf:error", "rechnung"],
        ),
        (
            lambda r: setattr(r.signer, "error", SigningError("TSA unreachable", transient=True)),
            "sign",
            "Transient",
            "signing_error",
            ["pdf:error", TRIGGER, "rechnung"],
        ),
        (
            lambda r: setattr(r.storage, "error", StorageError("disk full", errno=errno.ENOSPC)),
            "store",
            "Transient",
            "storage_error",
            ["pdf:error", TRIGGER, "rechnung"],
        ),
        (
            lambda r: setattr(r.storage, "error", StorageError("read-only", errno=errno.EROFS)),
            "store",
            "Permanent",
            "storage_error",
            ["pdf:error", "rechnung"],
        ),
        (
            lambda r: setattr(r.renderer, "error", KeyError("a bug of ours")),
            "render",
            "Permanent",
            "internal_error",
            ["pdf:error", "rechnung"],
        ),
    ],
)
async def test_a_failed_step_ends_in_a_classified_pdf_error_note(
    rig: Rig, break_it, step, classification, code, tags
):
    break_it(rig)
    outcome = await rig.workflow.run(TICKET, job_id="job-9")

    assert (outcome.status, outcome.reason, outcome.started) == ("failed", step, True)
    assert rig.tags() == tags  # Transient keeps the trigger tag, Permanent removes it
    fields = rig.note_fields()
    assert (fields["Step"], fields["Classification"], fields["Code"], fields["Job"]) == (
        step,
        classification,
        code,
        "job-9",
    )
    assert list(rig.spool.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "last_attempt", "level", "traceback"),
    [
        # Zammad's answers are expected outcomes: one line, WARNING while the job runs again.
        (ZammadApiError("GET answered 429", status=429), False, "WARNING", False),
        (ZammadApiError("GET answered 429", status=429), True, "ERROR", False),
        (ZammadApiError("GET answered 404", status=404), False, "ERROR", False),  # Permanent: ends
        (KeyError("a bug of ours"), False, "ERROR", True),  # a defect: its traceback too
    ],
)
async def test_a_failed_step_is_one_line_with_a_traceback_only_for_a_defect(
    rig: Rig, caplog: pytest.LogCaptureFixture, error, last_attempt, level, traceback
):
    rig.zammad.fail("get_ticket_raw", error)
    with caplog.at_level("INFO", logger="app.workflow"):
        await rig.workflow.execute(TICKET, job_id="j", attempt=Attempt(1 if last_attempt else 0, 1))
    (line,) = [r for r in caplog.records if r.getMessage() == "job step failed"]
    assert line.levelname == level
    assert bool(line.exc_info) is traceback
    assert (line.step, line.code) == ("fetch ticket", classify(error).code)


@pytest.mark.parametrize(("attempts", "level"), [(1, "WARNING"), (2, "WARNING"), (3, "ERROR")])
async def test_the_runner_says_which_attempt_is_the_last(
    rig: Rig, caplog: pytest.LogCaptureFixture, attempts: int, level: str
):
    # WORKFLOW_MAX_ATTEMPTS=3: a Transient failure of the third run ends the job (dead).
    rig.zammad.fail("get_ticket_raw", ZammadApiError("GET answered 503", status=503))
    job = JobRecord(
        **{f.name: None for f in dataclasses.fields(JobRecord)}
        | {"job_id": "j", "ticket_id": TICKET, "force": False, "attempts": attempts}
    )
    with caplog.at_level("INFO", logger="app.workflow"):
        await ArchiveRunner(rig.workflow, max_attempts=3).execute(job)
    (line,) = [r for r in caplog.records if r.getMessage() == "job step failed"]
    assert line.levelname == level


async def test_the_runner_asks_the_store_since_when_the_ticket_fails_on_a_last_attempt_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """WORKFLOW_DOWNLOAD_GIVE_UP_HOURS: a real SQLite store's failing streak (a dead job and the
    one queued after it) makes the attempt's age; a store that cannot answer leaves the job's own
    age (gives up later, never sooner)."""
    from app.jobs.records import JobRequest, JobState
    from app.jobs.sqlite import SqliteJobStore

    now = [1000.0]
    store = SqliteJobStore(
        tmp_path / "jobs.sqlite3", delivery_ttl_seconds=60, max_pending=10, clock=lambda: now[0]
    )
    await store.open()
    dead = (await store.accept(JobRequest(TICKET))).job_id
    assert dead is not None
    await store.start(dead, "2026-12-07T10:00:00+00:00")
    await store.finish(dead, state=JobState.DEAD, result="failed", error="503", classification="Transient")
    now[0] = 1000.0 + 20 * 3600
    again = (await store.accept(JobRequest(TICKET, reason="reconcile"))).job_id
    assert again is not None
    job = await store.start(again, "2026-12-07T10:00:00+00:00")
    assert job is not None and job.attempts == 1
    runner = ArchiveRunner(
        None,  # type: ignore[arg-type]  # attempt() does not run the workflow
        max_attempts=1,
        give_up_seconds=24 * 3600.0,
        failing_streak=store.failing_streak,
        clock=lambda: 1000.0 + 25 * 3600,
    )
    attempt = await runner.attempt(job)
    assert (attempt.failing_seconds, attempt.runs, attempt.gives_up) == (25 * 3600.0, 2, True)
    early = ArchiveRunner(None, max_attempts=2, give_up_seconds=3600.0, failing_streak=store.failing_streak)  # type: ignore[arg-type]
    assert (await early.attempt(job)).failing_seconds == 0.0  # not the last: the store is not asked
    await store.close()
    with caplog.at_level("WARNING", logger="app.workflow"):
        attempt = await runner.attempt(job)
    assert (attempt.failing_seconds, attempt.runs, attempt.gives_up) == (5 * 3600.0, 1, False)
    assert "failing streak not read" in caplog.text


async def test_zammads_retry_after_reaches_the_outcome(rig: Rig):
    rig.zammad.fail("get_ticket_raw", ZammadApiError("GET answered 429", status=429, retry_after=120.0))
    outcome = await rig.workflow.execute(TICKET, job_id="j")
    assert outcome.failure is not None and outcome.failure.retry_after == 120.0


async def test_a_failure_before_the_start_only_adds_pdf_error(rig: Rig):
    rig.zammad.fail("get_tags", ZammadApiError("GET answered 502", status=502))
    outcome = await rig.workflow.run(TICKET, job_id="j")
    assert (outcome.status, outcome.reason, outcome.started) == ("failed", "fetch tags", False)
    # The trigger tag was never touched, so it stays whatever the classification.
    assert rig.tags() == ["pdf:error", TRIGGER, "rechnung"]
    assert rig.note_fields()["Step"] == "fetch tags"


async def test_the_cause_is_redacted_before_note_and_outcome(tmp_path: Path):
    rig = Rig(tmp_path, redact=lambda s: s.replace("tok-123", "[REDACTED]"))
    rig.renderer.error = RenderError("font server said tok-123 is wrong")
    outcome = await rig.workflow.run(TICKET, job_id="j")
    assert outcome.failure is not None and "tok-123" not in outcome.failure.cause
    assert "[REDACTED]" in rig.note_fields()["Cause"]
    assert "tok-123" not in rig.zammad.notes(TICKET)[0]["body"]


async def test_a_guard_that_refuses_the_start_is_raised_and_nothing_is_written(rig: Rig):
    class LeaseLost(Exception):
        pass

    async def guard() -> None:
        raise LeaseLost("another replica holds the job")

    with pytest.raises(LeaseLost):
        await rig.workflow.execute(TICKET, job_id="j", guard=guard)
    assert rig.zammad.writes() == [] and rig.tags() == [TRIGGER, "rechnung"]


async def test_a_cancelled_run_puts_the_trigger_tag_back(rig: Rig):
    rig.renderer.hold = asyncio.Event()
    run = asyncio.create_task(rig.workflow.execute(TICKET, job_id="j"))
    await rig.renderer.started.wait()
    assert rig.zammad.tags[TICKET] == ["rechnung", "pdf:processing"]
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert rig.tags() == [TRIGGER, "rechnung"]
    assert list(rig.spool.iterdir()) == []


async def test_a_run_handed_over_to_another_replica_leaves_the_tags_alone(rig: Rig):
    rig.renderer.hold = asyncio.Event()
    run = asyncio.create_task(rig.workflow.execute(TICKET, job_id="j"))
    await rig.renderer.started.wait()
    run.cancel(HANDED_OVER)
    with pytest.raises(asyncio.CancelledError):
        await run
    assert rig.tags() == ["pdf:processing", "rechnung"]  # the new run owns them


async def test_images_and_originals_reach_the_renderer(tmp_path: Path):
    class Ref:
        ticket_id, article_id, attachment_id, filename = TICKET, 2, 77, "screen.png"

    rig = Rig(tmp_path, image_references=lambda ticket_id, articles: [Ref()], embed=EmbedPolicy())
    rig.zammad.attachments[(TICKET, 2, 77)] = b"PNG"
    rig.zammad.plain[1] = b"From: a@example.org\r\n\r\nGuten Tag"
    outcome = await rig.workflow.execute(TICKET, job_id="j")
    assert outcome.status == "archived"
    (snapshot,) = rig.renderer.snapshots
    assert dict(snapshot.images) == {77: b"PNG"}
    assert [f.name for f in snapshot.embedded] == [
        "ticket.json",
        "articles.json",
        "article-1-body.txt",
        "article-2-body.html",
        "article-1.eml",
    ]
    assert set(outcome.step_seconds or {}) == {
        Step.FETCH_TAGS,
        Step.FETCH_TICKET,
        Step.FETCH_ARTICLES,
        Step.FETCH_IMAGES,
        Step.FETCH_ORIGINALS,
        Step.RENDER,
        Step.SIGN,
        Step.STORE,
    }


async def test_the_spool_file_is_gone_after_the_run_but_was_there_to_store(rig: Rig):
    await rig.workflow.execute(TICKET, job_id="j")
    (source,) = rig.storage.sources
    assert source.parent.parent == rig.spool and source.parent.name.startswith("job-")
    assert not source.parent.exists()


@pytest.mark.parametrize("fails", [False, True])
async def test_originals_wait_in_the_job_folder_and_go_with_it(tmp_path: Path, fails: bool):
    """The bodies (and raw e-mails, attachments) are spooled into the job's folder as they are
    fetched; the renderer reads them there; the folder is gone after the run, archived or failed."""
    rig = Rig(tmp_path, embed=EmbedPolicy(), spool_originals_from=2)  # the ticket has 2 articles
    if fails:
        rig.signer.error = SigningError("the HSM is away")
    outcome = await rig.workflow.execute(TICKET, job_id="j")
    assert outcome.status == ("failed" if fails else "archived")
    (originals,) = rig.renderer.originals
    spooled = [(name, path, data) for name, path, data in originals if path is not None]
    assert [(name, data) for name, _, data in spooled] == [
        ("article-1-body.txt", b"Guten Tag"),
        ("article-2-body.html", "<p>Rückruf</p>".encode()),
    ]
    folder = Path(spooled[0][1]).parent.parent
    assert folder.parent == tmp_path and folder.name.startswith("job-")
    assert not folder.exists() and list(tmp_path.iterdir()) == []


async def test_a_small_tickets_originals_stay_in_memory(tmp_path: Path):
    rig = Rig(tmp_path, embed=EmbedPolicy(), spool_originals_from=3)
    assert (await rig.workflow.execute(TICKET, job_id="j")).status == "archived"
    (originals,) = rig.renderer.originals
    assert [path for _, path, _ in originals] == [None] * len(originals)
    assert [data for name, _, data in originals if name == "article-1-body.txt"] == [b"Guten Tag"]


@pytest.mark.parametrize("fails", [False, True])
async def test_the_job_folder_is_removed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
):
    """Removing files waits for the file system; the event loop meanwhile serves other jobs."""
    removed_in: list[str] = []
    cleanup = tempfile.TemporaryDirectory.cleanup

    def recorded(self: tempfile.TemporaryDirectory[str]) -> None:
        removed_in.append(threading.current_thread().name)
        cleanup(self)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", recorded)
    rig = Rig(tmp_path)
    if fails:
        rig.signer.error = SigningError("the HSM is away")
    await rig.workflow.execute(TICKET, job_id="j")
    assert len(removed_in) == 1 and removed_in[0] != threading.main_thread().name
    assert list(tmp_path.iterdir()) == []
