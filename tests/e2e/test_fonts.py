"""Fonts checked at start: the live service against the simulator, its fonts restricted to a folder
without fallback fonts (the bundled Noto Sans only: Latin, Greek, Cyrillic), as an operator
running ``python -m app serve`` without ``fonts-noto-cjk`` would have it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import aiohttp
import pytest

from app.render.coverage import SCRIPTS
from app.render.glyphs import DEFAULT_FONT_DIRS, find_font
from devtools.webhook import zammad_webhook
from tests.conftest import FIXTURES, HMAC_SECRET
from tests.e2e.test_archive_flow import note_fields, post

pytestmark = pytest.mark.sqlite_only  # about fonts, not the job store: one backend is enough

CJK_TICKET = 4713
CHINESE = "您好，发票重复计算了，请尽快更正。"


def add_cjk_ticket(simulator) -> None:
    everything = json.loads((FIXTURES / "ticket-all.json").read_text())
    ticket = copy.deepcopy(everything["assets"]["Ticket"][str(everything["ticket_id"])])
    ticket.update(id=CJK_TICKET, number="25004713", title="Rechnung doppelt")
    article = json.loads((FIXTURES / "articles-by-ticket.json").read_text())[0]
    article = {
        **article,
        "id": 990101,
        "ticket_id": CJK_TICKET,
        "content_type": "text/plain",
        "body": f"Kundin schreibt: {CHINESE}",
        "attachments": [],
    }
    simulator.add_ticket(ticket, [article], ["pdf:sign"])


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


def font_log_lines(stderr: str) -> list[dict]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg", "").startswith("fonts ")]


async def archive_cjk_ticket(service, simulator) -> dict[str, str]:
    body, headers = zammad_webhook({"ticket_id": CJK_TICKET}, HMAC_SECRET)
    assert (await post(f"{service.url}/ingest", body, headers))[0] == 202
    await service.wait_idle()
    notes = simulator.notes(CJK_TICKET)
    assert len(notes) == 1, notes
    return note_fields(notes[0])


async def test_without_cjk_fonts_start_log_and_deep_healthz_name_cjk_and_the_package(
    archiver, simulator, tmp_path: Path, capsys
) -> None:
    fonts = tmp_path / "fonts-without-cjk"
    fonts.mkdir()
    service = await archiver(PDF_FONT_DIRS=str(fonts))

    status, health = await get_json(f"{service.url}/healthz?deep=true")
    assert status == 200, health
    assert health["status"] == "ok" and health["checks"]["fonts"].startswith("ok (degraded: no font for ")
    degraded = {entry["script"]: entry for entry in health["degraded"]}
    assert degraded["CJK"] == {
        "script": "CJK",
        "package": "fonts-noto-cjk",
        "font": "NotoSansCJK-Regular.ttc",
    }
    assert degraded["Emoji"]["package"] == "fonts-noto-color-emoji"
    assert "Latin" not in degraded and "Cyrillic" not in degraded

    await get_json(f"{service.url}/healthz?deep=true")  # asking again logs nothing new
    [line] = font_log_lines(capsys.readouterr().err)
    assert line["level"] == "warning"
    assert "CJK" in line["scripts"] and "Hangul" in line["scripts"]
    assert "fonts-noto-cjk" in line["packages"] and "fonts-noto-color-emoji" in line["packages"]
    assert line["font_dirs"] == [str(fonts)] and line["strict_fonts"] is False


async def test_strict_fonts_ends_a_cjk_ticket_in_a_permanent_error_naming_the_font(
    archiver, simulator, tmp_path: Path
) -> None:
    add_cjk_ticket(simulator)
    service = await archiver(PDF_FONT_DIRS=str(tmp_path), STRICT_FONTS="true", WORKFLOW_MAX_ATTEMPTS="3")

    fields = await archive_cjk_ticket(service, simulator)

    assert "pdf:error" in simulator.tags(CJK_TICKET) and "pdf:signed" not in simulator.tags(CJK_TICKET)
    assert fields["Classification"] == "Permanent", fields
    cause = fields["Cause"]
    assert "STRICT_FONTS" in cause and "CJK" in cause, cause
    assert "fonts-noto-cjk" in cause and "NotoSansCJK-Regular.ttc" in cause, cause
    assert list(service.storage_root.rglob("*.pdf")) == []
    status = await service.runtime.pool.status(CJK_TICKET)
    assert (status["classification"], status["attempts"]) == ("Permanent", 1)


async def test_missing_glyphs_are_counted_by_script_on_metrics(archiver, simulator, tmp_path: Path) -> None:
    add_cjk_ticket(simulator)
    service = await archiver(PDF_FONT_DIRS=str(tmp_path), OBSERVABILITY_METRICS_ENABLED="true")

    fields = await archive_cjk_ticket(service, simulator)

    assert "pdf:signed" in simulator.tags(CJK_TICKET), fields
    warning = re.fullmatch(
        r"(\d+) characters \(CJK\) had no font and are shown as placeholders", fields["Warning"]
    )
    assert warning, fields
    drawn_without_font = int(warning.group(1))
    assert drawn_without_font >= len(CHINESE)
    # Counted in the render process, added up here from the render's result.
    metrics = await get_text(f"{service.url}/metrics")
    counted = re.findall(
        r'^zammad_pdf_archiver_missing_glyphs_total\{script="([^"]+)"\} (\S+)$', metrics, re.M
    )
    assert [(script, float(value)) for script, value in counted] == [("CJK", drawn_without_font)]


async def test_with_every_font_installed_deep_healthz_is_not_degraded(archiver, simulator, capsys) -> None:
    missing = [
        s.package
        for s in SCRIPTS
        if s.package != "bundled" and find_font((s.font,), DEFAULT_FONT_DIRS) is None
    ]
    assert not missing, f"fonts missing: {missing} (scripts/dev/install-system-deps.sh installs them)"
    service = await archiver()

    status, health = await get_json(f"{service.url}/healthz?deep=true")
    assert status == 200 and health["checks"]["fonts"] == "ok" and "degraded" not in health, health
    [line] = font_log_lines(capsys.readouterr().err)
    assert line["level"] == "info" and "CJK" in line["scripts"]
