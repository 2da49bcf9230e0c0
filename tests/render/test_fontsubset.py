"""Fixed glyph codes and the per-process font output cache (app.render.fontsubset)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf.output import OutputProducer

from app.render import fontsubset
from app.render import pdf as pdf_module
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.workflow.ports import EmbeddedFile

from .helpers import ARCHIVED_AT, pdftotext, write
from .test_pdfa import pdfa_problems

TICKET = {"number": "4711", "title": "Font subsets", "created_at": "2025-03-03T08:00:00Z"}

ASCII = "Plain ASCII text only, nothing else (tier 1)."
LATIN = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich; Łódź, Škoda, œuvre."
EXTRA = "Ωμέγα und Жук: glyphs of Noto Sans outside both tiers."


def article(body: str, index: int = 1, content_type: str = "text/plain") -> dict:
    return {
        "id": index,
        "ticket_id": 1,
        "from": "a@example.com",
        "to": "b@example.com",
        "subject": f"S{index}",
        "body": body,
        "content_type": content_type,
        "internal": False,
        "type": "email",
        "sender": "Customer",
        "created_at": f"2025-03-0{index}T09:00:00Z",
        "attachments": [],
    }


def render(*bodies: str, pdfa: bool = True) -> bytes:
    articles = [article(body, index) for index, body in enumerate(bodies, start=1)]
    embedded = (EmbeddedFile("note.txt", b"original", "text/plain", "Source", "an original"),)
    return render_ticket_pdf(
        TICKET, articles, ["t"], archived_at=ARCHIVED_AT, options=RenderOptions(pdfa=pdfa), embedded=embedded
    ).data


def text_of(data: bytes, tmp_path: Path, name: str) -> str:
    return " ".join(pdftotext(write(tmp_path, data, name))[0].split())


def test_documents_with_different_glyph_sets_all_extract(tmp_path: Path):
    fontsubset.cache_clear()
    documents = {"ascii": (ASCII,), "latin": (LATIN,), "extra": (EXTRA, LATIN), "ascii-again": (ASCII,)}
    for name, bodies in documents.items():
        text = text_of(render(*bodies), tmp_path, f"{name}.pdf")
        for body in bodies:
            assert " ".join(body.split()) in text, name


def test_output_is_deterministic_with_a_cold_or_warm_cache():
    for bodies in ((ASCII,), (LATIN,), (EXTRA,)):
        fontsubset.cache_clear()
        cold = render(*bodies)
        warm = render(*bodies)
        render(ASCII, LATIN, EXTRA)  # other documents in between leave nothing behind
        assert render(*bodies) == cold == warm


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN,), (EXTRA, LATIN), (ASCII, "<b>bold</b> <i>ä</i>")])
@pytest.mark.parametrize("pdfa", [True, False])
def test_cached_font_objects_are_the_bytes_fpdf2_writes(monkeypatch, bodies, pdfa):
    fontsubset.cache_clear()
    render(ASCII)  # the tier entries come from the cache below, not from this document
    cached = render(*bodies, pdfa=pdfa)
    monkeypatch.setattr(pdf_module, "ArchiveOutputProducer", OutputProducer)
    assert render(*bodies, pdfa=pdfa) == cached


def test_documents_of_tier_characters_share_one_font_output():
    fontsubset.cache_clear()
    render(ASCII)
    first = fontsubset.cache_info()
    render("Another text, other ASCII letters: XYZ qj 0123456789 !?")
    second = fontsubset.cache_info()
    assert second["misses"] == first["misses"] and second["hits"] > first["hits"]
    render(LATIN)  # tier 2 taken: one new entry per face drawn, then shared as well
    third = fontsubset.cache_info()
    render("Größe: 5 €, naïve café – “quoted”")
    assert fontsubset.cache_info()["misses"] == third["misses"] > second["misses"]


def test_a_glyph_outside_the_tiers_gets_its_own_subset(tmp_path: Path):
    fontsubset.cache_clear()
    render(LATIN)
    before = fontsubset.cache_info()["misses"]
    data = render(LATIN + " Ж")
    assert fontsubset.cache_info()["misses"] == before + 1  # the regular face only
    assert "Ж" in text_of(data, tmp_path, "extra.pdf")
    assert pdfa_problems(data, tmp_path) == []


def test_tier_codes_do_not_depend_on_the_order_of_first_use():
    from fpdf import FPDF

    from app.render.fontcache import add_cached_font
    from app.render.glyphs import font_set

    path = font_set().main[""].path
    codes = []
    for text in ("zyx", "xyz", "ä z"):
        pdf = FPDF()
        add_cached_font(pdf, "NotoSans", "", path)
        font = pdf.fonts["notosans"]
        assert fontsubset.use_tiered_codes(font)
        font.encode_text(text)
        codes.append({glyph.unicode: code for glyph, code in font.subset.items() if glyph is not None})
    assert codes[0] == codes[1]
    assert {k: v for k, v in codes[2].items() if k in codes[0]} == codes[0]  # tier 2 comes after tier 1
    assert len(codes[2]) > len(codes[0])


def test_only_plain_truetype_fonts_take_fixed_codes():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica")
    assert not fontsubset.use_tiered_codes(pdf.fonts["helvetica"])


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN, EXTRA), ("> quoted\n>> deeper\nplain",)])
def test_lines_are_drawn_with_the_bytes_of_fpdf2s_text(monkeypatch, bodies):
    drawn = render(*bodies)
    monkeypatch.setattr(pdf_module._TicketPdf, "draw_text", pdf_module._TicketPdf.text)
    assert render(*bodies) == drawn


def test_encode_text_gives_fpdf2s_bytes_on_both_paths():
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

    from app.render.fontcache import add_cached_font
    from app.render.glyphs import font_set

    pdf = FPDF()
    add_cached_font(pdf, "NotoSans", "", font_set().main[""].path)
    font = pdf.fonts["notosans"]
    assert fontsubset.use_tiered_codes(font)
    texts = [ASCII, "(parens) and \\ backslash\r", LATIN, EXTRA, "missing: \U0001f600 here", ""]
    font.encode_text(LATIN)  # both tiers taken
    # Codes 13, 40, 41 and 92 are CR, "(", ")" and "\\" as bytes: the characters that got
    # them must come out escaped on the fast path too.
    by_code = {
        code: chr(glyph.unicode[0])
        for glyph, code in font.subset.items()
        if glyph is not None and len(glyph.unicode) == 1
    }
    escapes = {13: "\\r", 40: "\\(", 41: "\\)", 92: "\\\\"}
    codes = [code for code in escapes if code in by_code]
    assert len(codes) >= 3
    escaping = "".join(by_code[code] for code in codes)
    texts.append(f"x{escaping}y")
    for _ in range(3):  # first the translate path (new characters), then the charmap path
        for text in texts:
            assert font.encode_text(text) == TTFFont.encode_text(font, text), text
    assert font.encode_text(escaping) == "(" + "".join("\x00" + escapes[code] for code in codes) + ") Tj"


@pytest.mark.parametrize(
    "bodies", [(ASCII,), (LATIN + "\n" + EXTRA,), ("> quoted\n>> deeper\nplain",), ((LATIN + " ") * 400,)]
)
def test_paragraphs_drawn_at_once_are_the_bytes_of_line_by_line(monkeypatch, bodies):
    drawn = render(*bodies)
    monkeypatch.setattr(pdf_module._TicketPdf, "_draw_plain_lines", lambda *args: False)
    assert render(*bodies) == drawn


@pytest.mark.parametrize("bodies", [(ASCII,), (LATIN, EXTRA), (ASCII, "<b>bold</b> <i>ä</i>")])
def test_select_face_leaves_fpdf2_in_the_state_of_set_font(monkeypatch, bodies):
    drawn = render(*bodies)

    def set_font(self, face, size):
        self.set_font(face.family, face.style, size)

    monkeypatch.setattr(pdf_module._TicketPdf, "select_face", set_font)
    assert render(*bodies) == drawn


def test_a_taken_tier_is_learnt_whole_with_the_codes_a_lookup_gives():
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

    from app.render.fontcache import add_cached_font
    from app.render.glyphs import font_set

    fontsubset.cache_clear()
    for _ in range(2):  # the first document builds the process-wide tables, the second copies them
        pdf = FPDF()
        add_cached_font(pdf, "NotoSans", "", font_set().main[""].path)
        font = pdf.fonts["notosans"]
        assert fontsubset.use_tiered_codes(font)
        font.encode_text("a")  # takes tier 1
        tier_one = font.subset.tiers[0]
        assert set(tier_one) <= set(font.subset.codes) and set(tier_one) <= set(font.subset.escaped)
        text = "".join(chr(cp) for cp in tier_one)
        assert font.encode_text(text) == TTFFont.encode_text(font, text)
