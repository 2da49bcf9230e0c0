"""Streams compressed by ISA-L (app.render.deflate): the same content as with zlib, read back by
poppler and qpdf, not by our own code."""

from __future__ import annotations

import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import fpdf.syntax
import pytest
from isal import isal_zlib

from app.render import deflate, patches
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import EmbeddedFile
from benchmarks.tickets import make_mixed_ticket

from .helpers import ARCHIVED_AT, pdftotext

RAW_MAIL = (
    b"From: Kundin <kundin@example.com>\r\nSubject: Rechnung\r\nContent-Type: multipart/mixed\r\n\r\n"
    + b"Sehr geehrte Damen und Herren, anbei die Rechnung.\r\n" * 40
    + os.urandom(30_000).hex().encode()  # a base64-like part: compressible, not much
)
ORIGINALS = (
    EmbeddedFile("articles.json", b'[{"id": 1, "body": "Hallo"}]' * 300, "application/json", "Source"),
    EmbeddedFile("article-1001.eml", RAW_MAIL, "message/rfc822", "Source", "Raw e-mail", article_id=1001),
)


@pytest.mark.parametrize("data", [b"", b"x", b"Zwei Zeilen\n" * 1000, os.urandom(5000)])
def test_compress_writes_zlib_data_any_reader_inflates(data: bytes):
    for view in (data, bytearray(data), memoryview(data)):
        assert zlib.decompress(deflate.compress(view)) == data
    assert zlib.decompress(deflate.compress(data, level=0)) == data
    assert zlib.decompress(deflate.compress(data, level=3)) == data


def test_a_level_outside_isa_l_s_range_is_an_error():
    with pytest.raises(isal_zlib.error):
        deflate.compress(b"data", level=9)


def test_fpdf2_s_zlib_is_the_standard_one_but_for_compress():
    assert deflate.FPDF_ZLIB.decompress is zlib.decompress
    assert deflate.FPDF_ZLIB.compressobj is zlib.compressobj
    data = b"Seite 1 " * 500
    packed = deflate.FPDF_ZLIB.compress(data, level=-1)  # as fpdf2 calls it
    assert packed == isal_zlib.compress(data, deflate.LEVEL) != zlib.compress(data, -1)


@pytest.fixture
def stock_zlib() -> Iterator[None]:
    patches.uninstall_deflate()
    try:
        yield
    finally:
        patches.install_deflate()


def render(tmp_path: Path, name: str) -> Path:
    ticket = make_mixed_ticket(20)
    rendered = render_ticket_pdf(
        {"id": 4711, "number": "26004711", "title": "Rechnung doppelt"},
        ticket.articles,
        ["bench"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images=ticket.images,
        embedded=ORIGINALS,
    )
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(rendered.data)
    return path


def detached(path: Path, folder: Path) -> dict[str, bytes]:
    folder.mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(folder), str(path)], check=True, capture_output=True)
    return {file.name: file.read_bytes() for file in folder.iterdir()}


def pixels(path: Path, prefix: Path) -> list[bytes]:
    subprocess.run(["pdftoppm", "-r", "50", "-gray", str(path), str(prefix)], check=True, capture_output=True)
    return [page.read_bytes() for page in sorted(prefix.parent.glob(prefix.name + "*.pgm"))]


def test_a_ticket_compressed_by_isa_l_reads_back_as_the_zlib_one(tmp_path: Path, stock_zlib: None):
    by_zlib = render(tmp_path, "zlib")
    patches.install_deflate()
    assert fpdf.syntax.zlib is deflate.FPDF_ZLIB
    by_isa_l = render(tmp_path, "isal")

    assert by_isa_l.read_bytes() != by_zlib.read_bytes()  # the streams really are ISA-L's
    for path in (by_zlib, by_isa_l):  # every stream decodes (qpdf inflates them all)
        done = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert pdftotext(by_isa_l) == pdftotext(by_zlib)
    originals = detached(by_isa_l, tmp_path / "isal-files")
    assert originals == detached(by_zlib, tmp_path / "zlib-files")
    assert originals["article-1001.eml"] == RAW_MAIL
    zlib_pages = pixels(by_zlib, tmp_path / "zlib-page")
    assert len(zlib_pages) > 3
    assert pixels(by_isa_l, tmp_path / "isal-page") == zlib_pages
