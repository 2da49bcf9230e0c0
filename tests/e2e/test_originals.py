"""The originals (JSON, bodies, raw e-mails, attachments) collected for the hybrid archive, with caps."""

from __future__ import annotations

import json
import re
from html import unescape

import aiohttp

from tests.e2e.test_images import DAY_AND_AN_HOUR, jobs_of_4711, sweep


async def archive_4711(service) -> dict:
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    sidecars = list(service.storage_root.rglob("*.pdf.json"))
    assert len(sidecars) == 1
    return json.loads(sidecars[0].read_text())


async def test_caps_leave_attachments_out_and_say_so(archiver, simulator):
    # The 183,764-byte invoice breaks the per-file cap; message.html (6,873 bytes) would fit,
    # but it is Zammad's copy of the HTML part of article 23051's raw e-mail, which is embedded.
    service = await archiver(PDF_EMBED_MAX_BYTES="10000")
    sidecar = await archive_4711(service)
    omitted = {o["name"]: o for o in sidecar["omitted_files"]}
    assert set(omitted) == {"article-23051-91203-Rechnung-2025-0117.pdf"}
    assert (
        omitted["article-23051-91203-Rechnung-2025-0117.pdf"]["reason"]
        == "larger than PDF_EMBED_MAX_BYTES (10000)"
    )
    assert omitted["article-23051-91203-Rechnung-2025-0117.pdf"]["size"] == 183764
    assert omitted["article-23051-91203-Rechnung-2025-0117.pdf"]["size_declared"] is True  # never downloaded
    # The omitted attachment and the copy were never downloaded; the raw e-mails of both
    # e-mail articles were.
    paths = [r.path for r in simulator.requests]
    assert "/api/v1/ticket_attachment/4711/23051/91203" not in paths
    assert "/api/v1/ticket_attachment/4711/23051/91201" not in paths
    assert {"/api/v1/ticket_article_plain/23051", "/api/v1/ticket_article_plain/23054"} <= set(paths)
    note = simulator.notes(4711)[0]["body"]
    fields = {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note)}
    assert fields["Originals not embedded"].startswith(
        "1: article-23051-91203-Rechnung-2025-0117.pdf (larger than"
    )


async def test_total_cap_counts_across_the_ticket(archiver, simulator):
    service = await archiver(PDF_EMBED_TOTAL_MAX_BYTES="7000")
    sidecar = await archive_4711(service)
    reasons = {o["name"]: o["reason"] for o in sidecar["omitted_files"]}
    assert reasons == {
        "article-23051-91203-Rechnung-2025-0117.pdf": "over PDF_EMBED_TOTAL_MAX_BYTES (7000) for the ticket"
    }


NO_PAUSE = {"WORKFLOW_RETRY_BASE_SECONDS": "0", "WORKFLOW_RETRY_MAX_SECONDS": "0"}


async def test_with_no_waiting_time_a_download_that_fails_on_every_attempt_is_an_omission_after_the_last(
    archiver, simulator
):
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="2", WORKFLOW_DOWNLOAD_GIVE_UP_HOURS="0", **NO_PAUSE)
    sidecar = await archive_4711(service)
    reasons = {o["name"]: o["reason"] for o in sidecar["omitted_files"]}
    assert list(reasons) == ["article-23054.eml"] and reasons["article-23054.eml"].startswith(
        "download failed after 2 attempts: "
    )
    plain = [r for r in simulator.requests if r.path == "/api/v1/ticket_article_plain/23054"]
    assert len(plain) == 2  # the first attempt failed (Transient) and was retried
    assert "pdf:signed" in simulator.tags(4711)


async def test_an_original_zammad_never_serves_again_waits_for_the_give_up_time_then_is_omitted(
    archiver, simulator, job_store
):
    # Zammad answers 500 for good for article 23054's raw e-mail (its file is gone from storage).
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="2", RECONCILE_STALE_SECONDS="0.01", **NO_PAUSE)
    await service.ingest({"ticket_id": 4711})
    await service.wait_idle()
    # Within WORKFLOW_DOWNLOAD_GIVE_UP_HOURS (24 h by default) the job's last attempt no longer
    # omits it: the job ends dead, nothing archived, the trigger tag back for the sweep.
    assert await jobs_of_4711(job_store) == [("dead", "webhook")]
    assert list(service.storage_root.rglob("*.pdf")) == []
    (note,) = simulator.notes(4711)
    fields = {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note["body"])}
    assert (fields["Classification"], fields["Step"]) == ("Transient", "fetch originals")
    assert {"pdf:error", "pdf:sign"} <= set(simulator.tags(4711))

    # The ticket has been failing for 25 h: the job the sweep queues omits it on its last attempt.
    await job_store.rows(
        "UPDATE jobs SET created_at = created_at - ? WHERE ticket_id = ?", DAY_AND_AN_HOUR, 4711
    )
    await sweep(service)
    assert await jobs_of_4711(job_store) == [("dead", "webhook"), ("done", "reconcile")]
    (sidecar_path,) = service.storage_root.rglob("*.pdf.json")
    reasons = {o["name"]: o["reason"] for o in json.loads(sidecar_path.read_text())["omitted_files"]}
    given_up = (
        "download failed for 25 h over 4 attempts, given up after 24 h (WORKFLOW_DOWNLOAD_GIVE_UP_HOURS): "
    )
    assert list(reasons) == ["article-23054.eml"]
    assert reasons["article-23054.eml"].startswith(
        given_up + "GET /api/v1/ticket_article_plain/23054 answered 500"
    )
    assert sum(r.path == "/api/v1/ticket_article_plain/23054" for r in simulator.requests) == 4
    assert "pdf:signed" in simulator.tags(4711)
    fields = {
        k: unescape(v)
        for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", simulator.notes(4711)[-1]["body"])
    }
    assert fields["Originals not embedded"] == f"1: article-23054.eml ({reasons['article-23054.eml']})"


async def test_a_transient_download_failure_is_retried_not_a_hole_in_the_archive(archiver, simulator):
    simulator.fail("GET", r"^/api/v1/ticket_attachment/4711/23051/91203$", 503, times=1)
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="3", **NO_PAUSE)
    sidecar = await archive_4711(service)
    assert sidecar["omitted_files"] == []
    embedded = {f["name"]: f["size"] for f in sidecar["embedded_files"]}
    assert embedded["article-23051-91203-Rechnung-2025-0117.pdf"] == 183764
    assert "pdf:signed" in simulator.tags(4711)


async def test_a_truncated_attachment_is_never_embedded_as_the_original(archiver, simulator):
    # A server that under-states Content-Length and closes: the client reads half the file.
    entry = {"id": 91203, "size": "183764", "preferences": {"Mime-Type": "application/pdf"}}
    simulator.attachment_data[91203] = simulator.attachment_bytes(entry)[:303]
    service = await archiver(WORKFLOW_MAX_ATTEMPTS="2", WORKFLOW_DOWNLOAD_GIVE_UP_HOURS="0", **NO_PAUSE)
    sidecar = await archive_4711(service)
    assert "article-23051-91203-Rechnung-2025-0117.pdf" not in {f["name"] for f in sidecar["embedded_files"]}
    reasons = {o["name"]: o["reason"] for o in sidecar["omitted_files"]}
    assert reasons == {
        "article-23051-91203-Rechnung-2025-0117.pdf": "download failed after 2 attempts: "
        "got 303 bytes, Zammad declares 183764"
    }


async def test_embedding_off_collects_nothing(archiver, simulator):
    service = await archiver(PDF_EMBED_ORIGINALS="false")
    sidecar = await archive_4711(service)
    assert sidecar["omitted_files"] == [] and sidecar["embedded_files"] == []
    assert not any(r.path.startswith("/api/v1/ticket_article_plain/") for r in simulator.requests)


async def test_hybrid_archive_round_trip_through_the_service(archiver, simulator, tmp_path):
    import subprocess
    import sys

    from tests.conftest import API_TOKEN, REPO
    from tests.verify import pdfsig

    service = await archiver()
    sidecar = await archive_4711(service)
    names = [f["name"] for f in sidecar["embedded_files"]]
    assert names[:2] == ["ticket.json", "articles.json"]
    assert {
        "article-23051.eml",
        "article-23054.eml",
        "article-23051-91203-Rechnung-2025-0117.pdf",
        "article-23052-body.txt",
        "article-23051-body.html",
    } <= set(names)
    assert "article-23051-91201-message.html" not in names  # its raw e-mail holds the HTML part
    assert sidecar["pdfa"] == "3B" and sidecar["omitted_files"] == []
    pdf = next(service.storage_root.rglob("*.pdf"))
    assert "Signature is Valid." in pdfsig(pdf)

    out = tmp_path / "extracted"
    result = subprocess.run(
        [sys.executable, "-m", "app", "extract", str(pdf), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    headers = {"Authorization": f"Token token={API_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for name, path in (
            ("article-23051.eml", "/api/v1/ticket_article_plain/23051"),
            ("article-23054.eml", "/api/v1/ticket_article_plain/23054"),
            ("article-23051-91203-Rechnung-2025-0117.pdf", "/api/v1/ticket_attachment/4711/23051/91203"),
        ):
            async with session.get(simulator.base_url + path) as resp:
                assert (out / name).read_bytes() == await resp.read(), name
    assert json.loads((out / "ticket.json").read_bytes())["number"] == "25004711"
    articles = json.loads((out / "articles.json").read_bytes())
    assert [a["id"] for a in articles] == [23051, 23052, 23053, 23054]  # as fetched, before our note
