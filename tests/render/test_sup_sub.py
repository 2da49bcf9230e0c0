"""``<sup>``/``<sub>`` keep what a number says (app.render.html.convert_sup_sub): the layout draws
them on the baseline, so their text becomes superscript/subscript characters or is marked
``^(…)``/``_(…)``; ``10<sup>6</sup>`` never reads "106". Checked on the blocks, in the PDF
(poppler, veraPDF) and in the inscriptis text the body falls back to."""

from __future__ import annotations

import unicodedata

import pytest
from fontTools.ttLib import TTFont

from app.render.glyphs import FONT_DIR
from app.render.html import SUBSCRIPTS, SUPERSCRIPTS, html_to_text
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from tests.verify import verapdf

from .helpers import ARCHIVED_AT, body_article, pdftotext, write
from .test_html_blocks import blocks, texts

#: (HTML, the text it must read as): each flattened before ("106", "m2", "H2O", "xn+1" …).
CASES = [
    ("10<sup>6</sup> Byte", "10⁶ Byte"),
    ("12 m<sup>2</sup> Fläche", "12 m² Fläche"),
    ("H<sub>2</sub>O", "H₂O"),
    ("x<sup>n+1</sup>", "xⁿ⁺¹"),
    ("10<sup>-3</sup> m<sup>-2</sup>", "10⁻³ m⁻²"),
    ("Ca<sup>2+</sup> und x<sub>i</sub> und CO<sub>2</sub>", "Ca²⁺ und xᵢ und CO₂"),
    ("am 1<sup>st</sup> May", "am 1ˢᵗ May"),
    # a character without a form (q, ä, comma, period): the whole text marked, never half converted
    ("Q<sup>Qualität</sup>", "Q^(Qualität)"),
    ("Fußnote<sup>a, b</sup>", "Fußnote^(a, b)"),
    ("10<sup>1.5</sup>", "10^(1.5)"),
    ("log<sub>base</sub> 8", "log_(base) 8"),
    # marks drawn raised anyway stay; empty ones vanish
    ("Marke<sup>®</sup> und <sup> </sup>Ende", "Marke® und Ende"),
]


@pytest.mark.parametrize(("html", "expected"), CASES)
def test_sup_and_sub_keep_their_meaning_in_the_blocks(html, expected):
    assert texts(f"<p>{html}</p>") == [expected]


def test_a_minus_sign_is_raised_as_a_hyphen_is():
    # U+2212 is not in the bundled Noto Sans (a fallback font draws it): checked without fonts
    assert texts("<p>10<sup>−3</sup> H<sub>−</sub></p>") == ["10⁻³ H₋"]


def test_sup_inside_links_and_bold_and_links_and_bold_inside_sup():
    (paragraph,) = [
        b
        for b in blocks(
            '<p><b>m<sup>2</sup></b> <a href="https://e.example/">m<sup>2</sup></a> '
            'x<sup><a href="https://e.example/n">n</a>+<i>1</i></sup> '
            "y<sup><b>Nr.</b> 1</sup></p>"
        )
        if hasattr(b, "spans")
    ]
    # a link inside: its target, shown after it by the normaliser, stays readable
    assert paragraph.text == "m² m² (https://e.example/) xⁿ (https://e.example/n) ⁺¹ y^(Nr. 1)"
    looks = [(span.text.strip(), span.bold, span.italic, span.link) for span in paragraph.spans]
    assert ("m²", True, False, None) in looks
    assert ("m²", False, False, "https://e.example/") in looks
    assert ("ⁿ", False, False, "https://e.example/n") in looks and ("¹", False, True, None) in looks
    assert ("Nr.", True, False, None) in looks  # the bold stays, inside the marks


def test_nested_and_table_cells():
    assert texts("<p>x<sup>a<sub>i</sub></sup> y<sup>q<sub>2</sub></sup></p>") == ["xᵃᵢ y^(q₂)"]
    (table,) = [
        b
        for b in blocks("<table><tr><td>m<sup>2</sup></td><td>H<sub>2</sub>O</td></tr></table>")
        if hasattr(b, "rows")
    ]
    assert [cell.text for cell in table.rows[0]] == ["m²", "H₂O"]


def test_the_forms_are_the_unicode_mappings_and_every_noto_sans_face_has_them():
    for table, kind in ((SUPERSCRIPTS, "<super>"), (SUBSCRIPTS, "<sub>")):
        for char, form in table.items():
            base = "−" if char == "-" else char
            assert unicodedata.decomposition(form) == f"{kind} {ord(base):04X}", (char, form)
    faces = sorted(FONT_DIR.glob("NotoSans-*.ttf"))
    assert len(faces) == 4
    for face in faces:
        cmap = TTFont(face).getBestCmap()
        lacking = [f for f in (*SUPERSCRIPTS.values(), *SUBSCRIPTS.values()) if ord(f) not in cmap]
        assert not lacking, (face.name, lacking)


def test_the_pdf_reads_the_forms_drawn_in_noto_sans_and_stays_pdfa(tmp_path):
    body = (
        "".join(f"<p>{html}</p>" for html, _ in CASES) + "<p><b>m<sup>2</sup></b> <i>H<sub>2</sub>O</i></p>"
    )
    # no fallback fonts: the forms must come from the bundled Noto Sans; a glyph it lacked
    # would be dropped from the page without a trace (checked: ꟲ for t gave "1")
    options = RenderOptions(font_dirs=(str(tmp_path),))
    rendered = render_ticket_pdf(
        {"number": "1", "title": "Sup"},
        [body_article(body, content_type="text/html")],
        [],
        archived_at=ARCHIVED_AT,
        options=options,
    )
    assert rendered.missing_glyphs == 0
    path = write(tmp_path, rendered.data)
    lines = [" ".join(line.split()) for line in pdftotext(path)[0].splitlines()]
    for _, expected in CASES:
        assert expected in lines, (expected, lines)
    assert "m² H₂O" in lines
    verdict = verapdf(path, "3b")
    assert verdict.returncode == 0 and verdict.stdout.startswith("PASS"), verdict.stdout


def test_the_inscriptis_fallback_text_reads_the_same():
    text = html_to_text("".join(f"<p>{html}</p>" for html, _ in CASES))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines == [expected for _, expected in CASES]
    assert html_to_text('<p><A HREF="https://e.example/">m<SUP>2</SUP></A></p>') == "[m²](https://e.example/)"
    assert html_to_text("<p>kein hoch</p>") == "kein hoch"
