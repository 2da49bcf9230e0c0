"""Generated ticket content for the benchmarks: plain-text articles, and the realistic Zammad mix.

Shared by the render benchmark (article dicts handed to the layout) and the seeded simulator
(the same dicts served over ``/api/v1/ticket_articles/by_ticket``). Seeded, so every run lays
out the same words.

**Plain** (:func:`make_articles`): every article ``text/plain``, ~1,000 characters in paragraphs
of ~300, every fifth internal. The figures before 2026-12-07 (issue 20) are of these tickets.

**The realistic mix** (:func:`make_mixed_ticket`, "the Zammad mix" in ``docs/performance.md``):
tickets that look like Zammad's, where almost every e-mail article is ``text/html`` as the
mailers write it (:mod:`benchmarks.mailers`). A ticket of 20 articles repeats this pattern
(longer tickets cycle it; :data:`MIX_PATTERN`):

=================================  =======  =====  ==================================================
client / kind                      content  share  what its articles hold
=================================  =======  =====  ==================================================
Outlook for Windows (3) and on     html     5/20   ``MsoNormal`` paragraphs with ``<o:p>``, a
the web (2)                                        ``<style>`` head, an order table, a list, a
                                                   ``cid:`` screenshot and ``cid:`` logos, the
                                                   ``border-top`` / ``divRplyFwdMsg`` reply header
Gmail                              html     4/20   ``div dir=ltr``, ``gmail_quote``, a list, an order
                                                   table, an image by Zammad's attachment URL, a
                                                   forwarded shop mail (newsletter layout tables
                                                   with a menu of adjacent link cells)
Apple Mail                         html     3/20   ``-webkit-`` styles, ``blockquote type=cite``, a
                                                   photo (JPEG) by attachment URL, a list
Thunderbird                        html     3/20   ``moz-cite-prefix``, ``pre.moz-quote-pre`` (quoting
                                                   the plain e-mail), ``moz-signature``, a ``cid:``
                                                   image, lists
plain-text e-mail                  plain    1/20
phone                              plain 1  2/20   notes of a call; the HTML one in Zammad's editor
                                   html 1
note (internal)                    plain 1  2/20   the HTML one with a user mention link
                                   html 1
=================================  =======  =====  ==================================================

17 of 20 articles (85 %) are ``text/html``, 15 of the 16 e-mails. Every e-mail but the
ticket's first quotes the text of the e-mail before it (one level, so the volume does not
grow with the ticket) and ends with a signature (a link to the sender's web site among it).

Per 20 articles, 6 inline images, 205 KB: 3 PNG screenshots (640×360 px, 52.7 KB), 2 PNG
logos (180×50 px, 2.3 KB), 1 JPEG photo (800×600 px, 42.2 KB); 4 referenced by ``cid:``, 2
by Zammad's attachment URL ``/api/v1/ticket_attachment/{ticket}/{article}/{attachment}?view=inline``,
each listed in its article's ``attachments`` with ``Content-ID`` and ``Content-Disposition:
inline``. Every HTML e-mail also lists Zammad's ``message.html`` pseudo-attachment; the first
e-mail a PDF.

Text volume (:func:`visible_chars`, the visible words joined by single spaces):
:data:`MIX_VISIBLE_CHARS` = 1,078 characters per article on average in the 20-article ticket
(1,104 in the 5,000-article ticket, whose later cycles quote from their first e-mail on; the
plain tickets of :func:`make_articles`: 1,004). The HTML e-mail bodies are 3.2 KB of markup on
average (1.7–6.9 KB); the 20 articles are 71 KB of ``by_ticket`` JSON (plain: 29 KB), the
5,000-article ticket 18 MB (plain: 7.2 MB) with 1,500 images (51 MB).

**The plain twin** (:attr:`MixedTicket.plain`): the same articles with the same visible words,
as ``text/plain`` (:func:`benchmarks.mailers.plain`), and the same attachments but Zammad's
``message.html`` (which only HTML e-mails have): its images are drawn as attachment previews
under the text where the HTML draws them inline. The denominator of the render benchmark's
HTML / plain ratio: the same ticket, once as HTML and once as plain text.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import mailers
from benchmarks.mailers import InlineImage, Message, Newsletter, Quote

WORDS = [
    "Rechnung",
    "Position",
    "doppelt",
    "berechnet",
    "Gutschrift",
    "Kundin",
    "Mühlenbach",
    "Grüßen",
    "außerdem",
    "Prüfung",
    "bitte",
    "senden",
    "korrigierte",
    "Wartungspauschale",
    "Buchhaltung",
    "Ansprechpartner",
    "Zahlung",
    "zurückgestellt",
    "the",
    "invoice",
    "was",
    "charged",
    "twice",
    "please",
    "send",
    "a",
    "corrected",
    "credit",
    "note",
    "as",
    "soon",
    "as",
    "possible",
]
ARTICLE_CHARS = 1000
"""Characters of body text per generated article (paragraphs of about 300)."""


def make_articles(
    count: int, chars: int = ARTICLE_CHARS, seed: int = 4711, first_id: int = 1000
) -> list[dict]:
    """``count`` plain-text articles of about ``chars`` characters, in paragraphs of ~300.

    Ids run from ``first_id``; every fifth article is internal (the render benchmark's figures
    depend on this content: change it and old figures are no longer comparable). The dicts
    carry the keys the layout reads and Zammad's ``by_ticket`` answer has (``type``/``sender``
    names and ids).
    """
    rng = random.Random(seed)
    articles = []
    for index in range(count):
        paragraphs, length, current = [], 0, []
        while length < chars:
            word = rng.choice(WORDS)
            current.append(word)
            length += len(word) + 1
            if len(" ".join(current)) > 300:
                paragraphs.append(" ".join(current))
                current = []
        paragraphs.append(" ".join(current))
        articles.append(
            {
                "id": first_id + index,
                "from": "Katrin Vogelsang <k.vogelsang@example.com>",
                "to": "support@example.com",
                "subject": f"Message {index}",
                "type": "email",
                "type_id": 1,
                "sender": "Customer",
                "sender_id": 2,
                "internal": index % 5 == 0,
                "content_type": "text/plain",
                "created_at": f"2025-03-03T08:{index // 60 % 60:02d}:{index % 60:02d}Z",
                "body": "\n\n".join(paragraphs),
                "attachments": [],
            }
        )
    return articles


# -- the realistic mix ------------------------------------------------------------------------

MIX_ARTICLES = 20
"""Articles per ticket of the mix in the render and e2e benchmarks (one cycle of the pattern)."""

MIX_PATTERN: tuple[str, ...] = (
    "outlook",  # the ticket's first e-mail: order table, cid: screenshot, cid: logo, a PDF
    "phone",
    "gmail",  # list, image by attachment URL
    "note-html",
    "apple",  # photo by attachment URL
    "thunderbird",  # ordered list
    "outlook-web",
    "plain-email",
    "thunderbird",  # quotes the plain e-mail in pre.moz-quote-pre; cid: image
    "gmail",  # forwards a shop's order confirmation (newsletter layout tables)
    "outlook",  # list, cid: logo
    "phone-html",
    "apple",
    "gmail",  # order table
    "outlook",
    "note",
    "thunderbird",  # list
    "outlook-web",
    "apple",  # ordered list
    "gmail",
)
"""The kind of each article of a 20-article cycle (see the module docstring)."""

MIX_VISIBLE_CHARS = 1078
"""Mean visible characters per article of the mix (checked by the benchmark tests)."""

_MIX_WORDS = (
    *WORDS,
    "Lieferung",
    "Bestellung",
    "Auftragsbestätigung",
    "Kundennummer",
    "leider",
    "noch",
    "nicht",
    "angekommen",
    "Sendungsverfolgung",
    "zeigt",
    "seit",
    "Dienstag",
    "keinen",
    "Status",
    "können",
    "Sie",
    "das",
    "prüfen",
    "und",
    "mir",
    "Bescheid",
    "geben",
    "wir",
    "haben",
    "die",
    "Ware",
    "erneut",
    "versendet",
    "Ersatzteil",
    "Seriennummer",
    "Fehlermeldung",
    "Anmeldung",
    "Portal",
    "funktioniert",
    "wieder",
    "the",
    "delivery",
    "order",
    "tracking",
    "number",
    "shows",
    "no",
    "update",
    "since",
    "Tuesday",
    "could",
    "you",
    "check",
    "and",
    "let",
    "me",
    "know",
    "replacement",
    "part",
    "serial",
    "error",
    "message",
    "login",
    "works",
    "again",
    "thanks",
    "für",
    "Ihre",
    "Geduld",
)

_PEOPLE = (
    (
        "Katrin Vogelsang",
        "k.vogelsang@muehlenbach-logistik.example",
        "Einkauf",
        "Mühlenbach Logistik GmbH",
        "muehlenbach-logistik.example",
    ),
    (
        "Jonas Østergaard",
        "j.ostergaard@muehlenbach-logistik.example",
        "Buchhaltung",
        "Mühlenbach Logistik GmbH",
        "muehlenbach-logistik.example",
    ),
    (
        "Sabine Krüger",
        "s.krueger@kanzlei-krueger.example",
        "Büroleitung",
        "Kanzlei Krüger & Partner",
        "kanzlei-krueger.example",
    ),
    (
        "Marco Bianchi",
        "marco.bianchi@gmail.example",
        "Geschäftsführer",
        "Bianchi Feinkost",
        "bianchi-feinkost.example",
    ),
)
_AGENT = ("Tobias Reinhardt", "Kundenservice", "Nordlicht Software GmbH")
_SUBJECT = "Bestellung 2025-0117: Lieferung und Rechnung"
_SUPPORT = "Nordlicht Software Kundenservice <support@nordlicht-software.example>"
_WEEKDAYS_DE = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class MixedTicket:
    """One generated ticket of the realistic mix.

    Attributes:
        articles: the articles as ``by_ticket`` answers them (mostly ``text/html``).
        plain: the same articles and visible words as ``text/plain``, without attachments.
        images: attachment id → bytes of every image attachment (what the simulator serves and
            the workflow hands the renderer).
    """

    articles: list[dict]
    plain: list[dict]
    images: dict[int, bytes]


@functools.cache
def _image_bytes(kind: str) -> bytes:
    """A seeded stand-in image: ``screenshot`` (PNG, 640×360), ``logo`` (PNG, 180×50) or
    ``photo`` (JPEG, 800×600), with enough detail to compress like a real one."""
    from PIL import Image, ImageDraw

    rng = random.Random(kind)
    size = {"screenshot": (640, 360), "logo": (180, 50), "photo": (800, 600)}[kind]
    image = Image.new("RGB", size, (246, 247, 249))
    draw = ImageDraw.Draw(image)
    if kind == "photo":
        for y in range(size[1]):  # a sky-to-ground gradient with stripes of texture
            shade = 90 + y * 120 // size[1]
            draw.line([(0, y), (size[0], y)], fill=(shade, shade + 20 - y % 7, 200 - shade // 2))
        for _ in range(120):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            r = rng.randrange(4, 40)
            draw.ellipse(
                [x, y, x + r, y + r], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256))
            )
    else:
        draw.rectangle([0, 0, size[0], 28 if kind == "screenshot" else size[1]], fill=(26, 82, 118))
        for _ in range(400 if kind == "screenshot" else 12):  # text-like strokes, anti-aliased edges
            x, y = rng.randrange(8, size[0] - 60), rng.randrange(4, size[1] - 8)
            grey = rng.randrange(30, 160)
            draw.rectangle(
                [x, y, x + rng.randrange(8, 90), y + rng.randrange(3, 7)], fill=(grey, grey, grey + 20)
            )
        for _ in range(size[0] * size[1] // 40):  # sub-pixel rendering and JPEG-ish noise of real captures
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            image.putpixel(
                (x, y), (rng.randrange(180, 256), rng.randrange(180, 256), rng.randrange(180, 256))
            )
        if kind == "screenshot":
            draw.rectangle([180, 120, 460, 230], outline=(200, 30, 30), width=3, fill=(255, 240, 240))
    out = io.BytesIO()
    if kind == "photo":
        image.save(out, format="JPEG", quality=80)
    else:
        image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(_MIX_WORDS) for _ in range(words)]
    return chosen[0][:1].upper() + chosen[0][1:] + " " + " ".join(chosen[1:]) + "."


def _paragraph(rng: random.Random, chars: int) -> str:
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < chars:
        sentences.append(_sentence(rng, rng.randrange(6, 15)))
    return " ".join(sentences)


def _stamp(index: int) -> tuple[str, int, int]:
    """Zammad's ``created_at`` of article ``index`` (37 minutes apart from 2025-03-03 08:12),
    its weekday and the minutes since the start."""
    minutes = 8 * 60 + 12 + 37 * index
    day, rest = divmod(minutes, 24 * 60)
    return f"2025-03-{3 + day % 25:02d}T{rest // 60:02d}:{rest % 60:02d}:44.120Z", day % 7, rest


def _reply_header(kind: str, sender: tuple[str, ...], index: int, subject: str) -> tuple[str, ...]:
    """The reply header a client writes above the quoted previous message (``index``: that message's)."""
    _, weekday, minutes = _stamp(index)
    day = 3 + weekday
    hour, minute = divmod(minutes, 60)
    name, address = sender[0], sender[1]
    if kind == "outlook":
        return (
            f"Von: {name} <{address}>",
            f"Gesendet: {_WEEKDAYS_DE[weekday]}, {day}. März 2025 {hour:02d}:{minute:02d}",
            f"An: {_SUPPORT}",
            f"Betreff: AW: {subject}",
        )
    if kind == "outlook-web":
        return (
            f"From: {name} <{address}>",
            f"Sent: {_WEEKDAYS_EN[weekday]}, March {day}, 2025 {hour % 12 or 12}:{minute:02d} "
            f"{'AM' if hour < 12 else 'PM'}",
            f"To: {_SUPPORT}",
            f"Subject: RE: {subject}",
        )
    if kind == "gmail":
        return (
            f"On {_WEEKDAYS_EN[weekday][:3]}, Mar {day}, 2025 at {hour % 12 or 12}:{minute:02d} "
            f"{'AM' if hour < 12 else 'PM'} {name} <{address}> wrote:",
        )
    if kind == "apple":
        return (f"Am {day:02d}.03.2025 um {hour:02d}:{minute:02d} schrieb {name} <{address}>:",)
    return (f"Am {day:02d}.03.25 um {hour:02d}:{minute:02d} schrieb {name}:",)


def _order_table(rng: random.Random) -> tuple[tuple[str, ...], ...]:
    rows = [("Pos.", "Artikel", "Menge", "Preis")]
    for position in range(1, 5):
        rows.append(
            (
                str(position),
                f"{rng.choice(('Ersatzteil', 'Wartungspauschale', 'Lizenz', 'Servicepaket'))} "
                f"{rng.randrange(100, 999)}-{rng.choice('ABCDX')}",
                str(rng.randrange(1, 20)),
                f"{rng.randrange(10, 900)},{rng.randrange(0, 99):02d} €",
            )
        )
    return tuple(rows)


def _newsletter(rng: random.Random) -> Newsletter:
    return Newsletter(
        menu=("Profil", "Nachrichten", "Bestellungen", "Kontakte", "Hilfe"),
        heading="Ihre Bestellung ist unterwegs",
        rows=_order_table(rng),
        paragraphs=(_paragraph(rng, 180), _paragraph(rng, 120)),
        footer="Shop Beispiel GmbH · Musterstraße 1 · 12345 Musterstadt · Abmelden",
    )


def _attachment(attachment_id: int, filename: str, data_size: int, mime: str, cid: str = "") -> dict:
    preferences: dict[str, object] = {"Content-Type": f'{mime}; name="{filename}"', "Mime-Type": mime}
    if cid:
        preferences.update({"Content-ID": f"<{cid}>", "Content-Disposition": "inline"})
    return {"id": attachment_id, "filename": filename, "size": str(data_size), "preferences": preferences}


_WRITERS: dict[str, Callable[[Message], str]] = {
    "outlook": mailers.outlook,
    "outlook-web": lambda m: mailers.outlook(m, web=True),
    "gmail": mailers.gmail,
    "apple": mailers.apple_mail,
    "thunderbird": mailers.thunderbird,
}


_IMAGE_SIZES = {"screenshot": (640, 360), "logo": (180, 50), "photo": (800, 600)}


def _items(rng: random.Random) -> tuple[str, ...]:
    return tuple(_sentence(rng, rng.randrange(4, 9)) for _ in range(4))


def _forward_header(address: str) -> tuple[str, ...]:
    return (
        "---------- Forwarded message ---------",
        "Von: Shop Beispiel <bestellung@shop.example>",
        "Date: Mo., 3. März 2025 um 07:58 Uhr",
        "Subject: Ihre Bestellung ist unterwegs",
        f"To: <{address}>",
    )


class _MixBuilder:
    """Builds the articles of one mixed ticket in order (see :func:`make_mixed_ticket`)."""

    def __init__(
        self, ticket_id: int, first_id: int, first_attachment_id: int, seed: int, with_images: bool = True
    ) -> None:
        self.rng = random.Random(seed)
        self.with_images = with_images
        self.ticket_id, self.first_id, self.first_attachment_id = ticket_id, first_id, first_attachment_id
        self.images: dict[int, bytes] = {}
        self.previous: tuple[Message, tuple[str, ...], int, bool] | None = None
        """The last e-mail: its message, sender, index and whether it was plain text."""

    def article(self, index: int) -> tuple[dict, Message]:
        """Article ``index`` and its visible content."""
        kind = MIX_PATTERN[index % len(MIX_PATTERN)]
        created_at = _stamp(index)[0]
        common = {
            "id": self.first_id + index,
            "ticket_id": self.ticket_id,
            "created_at": created_at,
            "updated_at": created_at,
            "message_id": None,
            "in_reply_to": None,
            "references": None,
            "reply_to": None,
            "cc": None,
            "preferences": {},
        }
        if kind in ("phone", "phone-html", "note", "note-html"):
            return self._agent_article(index, kind, common)
        return self._email(index, kind, common)

    def _agent_article(self, index: int, kind: str, common: dict) -> tuple[dict, Message]:
        rng, phone = self.rng, kind.startswith("phone")
        message = Message(
            greeting=_sentence(rng, 5),
            paragraphs=(_paragraph(rng, 380), _paragraph(rng, 280)),
            items=tuple(_sentence(rng, rng.randrange(4, 8)) for _ in range(3)) if phone else (),
            signature=() if phone else (_AGENT[0],),
        )
        html = kind.endswith("-html")
        mention = message.paragraphs[0].split()[-1]
        person = _PEOPLE[index // len(MIX_PATTERN) % len(_PEOPLE)]
        article = {
            **common,
            "type": "phone" if phone else "note",
            "type_id": 5 if phone else 10,
            "sender": "Agent",
            "sender_id": 1,
            "from": _AGENT[0],
            "to": person[0] if phone else None,
            "subject": f"Telefonat: {_SUBJECT}" if phone else None,
            "internal": not phone,
            "content_type": "text/html" if html else "text/plain",
            "body": mailers.zammad_note(message, mention=mention) if html else mailers.plain(message),
            "attachments": [],
        }
        return article, message

    def _email(self, index: int, kind: str, common: dict) -> tuple[dict, Message]:
        rng, slot = self.rng, index % len(MIX_PATTERN)
        article_id = common["id"]
        person = _PEOPLE[3 if kind == "gmail" else index // len(MIX_PATTERN) % len(_PEOPLE)]
        attachments: list[dict] = []
        next_id = self.first_attachment_id + 8 * index

        def inline(image_kind: str, by_cid: bool, filename: str) -> InlineImage | None:
            nonlocal next_id
            if not self.with_images:
                return None
            data = _image_bytes(image_kind)
            mime = "image/jpeg" if image_kind == "photo" else "image/png"
            cid = f"{filename}@01DB8C3A.{article_id:08X}" if by_cid else f"ii_{article_id:x}{next_id:x}"
            attachments.append(_attachment(next_id, filename, len(data), mime, cid))
            self.images[next_id] = data
            url = f"/api/v1/ticket_attachment/{self.ticket_id}/{article_id}/{next_id}?view=inline"
            next_id += 1
            return InlineImage(f"cid:{cid}" if by_cid else url, *_IMAGE_SIZES[image_kind])

        fields: dict = {}
        if slot == 0:
            fields = {
                "table": _order_table(rng),
                "image": inline("screenshot", True, "image001.png"),
                "logo": inline("logo", True, "image002.png"),
            }
        elif slot == 2:
            fields = {"items": _items(rng), "image": inline("screenshot", False, "image.png")}
        elif slot == 4:
            fields = {"image": inline("photo", False, "IMG_4711.jpeg")}
        elif slot in (5, 18):
            fields = {"items": _items(rng), "ordered": True}
        elif slot == 8:
            fields = {"image": inline("screenshot", True, "Bildschirmfoto.png")}
        elif slot == 9:
            fields = {"forward_header": _forward_header(person[1]), "newsletter": _newsletter(rng)}
        elif slot == 10:
            fields = {"items": _items(rng), "logo": inline("logo", True, "image001.png")}
        elif slot == 16:
            fields = {"items": _items(rng)}
        elif slot == 13:
            fields = {"table": _order_table(rng)}
        quote = None
        if self.previous is not None:
            before, sender, before_index, before_plain = self.previous
            header_kind = kind if kind in ("outlook", "outlook-web", "gmail", "apple") else "thunderbird"
            quote = Quote(
                _reply_header(header_kind, sender, before_index, _SUBJECT),
                (before.greeting, *before.paragraphs, before.closing),
                plain_original=before_plain,
            )
        links = {f"www.{person[4]}": f"https://www.{person[4]}/"}
        extra = any(k in fields for k in ("items", "table", "newsletter"))
        message = Message(
            greeting=f"{rng.choice(('Hallo', 'Guten Tag', 'Hello', 'Hi'))} {_AGENT[0].split()[0]},",
            paragraphs=tuple(_paragraph(rng, 120 if extra else 170) for _ in range(2)),
            closing=rng.choice(("Viele Grüße", "Mit freundlichen Grüßen", "Best regards", "Danke und Gruß")),
            signature=(
                person[0],
                f"{person[2]} · {person[3]}",
                f"Tel. +49 5141 55 {rng.randrange(1000, 9999)}",
                *links,
            ),
            quote=quote,
            links=links,
            **fields,
        )
        is_plain = kind == "plain-email"
        body = mailers.plain(message) if is_plain else _WRITERS[kind](message)
        if slot == 0:
            attachments.append(_attachment(next_id, "Bestellung-2025-0117.pdf", 183764, "application/pdf"))
            next_id += 1
        if not is_plain:
            attachments.append(
                {
                    "id": next_id,
                    "filename": "message.html",
                    "size": str(len(body.encode())),
                    "preferences": {
                        "content-alternative": True,
                        "original-format": True,
                        "Mime-Type": "text/html",
                        "Charset": "UTF-8",
                    },
                }
            )
        article = {
            **common,
            "type": "email",
            "type_id": 1,
            "sender": "Customer",
            "sender_id": 2,
            "from": f"{person[0]} <{person[1]}>",
            "to": _SUPPORT,
            "subject": _SUBJECT if self.previous is None else f"AW: {_SUBJECT}",
            "internal": False,
            "content_type": "text/plain" if is_plain else "text/html",
            "body": body,
            "attachments": attachments,
        }
        self.previous = (message, person, index, is_plain)
        return article, message


def make_mixed_ticket(
    count: int = MIX_ARTICLES,
    *,
    ticket_id: int = 4711,
    first_id: int = 1000,
    first_attachment_id: int = 500_000,
    seed: int = 4711,
    images: bool = True,
) -> MixedTicket:
    """A ticket of ``count`` articles of the realistic mix (:data:`MIX_PATTERN`, cycled).

    Article ids run from ``first_id``; attachment ids from ``first_attachment_id``, 8 reserved
    per article (tickets whose ``first_attachment_id`` lie ``count * 8`` apart share none);
    image URLs name ``ticket_id``. The same ``seed`` gives the same words and markup whatever
    the ids. Without ``images`` the e-mails hold no ``<img>`` and list no image attachments
    (the text and every other attachment unchanged): the ``zammad-text`` mix of the memory row.
    """
    builder = _MixBuilder(ticket_id, first_id, first_attachment_id, seed, images)
    articles, plain = [], []
    for index in range(count):
        article, message = builder.article(index)
        articles.append(article)
        plain.append(
            {
                **article,
                "content_type": "text/plain",
                "body": mailers.plain(message),
                "attachments": [a for a in article["attachments"] if a["filename"] != "message.html"],
            }
        )
    return MixedTicket(articles, plain, builder.images)


def visible_chars(articles: list[dict]) -> float:
    """Mean characters per article of the visible words joined by single spaces (of the plain
    twin's bodies: list markers included, as the layout draws them)."""
    return sum(len(" ".join(a["body"].split())) for a in articles) / max(len(articles), 1)
