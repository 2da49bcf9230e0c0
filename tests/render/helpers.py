"""Shared helpers for the render tests: fixtures on disk and poppler/qpdf wrappers."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zammad"
ARCHIVED_AT = datetime(2025, 3, 7, 12, 0, 0, tzinfo=timezone.utc)


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
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in done.stdout.splitlines())}


def body_stream(path: Path) -> str:
    """All text in content-stream order with page headers and footers removed, lines joined."""
    text, _ = pdftotext(path, "-raw")
    lines = [
        line
        for line in text.replace("\f", "\n").splitlines()
        if not re.match(r"^Ticket #\S+ – |^Archived .* by |^Page \d+ of \d+$", line)
    ]
    return "".join(lines)
