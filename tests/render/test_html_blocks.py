"""HTML body → blocks (app.render.html_blocks over app.render.html.prepare_tree): no PDF involved."""

from __future__ import annotations

from app.render.html import prepare_tree
from app.render.html_blocks import (
    BULLET,
    LIST_INDENT,
    QUOTE_INDENT,
    Gap,
    Image,
    Paragraph,
    Rule,
    Span,
    Table,
    body_blocks,
)

#: The menu of a real Russian newsletter: adjacent cells, links, only whitespace between them.
MENU = (
    '<td><a href="https://news.example.ru/profile">Профиль</a></td> '
    '<td><a href="https://news.example.ru/messages">Сообщения</a></td>'
    '<td><a href="https://news.example.ru/contacts">Контакты</a></td>'
)
MENU_WORDS = ("Профиль", "Сообщения", "Контакты")
#: The menu as a layout table's row, as one row of a real table, and nested in a real table's cell.
MENU_LAYOUTS = {
    "in a layout table": f'<table width="100%"><tr><td><table><tr>{MENU}</tr></table></td></tr></table>',
    "as a one-row table": f"<table><tr>{MENU}</tr></table>",
    "in a cell of a table": f"<table><tr><td><table><tr>{MENU}</tr></table></td>"
    "<td>Боковая панель</td></tr></table>",
    "as button tables": "<table><tr>"
    + "".join(
        f'<td><table><tr><td><a href="https://x.ru/{w}">{w}</a></td></tr></table></td>' for w in MENU_WORDS
    )
    + "</tr></table>",
}


def blocks(html: str, resolve=lambda src: None) -> list:
    tree = prepare_tree(html, resolve=resolve, label=lambda src: src, max_width=500.0, max_height=400.0)
    return body_blocks(tree)


def paragraphs(html: str) -> list[Paragraph]:
    return [block for block in blocks(html) if isinstance(block, Paragraph)]


def texts(html: str) -> list[str]:
    return [paragraph.text for paragraph in paragraphs(html)]


def all_words(found: list) -> list[str]:
    words: list[str] = []
    for block in found:
        if isinstance(block, Paragraph):
            words += block.text.split()
        elif isinstance(block, Table):
            words += [word for row in block.rows for cell in row for word in cell.text.split()]
    return words


def test_whitespace_collapses_and_br_ends_a_line():
    assert texts("<p>  Hallo \n\t  Welt  </p><p>a<br>  b<br><br>c<br></p>") == ["Hallo Welt", "a\nb\n\nc"]


def test_an_empty_div_with_a_br_is_one_empty_line_and_blank_blocks_vanish():
    assert texts("<div>eins</div><div><br></div><div>zwei</div><div> </div><p>\n</p>") == ["eins", "", "zwei"]


def test_inline_looks_become_spans():
    (paragraph,) = paragraphs(
        'a <b>fett <i>beides</i></b> <u>unter</u> <s>durch</s> <code>x = 1</code> <a href="https://e.example/">L</a>'
        " H<sub>2</sub>O"
    )
    looks = {span.text.strip(): span for span in paragraph.spans if span.text.strip()}
    assert looks["fett"].bold and not looks["fett"].italic
    assert looks["beides"].bold and looks["beides"].italic and looks["beides"].style == "BI"
    assert looks["unter"].underline and looks["durch"].strike and looks["x = 1"].mono
    assert looks["L"].link == "https://e.example/" and looks["L"].underline
    assert paragraph.text.endswith("L (https://e.example/) H₂O")  # sub as subscript, the target shown


def test_headings_keep_their_level_and_are_bold():
    found = paragraphs("<h1>Eins</h1><h3>Drei</h3><p>Text</p>")
    assert [(p.text, p.heading, p.spans[0].bold) for p in found] == [
        ("Eins", 1, True),
        ("Drei", 3, True),
        ("Text", 0, False),
    ]


def test_lists_have_markers_numbers_from_start_and_nested_indent():
    found = paragraphs(
        "<ul><li>Apfel</li><li>Birne<ul><li>Nested</li></ul></li></ul>"
        "<ol start='3'><li>Drei</li><li>Vier</li></ol>"
        "<dl><dt>Begriff</dt><dd>Erklärung</dd></dl>"
    )
    assert [(p.text, p.marker, p.indent) for p in found] == [
        ("Apfel", BULLET, LIST_INDENT),
        ("Birne", BULLET, LIST_INDENT),
        ("Nested", BULLET, 2 * LIST_INDENT),
        ("Drei", "3.", LIST_INDENT),
        ("Vier", "4.", LIST_INDENT),
        ("Begriff", None, 0.0),
        ("Erklärung", None, LIST_INDENT),
    ]
    assert found[5].spans[0].bold


def test_quotes_nest_with_a_bar_per_level():
    found = paragraphs("<p>oben</p><blockquote>eins<blockquote>zwei</blockquote>wieder eins</blockquote>")
    assert [(p.text, p.indent, len(p.bars), p.quoted) for p in found] == [
        ("oben", 0.0, 0, False),
        ("eins", QUOTE_INDENT, 1, True),
        ("zwei", 2 * QUOTE_INDENT, 2, True),
        ("wieder eins", QUOTE_INDENT, 1, True),
    ]


def test_gmail_and_original_message_quotes_are_marked():
    gmail = '<div>Antwort</div><div class="gmail_quote">Am Montag schrieb X:<div>alt</div></div>'
    assert [p.quoted for p in paragraphs(gmail)] == [False, True, True]
    outlook = "<p>Oben</p><p>-----Original Message-----<br>From: a</p><p>Alt</p>"
    assert [p.quoted for p in paragraphs(outlook)] == [False, True, True]


def test_pre_keeps_spaces_and_line_breaks():
    (paragraph,) = paragraphs("<pre>\ndef f(x):\n    return  x * 2  # <b>bold</b>\n</pre>")
    assert paragraph.pre and paragraph.spans == [Span("def f(x):\n    return  x * 2  # bold", mono=True)]


def test_rules_images_and_gaps():
    found = blocks(
        '<p>a</p><hr><img src="cid:x" width="40" height="20"><p>b</p>', resolve=lambda src: ("key-1", 40, 20)
    )
    kinds = [type(block) for block in found]
    assert kinds == [Paragraph, Gap, Rule, Image, Paragraph]
    image = found[3]
    assert (image.key, image.width, image.height) == ("key-1", 30.0, 15.0)  # CSS px → pt


def test_an_image_takes_the_size_its_attributes_declare():
    """Mail clients show an image at its ``width``/``height`` (a signature logo stored at twice
    its size); one attribute keeps the aspect ratio; percentages and junk are ignored."""

    def size(attributes: str) -> tuple[float, float]:
        (image,) = [
            b
            for b in blocks(f'<img src="cid:x" {attributes}>', resolve=lambda src: ("k", 400, 200))
            if isinstance(b, Image)
        ]
        return image.width, image.height

    assert size('width="200" height="100"') == (150.0, 75.0)  # CSS px → pt
    assert size('width="200px"') == (150.0, 75.0)
    assert size('height="50"') == (75.0, 37.5)
    assert size('width="100%"') == (300.0, 150.0)  # the image's own 400 × 200 px
    assert size('width="abc" height="0"') == (300.0, 150.0)
    assert size('width="4000" height="2000"')[0] < 600  # still shrunk to the text width
    # Zammad's editor: an inline style in pixels, which wins over the attributes
    assert size('style="width: 240px; max-width: 100%;" width="400"') == (180.0, 90.0)
    assert size('style="height:20PX"') == (30.0, 15.0)
    assert size('style="width: 50%"') == (300.0, 150.0)


def test_unresolved_images_are_named_in_the_text():
    assert texts('<p>Bild <img src="cid:weg@x"> da</p>') == ["Bild [image: cid:weg@x] da"]


def test_real_tables_keep_rows_and_cells():
    (table,) = [
        b for b in blocks("<table><tr><th>A</th><th>B</th></tr><tr><td colspan=2>C D</td></tr></table>")
    ]
    assert isinstance(table, Table)
    assert [[(c.text, c.header, c.colspan) for c in row] for row in table.rows] == [
        [("A", True, 1), ("B", True, 1)],
        [("C D", False, 2)],
    ]


def test_blocks_and_nested_cells_in_a_cell_are_words_of_their_own():
    (table,) = blocks("<table><tr><td><p>Block</p><p>zwei</p></td><td>x<br>y</td></tr></table>")
    assert [cell.text for cell in table.rows[0]] == ["Block zwei", "x y"]


def test_a_cell_boundary_is_always_a_word_boundary():
    for name, html in MENU_LAYOUTS.items():
        words = all_words(blocks(html))
        for word in MENU_WORDS:
            assert word in words, (name, words)
        assert not any("ПрофильСообщения" in word or "СообщенияКонтакты" in word for word in words), name


def test_scripts_styles_and_comments_leave_no_text():
    assert texts("<style>p{color:red}</style><script>alert(1)</script><!-- c --><p>sichtbar</p>") == [
        "sichtbar"
    ]


def test_deep_quotes_stop_indenting():
    (paragraph,) = paragraphs("<blockquote>" * 20 + "tief" + "</blockquote>" * 20)
    assert paragraph.indent == 8 * QUOTE_INDENT and len(paragraph.bars) == 8


def test_a_link_target_shown_after_the_text_is_a_word_of_its_own():
    assert texts(
        '<p><a href="https://x.example/">Mail</a>. und <a href="https://y.example/"></a>text</p>'
    ) == ["Mail (https://x.example/). und (https://y.example/) text"]


def test_ordered_lists_number_as_their_type_value_and_reversed_say():
    # HTML §4.4.8 (ol: start, reversed, type), §4.4.10 (li value): "a./b." items were drawn as
    # "1./2.", a <li value> and reversed were ignored, and a start of 5 digits lost its last one.
    found = paragraphs(
        "<ol type='a'><li>alpha</li><li>beta</li></ol>"
        "<ol type='A' start='26'><li>zett</li><li>nach zett</li></ol>"
        "<ol type='i' start='4'><li>vier</li><li>fünf</li></ol>"
        "<ol type='I'><li>eins</li><li value='1999'>neunundneunzig</li><li>zweitausend</li></ol>"
        "<ol><li>eins</li><li value='10'>zehn</li><li>elf</li></ol>"
        "<ol reversed><li>drei</li><li>zwei</li><li>eins</li></ol>"
        "<ol reversed start='10'><li>zehn</li><li>neun</li></ol>"
        "<ol start='12345'><li>lang</li></ol>"
        "<ol type='bogus'><li>unbekannt</li></ol>"
    )
    assert [(p.text, p.marker) for p in found] == [
        ("alpha", "a."),
        ("beta", "b."),
        ("zett", "Z."),
        ("nach zett", "AA."),
        ("vier", "iv."),
        ("fünf", "v."),
        ("eins", "I."),
        ("neunundneunzig", "MCMXCIX."),
        ("zweitausend", "MM."),
        ("eins", "1."),
        ("zehn", "10."),
        ("elf", "11."),
        ("drei", "3."),
        ("zwei", "2."),
        ("eins", "1."),
        ("zehn", "10."),
        ("neun", "9."),
        ("lang", "12345."),
        ("unbekannt", "1."),
    ]


def test_a_line_break_right_after_an_image_ends_the_image_line_and_adds_no_empty_one():
    # A signature "Jane<br><img logo><br>ACME": the image is inline in the mail, so the <br>
    # after it ends the image's line; drawn as a block, the <br> left an empty line under it.
    found = blocks(
        '<div>Jane Doe<br><img src="cid:logo" width="120" height="30"><br>ACME GmbH<br><br>Tel. 1</div>'
        '<p>Vor<br><br><img src="cid:logo" width="120" height="30"></p><br><p>Nach</p>',
        resolve=lambda src: ("key-1", 120, 30),
    )
    shown = [block.text if isinstance(block, Paragraph) else type(block).__name__ for block in found]
    assert shown == ["Jane Doe", "Image", "ACME GmbH\n\nTel. 1", "Vor\n", "Image", "Gap", "", "Nach"]
