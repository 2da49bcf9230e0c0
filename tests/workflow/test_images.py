"""The layout's images: downloaded a few at a time, within caps; one Zammad refuses for good is a
placeholder, listed with its cause; one whose download may heal fails the run (Transient) until
the job's last attempt after WORKFLOW_DOWNLOAD_GIVE_UP_HOURS, which gives up on it (a placeholder)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from app.errors import ZammadApiError, ZammadMaintenance, ZammadUnauthorized
from app.workflow import images
from app.workflow.classify import classify
from app.workflow.images import fetch_images
from app.workflow.originals import Attempt, DownloadFailed
from app.workflow.ports import FETCH_CONCURRENCY, ImagePlaceholder
from tests.workflow.fakes import FakeZammad

TICKET = 4711


@dataclass(frozen=True)
class Ref:
    attachment_id: int
    article_id: int = 1
    ticket_id: int = TICKET
    filename: str = "bild.png"


async def test_failed_and_oversized_images_are_left_out(monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setattr(images, "IMAGE_MAX_BYTES", 8)
    monkeypatch.setattr(images, "IMAGES_TOTAL_MAX_BYTES", 11)
    zammad = FakeZammad()
    zammad.attachments.update({(TICKET, 1, 1): b"a" * 6, (TICKET, 1, 2): b"b" * 9, (TICKET, 1, 4): b"d" * 6})
    # 2 is too big on its own (within the total), 3 does not exist, 4 would pass the total.
    refs = [Ref(2), Ref(1), Ref(3), Ref(4)]
    got = await fetch_images(zammad, refs, log_context={"job_id": "j"}, redact=lambda s: s)
    assert got.images == {1: b"a" * 6}
    assert [(p.attachment_id, p.classification, p.code) for p in got.placeholders] == [
        (2, "Permanent", "image_too_large"),
        (3, "Permanent", "internal_error"),  # the fake's KeyError: a defect does not heal by retrying
        (4, "Permanent", "image_too_large"),
    ]
    assert got.placeholders[0].cause == "larger than 8 bytes, the layout's limit per image"
    assert got.placeholders[2].cause == "over 11 image bytes for the ticket, the layout's limit"
    messages = sorted((r.getMessage(), r.attachment_id) for r in caplog.records)
    assert messages == [
        ("image not fetched", 3),
        ("image too large to embed", 2),
        ("image too large to embed", 4),
    ]
    assert all(r.job_id == "j" for r in caplog.records)


async def test_a_download_error_is_logged_redacted(caplog):
    zammad = FakeZammad()
    zammad.fail("get_attachment", ZammadApiError("403 for tok-5", status=403))
    got = await fetch_images(zammad, [Ref(1)], log_context={}, redact=lambda s: s.replace("tok-5", "***"))
    assert got.images == {}
    (record,) = caplog.records
    assert record.cause == "403 for ***"
    assert got.placeholders == (
        ImagePlaceholder("bild.png", 1, 1, "Permanent", "zammad_api_error", "403 for ***"),
    )


async def test_at_most_a_few_downloads_run_at_once():
    running = most = 0

    class Slow(FakeZammad):
        async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.001)
            running -= 1
            return b"x"

    got = await fetch_images(Slow(), [Ref(i) for i in range(20)], log_context={})
    assert len(got.images) == 20 and most == FETCH_CONCURRENCY and got.placeholders == ()


async def test_no_references_no_calls():
    zammad = FakeZammad()
    got = await fetch_images(zammad, [], log_context={})
    assert (got.images, got.placeholders, zammad.calls) == ({}, (), [])


@dataclass(frozen=True)
class SizedRef(Ref):
    size: int | None = None


async def test_an_image_of_another_length_than_declared_is_left_out_on_the_last_attempt(caplog):
    # A server that under-states Content-Length and closes hands back half the file.
    zammad = FakeZammad()
    zammad.attachments.update({(TICKET, 1, 1): b"a" * 3, (TICKET, 1, 2): b"b" * 6, (TICKET, 1, 3): b"c" * 2})
    refs = [SizedRef(1, size=6), SizedRef(2, size=6), SizedRef(3)]  # 3 declares no size
    got = await fetch_images(zammad, refs, log_context={}, redact=lambda s: s)  # a job's only attempt
    assert got.images == {2: b"b" * 6, 3: b"c" * 2}
    (record,) = caplog.records
    assert (record.getMessage(), record.attachment_id, record.cause) == (
        "image not fetched",
        1,
        "download failed: got 3 bytes, Zammad declares 6",
    )
    assert got.placeholders == (
        ImagePlaceholder(
            "bild.png",
            1,
            1,
            "Transient",
            "download_failed",
            "download failed: got 3 bytes, Zammad declares 6",
        ),
    )
    later = await fetch_images(zammad, refs[:1], log_context={}, attempt=Attempt(4, 4))
    assert later.placeholders[0].cause == "download failed after 4 attempts: got 3 bytes, Zammad declares 6"


async def test_an_image_of_another_length_than_declared_fails_the_run_while_attempts_remain():
    zammad = FakeZammad()
    zammad.attachments[(TICKET, 1, 1)] = b"a" * 3
    with pytest.raises(
        DownloadFailed, match="download of image bild.png failed: got 3 bytes, Zammad declares 6"
    ):
        await fetch_images(zammad, [SizedRef(1, size=6)], log_context={}, attempt=Attempt(1, 2))


WAIT = 24 * 3600.0  # WORKFLOW_DOWNLOAD_GIVE_UP_HOURS=24
MAINTENANCE = ZammadMaintenance("GET ... answered 403: Maintenance mode enabled!", status=403)


@pytest.mark.parametrize(
    "error",
    [
        ZammadApiError("GET ... answered 503: Error ID x", status=503),
        ZammadApiError("GET ... answered 502: Bad Gateway", status=502),
        ZammadApiError("GET ... failed: timed out after 30 s", status=None),
        ZammadApiError("GET ... failed: Connection reset by peer", status=None),
        ZammadApiError("GET ... answered 429: Too Many Requests", status=429, retry_after=7),
        ZammadUnauthorized("GET ... answered 401: Not authorized (token expired)!", status=401),
        MAINTENANCE,
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=["503", "502", "timeout", "no-answer", "429", "401", "maintenance", "reset"],
)
@pytest.mark.parametrize(
    "attempt",
    [Attempt(1, 3, WAIT, failing_seconds=WAIT + 1), Attempt(3, 3, WAIT, failing_seconds=WAIT - 1)],
    ids=["first", "last-within-the-wait"],
)
async def test_a_download_that_may_heal_fails_until_the_give_up_time_and_stops_the_others(
    error: Exception, attempt: Attempt, caplog
):
    assert classify(error).transient  # the project's own classification decides
    started, cancelled = [], []

    class Failing(FakeZammad):
        async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
            started.append(attachment_id)
            if attachment_id == 1:
                raise error
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(attachment_id)
                raise
            return b"x"

    with pytest.raises(type(error)) as raised:
        await asyncio.wait_for(
            fetch_images(Failing(), [Ref(2), Ref(1), Ref(3)], log_context={}, attempt=attempt), 5
        )
    assert raised.value is error  # unchanged: its code and Retry-After reach the job's retry
    assert sorted(started) == sorted(cancelled + [1]) == [1, 2, 3]  # the others were cancelled
    assert [r for r in caplog.records if r.getMessage() == "image not fetched"] == []


@pytest.mark.parametrize(
    ("attempt", "cause"),
    [
        (
            Attempt(3, 3, WAIT, failing_seconds=26 * 3600.0, runs=9),
            "download failed for 26 h over 9 attempts, given up after 24 h "
            "(WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): GET ... answered 500: [redacted]",
        ),
        # WORKFLOW_DOWNLOAD_GIVE_UP_HOURS=0: the first job's last attempt gives up (the originals' old rule).
        (Attempt(3, 3), "download failed after 3 attempts: GET ... answered 500: [redacted]"),
    ],
    ids=["after-the-wait", "no-wait"],
)
async def test_the_last_attempt_after_the_give_up_time_makes_a_placeholder_and_fetches_the_others(
    attempt: Attempt, cause: str, caplog
):
    zammad = FakeZammad()
    zammad.attachments.update({(TICKET, 1, 2): b"b" * 6, (TICKET, 1, 3): b"c" * 6})

    class Failing(FakeZammad):
        async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
            if attachment_id == 1:
                raise ZammadApiError("GET ... answered 500: token-secret", status=500)
            return await zammad.get_attachment(ticket_id, article_id, attachment_id)

    got = await fetch_images(
        Failing(),
        [Ref(2), Ref(1), Ref(3)],
        log_context={},
        redact=lambda s: s.replace("token-secret", "[redacted]"),
        attempt=attempt,
    )
    assert got.images == {2: b"b" * 6, 3: b"c" * 6}
    assert got.placeholders == (ImagePlaceholder("bild.png", 1, 1, "Transient", "zammad_api_error", cause),)
    assert "token-secret" not in caplog.text
