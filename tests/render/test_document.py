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


def _fields_and_styles_ticket() -> bytes:
    """A ticket whose article field tables break pages (a long Cc), with a value that needs
    shaping, one in fallback fonts, and an HTML body that changes style within lines."""
    from app.render.options import RenderOptions
    from app.render.pdf import render_ticket_pdf

    from .helpers import ARCHIVED_AT, body_article

    articles = [body_article(f"Body {index}", index) for index in range(1, 5)]
    articles[0]["cc"] = ", ".join(f"cc{n:03d}@example.com" for n in range(300))
    articles[1]["subject"] = "שלום עולם: shaped right to left"
    articles[2]["subject"] = EXTRA
    articles[3].update(
        content_type="text/html",
        body="<p>plain <b>bold</b> <i>italic ä</i> <a href='https://example.com'>link</a> <code>c</code></p>"
        "<blockquote>quoted <b>bold</b></blockquote><ul><li>one</li><li><b>two</b></li></ul>",
    )
    ticket = {"number": "4711", "title": "Fields", "created_at": "2025-03-03T08:00:00Z"}
    return render_ticket_pdf(ticket, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions()).data


def test_styled_pieces_drawn_at_once_are_the_bytes_of_draw_line(monkeypatch):
    drawn = _fields_and_styles_ticket()

    def one_by_one(self, placed):
        for x, top, text, style in placed:
            self.draw_line(x, top, text, style)

    monkeypatch.setattr(TicketPdf, "draw_styled_lines_at", one_by_one)
    assert _fields_and_styles_ticket() == drawn


def test_styled_pieces_leave_the_state_draw_line_leaves():
    from app.render.glyphs import font_set
    from app.render.templates import TEMPLATES

    template = TEMPLATES["default"]
    body, quote, label, value = template.body, template.quote, template.field_label, template.field_value
    # Batches ending in another face, size or colour than they started in, each followed by
    # a line drawn alone in the style before the batch; an empty piece draws nothing.
    steps = [
        [(body, "a")],
        [(body, "b"), (label, "c")],
        [(body, "d")],
        [(quote, "e"), (body, ""), (value, "f")],
        [(quote, "g")],
        [(label, "h"), (value, "i"), (label, "")],
        [(value, "j")],
        [(value, "")],
        [(label, "k")],
    ]

    def page(batched: bool) -> bytes:
        pdf = TicketPdf(font_set(), template)
        pdf.add_page()
        for number, step in enumerate(steps):
            placed = [
                (40.0 + 30 * index, 100.0 + 14 * number, text, style)
                for index, (style, text) in enumerate(step)
            ]
            if batched and len(step) > 1:
                pdf.draw_styled_lines_at(placed)
            else:
                for x, top, text, style in placed:
                    pdf.draw_line(x, top, text, style)
        return bytes(pdf.pages[pdf.page].contents)

    assert page(batched=True) == page(batched=False)
