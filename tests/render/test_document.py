"""The document's own text path (app.render.document): the content-stream bytes of fpdf2's own calls."""

from __future__ import annotations

import pytest

from app.render.document import TicketPdf

from .helpers import ASCII, EXTRA, LATIN, render_bodies


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN, EXTRA), ("> quoted\n>> deeper\nplain",)])
def test_lines_are_drawn_with_the_bytes_of_fpdf2s_text(monkeypatch, bodies):
    drawn = render_bodies(*bodies)
    monkeypatch.setattr(TicketPdf, "draw_text", TicketPdf.text)
    assert render_bodies(*bodies) == drawn


@pytest.mark.parametrize(
    "bodies", [(ASCII,), (LATIN + "\n" + EXTRA,), ("> quoted\n>> deeper\nplain",), ((LATIN + " ") * 400,)]
)
def test_paragraphs_drawn_at_once_are_the_bytes_of_line_by_line(monkeypatch, bodies):
    drawn = render_bodies(*bodies)
    monkeypatch.setattr(TicketPdf, "_draw_plain_lines", lambda *args: False)
    assert render_bodies(*bodies) == drawn


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN, EXTRA), (ASCII, "<b>bold</b> <i>ä</i>")])
def test_select_face_leaves_fpdf2_in_the_state_of_set_font(monkeypatch, bodies):
    drawn = render_bodies(*bodies)

    def set_font(self, face, size):
        self.set_font(face.family, face.style, size)

    monkeypatch.setattr(TicketPdf, "select_face", set_font)
    assert render_bodies(*bodies) == drawn
