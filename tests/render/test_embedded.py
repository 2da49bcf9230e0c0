"""Embedded files spooled to disk until output: the same PDF, the originals byte for byte, the
spool gone whatever happens."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from fpdf.annotations import PDFEmbeddedFile
from fpdf.enums import AssociatedFileRelationship

from app.errors import RenderError
from app.render.embedded import LazyFileSpec, SpooledEmbeddedFile
from app.render.extract import read_embedded_files
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import EmbeddedFile

from .helpers import ARCHIVED_AT

TICKET = {"id": 7, "number": "25000007", "title": "Spool"}
ARTICLES = [
    {"id": n, "type": "note", "content_type": "text/plain", "body": f"Notiz {n}", "created_at": "2025-03-07"}
    for n in range(1, 4)
]
ORIGINALS = [
    EmbeddedFile("articles.json", b'[{"id": 1}]' * 500, "application/json", "Source", "the answer"),
    EmbeddedFile("article-1.eml", os.urandom(20_000), "message/rfc822", "Source", "Raw e-mail", article_id=1),
    EmbeddedFile("empty.txt", b"", "text/plain", "Data", "an empty attachment", article_id=2),
    EmbeddedFile("Prüfbericht.pdf", b"%PDF-1.4 fake", "application/pdf", "Data", "Größe", article_id=3),
]


def render(target: Path | None = None, embedded: list[EmbeddedFile] = ORIGINALS, **options: Any) -> Any:
    return render_ticket_pdf(
        TICKET,
        ARTICLES,
        ["t"],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(**options),
        embedded=embedded,
        target=target,
    )


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The spool files the renderer opens, recorded."""
    opened: list[Any] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        spool = real(*args, **kwargs)
        opened.append(spool)
        return spool

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    return opened


def test_a_file_render_spools_the_originals_and_writes_the_same_bytes(tmp_path: Path, spools: list[Any]):
    expected = render()  # in memory: no spool
    assert spools == []
    target = tmp_path / "ticket.pdf"
    rendered = render(target)
    assert len(spools) == 1 and spools[0].closed  # one spool, closed when the PDF is written
    assert target.read_bytes() == expected.data
    assert rendered.embedded == expected.embedded
    assert sorted(os.listdir(tmp_path)) == ["ticket.pdf"]  # nothing left beside it
    found = {original.name: original.data for original in read_embedded_files(target.read_bytes())}
    assert found == {original.name: original.data for original in ORIGINALS}


def test_the_spool_is_closed_when_the_render_fails(tmp_path: Path, spools: list[Any]):
    bad = [*ORIGINALS, EmbeddedFile("x.bin", b"x", "application/octet-stream", "Nonsense")]
    with pytest.raises(RenderError, match="AFRelationship"):
        render(tmp_path / "ticket.pdf", bad)
    assert len(spools) == 1 and spools[0].closed


def test_a_spool_that_cannot_be_created_is_a_render_error(tmp_path: Path):
    with pytest.raises(RenderError, match="cannot create the spool") as caught:
        render(tmp_path / "missing-folder" / "ticket.pdf")
    assert str(tmp_path) not in str(caught.value)


def test_a_spooled_file_keeps_no_stream_in_memory_and_serialises_like_fpdf2(tmp_path: Path):
    data = os.urandom(5000) + b"text " * 2000
    common: dict[str, Any] = dict(
        basename="a.bin",
        contents=data,
        desc="Anhang ä",
        modification_date=ARCHIVED_AT,
        mime_type="application/octet-stream",
        af_relationship=AssociatedFileRelationship.DATA,
    )
    stock = PDFEmbeddedFile(**common, compress=True)
    with tempfile.TemporaryFile(dir=tmp_path) as spool:
        spooled = SpooledEmbeddedFile(spool=spool, **common)
        assert spooled._contents == b"" and spool.tell() == stock.length
        stock.id, spooled.id = 5, 5  # as fpdf2's output numbers them
        stock.file_spec().id, spooled.file_spec().id = 6, 6
        assert spooled.serialize() == stock.serialize()
        assert isinstance(spooled.file_spec(), LazyFileSpec)
        assert spooled.file_spec().serialize() == stock.file_spec().serialize()
        assert "f" not in vars(spooled.file_spec())  # its strings are let go again


def test_a_spool_cut_short_is_a_render_error(tmp_path: Path):
    with tempfile.TemporaryFile(dir=tmp_path) as spool:
        spooled = SpooledEmbeddedFile(
            spool=spool,
            basename="a.bin",
            contents=b"abc" * 1000,
            desc="",
            modification_date=ARCHIVED_AT,
            mime_type="application/octet-stream",
            af_relationship=AssociatedFileRelationship.DATA,
        )
        spool.truncate(3)
        spooled.id = 1
        with pytest.raises(RenderError, match="cut short"):
            spooled.serialize()


def test_fpdf2_documents_embed_through_the_spool_too(tmp_path: Path):
    """An fpdf2 document of our own with a spooled file: fpdf2 reads it back at output."""
    with tempfile.TemporaryFile(dir=tmp_path) as spool:
        pdf = FPDF()
        pdf.add_page()
        pdf.embedded_files.append(
            SpooledEmbeddedFile(
                spool=spool,
                basename="b.txt",
                contents=b"hello " * 100,
                desc="b",
                modification_date=ARCHIVED_AT,
                mime_type="text/plain",
                af_relationship=AssociatedFileRelationship.SOURCE,
            )
        )
        data = bytes(pdf.output())
    assert [(o.name, o.data) for o in read_embedded_files(data)] == [("b.txt", b"hello " * 100)]


def test_a_big_ticket_hands_freed_memory_back_twice_and_leaves_the_callers_articles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """From ``TRIM_AFTER_ARTICLES`` articles on, free pages go back after the originals and after
    the articles (the real ``malloc_trim``, counted); the caller's list is left as it was."""
    import app.render.pdf as pdf_module

    calls: list[bool] = []
    real = pdf_module.release_free_memory
    monkeypatch.setattr(pdf_module, "release_free_memory", lambda: calls.append(real()) or True)
    articles = [dict(article) for article in ARTICLES]
    before = [dict(article) for article in articles]
    monkeypatch.setattr(pdf_module, "TRIM_AFTER_ARTICLES", 4)
    render_ticket_pdf(TICKET, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions())
    assert calls == []  # 3 articles: a small ticket is not trimmed
    monkeypatch.setattr(pdf_module, "TRIM_AFTER_ARTICLES", 3)
    render_ticket_pdf(TICKET, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions())
    assert len(calls) == 2
    assert articles == before
