"""Fixed glyph codes for the main fonts (app.render.fontsubset): the same codes and bytes as fpdf2 gives."""

from __future__ import annotations

from app.render import fontsubset

from .helpers import ASCII, EXTRA, LATIN


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
