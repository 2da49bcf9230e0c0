"""Templates, the 2,000-article ticket's memory, and byte-identical output with images and scripts."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from app.render.options import TEMPLATES, RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, load, pdftotext, write

REPO = Path(__file__).resolve().parents[2]


def render(template: str):
    ticket = {
        **load("ticket-expand.json"),
        "contract_number": "V-2025-17",
        "sla_breached": False,
        "empty_field": None,
    }
    return render_ticket_pdf(
        ticket,
        load("articles-by-ticket.json"),
        ["rechnung"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(template=template, timezone="Europe/Berlin"),
    )


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_shows_metadata_and_bodies(tmp_path, template):
    rendered = render(template)
    text = " ".join(pdftotext(write(tmp_path, rendered.data))[0].split())
    for expected in (
        "25004711",
        "Wartungspauschale",
        "Rückruf erbeten",
        "versehentlich doppelt berechnet",
        "Internal",
        "2025-03-03 09:12:44 +01:00",
    ):
        assert expected in text, (template, expected)
    custom = "Contract number" in text and "V-2025-17" in text and "Sla breached" in text
    assert custom == (template != "minimal") and "Empty field" not in text
    attachments = "Rechnung-2025-0117.pdf" in text
    assert attachments == (template != "minimal")


def test_templates_differ_in_density():
    pages = {template: render(template).data for template in TEMPLATES}
    assert len(set(pages.values())) == 3
    long_articles = [
        {
            "id": i,
            "content_type": "text/plain",
            "created_at": f"2025-03-03T08:{i // 60:02d}:{i % 60:02d}Z",
            "from": "x@example.com",
            "body": "Wort " * 300,
        }
        for i in range(60)
    ]
    counts = {
        t: render_ticket_pdf(
            {"number": "1"}, long_articles, [], archived_at=ARCHIVED_AT, options=RenderOptions(template=t)
        ).page_count
        for t in TEMPLATES
    }
    assert counts["compact"] < counts["default"]


def test_ticket_times_and_custom_attributes_are_listed(tmp_path):
    text = " ".join(pdftotext(write(tmp_path, render("default").data))[0].split())
    for label in ("First response", "Closed", "Updated", "Organisation", "Owner", "Priority"):
        assert label in text


def test_two_thousand_articles_stay_under_300_mib():
    script = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from app.render import patches\n"
        "patches.install()\n"
        "from benchmarks.render import ARCHIVED_AT, make_articles\n"
        "from app.render.options import RenderOptions\n"
        "from app.render.pdf import render_ticket_pdf\n"
        "articles = make_articles(2000)\n"
        "r = render_ticket_pdf({'number': '1', 'title': 'Big'}, articles, [],\n"
        "                      archived_at=ARCHIVED_AT, options=RenderOptions())\n"
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
        "print(r.page_count, r.articles_included, hwm)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True, cwd=REPO
    )
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) forked pytest process
    pages, included, max_rss_kib = (int(v) for v in done.stdout.split())
    assert included == 2000 and pages > 700
    assert max_rss_kib < 300 * 1024, f"peak RSS {max_rss_kib / 1024:.0f} MiB"


def test_multiscript_ticket_with_images_is_byte_identical_across_processes():
    script = (
        "import hashlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from app.render import patches\n"
        "patches.install()\n"
        "from tests.render.test_templates_and_scale import multiscript\n"
        "print(hashlib.sha256(multiscript()).hexdigest())\n"
    )
    first, second = multiscript(), multiscript()
    assert first == second
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == hashlib.sha256(first).hexdigest()


def multiscript() -> bytes:
    from .email_corpus import DATA_URI
    from .test_scripts import SAMPLES

    articles = [
        {"id": i, "content_type": "text/plain", "created_at": f"2025-03-03T08:00:{i:02d}Z", "body": sample}
        for i, sample in enumerate(SAMPLES.values(), 1)
    ]
    articles.append(
        {
            "id": 99,
            "content_type": "text/html",
            "created_at": "2025-03-03T09:00:00Z",
            "body": f'<p>Bild 😀</p><img src="{DATA_URI}">',
        }
    )
    return render_ticket_pdf(
        {"number": "1", "title": "Alles"}, articles, [], archived_at=ARCHIVED_AT, options=RenderOptions()
    ).data
