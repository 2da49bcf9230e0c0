"""Flate compression for every stream the render writes, by ISA-L (python-isal).

A PDF ``/FlateDecode`` stream holds zlib data: RFC 1950 framing around RFC 1951 deflate
(PDF 32000-1 §7.4.4). Any conforming compressor makes a valid stream; readers cannot tell
them apart. fpdf2 (2.8.x) calls the standard library's ``zlib.compress`` at its default
level 6 for page contents, embedded files (every original of a ticket: raw e-mails with
their base64 parts, bodies, the JSON sources), the ICC profile and images. ISA-L's deflate
(Intel's Intelligent Storage Acceleration Library, through the ``isal`` package, a
maintained binding used by cutadapt and xopen) at its default level writes streams a few per
cent larger, several times faster.

:data:`FPDF_ZLIB` stands in for the ``zlib`` module inside fpdf2's ``fpdf.syntax`` and
``fpdf.image_parsing`` while :func:`app.render.patches.install` is in effect: its
``compress`` is :func:`compress` at :data:`LEVEL` whatever level fpdf2 asks for; every other
name is the standard library's (decompression included).
"""

from __future__ import annotations

import types
import zlib
from typing import TypeAlias

from isal import isal_zlib

Buffer: TypeAlias = bytes | bytearray | memoryview

LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION
"""ISA-L's default level (2 of 0–3): within ~3 % of zlib level 6 in size on a ticket's
streams at about a seventh of its CPU (``docs/performance.md``)."""


def compress(data: Buffer, level: int = LEVEL) -> bytes:
    """``data`` as zlib data (RFC 1950, deflate inside), for a ``/FlateDecode`` stream.

    Args:
        data: the bytes to compress (any buffer: ``bytes``, ``bytearray``, ``memoryview``).
        level: ISA-L level, 0 (fastest) to 3 (smallest).

    Raises:
        isal.isal_zlib.error: ``level`` is outside 0–3.
    """
    return isal_zlib.compress(data, level)


def _compress_for_fpdf2(data: Buffer, level: int = -1) -> bytes:
    """``zlib.compress`` as fpdf2 calls it; fpdf2's ``level`` (-1, zlib's default) is
    zlib's scale, so :data:`LEVEL` is used in its place."""
    del level
    return compress(data)


FPDF_ZLIB = types.ModuleType("zlib", "The standard library's zlib with compress() by ISA-L.")
"""The ``zlib`` fpdf2's modules see while the patches are installed."""
FPDF_ZLIB.__dict__.update({name: value for name, value in vars(zlib).items() if not name.startswith("__")})
FPDF_ZLIB.compress = _compress_for_fpdf2  # type: ignore[attr-defined]  # a module built here
