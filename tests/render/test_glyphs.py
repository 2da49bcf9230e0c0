"""Font coverage, fallback fonts and the placeholders for characters no font has."""

from __future__ import annotations

from app.render.glyphs import DEFAULT_FONT_DIRS, FontSet, font_set, placeholder, script_name


def drawable(text: str) -> tuple[str, int]:
    out, missing = font_set().make_drawable(text)
    return out, sum(missing.values())


def test_german_greek_cyrillic_are_in_the_main_font():
    main = font_set().chains[""]
    for char in "äöüÄÖÜß€·–—…αβγΩЖжЁё":
        assert main.font_of[char] == 0, char
        assert char in font_set().covered


def test_fallback_fonts_cover_arabic_hebrew_cjk_emoji():
    fonts = font_set()
    assert fonts.absent == ()  # make test installs fonts-noto-core, -cjk, -color-emoji, dejavu
    families = {face.family for face in fonts.fallbacks}
    assert {"NotoSansArabic", "NotoSansHebrew", "NotoSansCJK", "NotoColorEmoji", "DejaVuSans"} <= families
    fonts.load_fallbacks()
    chain = fonts.chains[""]
    for char, family in (
        ("ش", "NotoSansArabic"),
        ("ש", "NotoSansHebrew"),
        ("中", "NotoSansCJK"),
        ("の", "NotoSansCJK"),
        ("😊", "NotoColorEmoji"),
    ):
        assert chain.faces[chain.font_of[char]].family == family, char
    assert all(char in fonts.covered for char in "ش ש 中 の 😊")


def test_without_fallback_fonts_the_scripts_are_named_as_absent(tmp_path):
    fonts = FontSet((str(tmp_path),))
    assert {"Arabic", "Hebrew", "CJK", "Emoji"} <= set(fonts.absent)
    text, missing = fonts.make_drawable("中文 😊 ok")
    assert text == "[U+4E2D][U+6587] [U+1F60A] ok"
    assert missing == {"CJK": 2, "Emoji": 1}


def test_uncovered_characters_become_counted_placeholders():
    text, missing = drawable("a\U00010000b\ue000c\U00010000")
    assert text == "a[U+10000]b[U+E000]c[U+10000]"
    assert missing == 3
    assert dict(font_set().make_drawable("\ue000")[1]) == {"Private use": 1}


def test_many_distinct_missing_characters_are_all_counted():
    private = "".join(chr(0xE000 + i) for i in range(40)) * 2
    text, missing = drawable(private)
    assert missing == 80 and text.count("[U+E0") == 80


def test_line_ends_tabs_and_soft_hyphens_are_normalised_without_counting():
    text, missing = drawable("a\r\nb\rc\x0cd\u2028e\tf\u00adg")
    assert text == "a\nb\nc\nd\ne   fg"
    assert missing == 0


def test_control_characters_and_lone_surrogates_are_shown():
    text, missing = drawable("x\x00y\x1bz\ud800")
    assert text == f"x{placeholder(chr(0))}y[U+001B]z[U+D800]"
    assert missing == 3


def test_runs_split_by_font():
    font_set().load_fallbacks()
    chain = font_set().chains[""]
    assert list(chain.runs("Grüße")) == [(0, "Grüße")]
    runs = [(chain.faces[i].family, run) for i, run in chain.runs("ab中文cd")]
    assert runs == [("NotoSans", "ab"), ("NotoSansCJK", "中文"), ("NotoSans", "cd")]


def test_line_separators_alone_are_normalised():
    # Each separator on its own (the translate runs only when one is found).
    for separator in ("\x0b", "\x0c", "\x85", "\u2028", "\u2029"):
        assert drawable(f"a{separator}b") == ("a\nb", 0)
    assert drawable("Trenn\u00adung") == ("Trennung", 0)
    assert drawable("plain ascii, nothing to change") == ("plain ascii, nothing to change", 0)


def test_single_face_names_the_one_font_of_a_text():
    font_set().load_fallbacks()
    chain = font_set().chains[""]
    for text in ("ascii only", "Grüße, Жук", ""):
        assert chain.single_face(text) == 0
        assert all(index == 0 for index, _ in chain.runs(text))
    assert chain.single_face("ab中文cd") is None
    cjk = chain.single_face("中文")
    assert cjk is not None and cjk > 0 and [index for index, _ in chain.runs("中文")] == [cjk]


def test_script_names():
    assert [script_name(c) for c in "中ش😊\ue000"] == ["CJK", "Arabic", "Emoji", "Private use"]
    assert DEFAULT_FONT_DIRS == ("/usr/share/fonts",)


def test_fallback_fonts_load_only_when_a_text_needs_them():
    """Latin, Greek and Cyrillic text never reads the fallback fonts (Noto Sans CJK alone is
    tens of MB per render process); the first character the main fonts lack loads them all,
    after which that character is drawn, not replaced by a placeholder."""
    fonts = FontSet(DEFAULT_FONT_DIRS)
    assert not fonts.fallbacks_loaded
    assert "中" not in fonts.covered and "中" not in fonts.chains[""].font_of
    latin = "Grüße, Καλημέρα, Здравствуйте – 10 €…"
    assert fonts.make_drawable(latin) == (latin, {})
    assert not fonts.fallbacks_loaded
    main_widths = dict(fonts.chains["B"].advances)
    text, missing = fonts.make_drawable("Hallo 中文 😊")
    assert fonts.fallbacks_loaded
    assert (text, missing) == ("Hallo 中文 😊", {})
    chain = fonts.chains[""]
    assert [chain.faces[i].family for i, _ in chain.runs("ab中文")] == ["NotoSans", "NotoSansCJK"]
    assert "中" in fonts.covered
    # the main font's characters keep their widths and font; the dict grew in place
    assert all(fonts.chains["B"].advances[char] == width for char, width in main_widths.items())
    assert fonts.measures["B"].width("中") == fonts.chains["B"].advances["中"] > 0


def test_a_latin_ticket_renders_without_the_fallback_fonts(tmp_path):
    """In a fresh process (the fonts are cached per process): a German/English ticket leaves
    the fallbacks unread, one CJK article loads them and is drawn with Noto Sans CJK."""
    import subprocess
    import sys

    code = (
        "from datetime import datetime, timezone\n"
        "from app.render import patches\n"
        "from app.render.glyphs import font_set\n"
        "from app.render.options import RenderOptions\n"
        "from app.render.pdf import render_ticket_pdf\n"
        "def article(body):\n"
        "    return {'id': 1, 'type': 'email', 'sender': 'Customer', 'content_type': 'text/plain',\n"
        "            'body': body, 'created_at': '2025-03-03T08:00:00Z'}\n"
        "patches.install()\n"
        "at = datetime(2025, 3, 3, tzinfo=timezone.utc)\n"
        "latin = render_ticket_pdf({'number': '1', 'title': 'Grüße'},\n"
        "                          [article('Grüße aus Mühlenbach – 10 €')],\n"
        "                          [], archived_at=at, options=RenderOptions())\n"
        "print(font_set(RenderOptions().font_dirs).fallbacks_loaded, latin.missing_glyphs)\n"
        "cjk = render_ticket_pdf({'number': '2', 'title': 'x'}, [article('中文')], [], archived_at=at,\n"
        "                        options=RenderOptions())\n"
        "print(font_set(RenderOptions().font_dirs).fallbacks_loaded, cjk.missing_glyphs)\n"
        f"open({str(tmp_path / 'cjk.pdf')!r}, 'wb').write(cjk.data)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["False 0", "True 0"]
    fonts = subprocess.run(
        ["pdffonts", str(tmp_path / "cjk.pdf")], capture_output=True, text=True, check=True
    )
    assert "NotoSansCJK" in fonts.stdout


def test_the_renderers_own_text_needs_no_fallback_font():
    """Text the renderer writes itself (labels, separators, bullets) may be drawn before any
    ticket text loaded the fallback fonts: every character of it must be in all four Noto
    Sans faces, or a Latin ticket would draw it differently than a CJK one."""
    import ast
    from pathlib import Path

    fonts = FontSet(DEFAULT_FONT_DIRS)
    render = Path(__file__).resolve().parents[2] / "app" / "render"
    own = set()
    drawing = (
        "pdf.py",
        "document.py",
        "sections.py",
        "html_body.py",
        "content.py",
        "html.py",
        "html_blocks.py",
    )
    drawing += ("html_layout.py", "html_lines.py")
    for name in (*drawing, "originals.py", "templates.py", "images.py"):
        tree = ast.parse((render / name).read_text(encoding="utf-8"))
        skipped = set()  # docstrings and regular expressions are not drawn
        for node in ast.walk(tree):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                skipped.add(id(node.value))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "compile":
                skipped.update(id(sub) for sub in ast.walk(node))
            # A translation table's keys (zip(keys, values)) are read from the mail, not drawn:
            # html.py's SUPERSCRIPTS maps U+2212, which Noto Sans lacks, to ⁻.
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "zip" and node.args:
                skipped.update(id(sub) for sub in ast.walk(node.args[0]))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
                own.update(char for char in node.value if not char.isascii())
    assert {"–", "·", "…", "•"} <= own, "the scan missed the renderer's own separators"
    assert sorted(own - fonts.covered) == []
    assert not fonts.fallbacks_loaded


def test_runs_of_more_than_thirty_combining_or_format_characters_are_cut():
    """Thousands of combining marks on one letter ("Zalgo" text) are cut to MAX_ZERO_WIDTH_RUN,
    runs of zero-width joiners likewise; what any language needs (Hebrew points and
    cantillation, Vietnamese stacked accents, emoji joined by ZWJ) is kept as it is."""
    from app.render.glyphs import MAX_ZERO_WIDTH_RUN

    fonts = font_set(DEFAULT_FONT_DIRS)
    zalgo, _ = fonts.make_drawable("\u202ea" + "\u0301" * 50_000 + " b" + "\u200d" * 100 + "c")
    assert zalgo == "\u202ea" + "\u0301" * MAX_ZERO_WIDTH_RUN + " b" + "\u200d" * MAX_ZERO_WIDTH_RUN + "c"
    kept = "בְּרֵאשִׁ֖ית Tiếng Việt ệ̃ 👩\u200d👩\u200d👧 a" + "\u0301" * MAX_ZERO_WIDTH_RUN
    assert fonts.make_drawable(kept)[0] == kept


def test_a_right_to_left_paragraph_with_a_combining_mark_flood_renders_in_seconds(tmp_path):
    """With a right-to-left override in the paragraph, fpdf2 re-shaped the whole line for every
    mark: 8,000 marks on one letter took ~15 s, 50,000 would take hours."""
    import time

    from app.render.options import RenderOptions
    from app.render.pdf import render_ticket_pdf

    from .helpers import ARCHIVED_AT, pdftotext, write

    article = {"id": 1, "content_type": "text/html", "body": "<p>\u202ea" + "\u0301" * 8000 + " Ende</p>"}
    started = time.monotonic()
    rendered = render_ticket_pdf(
        {"number": "1", "title": "Zalgo"}, [article], [], archived_at=ARCHIVED_AT, options=RenderOptions()
    )
    assert time.monotonic() - started < 5
    assert "ednE" in pdftotext(write(tmp_path, rendered.data))[0]  # the override reverses it
