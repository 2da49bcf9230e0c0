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
