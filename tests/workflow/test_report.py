"""The final report and its delivery: tags then one note per job, however often it is delivered."""

from __future__ import annotations

import pytest

from app.errors import ZammadApiError
from app.workflow.archive import ArchiveOutcome
from app.workflow.classify import classify
from app.workflow.notes import Note
from app.workflow.report import Report, UndeliverableReport, deliver, final_report
from app.workflow.writes import WRITE_ATTEMPTS
from tests.workflow.fakes import TRIGGER, FakeZammad

TICKET = 4711
REPORT = Report(
    add=("pdf:signed",),
    remove=("pdf:processing", "pdf:error", TRIGGER),
    subject="PDF archived",
    body_html="<p><b>PDF archived</b></p><ul><li>Job: job-1</li></ul>",
)


@pytest.fixture
def zammad() -> FakeZammad:
    z = FakeZammad()
    z.ticket(TICKET, ["rechnung", "pdf:processing"], [{"id": 1, "type": "email", "body": "Hallo"}])
    return z


def posts(zammad: FakeZammad) -> int:
    return sum(1 for c in zammad.calls if c[0] == "create_internal_note")


def failed(transient: bool, *, started: bool = True) -> ArchiveOutcome:
    error = ZammadApiError(
        "GET answered 503" if transient else "GET answered 404", status=503 if transient else 404
    )
    return ArchiveOutcome("failed", "fetch ticket", started=started, failure=classify(error))


@pytest.mark.parametrize(
    ("outcome", "add", "remove"),
    [
        (
            ArchiveOutcome("archived", started=True, note=Note("PDF archived", "<p>ok</p>")),
            ("pdf:signed",),
            ("pdf:processing", "pdf:error", TRIGGER),
        ),
        (failed(True), ("pdf:error", TRIGGER), ("pdf:processing", "pdf:signed")),
        (failed(False), ("pdf:error",), ("pdf:processing", "pdf:signed", TRIGGER)),
        (failed(True, started=False), ("pdf:error",), ()),
        (failed(False, started=False), ("pdf:error",), ()),
    ],
)
def test_the_final_report_follows_the_tag_protocol(outcome, add, remove):
    report = final_report(outcome, trigger_tag=TRIGGER, job_id="j", delivery_id=None)
    assert report is not None and (report.add, report.remove) == (add, remove)


def test_a_skipped_run_has_nothing_to_report():
    skipped = ArchiveOutcome("skipped", "trigger_tag_absent")
    assert final_report(skipped, trigger_tag=TRIGGER, job_id="j", delivery_id=None) is None


def test_a_failure_note_names_step_attempts_and_giving_up():
    report = final_report(
        failed(True), trigger_tag=TRIGGER, job_id="j", delivery_id="d", attempts=5, gave_up=True
    )
    assert report is not None and report.subject == "PDF archiver error"
    assert (
        "gave up after 5 attempts" in report.body_html and "<li>Step: fetch ticket</li>" in report.body_html
    )


@pytest.mark.parametrize(
    ("language", "removed", "untouched"),
    [
        (
            "en",
            "Permanent: the trigger tag was removed",
            "Permanent, before the run changed any tag: the tags were left",
        ),
        (
            "de",
            "Dauerhaft: der Auslöser-Tag wurde entfernt",
            "Dauerhaft, bevor der Lauf einen Tag geändert hat",
        ),
    ],
)
def test_a_permanent_failure_note_says_what_happened_to_the_tags(language, removed, untouched):
    """A run that failed Permanent before its start step (Zammad answered 403 to reading the
    tags) removed no tag: its note must not say the trigger tag was removed. After the start
    step it was removed, and the note says so."""
    before = ArchiveOutcome(
        "failed",
        "fetch tags",
        started=False,
        failure=classify(ZammadApiError("GET answered 403: Not authorized", status=403)),
    )
    after = failed(False)
    early = final_report(before, trigger_tag=TRIGGER, job_id="j", delivery_id=None, language=language)
    late = final_report(after, trigger_tag=TRIGGER, job_id="j", delivery_id=None, language=language)
    assert early is not None and late is not None
    assert TRIGGER not in early.remove and untouched in early.body_html and removed not in early.body_html
    assert "POST /retry/{ticket_id}" in early.body_html
    assert TRIGGER in late.remove and removed in late.body_html and untouched not in late.body_html


def test_a_transient_failure_before_the_start_step_says_the_tags_were_left():
    outcome = failed(True, started=False)
    dead = final_report(outcome, trigger_tag=TRIGGER, job_id="j", delivery_id=None, attempts=5, gave_up=True)
    assert dead is not None and TRIGGER not in dead.add
    assert "gave up after 5 attempts before the run changed any tag" in dead.body_html
    assert "the trigger tag was kept" not in dead.body_html


def test_a_report_survives_the_job_store_as_plain_data():
    assert Report.from_dict(REPORT.as_dict()) == REPORT


async def test_delivering_twice_posts_one_note(zammad: FakeZammad):
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    await deliver(zammad, TICKET, REPORT, job_id="job-1", backoff_seconds=0)  # a redelivery
    assert len(zammad.notes(TICKET)) == 1
    assert sorted(zammad.tags[TICKET]) == ["pdf:signed", "rechnung"]


async def test_a_fresh_delivery_posts_without_looking_first(zammad: FakeZammad):
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    assert [c[0] for c in zammad.calls if c[0] in ("list_articles", "create_internal_note")] == [
        "create_internal_note"
    ]


async def test_a_redelivery_looks_for_the_job_id_before_posting(zammad: FakeZammad):
    await deliver(zammad, TICKET, REPORT, job_id="job-1", backoff_seconds=0)
    assert [c for c in zammad.calls if c[0] in ("list_articles", "create_internal_note")] == [
        ("list_articles", TICKET, "Job: job-1"),
        ("create_internal_note", TICKET, "PDF archived"),
    ]


async def test_a_post_whose_answer_was_lost_is_not_repeated(zammad: FakeZammad):
    zammad.lose_note_answer = 1  # Zammad stored the note, the answer never came
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    assert posts(zammad) == 1 and len(zammad.notes(TICKET)) == 1


async def test_another_jobs_note_does_not_count(zammad: FakeZammad):
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    other = Report(REPORT.add, REPORT.remove, REPORT.subject, REPORT.body_html.replace("job-1", "job-2"))
    await deliver(zammad, TICKET, other, job_id="job-2", backoff_seconds=0)
    assert len(zammad.notes(TICKET)) == 2


async def test_a_transient_post_failure_is_retried(zammad: FakeZammad):
    zammad.fail("create_internal_note", ZammadApiError("answered 502", status=502))
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    assert posts(zammad) == 2 and len(zammad.notes(TICKET)) == 1


async def test_a_zammad_that_keeps_failing_raises_after_the_attempts(zammad: FakeZammad):
    zammad.fail("create_internal_note", *[ZammadApiError("answered 503", status=503)] * WRITE_ATTEMPTS)
    with pytest.raises(ZammadApiError) as info:
        await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    assert info.value.status == 503 and posts(zammad) == WRITE_ATTEMPTS


async def test_a_permanent_failure_is_raised_at_once(zammad: FakeZammad):
    zammad.fail("create_internal_note", ZammadApiError("answered 403", status=403))
    with pytest.raises(ZammadApiError):
        await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, backoff_seconds=0)
    assert posts(zammad) == 1


@pytest.mark.parametrize(("method", "status"), [("add_tag", 404), ("create_internal_note", 422)])
async def test_a_gone_ticket_or_a_refused_write_is_undeliverable(zammad: FakeZammad, method, status):
    zammad.fail(method, ZammadApiError(f"answered {status} for token tok-9", status=status))
    with pytest.raises(UndeliverableReport) as info:
        await deliver(
            zammad,
            TICKET,
            REPORT,
            job_id="job-1",
            fresh=True,
            backoff_seconds=0,
            redact=lambda s: s.replace("tok-9", "***"),
        )
    assert info.value.transient is False and "tok-9" not in str(info.value)


async def test_the_guard_is_asked_before_the_tags_and_before_each_post(zammad: FakeZammad):
    asked: list[int] = []

    async def guard() -> None:
        asked.append(len(zammad.writes()))

    zammad.fail("create_internal_note", ZammadApiError("answered 502", status=502))
    await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, guard=guard, backoff_seconds=0)
    tag_writes = len(REPORT.add) + len(REPORT.remove)
    assert asked == [0, tag_writes, tag_writes + 1]


async def test_a_guard_that_refuses_stops_the_delivery_before_the_note(zammad: FakeZammad):
    class LeaseLost(Exception):
        pass

    asked = 0

    async def guard() -> None:
        nonlocal asked
        asked += 1
        if asked > 1:
            raise LeaseLost("another replica took the report over")

    with pytest.raises(LeaseLost):
        await deliver(zammad, TICKET, REPORT, job_id="job-1", fresh=True, guard=guard, backoff_seconds=0)
    assert posts(zammad) == 0


def test_a_failure_note_is_written_in_the_workflows_language(tmp_path):
    from tests.workflow.fakes import Rig

    german = Rig(tmp_path, language="de").workflow.report(failed(False), job_id="j", delivery_id=None)
    assert german is not None and german.subject == "PDF-Archivierungsfehler"
    assert "Dauerhaft: der Auslöser-Tag wurde entfernt" in german.body_html
    english = Rig(tmp_path).workflow.report(failed(False), job_id="j", delivery_id=None)
    assert english is not None and english.subject == "PDF archiver error"
