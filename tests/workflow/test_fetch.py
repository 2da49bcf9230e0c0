"""A run's fetch: the ticket and its articles asked for at once, the images and the originals
downloaded side by side within one bound, and a failed request named and classified as
before, also against the Zammad simulator's own error answers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.render.images import image_references
from app.workflow.archive import ArchiveWorkflow
from app.workflow.originals import Attempt, EmbedPolicy
from app.workflow.ports import FETCH_CONCURRENCY
from app.zammad.client import ZammadClient
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import API_TOKEN
from tests.workflow.fakes import TICKET, TRIGGER, FakeRenderer, FakeSigner, FakeStorage, FakeZammad, Rig

TOKEN = API_TOKEN  # the token of the simulator fixture (tests/conftest.py)


async def test_the_ticket_and_its_articles_are_asked_for_at_once(tmp_path: Path):
    rig = Rig(tmp_path)
    asked = asyncio.Event()
    get_ticket_raw, list_articles_raw = rig.zammad.get_ticket_raw, rig.zammad.list_articles_raw

    async def ticket_once_the_articles_are_asked_for(ticket_id: int) -> tuple[dict[str, Any], bytes]:
        await asyncio.wait_for(asked.wait(), 2)  # asked one after the other: a timeout
        return await get_ticket_raw(ticket_id)

    async def articles(ticket_id: int) -> tuple[list[dict[str, Any]], bytes]:
        asked.set()
        return await list_articles_raw(ticket_id)

    rig.zammad.get_ticket_raw = ticket_once_the_articles_are_asked_for  # type: ignore[method-assign]
    rig.zammad.list_articles_raw = articles  # type: ignore[method-assign]
    outcome = await rig.workflow.execute(TICKET, job_id="j")
    assert outcome.status == "archived", outcome.describe()


@dataclass(frozen=True)
class Ref:
    ticket_id: int
    article_id: int
    attachment_id: int
    filename: str


def mail_article(i: int, **fields: Any) -> dict[str, Any]:
    """E-mail article ``i`` with an image ``100 + i`` and a PDF ``200 + i`` attached."""
    return {
        "id": i,
        "type": "email",
        **fields,
        "content_type": "text/plain",
        "body": f"Mail {i}",
        "attachments": [
            {
                "id": 100 + i,
                "filename": f"{i}.png",
                "size": "3",
                "preferences": {"Mime-Type": "image/png"},
            },
            {"id": 200 + i, "filename": f"{i}.pdf", "size": "4", "preferences": {}},
        ],
    }


def serve_mails(zammad: FakeZammad, articles: list[dict[str, Any]]) -> None:
    """Ticket 4711 with ``articles`` (:func:`mail_article`), each one's raw e-mail and attachments."""
    zammad.ticket(TICKET, [TRIGGER], articles)
    for article in articles:
        i = article["id"]
        zammad.plain[i] = f"From: a@example.org\r\n\r\nMail {i}".encode()
        zammad.attachments[(TICKET, i, 100 + i)] = b"PNG"
        zammad.attachments[(TICKET, i, 200 + i)] = b"%PDF"


def first_attachment_refs(ticket_id: int, articles: Any) -> list[Ref]:
    """Each article's first attachment as its layout image."""
    return [Ref(ticket_id, a["id"], a["attachments"][0]["id"], "x.png") for a in articles]


def mail_workflow(zammad: FakeZammad, renderer: FakeRenderer, spool: Path, **options: Any) -> ArchiveWorkflow:
    """The workflow over ``zammad`` embedding originals, images by :func:`first_attachment_refs`."""
    return ArchiveWorkflow(
        zammad=zammad,
        renderer=renderer,
        signer=FakeSigner(),
        storage=FakeStorage(),
        spool_dir=spool,
        image_references=options.pop("image_references", first_attachment_refs),
        embed=EmbedPolicy(),
        **options,
    )


class Slow(FakeZammad):
    """Downloads take a little while; records how many run at once and when each began and ended."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0
        self.events: list[tuple[str, str, int]] = []

    async def _slowly(self, kind: str, key: int) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.events.append(("start", kind, key))
        await asyncio.sleep(0.001 * (1 + key % 3))  # some take longer
        self.events.append(("end", kind, key))
        self.running -= 1

    async def get_attachment(self, ticket_id: int, article_id: int, attachment_id: int) -> bytes:
        await self._slowly("attachment", attachment_id)
        return await super().get_attachment(ticket_id, article_id, attachment_id)

    async def get_article_plain(self, article_id: int) -> bytes:
        await self._slowly("plain", article_id)
        return await super().get_article_plain(article_id)


async def test_images_and_originals_come_side_by_side_within_one_bound(tmp_path: Path):
    zammad = Slow()
    serve_mails(zammad, [mail_article(i) for i in range(1, 13)])
    renderer = FakeRenderer()
    workflow = mail_workflow(zammad, renderer, tmp_path)
    assert (await workflow.execute(TICKET, job_id="j")).status == "archived"

    assert zammad.most == FETCH_CONCURRENCY  # images and originals share one bound
    last_image_end = max(
        n for n, e in enumerate(zammad.events) if e[0] == "end" and e[2] < 200 and e[1] != "plain"
    )
    first_mail_start = min(n for n, e in enumerate(zammad.events) if e == ("start", "plain", e[2]))
    assert first_mail_start < last_image_end  # the raw e-mails did not wait for every image
    downloaded = [c[3] for c in zammad.calls if c[0] == "get_attachment"]
    assert sorted(downloaded) == [*range(101, 113), *range(201, 213)]  # each once: images reused
    (snapshot,) = renderer.snapshots
    assert [f.name for f in snapshot.embedded][2 + 12 :] == [
        *(f"article-{i}.eml" for i in range(1, 13)),
        *(
            f"article-{i}-{a}-{i}.{ext}"
            for i in range(1, 13)
            for a, ext in ((100 + i, "png"), (200 + i, "pdf"))
        ),
    ]


# -- against the simulator ------------------------------------------------------------------


@pytest.fixture
async def workflow(simulator: ZammadSimulator, tmp_path: Path) -> AsyncIterator[ArchiveWorkflow]:
    assert simulator.base_url is not None
    async with aiohttp.ClientSession() as session:
        yield ArchiveWorkflow(
            zammad=ZammadClient(session, simulator.base_url, TOKEN, timeout_seconds=10),
            renderer=FakeRenderer(),
            signer=FakeSigner(),
            storage=FakeStorage(),
            spool_dir=tmp_path,
            image_references=image_references,
            embed=EmbedPolicy(),
        )


FIRST_TICKET, ARTICLES = r"^/api/v1/tickets/4711$", r"^/api/v1/ticket_articles/by_ticket/4711$"


@pytest.mark.parametrize(
    ("ticket_status", "articles_status", "step", "classification"),
    [
        (503, 403, "fetch ticket", "Transient"),  # both failed: the first step's error, not the first answer
        (404, None, "fetch ticket", "Permanent"),
        (None, 403, "fetch articles", "Permanent"),
        (None, 500, "fetch articles", "Transient"),
    ],
)
async def test_a_failed_fetch_is_named_and_classified_by_its_step(
    simulator: ZammadSimulator,
    workflow: ArchiveWorkflow,
    ticket_status: int | None,
    articles_status: int | None,
    step: str,
    classification: str,
):
    simulator.delay("GET", FIRST_TICKET, 0.2)  # the articles' answer comes first
    if ticket_status is not None:
        simulator.fail("GET", FIRST_TICKET, ticket_status)
    if articles_status is not None:
        simulator.fail("GET", ARTICLES, articles_status)
    outcome = await workflow.execute(TICKET, job_id="j")
    assert outcome.failure is not None
    assert (outcome.status, outcome.reason, outcome.failure.classification.value) == (
        "failed",
        step,
        classification,
    )
    status = ticket_status if step == "fetch ticket" else articles_status
    assert f"answered {status}" in outcome.failure.cause


async def test_a_failed_ticket_fetch_leaves_no_request_running(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.fail("GET", FIRST_TICKET, 404)
    simulator.delay("GET", ARTICLES, 30)
    outcome = await asyncio.wait_for(workflow.execute(TICKET, job_id="j"), 10)
    assert (outcome.status, outcome.reason) == ("failed", "fetch ticket")
    ours = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("ZammadClient.")]
    assert ours == []  # the articles' request was cancelled, not left waiting for its answer


async def test_failed_downloads_fetched_side_by_side_are_omissions_in_article_order(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23051$", 500)
    simulator.fail("GET", r"^/api/v1/ticket_attachment/4711/23051/91203$", 403)
    simulator.delay("GET", r"^/api/v1/ticket_article_plain/23051$", 0.2)  # its answer comes last
    outcome = await workflow.execute(TICKET, job_id="j")
    assert outcome.status == "archived", outcome.describe()
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    assert [(o.name, o.reason.split(":")[0]) for o in snapshot.omitted] == [
        ("article-23051.eml", "download failed"),
        ("article-23051-91203-Rechnung-2025-0117.pdf", "download failed"),
    ]
    assert "answered 500" in snapshot.omitted[0].reason and "answered 403" in snapshot.omitted[1].reason
    assert TOKEN not in repr(snapshot.omitted)
    names = [f.name for f in snapshot.embedded]
    # 23051's raw e-mail failed: Zammad's copy of its HTML part is then the only original HTML.
    assert "article-23054.eml" in names and "article-23051-91201-message.html" in names


INVOICE = 91203  # Rechnung-2025-0117.pdf of article 23051, "size": "183764" in the article JSON
INVOICE_NAME = "article-23051-91203-Rechnung-2025-0117.pdf"
INVOICE_PATH = r"^/api/v1/ticket_attachment/4711/23051/91203$"


async def test_an_attachment_shorter_than_its_declared_size_is_a_failed_download(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    # What the client gets from a server that under-states Content-Length and closes: half the file.
    full = simulator.attachment_bytes(
        {"id": INVOICE, "preferences": {"Mime-Type": "application/pdf"}, "size": "183764"}
    )
    simulator.attachment_data[INVOICE] = full[: len(full) // 2]
    outcome = await workflow.execute(TICKET, job_id="j")  # a job's only attempt: omitted, listed
    assert outcome.status == "archived", outcome.describe()
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    assert INVOICE_NAME not in [f.name for f in snapshot.embedded]
    (omitted,) = [o for o in snapshot.omitted if o.name == INVOICE_NAME]
    assert omitted.reason == "download failed: got 91882 bytes, Zammad declares 183764"
    assert (omitted.size, omitted.size_declared) == (183764, True)


async def test_a_transient_download_failure_fails_the_attempt_while_attempts_remain(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.fail("GET", INVOICE_PATH, 503)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(1, 3))
    assert outcome.failure is not None, outcome.describe()
    assert (outcome.status, outcome.reason, outcome.failure.classification.value, outcome.failure.code) == (
        "failed",
        "fetch originals",
        "Transient",
        "download_failed",
    )
    assert INVOICE_NAME in outcome.failure.cause and "answered 503" in outcome.failure.cause
    assert workflow.renderer.snapshots == []  # type: ignore[attr-defined]


async def test_a_short_raw_email_or_cut_connection_fails_the_attempt_too(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.attachment_data[INVOICE] = b"%PDF-1.4 cut"
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(2, 5))
    assert outcome.failure is not None and outcome.failure.transient, outcome.describe()
    assert "got 12 bytes, Zammad declares 183764" in outcome.failure.cause


async def test_on_a_last_attempt_within_the_give_up_time_an_original_fails_the_run_too(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    attempt = Attempt(3, 3, 24 * 3600.0, failing_seconds=23 * 3600.0, runs=7)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=attempt)
    assert outcome.failure is not None, outcome.describe()
    assert (outcome.reason, outcome.failure.classification.value, outcome.failure.code) == (
        "fetch originals",
        "Transient",
        "download_failed",
    )
    assert workflow.renderer.snapshots == []  # type: ignore[attr-defined]


async def test_on_the_last_attempt_a_transient_download_failure_is_listed_with_the_attempts(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    # WORKFLOW_DOWNLOAD_GIVE_UP_HOURS=0: the first job's last attempt gives up.
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(3, 3))
    assert outcome.status == "archived", outcome.describe()
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    (omitted,) = snapshot.omitted
    assert omitted.name == "article-23054.eml"
    assert (
        omitted.reason.startswith("download failed after 3 attempts: ") and "answered 500" in omitted.reason
    )


async def test_a_file_zammad_refuses_is_omitted_at_once_whatever_attempts_remain(
    simulator: ZammadSimulator, workflow: ArchiveWorkflow
):
    simulator.fail("GET", INVOICE_PATH, 404)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(1, 5))
    assert outcome.status == "archived", outcome.describe()
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    assert [(o.name, o.reason.split(":")[0]) for o in snapshot.omitted] == [(INVOICE_NAME, "download failed")]


# -- the layout's images against the simulator ----------------------------------------------

INLINE = 91202  # the screenshot article 23051's HTML body shows (/api/v1/ticket_attachment/4711/23051/91202)
INLINE_PATH = r"^/api/v1/ticket_attachment/4711/23051/91202$"
EXPIRED = "Not authorized (token expired)!"
MAINTENANCE = "Maintenance mode enabled!"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def image_workflow(
    simulator: ZammadSimulator,
    session: aiohttp.ClientSession,
    spool: Path,
    *,
    embed: bool,
    timeout: float = 10,
) -> ArchiveWorkflow:
    """The workflow over the simulator with the real inline-image references; originals
    embedded or not (``PDF_EMBED_ORIGINALS``)."""
    assert simulator.base_url is not None
    return ArchiveWorkflow(
        zammad=ZammadClient(session, simulator.base_url, TOKEN, timeout_seconds=timeout),
        renderer=FakeRenderer(),
        signer=FakeSigner(),
        storage=FakeStorage(),
        spool_dir=spool,
        image_references=image_references,
        embed=EmbedPolicy() if embed else None,
        write_backoff_seconds=0,
    )


def image_requests(simulator: ZammadSimulator) -> int:
    return sum(r.path == f"/api/v1/ticket_attachment/4711/23051/{INLINE}" for r in simulator.requests)


@pytest.mark.parametrize("embed", [False, True], ids=["originals-off", "originals-on"])
@pytest.mark.parametrize(
    ("fault", "code", "said"),
    [
        ("503", "zammad_api_error", "answered 503"),
        ("502", "zammad_api_error", "answered 502"),
        ("401", "zammad_unauthorized", f"answered 401: {EXPIRED}"),
        ("maintenance", "zammad_maintenance", f"answered 403: {MAINTENANCE}"),
        ("timeout", "zammad_api_error", "timed out after 0.5 s"),
    ],
)
async def test_an_inline_image_whose_download_may_heal_fails_the_run_then_the_next_attempt_shows_it(
    simulator: ZammadSimulator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    embed: bool,
    fault: str,
    code: str,
    said: str,
):
    if fault == "timeout":
        simulator.delay("GET", INLINE_PATH, 2)
    elif fault == "401":
        simulator.fail("GET", INLINE_PATH, 401, body={"error": EXPIRED, "error_human": EXPIRED})
    elif fault == "maintenance":
        simulator.fail("GET", INLINE_PATH, 403, body={"error": MAINTENANCE, "error_human": MAINTENANCE})
    else:
        simulator.fail("GET", INLINE_PATH, int(fault))
    workflow = image_workflow(simulator, session, tmp_path, embed=embed, timeout=0.5)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(1, 3))
    assert outcome.failure is not None, outcome.describe()
    assert (outcome.status, outcome.reason, outcome.failure.classification.value, outcome.failure.code) == (
        "failed",
        "fetch images",
        "Transient",
        code,
    )
    assert f"/api/v1/ticket_attachment/4711/23051/{INLINE}" in outcome.failure.cause
    assert said in outcome.failure.cause and TOKEN not in outcome.failure.cause
    assert workflow.renderer.snapshots == []  # type: ignore[attr-defined]
    assert "pdf:signed" not in simulator.tags(TICKET)

    simulator.clear_faults()  # Zammad is back: the job's next attempt
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(2, 3), resume=True)
    assert outcome.status == "archived", outcome.describe()
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    assert snapshot.images[INLINE][:8] == b"\x89PNG\r\n\x1a\n" and snapshot.placeholders == ()
    (_, sidecar) = workflow.storage.stored[0]  # type: ignore[attr-defined]
    assert sidecar["placeholder_images"] == []
    assert outcome.note is not None and "placeholder" not in outcome.note.body_html


WAIT = 24 * 3600.0  # WORKFLOW_DOWNLOAD_GIVE_UP_HOURS=24


async def test_on_a_last_attempt_within_the_give_up_time_an_image_whose_download_may_heal_fails_the_run(
    simulator: ZammadSimulator, session: aiohttp.ClientSession, tmp_path: Path
):
    # The job ends dead with the trigger tag back, and is archived whole once Zammad serves the
    # image (the sweep queues it again), or with a placeholder once the ticket failed for 24 h.
    simulator.fail("GET", INLINE_PATH, 503)
    workflow = image_workflow(simulator, session, tmp_path, embed=True)
    outcome = await workflow.execute(
        TICKET, job_id="j", attempt=Attempt(3, 3, WAIT, failing_seconds=WAIT - 60)
    )
    assert outcome.failure is not None and outcome.failure.transient, outcome.describe()
    assert outcome.reason == "fetch images" and workflow.renderer.snapshots == []  # type: ignore[attr-defined]


async def test_on_a_last_attempt_after_the_give_up_time_an_image_and_an_original_are_listed_and_archived(
    simulator: ZammadSimulator, session: aiohttp.ClientSession, tmp_path: Path
):
    simulator.fail("GET", INLINE_PATH, 500)
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    workflow = image_workflow(simulator, session, tmp_path, embed=True)
    attempt = Attempt(3, 3, WAIT, failing_seconds=26 * 3600.0, runs=9)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=attempt)
    assert outcome.status == "archived", outcome.describe()
    given_up = (
        "download failed for 26 h over 9 attempts, given up after 24 h (WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): "
    )
    (_, sidecar) = workflow.storage.stored[0]  # type: ignore[attr-defined]
    (image,) = sidecar["placeholder_images"]
    assert (image["attachment_id"], image["classification"]) == (INLINE, "Transient")
    assert image["cause"].startswith(given_up) and "answered 500" in image["cause"], image
    (omitted,) = sidecar["omitted_files"]
    assert omitted["name"] == "article-23054.eml"
    assert omitted["reason"].startswith(given_up) and "answered 500" in omitted["reason"], omitted
    assert outcome.note is not None
    assert outcome.note.body_html.count("given up after 24 h") == 2, outcome.note.body_html


@pytest.mark.parametrize("embed", [False, True], ids=["originals-off", "originals-on"])
@pytest.mark.parametrize(
    ("status", "said"),
    [
        (404, "Couldn't find the requested record"),
        (403, "No access, article_id/ticket_id is not matching."),  # Zammad's own text for a wrong ticket
    ],
)
async def test_an_inline_image_zammad_refuses_for_good_is_a_placeholder_named_in_the_note_and_sidecar(
    simulator: ZammadSimulator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    embed: bool,
    status: int,
    said: str,
):
    simulator.fail("GET", INLINE_PATH, status, body={"error": said, "error_human": said})
    workflow = image_workflow(simulator, session, tmp_path, embed=embed)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(1, 5))  # at once, attempts left
    assert outcome.status == "archived", outcome.describe()
    assert image_requests(simulator) == 1
    (snapshot,) = workflow.renderer.snapshots  # type: ignore[attr-defined]
    assert INLINE not in snapshot.images
    cause = f"GET /api/v1/ticket_attachment/4711/23051/{INLINE} answered {status}: {said}"
    (_, sidecar) = workflow.storage.stored[0]  # type: ignore[attr-defined]
    assert sidecar["placeholder_images"] == [
        {
            "name": f"image-{INLINE}",  # Zammad's API hides the inline image from the attachment list
            "article_id": 23051,
            "attachment_id": INLINE,
            "classification": "Permanent",
            "code": "zammad_api_error",
            "cause": cause,
        }
    ]
    assert outcome.note is not None
    fields = {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", outcome.note.body_html)}
    assert fields["Images shown as placeholders"] == f"1: image-{INLINE} (Permanent: {cause})"
    assert TOKEN not in outcome.note.body_html and TOKEN not in repr(sidecar)


SHOT = 91299  # an image attachment added to article 23052, shown as a preview
SHOT_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


def add_preview(simulator: ZammadSimulator, served: bytes) -> None:
    """Article 23052 gets ``foto.png`` (:data:`SHOT`, 208 bytes declared); Zammad serves ``served``."""
    simulator.articles[23052].setdefault("attachments", []).append(
        {
            "id": SHOT,
            "filename": "foto.png",
            "size": str(len(SHOT_PNG)),
            "preferences": {"Mime-Type": "image/png"},
        }
    )
    simulator.attachment_data[SHOT] = served


async def test_a_cut_image_fails_the_run_while_attempts_remain_and_is_a_placeholder_after_the_last(
    simulator: ZammadSimulator, session: aiohttp.ClientSession, tmp_path: Path
):
    # What the client gets from a server that under-states Content-Length and closes: half the file.
    add_preview(simulator, SHOT_PNG[:104])
    workflow = image_workflow(simulator, session, tmp_path, embed=False)
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(1, 2))
    assert outcome.failure is not None, outcome.describe()
    assert (outcome.reason, outcome.failure.classification.value, outcome.failure.code) == (
        "fetch images",
        "Transient",
        "download_failed",
    )
    assert outcome.failure.cause == "download of image foto.png failed: got 104 bytes, Zammad declares 208"

    # The same length on the last attempt: Zammad's declared size, not the connection, is off.
    outcome = await workflow.execute(TICKET, job_id="j", attempt=Attempt(2, 2), resume=True)
    assert outcome.status == "archived", outcome.describe()
    (_, sidecar) = workflow.storage.stored[0]  # type: ignore[attr-defined]
    assert sidecar["placeholder_images"] == [
        {
            "name": "foto.png",
            "article_id": 23052,
            "attachment_id": SHOT,
            "classification": "Transient",
            "code": "download_failed",
            "cause": "download failed after 2 attempts: got 104 bytes, Zammad declares 208",
        }
    ]


async def test_a_run_cancelled_while_fetching_cancels_its_requests_and_puts_the_tags_back(tmp_path: Path):
    rig = Rig(tmp_path)
    held, started = asyncio.Event(), asyncio.Event()
    get_ticket_raw, list_articles_raw = rig.zammad.get_ticket_raw, rig.zammad.list_articles_raw

    async def ticket(ticket_id: int) -> tuple[dict[str, Any], bytes]:
        await held.wait()
        return await get_ticket_raw(ticket_id)

    async def articles(ticket_id: int) -> tuple[list[dict[str, Any]], bytes]:
        started.set()
        await held.wait()
        return await list_articles_raw(ticket_id)

    rig.zammad.get_ticket_raw = ticket  # type: ignore[method-assign]
    rig.zammad.list_articles_raw = articles  # type: ignore[method-assign]
    run = asyncio.create_task(rig.workflow.execute(TICKET, job_id="j"))
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert rig.tags() == [TRIGGER, "rechnung"]
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert left == []  # both held requests were cancelled with the run
    assert list(tmp_path.iterdir()) == []


async def test_over_pdf_max_articles_only_the_oldest_articles_originals_and_images_are_fetched(
    tmp_path: Path,
):
    # Listed out of time order: the oldest two by created_at are 7 and 5 (id breaks the tie
    # 5 < 6), which are neither the first two listed nor the two lowest ids.
    times = {
        9: "2025-03-01T08:00:00Z",
        6: "2025-03-01T07:00:00Z",
        7: "2025-03-01T06:00:00Z",
        5: "2025-03-01T07:00:00Z",
    }
    articles = [mail_article(i, created_at=created) for i, created in times.items()]
    zammad = FakeZammad()
    serve_mails(zammad, articles)
    imaged: list[int] = []

    def refs(ticket_id: int, articles: Any) -> list[Ref]:
        imaged.extend(a["id"] for a in articles)
        return first_attachment_refs(ticket_id, articles)

    renderer = FakeRenderer()
    workflow = mail_workflow(zammad, renderer, tmp_path, image_references=refs, max_articles=2)
    assert (await workflow.execute(TICKET, job_id="j")).status == "archived"

    assert imaged == [7, 5]
    assert sorted(c[1] for c in zammad.calls if c[0] == "get_article_plain") == [5, 7]
    assert sorted(c[3] for c in zammad.calls if c[0] == "get_attachment") == [105, 107, 205, 207]
    (snapshot,) = renderer.snapshots
    assert [a["id"] for a in snapshot.articles] == [9, 6, 7, 5]  # the renderer still counts them all
    assert [f.name for f in snapshot.embedded] == [
        "ticket.json",
        "articles.json",
        "article-7-body.txt",
        "article-5-body.txt",
        "article-7.eml",
        "article-5.eml",
        "article-7-107-7.png",
        "article-7-207-7.pdf",
        "article-5-105-5.png",
        "article-5-205-5.pdf",
    ]
    assert snapshot.embedded[1].content() == repr(articles).encode()  # the whole answer, every article
    assert snapshot.omitted == ()  # the other articles' originals are not "omitted": not wanted


async def test_within_pdf_max_articles_every_articles_originals_are_fetched(tmp_path: Path):
    rig = Rig(tmp_path, embed=EmbedPolicy(), max_articles=2)
    rig.zammad.plain[1] = b"From: a@example.org\r\n\r\nGuten Tag"
    assert (await rig.workflow.execute(TICKET, job_id="j")).status == "archived"
    (snapshot,) = rig.renderer.snapshots
    assert [f.name for f in snapshot.embedded] == [
        "ticket.json",
        "articles.json",
        "article-1-body.txt",
        "article-2-body.html",
        "article-1.eml",
    ]
