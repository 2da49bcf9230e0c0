"""The per-process font cache (app.render.fontcache): add_font's bytes, no shared per-document state."""

from __future__ import annotations

import hashlib

import pytest
from fpdf import FPDF

from app.render import document, fontcache
from app.render.glyphs import font_set
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT
from .helpers import body_article as article

TICKET = {"number": "4711", "title": "Font cache", "created_at": "2025-03-03T08:00:00Z"}
MIXED = (
    "Grüße ΑΒΓ Привет שלום مرحبا Բարեւ გამარჯობა नमस्ते สวัสดี 你好 😀 ✓★ \U00010000 <b>bold</b> <i>italic</i>"
)


CASES = {
    "latin": [article("Plain ASCII text, nothing else. " * 20, 1)],
    "mixed": [article(MIXED, 1), article(f"<p>{MIXED}</p><pre>mono()</pre>", 2, "text/html")],
    "other-latin": [article("Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. " * 5, 3)],
}


def digest(articles: list[dict], pdfa: bool = True) -> str:
    rendered = render_ticket_pdf(
        TICKET, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions(pdfa=pdfa)
    )
    return hashlib.sha256(rendered.data).hexdigest()


def plain_add_font(pdf: FPDF, family: str, style: str, path: str, index: int = 0) -> None:
    pdf.add_font(family, style, path, collection_font_number=index)


def test_cached_fonts_give_the_bytes_of_plain_add_font(monkeypatch):
    cached = {name: digest(articles) for name, articles in CASES.items()}
    cached_again = {name: digest(articles) for name, articles in reversed(CASES.items())}
    monkeypatch.setattr(document, "add_cached_font", plain_add_font)
    plain = {name: digest(articles) for name, articles in CASES.items()}
    assert cached == plain
    assert cached_again == plain  # other documents in between leave nothing behind
    assert len(set(plain.values())) == len(CASES)


def test_cached_fonts_give_the_bytes_of_plain_add_font_without_pdfa(monkeypatch):
    cached = digest(CASES["mixed"], pdfa=False)
    monkeypatch.setattr(document, "add_cached_font", plain_add_font)
    assert cached == digest(CASES["mixed"], pdfa=False)


def test_documents_share_parsed_data_but_not_their_state():
    face = font_set().main[""]
    first, second = FPDF(), FPDF()
    fontcache.add_cached_font(first, face.family, "", face.path)
    fontcache.add_cached_font(second, face.family, "", face.path)
    a, b = first.fonts["notosans"], second.fonts["notosans"]
    assert a.cmap is b.cmap and a.glyph_ids is b.glyph_ids  # parsed once
    assert a.ttfont is not b.ttfont and a.subset is not b.subset and a.desc is not b.desc
    assert a.missing_glyphs is not b.missing_glyphs
    assert a.cw is b.cw  # read-only: a lookup of a character the font lacks inserts nothing
    assert a.cw[0x10FFFF] == a.desc.missing_width and 0x10FFFF not in b.cw
    assert "GSUB" not in a.ttfont and "glyf" in a.ttfont
    assert a.ttfont["cmap"] is not b.ttfont["cmap"] and a.ttfont["hmtx"] is not b.ttfont["hmtx"]
    first.add_page()
    first.set_font("NotoSans", "", 10)
    first.text(10, 10, "Qxyzé")
    assert len(a.subset) > len(b.subset)
    first.output()  # subsets a's own TTFont in place
    assert len(b.ttfont.getGlyphOrder()) > 1000 and "Q" in b.ttfont["hmtx"].metrics


def test_a_document_opens_a_fonttools_font_only_when_it_reads_one(monkeypatch):
    from fontTools import ttLib

    from app.render import fontsubset

    opened: list[object] = []
    stock = ttLib.TTFont

    def counting(*args, **kwargs):
        opened.append(args[0] if args else kwargs.get("file"))
        return stock(*args, **kwargs)

    articles = [article("<p>Text <b>bold</b> <i>italic</i></p><pre>mono()</pre>", 1, "text/html")]
    digest(articles)  # the process's fonts and font outputs cached
    monkeypatch.setattr(fontcache.ttLib, "TTFont", counting)
    rendered = digest(articles)
    assert opened == []  # tiered fonts written from fontoutput's cache: no TTFont per document
    monkeypatch.undo()
    assert rendered == digest(articles)

    face = font_set().main[""]
    pdf = FPDF()
    fontcache.add_cached_font(pdf, face.family, "", face.path)
    font = pdf.fonts["notosans"]
    monkeypatch.setattr(fontcache.ttLib, "TTFont", counting)
    assert fontsubset.use_tiered_codes(font) and isinstance(font, fontsubset.TieredTTFFont)
    font.close()
    assert opened == []
    assert "glyf" in font.ttfont and "GSUB" not in font.ttfont and len(opened) == 1  # opened on first read
    assert font.ttfont is font.ttfont and len(opened) == 1


def test_a_font_file_is_parsed_once_per_process(monkeypatch):
    face = font_set().main["B"]
    fontcache.add_cached_font(FPDF(), face.family, "B", face.path)

    def no_parse(*args, **kwargs):
        raise AssertionError("TTFFont parsed again")

    monkeypatch.setattr(fontcache.TTFFont, "__init__", no_parse)
    fontcache.add_cached_font(FPDF(), face.family, "B", face.path)
    monkeypatch.setattr(document, "add_cached_font", fontcache.add_cached_font)
    assert digest(CASES["latin"])


def test_unused_fallback_fonts_are_not_embedded():
    rendered = render_ticket_pdf(TICKET, CASES["latin"], [], archived_at=ARCHIVED_AT, options=RenderOptions())
    assert b"NotoSansCJK" not in rendered.data and b"NotoSansArabic" not in rendered.data
    assert b"+NotoSans" in rendered.data


@pytest.mark.parametrize("tag", ["CBDT", "COLR", None])
def test_colour_fonts_go_through_plain_add_font(tmp_path, tag):
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.tables.DefaultTable import DefaultTable

    font = TTFont(font_set().main[""].path)
    if tag:
        table = DefaultTable(tag)
        table.data = bytes(8)
        font[tag] = table
    path = tmp_path / f"font-{tag}.ttf"
    font.save(path)
    cacheable = fontcache._prototype(str(path), 0).font is not None
    assert cacheable == (tag is None)
