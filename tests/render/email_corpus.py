"""Realistic e-mail bodies for the HTML pipeline: each with words that must appear in the PDF.

``CORPUS`` maps a name to ``(body, content_type, sampled visible words)``. The bodies copy
the markup of real mailers (Outlook/MSO, Gmail, Apple Mail, Thunderbird, newsletters) and the
inputs that break fpdf2's ``write_html`` (``rendering.md`` §4.2).
"""

# ruff: noqa: E501 - the bodies keep real mailers' long lines: breaking them would change the markup

from __future__ import annotations

import base64
import io

from PIL import Image


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


PNG_RED = _png((200, 30, 30))
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG_RED).decode()

OUTLOOK = """<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv=Content-Type content="text/html; charset=utf-8">
<style><!-- @font-face {font-family:Calibri;} p.MsoNormal {margin:0cm; font-size:11.0pt;} --></style><!--[if gte mso 9]><xml><o:shapedefaults v:ext="edit" spidmax="1026" /></xml><![endif]--></head>
<body lang=DE link="#0563C1" vlink="#954F72"><div class=WordSection1><p class=MsoNormal>Hallo Herr Berger,<o:p></o:p></p>
<p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>anbei die <b>Lieferscheine</b> f&uuml;r KW&nbsp;12.<o:p></o:p></p>
<p class=MsoNormal><span style='font-family:"Calibri",sans-serif;color:#1F497D'>Viele Gr&uuml;&szlig;e<o:p></o:p></span></p>
<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'><p class=MsoNormal><b>Von:</b> Lager Nord &lt;lager@example.com&gt;<br><b>Gesendet:</b> Montag, 3. März 2025 08:12</p></div>
<p class=MsoNormal>Bitte Lieferscheine schicken.</p></div></body></html>"""

GMAIL = """<div dir="ltr">Hi team,<div><br></div><div>the <b>export job</b> failed again tonight.</div><div>Log attached.</div></div><br>
<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Mar 3, 2025 at 9:12 AM Ops &lt;ops@example.com&gt; wrote:<br></div>
<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">
<div dir="ltr">Did the nightly export run?</div></blockquote></div>"""

NEWSLETTER = """<table width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#eeeeee"><tr><td align="center">
<table width="600px" cellpadding="3px" style="background:#fff"><tr><td><h1 style="font-size:24px">Quarterly Update</h1>
<table><tr><td>Revenue</td><td><b>12.4</b> Mio</td></tr><tr><td>Customers</td><td>3.210</td></tr></table>
<p>Read the <a href="https://news.example.com/q1">full report</a>.</p></td></tr></table></td></tr></table>"""


def _big_body() -> str:
    paragraphs = [
        f"<p>Absatz {i}: Lieferkette Rechnungsprüfung Zahlungsziel wort{i:05d} und weitere Details.</p>"
        for i in range(2800)
    ]
    return "<div>" + "".join(paragraphs) + "</div>"


CORPUS: dict[str, tuple[str, str, list[str]]] = {
    "plain-div": ("<div>Einfacher Text in einem div.</div>", "text/html", ["Einfacher", "div."]),
    "outlook-mso": (OUTLOOK, "text/html", ["Lieferscheine", "KW", "Grüße", "Gesendet:", "schicken."]),
    "gmail-quote": (GMAIL, "text/html", ["export", "failed", "tonight.", "nightly", "wrote:"]),
    "apple-mail": (
        """<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body style="word-wrap: break-word; -webkit-nbsp-mode: space;">Danke für die schnelle Antwort.<div><br><blockquote type="cite"><div>Am 03.03.2025 um 10:00 schrieb Support:</div><br><div><div>Das Update ist installiert.</div></div></blockquote></div><br></body></html>""",
        "text/html",
        ["schnelle", "schrieb", "installiert."],
    ),
    "thunderbird": (
        """<p>Ja, passt.</p><div class="moz-cite-prefix">Am 02.03.25 um 17:01 schrieb Kunde:<br></div><blockquote type="cite" cite="mid:abc@x"><p>Passt Dienstag?</p></blockquote>""",
        "text/html",
        ["passt.", "Dienstag?"],
    ),
    "outlook-divrplyfwdmsg": (
        """<div>Erledigt.</div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Einkauf<br><b>Sent:</b> Monday</font><div>&nbsp;</div></div><div>Bitte Bestellung 4711 stornieren.</div>""",
        "text/html",
        ["Erledigt.", "Einkauf", "stornieren."],
    ),
    "original-message": (
        """<p>Siehe unten.</p><p>-----Original Message-----<br>From: a@b.example</p><p>Alte Nachricht hier.</p>""",
        "text/html",
        ["unten.", "Original", "Alte"],
    ),
    "nested-tables": (NEWSLETTER, "text/html", ["Quarterly", "Revenue", "Customers", "report"]),
    "table-in-td": (
        "<table><tr><td>Aussen<table><tr><td>Innen</td></tr></table></td><td>Zweite</td></tr></table>",
        "text/html",
        ["Aussen", "Innen", "Zweite"],
    ),
    "mixed-inline-in-td": (
        "<table><tr><td>Preis <b>fett</b> und <i>kursiv</i></td><td><p>Block</p><p>zwei</p></td></tr></table>",
        "text/html",
        ["Preis", "fett", "kursiv", "Block", "zwei"],
    ),
    "tr-outside-table": (
        "<tr><td>Verwaiste Zeile</td></tr><p>Danach Text</p>",
        "text/html",
        ["Verwaiste", "Danach"],
    ),
    "font-face-calibri": (
        '<font face="Calibri, sans-serif" size="2" color="#1F497D">Schrift Calibri</font>',
        "text/html",
        ["Schrift", "Calibri"],
    ),
    "ol-type-z": (
        '<ol type="Z"><li>Erster Punkt</li><li>Zweiter Punkt</li></ol>',
        "text/html",
        ["Erster", "Zweiter"],
    ),
    "a-name-no-href": ('<a name="top">Anker ohne Ziel</a><p>Weiter</p>', "text/html", ["Anker", "Weiter"]),
    "bad-numbers": (
        '<table cellpadding="3px" width="600px"><tr><td colspan="abc" width="50%">Zelle A</td><td rowspan="x">Zelle B</td></tr></table><img width="100%" src="https://x.example/a.png">',
        "text/html",
        ["Zelle", "B"],
    ),
    "bad-color": (
        '<font color="notacolor">Farbe kaputt</font><p style="color: #zzz">Style kaputt</p>',
        "text/html",
        ["Farbe", "Style"],
    ),
    "tall-cell": (
        "<table><tr><td>" + "Riesenzelle " * 4000 + "</td><td>klein</td></tr></table>",
        "text/html",
        ["Riesenzelle", "klein"],
    ),
    "script-style": (
        "<style>p{color:red}</style><script>alert('x')</script><p>Sichtbarer Inhalt</p><noscript>nojs</noscript>",
        "text/html",
        ["Sichtbarer", "Inhalt"],
    ),
    "broken-tags": (
        "<p>Offen <b>fett <i>beides</p><div>kein Ende <span>span",
        "text/html",
        ["Offen", "fett", "beides", "Ende", "span"],
    ),
    "unclosed-table": ("<table><tr><td>Eins<td>Zwei<tr><td>Drei", "text/html", ["Eins", "Zwei", "Drei"]),
    "entities": (
        "<p>&lt;tag&gt; &amp; &quot;Zitat&quot; &euro; 5 &copy; &#8212; &#x263A;</p>",
        "text/html",
        ["<tag>", "&", "Zitat", "€"],
    ),
    "inline-styles": (
        '<div style="font-family:Arial;font-size:14px;color:#333;background:#fff;padding:10px;border:1px solid #ccc">Gestylter Block<span style="font-weight:bold"> mit Span</span></div>',
        "text/html",
        ["Gestylter", "Span"],
    ),
    "headings": (
        "<h1>Überschrift Eins</h1><h2>Zwei</h2><h6>Sechs</h6><p>Text</p>",
        "text/html",
        ["Überschrift", "Zwei", "Sechs"],
    ),
    "links": (
        '<p>Siehe <a href="https://example.com/docs">Dokumentation</a> und <a href="mailto:a@example.com">Mail</a> und <a href="javascript:alert(1)">Böse</a>.</p>',
        "text/html",
        ["Dokumentation", "https://example.com/docs", "Böse"],
    ),
    "lists": (
        "<ul><li>Apfel</li><li>Birne<ul><li>Nested</li></ul></li></ul><ol start='3'><li>Drei</li></ol><dl><dt>Begriff</dt><dd>Erklärung</dd></dl>",
        "text/html",
        ["Apfel", "Birne", "Nested", "Drei", "Begriff", "Erklärung"],
    ),
    "pre-code": (
        "<pre>def f(x):\n    return x * 2  # <b>bold</b></pre><p>Inline <code>var = 1</code></p>",
        "text/html",
        ["return", "bold", "var"],
    ),
    "deep-quotes": (
        "".join("<blockquote>" for _ in range(20))
        + "Ganz tief"
        + "".join("</blockquote>" for _ in range(20)),
        "text/html",
        ["Ganz", "tief"],
    ),
    "cid-image": (
        '<p>Screenshot:</p><img src="cid:image001.png@01DB8C3A.5A9E1F20"><p>Ende Screenshot</p>',
        "text/html",
        ["Screenshot:", "Ende"],
    ),
    "cid-unknown": (
        '<p>Bild fehlt:</p><img src="cid:unbekannt@x"><p>danach</p>',
        "text/html",
        ["fehlt:", "unbekannt@x", "danach"],
    ),
    "data-uri-image": (
        f'<p>Eingebettet:</p><img src="{DATA_URI}" alt="rot"><p>nach dem Bild</p>',
        "text/html",
        ["Eingebettet:", "Bild"],
    ),
    "broken-data-uri": (
        '<p>Kaputt:</p><img src="data:image/png;base64,!!!notbase64"><p>weiter gehts</p>',
        "text/html",
        ["Kaputt:", "gehts"],
    ),
    "remote-image": (
        '<p>Tracking</p><img src="https://tracker.example/pixel.gif" width="1" height="1"><p>Pixel blockiert</p>',
        "text/html",
        ["Tracking", "blockiert"],
    ),
    "file-path-image": (
        '<img src="/etc/passwd"><img src="file:///etc/hosts"><p>Kein Dateizugriff</p>',
        "text/html",
        ["Dateizugriff"],
    ),
    "img-in-table": (
        f'<table><tr><td><img src="{DATA_URI}"> Logo</td><td>Firma GmbH</td></tr></table>',
        "text/html",
        ["Logo", "Firma"],
    ),
    "sup-sub-u-s": (
        "<p>H<sub>2</sub>O und m<sup>2</sup>, <u>unter</u> <s>durch</s> <del>weg</del></p>",
        "text/html",
        ["H₂O", "m²", "unter", "durch", "weg"],
    ),
    "center-hr-br": (
        "<center>Zentriert</center><hr><p>Zeile1<br>Zeile2<br><br>Zeile3</p>",
        "text/html",
        ["Zentriert", "Zeile1", "Zeile2", "Zeile3"],
    ),
    "huge-body-200kb": (_big_body(), "text/html", ["wort00000", "wort01400", "wort02799", "Lieferkette"]),
    "single-line-50000": (
        "<p>" + "x" * 25000 + "MITTE" + "y" * 24995 + "</p><p>Danach normal</p>",
        "text/html",
        ["MITTE", "Danach"],
    ),
    "empty-html": ("<html><body></body></html>", "text/html", []),
    "only-whitespace": ("<p>&nbsp;</p>   <div> </div>", "text/html", []),
    "comment-and-cdata": (
        "<!-- versteckt --><p>Sichtbar trotz Kommentar</p><![CDATA[ cdata ]]>",
        "text/html",
        ["Sichtbar", "Kommentar"],
    ),
    "rtl-dir": (
        '<div dir="rtl">مرحبا بكم</div><div dir="ltr">Links nach rechts</div>',
        "text/html",
        ["مرحبا", "Links"],
    ),
    "cjk-emoji-html": ("<p>您好 世界</p><p>😀 Emoji im HTML</p>", "text/html", ["您好", "Emoji"]),
    "li-outside-list": ("<li>Einzelner Punkt</li><p>Rest</p>", "text/html", ["Einzelner", "Rest"]),
    "newsletter-menu-ru": (
        '<table width="100%" bgcolor="#f0f0f0"><tr><td><table><tr>'
        '<td><table><tr><td><a href="https://news.example.ru/profile">Профиль</a></td> '
        '<td><a href="https://news.example.ru/messages">Сообщения</a></td>'
        '<td><a href="https://news.example.ru/contacts">Контакты</a></td></tr></table></td>'
        "<td>Новости недели</td></tr></table></td></tr></table>"
        "<h2>Главное</h2><ul><li>Первый пункт</li><li>Второй пункт</li></ul>",
        "text/html",
        ["Профиль", "Сообщения", "Контакты", "Новости", "Главное", "Второй"],
    ),
    "plain-quoted-reply": (
        "Danke, erledigt.\n\n> Am Montag schrieb Kunde:\n> Bitte prüfen.\n>> Ältere Nachricht\n",
        "text/plain",
        ["erledigt.", "schrieb", "prüfen.", "Ältere"],
    ),
}
