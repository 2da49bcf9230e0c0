"""Stand-in attachment contents: deterministic, valid files of the attachment's type."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from typing import Any

MAX_GENERATED_BYTES = 1 << 20
"""Largest generated stand-in of an unknown type (its ``size`` preference is capped at this)."""


def declared_size(entry: Mapping[str, Any], default: int = 64) -> int:
    """An attachment entry's ``size`` (a string in Zammad's JSON) as a number, else ``default``."""
    size = entry.get("size")
    try:
        return int(size) if size is not None else default
    except (TypeError, ValueError):
        return default


def generated_file(mime: str, attachment_id: int, size: int) -> bytes:
    """Deterministic stand-in content: a valid PNG/PDF, an HTML/text page, else pseudo-random
    bytes (``size`` of them, at most :data:`MAX_GENERATED_BYTES`)."""
    if mime == "image/png":
        return tiny_png(attachment_id)
    if mime == "application/pdf":
        return tiny_pdf(f"Simulated attachment {attachment_id}")
    if mime == "text/html":
        return f"<html><body><p>Simulated attachment {attachment_id}</p></body></html>".encode()
    if mime.startswith("text/"):
        return f"Simulated attachment {attachment_id}\n".encode()
    size = max(1, min(size, MAX_GENERATED_BYTES))
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{attachment_id}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sized_file(mime: str, attachment_id: int, size: int) -> bytes:
    """:func:`generated_file` made ``size`` bytes long, as Zammad's ``size`` says of the
    stored file (what ``GET /api/v1/ticket_attachment`` serves), whenever the type's stand-in
    fits in it and ``size`` is at most :data:`MAX_GENERATED_BYTES`: a PNG is padded with an
    ancillary ``tEXt`` chunk, a PDF after ``%%EOF``, HTML and text with trailing spaces. Raw
    e-mails keep the short stand-ins (:mod:`devtools.zammad_simulator.mail`)."""
    data = generated_file(mime, attachment_id, size)
    size = min(size, MAX_GENERATED_BYTES)
    if mime == "image/png":
        return _padded_png(data, size)
    if mime == "application/pdf" or mime.startswith("text/"):
        return _padded(data, size)
    return data


def _padded(data: bytes, size: int) -> bytes:
    """``data`` followed by spaces up to ``size`` bytes (unchanged when it is that long already)."""
    return data + b" " * max(0, size - len(data))


def _padded_png(data: bytes, size: int) -> bytes:
    """The PNG ``data`` with a ``tEXt`` chunk before ``IEND`` that makes it ``size`` bytes long,
    when there is room for one (12 bytes of chunk frame and ``Comment\\0``)."""
    room = size - len(data) - 12 - len(b"Comment\0")
    if room < 0:
        return data
    text = b"Comment\0" + b" " * room
    chunk = (
        struct.pack(">I", len(text))
        + b"tEXt"
        + text
        + struct.pack(">I", zlib.crc32(b"tEXt" + text) & 0xFFFFFFFF)
    )
    return data[:-12] + chunk + data[-12:]


def tiny_png(seed: int = 0, width: int = 320, height: int = 180) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` pixels that looks like a screenshot: a window
    with a title bar in a colour derived from ``seed``, a light body and a frame (a few KB)."""
    accent = hashlib.sha256(str(seed).encode()).digest()[:3]
    frame, body = b"\x60\x60\x60", b"\xf4\xf5\xf7"
    bar = min(height, max(1, height // 8))
    top = b"\x00" + (frame + accent * max(0, width - 2) + frame)[: 3 * width]
    middle = b"\x00" + (frame + body * max(0, width - 2) + frame)[: 3 * width]
    edge = b"\x00" + frame * width
    rows = [edge] + [top] * (bar - 1) + [middle] * max(0, height - bar - 1) + [edge]
    raw = b"".join(rows[:height]) if height > 1 else edge

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiny_pdf(text: str = "Simulated attachment") -> bytes:
    """A valid one-page PDF 1.4 (A4) showing ``text`` (ASCII) in Helvetica, with a correct xref."""
    safe = (
        text.encode("ascii", "replace")
        .decode("ascii")
        .replace("\\", "\\\\")
        .replace("(", "\\(")
        .replace(")", "\\)")
    )
    stream = f"BT /F1 12 Tf 72 770 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
