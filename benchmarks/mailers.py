"""How the e-mail clients of the benchmark mix write one message as HTML, and its plain-text twin.

A :class:`Message` is the visible content of one article (greeting, paragraphs, a list, an
order table, a newsletter layout, an inline image, closing, signature, the quoted previous
message). Each writer turns it into the markup one client produces (``docs/reference/
zammad.md`` §4 for Zammad's inline-image URLs; ``tests/render/email_corpus.py`` for the
markup samples the render tests use):

* :func:`outlook` — Outlook for Windows (Word's HTML: ``p.MsoNormal``, ``<o:p>``, a ``<style>``
  head and conditional comments, ``MsoTableGrid`` tables, ``li.MsoListParagraph``, the
  ``border-top`` reply header) and, with ``web=True``, Outlook on the web (``<div>``s in inline
  styles, the ``<hr>`` + ``div#divRplyFwdMsg`` reply header);
* :func:`gmail` — ``<div dir="ltr">``, ``div.gmail_quote`` with ``blockquote.gmail_quote``,
  ``gmail_signature``, the ``---------- Forwarded message ---------`` header;
* :func:`apple_mail` — ``-webkit-`` body styles, ``<blockquote type="cite">``,
  ``Apple-interchange-newline``;
* :func:`thunderbird` — ``div.moz-cite-prefix`` + ``<blockquote type="cite">``, a plain-text
  original quoted as ``<pre class="moz-quote-pre">``, ``div.moz-signature``;
* :func:`zammad_note` — Zammad's own editor (notes, phone articles in HTML): ``<div>`` lines, a
  mention link;
* :func:`plain` — the same words as ``text/plain`` (list items after ``-``/``1.``, table
  cells separated by two spaces, the quote unprefixed): the twin of equal text volume.

Every visible word of a message appears exactly once in each writer's output, in the same
order (:func:`visible_words` gives them); what a writer adds besides is markup, style and
invisible attributes only (image ``alt`` texts are left empty, so a drawn image adds no word).
"""

# ruff: noqa: E501 - the markup keeps the mailers' long lines: breaking them would change it

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

__all__ = [
    "InlineImage",
    "Message",
    "Newsletter",
    "Quote",
    "apple_mail",
    "gmail",
    "outlook",
    "plain",
    "thunderbird",
    "visible_words",
    "zammad_note",
]


@dataclass(frozen=True)
class InlineImage:
    """An image in the body: ``src`` is ``cid:…`` or Zammad's attachment URL."""

    src: str
    width: int
    height: int


@dataclass(frozen=True)
class Quote:
    """The quoted previous message: its reply-header lines and its paragraphs (``plain_original``:
    it was a ``text/plain`` message, which Thunderbird quotes in a ``<pre>``)."""

    header: tuple[str, ...]
    paragraphs: tuple[str, ...]
    plain_original: bool = False


@dataclass(frozen=True)
class Newsletter:
    """A shop's HTML mail (nested layout tables): a menu of adjacent link cells, a heading, an
    order table, paragraphs and a footer line."""

    menu: tuple[str, ...]
    heading: str
    rows: tuple[tuple[str, ...], ...]
    paragraphs: tuple[str, ...]
    footer: str


@dataclass(frozen=True)
class Message:
    """The visible content of one article, in drawing order: greeting, paragraphs, list,
    table (first row the header), newsletter (forwarded, after ``forward_header``), image,
    closing, signature lines, quote."""

    greeting: str
    paragraphs: tuple[str, ...]
    closing: str = ""
    signature: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    ordered: bool = False
    table: tuple[tuple[str, ...], ...] = ()
    image: InlineImage | None = None
    logo: InlineImage | None = None
    quote: Quote | None = None
    forward_header: tuple[str, ...] = ()
    newsletter: Newsletter | None = None
    links: dict[str, str] = field(default_factory=dict)
    """Signature lines shown as links: line → URL (the line is the link text)."""


def visible_words(message: Message) -> list[str]:
    """The words a reader sees, in order (list markers and the signature dashes not counted)."""
    parts: list[str] = [message.greeting, *message.paragraphs, *message.items]
    parts += [cell for row in message.table for cell in row]
    parts += message.forward_header
    if message.newsletter is not None:
        letter = message.newsletter
        parts += [*letter.menu, letter.heading, *(c for r in letter.rows for c in r), *letter.paragraphs]
        parts.append(letter.footer)
    parts += [message.closing, *message.signature]
    if message.quote is not None:
        parts += [*message.quote.header, *message.quote.paragraphs]
    return " ".join(parts).split()


def _e(text: str) -> str:
    return escape(text, quote=False)


def _link(line: str, links: dict[str, str]) -> str:
    url = links.get(line)
    return f'<a href="{escape(url)}">{_e(line)}</a>' if url else _e(line)


def _img(image: InlineImage, style: str = "") -> str:
    return (
        f'<img src="{escape(image.src)}" width="{image.width}" height="{image.height}"'
        + (f' style="{style}"' if style else "")
        + ' alt="">'
    )


# -- Outlook ----------------------------------------------------------------------------------

_OUTLOOK_HEAD = """<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" \
xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" \
xmlns="http://www.w3.org/TR/REC-html40"><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">\
<meta name="Generator" content="Microsoft Word 15 (filtered medium)"><!--[if !mso]><style>v\\:* {behavior:url(#default#VML);}
o\\:* {behavior:url(#default#VML);}
</style><![endif]--><style><!--
/* Font Definitions */
@font-face {font-family:"Cambria Math"; panose-1:2 4 5 3 5 4 6 3 2 4;}
@font-face {font-family:Calibri; panose-1:2 15 5 2 2 2 4 3 2 4;}
/* Style Definitions */
p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt; font-family:"Calibri",sans-serif; \
mso-fareast-language:EN-US;}
a:link, span.MsoHyperlink {mso-style-priority:99; color:#0563C1; text-decoration:underline;}
p.MsoListParagraph, li.MsoListParagraph {mso-style-priority:34; margin-top:0cm; margin-right:0cm; \
margin-bottom:0cm; margin-left:36.0pt; font-size:11.0pt; font-family:"Calibri",sans-serif;}
span.E-MailFormatvorlage18 {mso-style-type:personal-reply; font-family:"Calibri",sans-serif; color:windowtext;}
.MsoChpDefault {mso-style-type:export-only; font-size:10.0pt; mso-ligatures:none;}
@page WordSection1 {size:612.0pt 792.0pt; margin:70.85pt 70.85pt 2.0cm 70.85pt;}
div.WordSection1 {page:WordSection1;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--><!--[if gte mso 9]><xml>
<o:shapelayout v:ext="edit">
<o:idmap v:ext="edit" data="1" />
</o:shapelayout></xml><![endif]--></head>
<body lang="DE" link="#0563C1" vlink="#954F72" style="word-wrap:break-word"><div class="WordSection1">
"""


def _mso(text: str) -> str:
    return f'<p class="MsoNormal">{text}<o:p></o:p></p>\n'


_MSO_EMPTY = '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'


def _outlook_table(rows: tuple[tuple[str, ...], ...]) -> str:
    out = [
        '<table class="MsoTableGrid" border="1" cellspacing="0" cellpadding="0" '
        'style="border-collapse:collapse;border:none">\n'
    ]
    for index, row in enumerate(rows):
        out.append('<tr style="height:14.2pt">')
        for cell in row:
            text = f"<b>{_e(cell)}</b>" if index == 0 else _e(cell)
            out.append(
                '<td width="151" valign="top" style="width:113.3pt;border:solid windowtext 1.0pt;'
                'padding:0cm 5.4pt 0cm 5.4pt">' + _mso(text) + "</td>"
            )
        out.append("</tr>\n")
    out.append("</table>\n")
    return "".join(out)


def _outlook_desktop(m: Message) -> str:
    out = [_OUTLOOK_HEAD, _mso(_e(m.greeting)), _MSO_EMPTY]
    for paragraph in m.paragraphs:
        out += [_mso(_e(paragraph)), _MSO_EMPTY]
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f'<{tag} style="margin-top:0cm" type="{"1" if m.ordered else "disc"}">\n')
        for item in m.items:
            out.append(
                '<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">'
                f"{_e(item)}<o:p></o:p></li>\n"
            )
        out.append(f"</{tag}>\n" + _MSO_EMPTY)
    if m.table:
        out += [_outlook_table(m.table), _MSO_EMPTY]
    if m.image:
        out += [
            _mso(
                f'<span style="mso-ligatures:none"><img width="{m.image.width}" height="{m.image.height}" '
                f'style="width:{m.image.width * 0.75:.1f}pt;height:{m.image.height * 0.75:.1f}pt" '
                f'id="Grafik_x0020_1" src="{escape(m.image.src)}" alt=""></span>'
            ),
            _MSO_EMPTY,
        ]
    out.append(_mso(_e(m.closing)))
    for line in m.signature:
        style = "font-size:9.0pt;color:#1F497D" if line != m.signature[0] else "color:#1F497D"
        out.append(_mso(f'<span style="{style};mso-ligatures:none">{_link(line, m.links)}</span>'))
    if m.logo:
        out.append(_mso(f'<span style="mso-ligatures:none">{_img(m.logo)}</span>'))
    if m.quote:
        out.append(_MSO_EMPTY)
        header = "<br>\n".join(
            f"<b>{_e(k)}:</b> {_e(v)}" for k, v in (line.split(": ", 1) for line in m.quote.header)
        )
        out.append(
            '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
            f'<p class="MsoNormal"><b><span lang="DE"></span></b>{header}<o:p></o:p></p></div>\n' + _MSO_EMPTY
        )
        for paragraph in m.quote.paragraphs:
            out += [_mso(_e(paragraph)), _MSO_EMPTY]
    out.append("</div>\n</body>\n</html>\n")
    return "".join(out)


def _outlook_web(m: Message) -> str:
    style = "font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);"
    div = f'<div class="elementToProof" style="{style}">'
    out = [div + _e(m.greeting) + "</div>\n", div + "<br></div>\n"]
    for paragraph in m.paragraphs:
        out += [div + _e(paragraph) + "</div>\n", div + "<br></div>\n"]
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f'<{tag} data-editing-info="{{&quot;orderedStyleType&quot;:1}}">')
        out += [f'<li style="{style}"><div role="presentation">{_e(i)}</div></li>' for i in m.items]
        out.append(f"</{tag}>\n")
    if m.table:
        out.append(_outlook_table(m.table))
    if m.image:
        out.append(div + _img(m.image, "max-width: 100%;") + "</div>\n")
    out.append(div + _e(m.closing) + "</div>\n")
    for line in m.signature:
        out.append(f'<div style="{style}">{_link(line, m.links)}</div>\n')
    if m.quote:
        out.append(
            '<div id="appendonsend"></div>\n<hr style="display:inline-block;width:98%" tabindex="-1">\n'
        )
        header = "<br>\n".join(
            f"<b>{_e(k)}:</b> {_e(v)}" for k, v in (line.split(": ", 1) for line in m.quote.header)
        )
        out.append(
            '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" '
            f'color="#000000">{header}</font>\n<div>&nbsp;</div>\n</div>\n'
        )
        out.append('<div lang="de-DE">\n<div class="x_WordSection1">\n')
        for paragraph in m.quote.paragraphs:
            out.append(f'<p class="x_MsoNormal">{_e(paragraph)}</p>\n<p class="x_MsoNormal">&nbsp;</p>\n')
        out.append("</div>\n</div>\n")
    return "".join(out)


def outlook(m: Message, *, web: bool = False) -> str:
    """The message as Outlook for Windows writes it (or Outlook on the web with ``web``)."""
    return _outlook_web(m) if web else _outlook_desktop(m)


# -- Gmail ------------------------------------------------------------------------------------


def _gmail_table(rows: tuple[tuple[str, ...], ...]) -> str:
    out = ['<table border="1" cellpadding="0" cellspacing="0" style="border-collapse:collapse"><tbody>']
    for index, row in enumerate(rows):
        out.append("<tr>")
        for cell in row:
            text = f"<b>{_e(cell)}</b>" if index == 0 else _e(cell)
            out.append(f'<td style="padding:2px 6px;border:1px solid rgb(0,0,0)">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _newsletter(letter: Newsletter) -> str:
    """A shop's order confirmation: 600 px layout tables, a menu of adjacent link cells (only
    whitespace between the cells), an order table, a footer."""
    menu = "\n".join(
        f'<td align="center" style="padding:8px 12px"><a href="https://shop.example/{i}" '
        f'style="color:#ffffff;text-decoration:none;font-size:13px">{_e(word)}</a></td>'
        for i, word in enumerate(letter.menu)
    )
    rows = "".join(
        "<tr>"
        + "".join(
            '<td style="padding:6px;border-bottom:1px solid #dddddd;font-size:14px">'
            + (f"<strong>{_e(c)}</strong>" if index == 0 else _e(c))
            + "</td>"
            for c in row
        )
        + "</tr>"
        for index, row in enumerate(letter.rows)
    )
    paragraphs = "".join(
        f'<p style="margin:0 0 12px 0;font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:20px">'
        f"{_e(p)}</p>"
        for p in letter.paragraphs
    )
    return (
        '<table width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#eeeeee" '
        'style="background-color:#eeeeee"><tbody><tr><td align="center" valign="top">'
        '<table width="600" cellpadding="0" cellspacing="0" border="0" style="width:600px;background:#ffffff">'
        f'<tbody><tr><td bgcolor="#1a5276"><table cellpadding="0" cellspacing="0" border="0"><tbody><tr>\n{menu}\n'
        "</tr></tbody></table></td></tr>"
        f'<tr><td style="padding:24px"><h1 style="font-family:Arial,Helvetica,sans-serif;font-size:22px;'
        f'color:#1a5276;margin:0 0 16px 0">{_e(letter.heading)}</h1>'
        f'<table width="100%" cellpadding="0" cellspacing="0" border="0"><tbody>{rows}</tbody></table>'
        f'<div style="height:16px;line-height:16px">&nbsp;</div>{paragraphs}</td></tr>'
        f'<tr><td align="center" style="padding:12px;font-size:11px;color:#888888">{_e(letter.footer)}</td></tr>'
        "</tbody></table></td></tr></tbody></table>"
    )


def gmail(m: Message) -> str:
    """The message as Gmail writes it (``<div dir="ltr">``, ``gmail_quote``, ``gmail_signature``)."""
    out = [f'<div dir="ltr"><div>{_e(m.greeting)}</div><div><br></div>']
    for paragraph in m.paragraphs:
        out.append(f"<div>{_e(paragraph)}</div><div><br></div>")
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f"<{tag}>" + "".join(f'<li style="margin-left:15px">{_e(i)}</li>' for i in m.items))
        out.append(f"</{tag}>")
    if m.table:
        out.append(f"<div>{_gmail_table(m.table)}</div><div><br></div>")
    if m.image:
        out.append(f"<div>{_img(m.image)}<br></div><div><br></div>")
    if m.forward_header:
        out.append('<div class="gmail_quote"><div dir="ltr" class="gmail_attr">')
        out.append("<br>".join(_e(line) for line in m.forward_header) + "<br></div><br><br>")
        assert m.newsletter is not None
        out.append(_newsletter(m.newsletter) + "</div>")
    out.append(f"<div>{_e(m.closing)}</div>")
    if m.signature:
        out.append(
            '<span class="gmail_signature_prefix">-- </span><br><div dir="ltr" class="gmail_signature" '
            'data-smartmail="gmail_signature"><div dir="ltr">'
            + "".join(f"<div>{_link(line, m.links)}</div>" for line in m.signature)
            + "</div></div>"
        )
    out.append("</div>")
    if m.quote:
        out.append(
            '<br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">'
            + "<br>".join(_e(line) for line in m.quote.header)
            + '<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
            'border-left:1px solid rgb(204,204,204);padding-left:1ex"><div dir="ltr">'
            + "".join(f"<div>{_e(p)}</div><div><br></div>" for p in m.quote.paragraphs)
            + "</div></blockquote></div>"
        )
    return "".join(out)


# -- Apple Mail -------------------------------------------------------------------------------


def apple_mail(m: Message) -> str:
    """The message as Apple Mail writes it (``-webkit-`` styles, ``<blockquote type="cite">``)."""
    out = [
        '<html aria-label="message body"><head><meta http-equiv="content-type" content="text/html; '
        'charset=utf-8"></head><body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; '
        f'line-break: after-white-space;">{_e(m.greeting)}<div><br></div>'
    ]
    for paragraph in m.paragraphs:
        out.append(f"<div>{_e(paragraph)}</div><div><br></div>")
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f'<{tag} class="MailOutline">' + "".join(f"<li>{_e(i)}</li>" for i in m.items))
        out.append(f"</{tag}><div><br></div>")
    if m.table:
        out.append(_gmail_table(m.table) + "<div><br></div>")
    if m.image:
        out.append(f"<div>{_img(m.image, 'max-width: 100%;')}</div><div><br></div>")
    out.append(f"<div>{_e(m.closing)}</div><div><br></div>")
    webkit = (
        "caret-color: rgb(0, 0, 0); color: rgb(0, 0, 0); letter-spacing: normal; text-align: start; "
        "text-indent: 0px; text-transform: none; white-space: normal; word-spacing: 0px; "
        "-webkit-text-stroke-width: 0px; text-decoration: none;"
    )
    out.append(
        f'<div><div dir="auto" style="{webkit}">'
        + "".join(f"<div>{_link(line, m.links)}</div>" for line in m.signature)
        + "</div></div>"
    )
    if m.quote:
        out.append(
            '<div><br><blockquote type="cite"><div>'
            + _e(" ".join(m.quote.header))
            + '</div><br class="Apple-interchange-newline"><div><div>'
            + "".join(f"<div>{_e(p)}</div><div><br></div>" for p in m.quote.paragraphs)
            + "</div></div></blockquote></div><br>"
        )
    out.append("</body></html>")
    return "".join(out)


# -- Thunderbird ------------------------------------------------------------------------------


def thunderbird(m: Message) -> str:
    """The message as Thunderbird writes it (``moz-cite-prefix``, ``moz-quote-pre``, ``moz-signature``)."""
    out = [
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta http-equiv="Content-Type" content="text/html; '
        'charset=UTF-8">\n  </head>\n  <body>\n'
        f"    <p>{_e(m.greeting)}</p>\n"
    ]
    for paragraph in m.paragraphs:
        out.append(f"    <p>{_e(paragraph)}</p>\n")
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f"    <{tag}>\n" + "".join(f"      <li>{_e(i)}</li>\n" for i in m.items))
        out.append(f"    </{tag}>\n")
    if m.table:
        rows = "".join("<tr>" + "".join(f"<td>{_e(c)}<br></td>" for c in row) + "</tr>\n" for row in m.table)
        out.append(
            f'    <table width="100%" border="1" cellspacing="2" cellpadding="2">\n<tbody>{rows}</tbody></table>\n'
        )
    if m.image:
        out.append(f"    <p>{_img(m.image)}</p>\n")
    out.append(f"    <p>{_e(m.closing)}</p>\n")
    if m.signature:
        out.append(
            '    <div class="moz-signature">-- <br>\n'
            + "<br>\n".join(_link(line, m.links) for line in m.signature)
            + "</div>\n"
        )
    if m.quote:
        out.append('    <div class="moz-cite-prefix">' + _e(" ".join(m.quote.header)) + "<br>\n    </div>\n")
        out.append(
            '    <blockquote type="cite" cite="mid:3f9c2a71-5b4e-4d2a-9e1f-0c7d8b6a5e43@example.com">\n'
        )
        if m.quote.plain_original:
            out.append(
                '      <pre class="moz-quote-pre" wrap="">'
                + "\n\n".join(_e(p) for p in m.quote.paragraphs)
                + "\n</pre>\n"
            )
        else:
            out.append("".join(f"      <p>{_e(p)}</p>\n" for p in m.quote.paragraphs))
        out.append("    </blockquote>\n")
    out.append("  </body>\n</html>\n")
    return "".join(out)


# -- Zammad's editor, and plain text ----------------------------------------------------------


def zammad_note(m: Message, mention: str = "", mention_id: int = 5) -> str:
    """A note or phone article as Zammad's editor writes it: ``<div>`` lines, a list, and
    ``mention`` (a word of the first paragraph's end) as a user mention link."""
    out = [f"<div>{_e(m.greeting)}</div>"]
    for paragraph in m.paragraphs:
        text = _e(paragraph)
        if mention and text.endswith(_e(mention)):
            text = (
                text[: -len(_e(mention))]
                + f'<a data-mention-user-id="{mention_id}" href="#user/profile/{mention_id}">{_e(mention)}</a>'
            )
        out.append(f"<div>{text}</div><div><br></div>")
    if m.items:
        tag = "ol" if m.ordered else "ul"
        out.append(f"<{tag}>" + "".join(f"<li>{_e(i)}</li>" for i in m.items) + f"</{tag}>")
    if m.closing:
        out.append(f"<div>{_e(m.closing)}</div>")
    out += [f"<div>{_e(line)}</div>" for line in m.signature]
    return "".join(out)


def plain(m: Message) -> str:
    """The same words as ``text/plain``: paragraphs between blank lines, list items after
    ``-`` or ``1.``, table rows one per line (cells two spaces apart), the quote unprefixed."""
    blocks = [m.greeting, *m.paragraphs]
    if m.items:
        blocks.append(
            "\n".join(f"{n}. {i}" if m.ordered else f"- {i}" for n, i in enumerate(m.items, start=1))
        )
    if m.table:
        blocks.append("\n".join("  ".join(row) for row in m.table))
    if m.forward_header:
        blocks.append("\n".join(m.forward_header))
    if m.newsletter is not None:
        letter = m.newsletter
        blocks += [
            "  ".join(letter.menu),
            letter.heading,
            "\n".join("  ".join(row) for row in letter.rows),
            *letter.paragraphs,
            letter.footer,
        ]
    blocks.append(m.closing)
    if m.signature:
        blocks.append("\n".join(m.signature))
    if m.quote:
        blocks.append("\n".join(m.quote.header))
        blocks += m.quote.paragraphs
    return "\n\n".join(b for b in blocks if b) + "\n"
