"""Shared helpers for the render tests: fixtures on disk and poppler/qpdf wrappers."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zammad"
ARCHIVED_AT = datetime(2025, 3, 7, 12, 0, 0, tzinfo=UTC)

#: Texts of the font tiers (app.render.fontsubset): tier 1, tier 2, and glyphs outside both.
ASCII = "Plain ASCII text only, nothing else (tier 1)."
LATIN = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich; Łódź, Škoda, œuvre."
EXTRA = "Ωμέγα und Жук: glyphs of Noto Sans outside both tiers."


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def write(tmp_path: Path, data: bytes, name: str = "out.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def pdftotext(path: Path, *args: str) -> tuple[str, str]:
    """``(text, stderr)`` of ``pdftotext [args] path -``; fails the test when poppler fails."""
    done = subprocess.run(["pdftotext", *args, str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout, done.stderr


def pdfinfo(path: Path) -> dict[str, str]:
    done = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in done.stdout.splitlines())
    }


def body_stream(path: Path) -> str:
    """All text in content-stream order with page headers and footers removed, lines joined."""
    text, _ = pdftotext(path, "-raw")
    lines = [
        line
        for line in text.replace("\f", "\n").splitlines()
        if not re.match(r"^Ticket #\S+ – |^Archived .* by |^Page \d+ of \d+$", line)
    ]
    return "".join(lines)


def xmp_properties(xmp: bytes | str) -> dict[str, str]:
    """XMP properties by local name (``title``, ``part``, ``CreateDate`` …), attribute or element form.

    ``rdf:Alt``/``rdf:Seq`` values give their first ``rdf:li``; namespaces are dropped.
    """
    import xml.etree.ElementTree as ET

    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8")
    root = ET.fromstring(re.sub(r"<\?xpacket[^>]*\?>", "", xmp).strip())
    found: dict[str, str] = {}
    for description in root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"):
        for key, value in description.attrib.items():
            found.setdefault(key.rpartition("}")[2], value)
        for child in description:
            items = [li.text or "" for li in child.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li")]
            found.setdefault(child.tag.rpartition("}")[2], items[0] if items else (child.text or "").strip())
    return found


def pdfinfo_xmp(path: Path) -> dict[str, str]:
    """The XMP metadata of ``path`` (``pdfinfo -meta``) as :func:`xmp_properties`."""
    done = subprocess.run(["pdfinfo", "-meta", str(path)], capture_output=True, check=True)
    return xmp_properties(done.stdout)


def body_article(body: str, index: int = 1, content_type: str = "text/plain") -> dict[str, Any]:
    """An e-mail article with ``body``, dated 2025-03-0``index``."""
    return {
        "id": index,
        "ticket_id": 1,
        "from": "a@example.com",
        "to": "b@example.com",
        "subject": f"S{index}",
        "body": body,
        "content_type": content_type,
        "internal": False,
        "type": "email",
        "sender": "Customer",
        "created_at": f"2025-03-0{index}T09:00:00Z",
        "attachments": [],
    }


def render_bodies(*bodies: str, pdfa: bool = True) -> bytes:
    """The PDF of a ticket with one plain-text article per body and one embedded original."""
    from app.render.options import RenderOptions
    from app.render.pdf import render_ticket_pdf
    from app.workflow.ports import EmbeddedFile

    articles = [body_article(body, index) for index, body in enumerate(bodies, start=1)]
    embedded = (EmbeddedFile("note.txt", b"original", "text/plain", "Source", "an original"),)
    ticket = {"number": "4711", "title": "Font subsets", "created_at": "2025-03-03T08:00:00Z"}
    return render_ticket_pdf(
        ticket, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions(pdfa=pdfa), embedded=embedded
    ).data
