"""HTML bodies (app.render.html_body): a failing layout is rolled back and the body drawn as text."""

from __future__ import annotations

from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import RenderedPdf

from .helpers import ARCHIVED_AT, body_article, pdftotext, write


def render_html(body: str) -> RenderedPdf:
    articles = [body_article(body, content_type="text/html")]
    return render_ticket_pdf(
        {"number": "1", "title": "HTML"}, articles, [], archived_at=ARCHIVED_AT, options=RenderOptions()
    )


def test_a_layout_failure_is_rolled_back_and_the_body_drawn_as_text(tmp_path, monkeypatch):
    from app.render import html_body

    def half_then_broken(pdf, blocks):
        pdf.set_font("NotoSans", "", 9)
        pdf.text(60, 300, "PARTIALOUTPUT")
        pdf.link(60, 300, 50, 10, "https://partial.example/")
        pdf.add_page()
        pdf.text(60, 300, "PARTIALOUTPUT")
        raise AssertionError("layout exploded")

    monkeypatch.setattr(html_body, "draw_blocks", half_then_broken)
    rendered = render_html("<p>Hallo <b>Welt</b></p>")
    path = write(tmp_path, rendered.data)
    text, stderr = pdftotext(path)
    assert "Hallo Welt" in text and "PARTIALOUTPUT" not in text and "<p>" not in text
    assert rendered.page_count == 1 and "No font" not in stderr
    assert b"partial.example" not in rendered.data


def test_both_converters_failing_still_shows_the_words(tmp_path, monkeypatch):
    from app.render import html as html_module
    from app.render import html_body

    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(html_module, "get_text", broken)
    monkeypatch.setattr(html_body, "prepare_trees", broken)
    rendered = render_html("<p>Hallo <b>Welt</b></p>")
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert "Hallo" in text and "Welt" in text and "<b>" not in text


def test_a_body_failing_in_a_step_is_drawn_as_text_and_its_run_laid_out(tmp_path, monkeypatch):
    """The bodies of a run are prepared step by step together: the one a step fails on is drawn
    as text (inscriptis: ``[text](url)``), the others before and after it through the layout
    (link text, the URL in brackets after it, a link annotation)."""
    from app.render import html as html_module

    normalise = html_module.normalise_tree

    def broken_on_one_body(root, **kwargs):
        if "zwei" in "".join(root.itertext()):
            raise RuntimeError("normaliser exploded")
        return normalise(root, **kwargs)

    monkeypatch.setattr(html_module, "normalise_tree", broken_on_one_body)
    articles = [
        body_article(f'<p>Text <a href="https://{word}.example/">{word}</a></p>', n, "text/html")
        for n, word in ((1, "eins"), (2, "zwei"), (3, "drei"))
    ]
    rendered = render_ticket_pdf(
        {"number": "1", "title": "HTML"}, articles, [], archived_at=ARCHIVED_AT, options=RenderOptions()
    )
    text = " ".join(pdftotext(write(tmp_path, rendered.data))[0].split())
    assert "eins (https://eins.example/)" in text and "drei (https://drei.example/)" in text
    assert "[zwei](https://zwei.example/)" in text
    assert b"eins.example" in rendered.data and b"drei.example" in rendered.data
