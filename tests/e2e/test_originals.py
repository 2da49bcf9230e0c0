"""The originals (JSON, bodies, raw e-mails, attachments) collected for the hybrid archive, with caps."""

from __future__ import annotations

import json
import re
from html import unescape

import aiohttp

from app.devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET


async def archive_4711(service) -> dict:
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
    async with aiohttp.ClientSession() as session, \
            session.post(f"{service.url}/ingest", data=body, headers=headers) as resp:
        assert resp.status == 202
    await service.wait_idle()
    sidecars = list(service.storage_root.rglob("*.pdf.json"))
    assert len(sidecars) == 1
    return json.loads(sidecars[0].read_text())


async def test_caps_leave_attachments_out_and_say_so(archiver, simulator):
    # message.html (6,873 bytes) fits the per-file cap; the 183,764-byte invoice does not.
    service = await archiver(PDF_EMBED_MAX_BYTES="10000")
    sidecar = await archive_4711(service)
    omitted = {o["name"]: o for o in sidecar["omitted_files"]}
    assert set(omitted) == {"article-23051-91203-Rechnung-2025-0117.pdf"}
    assert omitted["article-23051-91203-Rechnung-2025-0117.pdf"]["reason"] == "larger than PDF_EMBED_MAX_BYTES (10000)"
    assert omitted["article-23051-91203-Rechnung-2025-0117.pdf"]["size"] == 183764
    # The omitted attachment was never downloaded; the raw e-mails of both e-mail articles were.
    paths = [r.path for r in simulator.requests]
    assert "/api/v1/ticket_attachment/4711/23051/91203" not in paths
    assert {"/api/v1/ticket_article_plain/23051", "/api/v1/ticket_article_plain/23054"} <= set(paths)
    note = simulator.notes(4711)[0]["body"]
    fields = {k: unescape(v) for k, v in re.findall(r"<li>([^:<]+): ([^<]*)</li>", note)}
    assert fields["Originals not embedded"].startswith("1: article-23051-91203-Rechnung-2025-0117.pdf (larger than")


async def test_total_cap_counts_across_the_ticket(archiver, simulator):
    service = await archiver(PDF_EMBED_TOTAL_MAX_BYTES="7000")
    sidecar = await archive_4711(service)
    reasons = {o["name"]: o["reason"] for o in sidecar["omitted_files"]}
    assert reasons == {"article-23051-91203-Rechnung-2025-0117.pdf":
                       "over PDF_EMBED_TOTAL_MAX_BYTES (7000) for the ticket"}


async def test_failed_download_is_an_omission_not_a_failure(archiver, simulator):
    simulator.fail("GET", r"^/api/v1/ticket_article_plain/23054$", 500)
    service = await archiver()
    sidecar = await archive_4711(service)
    reasons = {o["name"]: o["reason"] for o in sidecar["omitted_files"]}
    assert list(reasons) == ["article-23054.eml"] and reasons["article-23054.eml"].startswith("download failed")
    assert "pdf:signed" in simulator.tags(4711)


async def test_embedding_off_collects_nothing(archiver, simulator):
    service = await archiver(PDF_EMBED_ORIGINALS="false")
    sidecar = await archive_4711(service)
    assert sidecar["omitted_files"] == [] and sidecar["embedded_files"] == []
    assert not any(r.path.startswith("/api/v1/ticket_article_plain/") for r in simulator.requests)
