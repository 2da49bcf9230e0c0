"""The layout's images: downloaded a few at a time, within caps; a missing one is a placeholder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from app.errors import ZammadApiError
from app.workflow import images
from app.workflow.images import fetch_images
from app.workflow.ports import FETCH_CONCURRENCY
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
    assert got == {1: b"a" * 6}
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
    assert got == {}
    (record,) = caplog.records
    assert record.cause == "403 for ***"


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
    assert len(got) == 20 and most == FETCH_CONCURRENCY


async def test_no_references_no_calls():
    zammad = FakeZammad()
    assert await fetch_images(zammad, [], log_context={}) == {} and zammad.calls == []


@dataclass(frozen=True)
class SizedRef(Ref):
    size: int | None = None


async def test_an_image_of_another_length_than_declared_is_left_out(caplog):
    # A server that under-states Content-Length and closes hands back half the file.
    zammad = FakeZammad()
    zammad.attachments.update({(TICKET, 1, 1): b"a" * 3, (TICKET, 1, 2): b"b" * 6, (TICKET, 1, 3): b"c" * 2})
    refs = [SizedRef(1, size=6), SizedRef(2, size=6), SizedRef(3)]  # 3 declares no size
    got = await fetch_images(zammad, refs, log_context={}, redact=lambda s: s)
    assert got == {2: b"b" * 6, 3: b"c" * 2}
    (record,) = caplog.records
    assert (record.getMessage(), record.attachment_id, record.cause) == (
        "image not fetched",
        1,
        "got 3 bytes, Zammad declares 6",
    )
