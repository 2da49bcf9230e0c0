"""Every script round-trips through pdftotext, also on pages whose first text is CJK or emoji only (§3.1)."""

from __future__ import annotations

import re

import pytest

from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, pdftotext, write

SAMPLES = {
    "German": "Sehr geehrte Frau Müller, die Größe der Lieferung übersteigt das Maß.",
    "Greek": "Καλημέρα σας, το τιμολόγιο χρεώθηκε δύο φορές.",
    "Cyrillic": "Здравствуйте! Счёт выставлен дважды, пожалуйста исправьте.",
    "Arabic": "مرحبا بكم في خدمة الزبائن",
    "Hebrew": "שלום עולם ותודה רבה",
    "Chinese": "您好，发票重复计算了，请尽快更正。",
    "Japanese": "お問い合わせありがとうございます。請求書を確認します。",
}


def ticket() -> dict:
    return {"number": "31337", "title": "Mehrsprachig", "state": "open"}


def art(index: int, body: str, content_type: str = "text/plain") -> dict:
    return {
        "id": index,
        "from": "x@example.com",
        "subject": f"S{index}",
        "type": "email",
        "sender": "Customer",
        "internal": False,
        "content_type": content_type,
        "created_at": f"2025-03-03T08:00:{index:02d}Z",
        "body": body,
    }


def body_only(text: str) -> str:
    """pdftotext output without the page header and footer lines."""
    return "\n".join(
        line
        for line in text.splitlines()
        if not re.match(r"^\s*(Ticket #31337 – |Archived .* by |Page \d+ of \d+$)", line)
    )


def squash(text: str) -> str:
    """Text without whitespace and without the bidi embedding marks pdftotext adds around RTL runs."""
    return "".join(text.split()).translate(dict.fromkeys(range(0x202A, 0x202F)))


def rendered_text(tmp_path, articles, name="out.pdf") -> tuple[str, str, object]:
    rendered = render_ticket_pdf(ticket(), articles, [], archived_at=ARCHIVED_AT, options=RenderOptions())
    text, stderr = pdftotext(write(tmp_path, rendered.data, name))
    return text, stderr, rendered


@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_every_script_round_trips(tmp_path, content_type):
    bodies = [sample if content_type == "text/plain" else f"<p>{sample}</p>" for sample in SAMPLES.values()]
    text, stderr, rendered = rendered_text(
        tmp_path, [art(i, body, content_type) for i, body in enumerate(bodies, 1)]
    )
    assert "No font" not in stderr and "Syntax Error" not in stderr
    flat = squash(text)
    for name, sample in SAMPLES.items():
        if name in ("Arabic", "Hebrew"):  # pdftotext orders the words of RTL lines by its own heuristics
            line = next(line for line in text.splitlines() if sample.split()[1] in line)
            assert set(sample.split()) <= set(line.translate(dict.fromkeys(range(0x202A, 0x202F))).split()), (
                name
            )
        else:
            assert squash(sample) in flat, name
    assert rendered.missing_glyphs == 0 and rendered.missing_scripts == ()


def test_arabic_and_hebrew_are_shaped_and_right_aligned(tmp_path):
    text, _, _ = rendered_text(tmp_path, [art(1, SAMPLES["Arabic"]), art(2, SAMPLES["Hebrew"])])
    layout, _ = pdftotext(tmp_path / "out.pdf", "-layout")
    for sample in (SAMPLES["Arabic"], SAMPLES["Hebrew"]):
        line = next(line for line in layout.splitlines() if sample.split()[0] in line)
        assert len(line) - len(line.lstrip()) > 40, line  # right-aligned: starts far from the left margin


@pytest.mark.parametrize("content_type", ["text/plain", "text/html"])
def test_page_whose_first_line_is_chinese_only_keeps_later_text(tmp_path, content_type):
    # article 1 fills page 1 exactly so that article 2's long CJK-only body continues at the top of page 2
    filler = "\n".join(f"Zeile {i} mit lateinischem Text." for i in range(200))
    chinese = "中文内容" * 1000  # longer than a page: its continuation starts a page
    body = chinese if content_type == "text/plain" else f"<p>{chinese}</p>"
    emoji = art(3, "😊😊😊\n" + "Nach dem Emoji folgt Latein.")
    articles = [
        art(1, filler),
        art(2, body, content_type),
        emoji,
        art(4, "Danach kommt lateinischer Text ÄÖÜ."),
    ]
    text, stderr, rendered = rendered_text(tmp_path, articles)
    assert "No font" not in stderr and "Syntax Error" not in stderr
    pages = text.split("\f")
    first_body_lines = [
        [line for line in page.splitlines() if line.strip()][1] for page in pages[1:] if page.strip()
    ]
    cjk_top = [line for line in first_body_lines if set(line.strip()) <= set("中文内容")]
    assert cjk_top, "no page starts its body with Chinese"
    flat = squash(body_only(text))
    assert chinese in flat
    for later in (
        "NachdemEmojifolgtLatein.",
        "DanachkommtlateinischerTextÄÖÜ.",
        "Zeile199mitlateinischemText.",
    ):
        assert later in flat
    assert f"Page{rendered.page_count}of{rendered.page_count}" in squash(text)


def test_emoji_only_article_at_a_page_top(tmp_path):
    filler = "\n".join(f"Füllzeile {i}" for i in range(300))
    text, stderr, _ = rendered_text(tmp_path, [art(1, filler), art(2, "😀🎉👍"), art(3, "Latein danach.")])
    assert "No font" not in stderr
    assert "😀🎉👍" in squash(text) and "Lateindanach." in squash(text)


def test_missing_fonts_become_placeholders_and_name_the_scripts(tmp_path):
    options = RenderOptions(font_dirs=(str(tmp_path),))
    rendered = render_ticket_pdf(
        ticket(), [art(1, f"{SAMPLES['Chinese']} 😊 ok")], [], archived_at=ARCHIVED_AT, options=options
    )
    text, stderr = pdftotext(write(tmp_path, rendered.data))
    assert "[U+60A8]" in text and "[U+1F60A]" in text and "ok" in text
    assert rendered.missing_scripts == ("CJK", "Emoji")
    assert rendered.missing_glyphs == len(SAMPLES["Chinese"]) + 1


def test_a_right_to_left_title_is_shaped_in_every_page_header(tmp_path):
    """The running header draws the ticket title through fpdf2's shaping when it needs it:
    letters joined and in reading order, as in the body (before, on our own text path, each
    word came out letter by letter in reverse)."""
    title = f"{SAMPLES['Hebrew']} {SAMPLES['Arabic']}"
    rendered = render_ticket_pdf(
        {**ticket(), "title": title},
        [art(i, "Hallo " * 400) for i in range(1, 4)],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
    )
    assert rendered.page_count > 1
    text, _ = pdftotext(write(tmp_path, rendered.data, "rtl-title.pdf"))
    headers = [line for line in text.splitlines() if line.startswith("Ticket #31337 – ")]
    assert len(headers) == rendered.page_count, headers
    for line in headers:
        words = set(line.translate(dict.fromkeys(range(0x202A, 0x202F))).split())
        assert set(title.split()) <= words, line
