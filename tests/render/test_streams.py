"""Parked pages and the streamed output: less memory, the very same PDF bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

from app.render.glyphs import FONT_DIR
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.render.streams import ParkedPages, write_pdf

from .helpers import pdftotext

ARCHIVED_AT = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
LINE = "Grüße aus Mühlenbach: die Rechnung 2025-0117 enthält Position 3 doppelt. " * 2


class Plain(FPDF):
    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("NotoSans", size=8)
        self.cell(0, 10, f"Seite {self.page_no()} von {{nb}}", align="R")


class Parked(ParkedPages, Plain):
    park_after_pages = 0  # park from the first page on (the renderer waits for 32)


def draw(pdf: FPDF, pages: int = 12, held: range = range(0)) -> FPDF:
    pdf.set_creation_date(ARCHIVED_AT)
    pdf.add_font("NotoSans", "", str(FONT_DIR / "NotoSans-Regular.ttf"))
    for page in range(1, pages + 1):
        if isinstance(pdf, ParkedPages) and page == held.start:
            pdf.hold_pages()
        pdf.add_page()
        if isinstance(pdf, ParkedPages) and page == held.stop:
            pdf.release_pages()
        pdf.set_font("NotoSans", size=10)
        for number in range(40):
            pdf.cell(0, 6, f"{page}.{number} {LINE}"[:95], new_x="LMARGIN", new_y="NEXT")
    return pdf


def test_finished_pages_are_parked_and_output_is_unchanged():
    parked = draw(Parked())
    # every page but the current one is parked: only the short rest from the page-count
    # placeholder on stays uncompressed
    assert sorted(parked._parked) == list(range(1, 12))
    assert all(len(parked.pages[n].contents) < 300 for n in range(1, 12))
    assert len(parked.pages[12].contents) > 5000
    assert bytes(parked.output()) == bytes(draw(Plain()).output())


def test_held_pages_stay_unparked_until_released():
    parked = draw(Parked(), held=range(4, 8))
    assert sorted(parked._parked) == list(range(1, 12))  # parked once released (at the next page)
    partly = Parked()
    draw(partly, pages=6, held=range(4, 10))  # still held at the end
    assert sorted(partly._parked) == [1, 2]
    assert bytes(partly.output()) == bytes(draw(Plain(), pages=6).output())


def test_short_documents_are_not_parked():
    class Renderer(ParkedPages, Plain):
        pass

    assert sorted(draw(Renderer(), pages=33)._parked) == []
    assert sorted(draw(Renderer(), pages=34)._parked) == list(range(1, 34))


def test_write_pdf_streams_the_same_bytes_as_output():
    expected = bytes(draw(Plain()).output())
    out = io.BytesIO()
    assert write_pdf(draw(Parked()), out) == len(expected)
    assert out.getvalue() == expected  # offsets, startxref and the MD5 file id all match


def test_a_long_ticket_rendered_into_a_file_is_byte_identical(tmp_path: Path):
    """The renderer's file path (parked pages, streamed output) against its bytes path, on a
    ticket with plain, quoted and HTML bodies (an HTML body holds pages while it may roll back)."""
    articles = []
    for index in range(60):
        if index % 3 == 0:
            body, kind = (
                "<p>" + "<b>Hallo</b> Welt, " * 80 + "</p><ul>" + "<li>Punkt</li>" * 30 + "</ul>",
                "text/html",
            )
        else:
            body, kind = (f"> zitiert {index}\n" + LINE + "\n") * 12, "text/plain"
        articles.append(
            {
                "id": index + 1,
                "type": "email",
                "sender": "Customer",
                "content_type": kind,
                "body": body,
                "created_at": f"2025-03-03T08:{index:02d}:00Z",
                "subject": f"Nachricht {index}",
            }
        )
    ticket = {"number": "25004711", "title": "Rechnung"}
    expected = render_ticket_pdf(
        ticket, articles, ["rechnung"], archived_at=ARCHIVED_AT, options=RenderOptions()
    )
    assert expected.page_count > 20
    target = tmp_path / "ticket.pdf"
    rendered = render_ticket_pdf(
        ticket, articles, ["rechnung"], archived_at=ARCHIVED_AT, options=RenderOptions(), target=target
    )
    assert rendered.data == b"" and rendered.page_count == expected.page_count
    assert target.read_bytes() == expected.data
    text, _ = pdftotext(target)
    assert "Nachricht 59" in text and f"of {expected.page_count}" in text


def test_parked_pages_are_compressed_when_written_and_memory_goes_back_after_the_last(monkeypatch):
    """A parked page's final stream exists only while it is serialised (DeferredPageContents);
    from RELEASE_AFTER_PAGES pages on, free heap pages go back once the last one is written
    (the real malloc_trim, counted). The bytes stay fpdf2's."""
    import app.render.streams as streams

    calls: list[bool] = []
    real = streams.release_free_memory
    monkeypatch.setattr(streams, "release_free_memory", lambda: calls.append(real()) or True)
    expected = bytes(draw(Plain()).output())
    parked = draw(Parked())
    assert bytes(parked.output()) == expected and calls == []  # 12 pages: nothing handed back
    monkeypatch.setattr(streams, "RELEASE_AFTER_PAGES", 12)
    producers: list[streams.ParkedPagesProducer] = []

    class Watching(streams.ParkedPagesProducer):
        def __init__(self, fpdf):
            super().__init__(fpdf)
            producers.append(self)

    assert bytes(draw(Parked()).output(output_producer_class=Watching)) == expected
    assert len(calls) == 1
    deferred = [o for o in producers[0].pdf_objs if isinstance(o, streams.DeferredPageContents)]
    assert len(deferred) == 11 and all(o._contents == b"" for o in deferred)  # written, let go
