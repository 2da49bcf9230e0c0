"""An article's ``text/html`` body on the page: fpdf2's ``write_html``, rolled back to text on failure.

The body goes through :func:`app.render.html.prepare_html` (sanitised, tables flattened,
images resolved to normalised attachments) and then ``write_html`` with resource access
switched off (:class:`app.render.document.TicketPdf`). ``write_html`` is not a browser: when
fpdf2 raises half-way, whatever it drew (content, pages, links, outline entries) is cut back
(:class:`_Rollback`) and the body is drawn as clean text (:func:`app.render.html.html_to_text`)
instead, so an odd e-mail never fails a job (``docs/reference/rendering.md`` §4.2–4.3).
"""

from __future__ import annotations

import io
from typing import Any

from fpdf.fonts import FontFace as FpdfFontFace
from fpdf.fonts import TextStyle as FpdfTextStyle

from app.render.document import TicketPdf
from app.render.glyphs import COMPLEX, MAIN_FAMILY, STYLES, FontFace
from app.render.html import html_to_text, prepare_html
from app.render.images import ArticleImages


class _Rollback:
    """What is needed to undo a half-rendered ``write_html``: page, content length, state.

    Holds the document's pages unparked from its creation on (pages finished from then on
    may be cut back); the caller releases them.
    """

    def __init__(self, pdf: TicketPdf) -> None:
        self.page = pdf.page
        contents = pdf.pages[pdf.page].contents
        assert isinstance(contents, bytearray)  # fpdf2 makes it a stream object only in output()
        self.length = len(contents)
        annots = pdf.pages[pdf.page].annots
        self.annots = len(annots) if annots is not None else 0
        self.y = pdf.y
        self.margins = (pdf.l_margin, pdf.r_margin)
        self.outline = len(pdf._outline) if hasattr(pdf, "_outline") else None
        pdf.hold_pages()

    def restore(self, pdf: TicketPdf) -> None:
        """Cut the document back to where it was when this rollback was made."""
        for number in [n for n in pdf.pages if n > self.page]:
            del pdf.pages[number]
        pdf.page = self.page
        contents = pdf.pages[self.page].contents
        assert isinstance(contents, bytearray)
        del contents[self.length :]
        annots = pdf.pages[self.page].annots
        if annots is not None:
            del annots[self.annots :]
        if self.outline is not None:
            del pdf._outline[self.outline :]
        pdf.l_margin, pdf.r_margin = self.margins
        pdf.set_xy(pdf.l_margin, self.y)
        pdf.in_footer = False


def _tag_styles(pdf: TicketPdf) -> dict[str, Any]:
    """``write_html``'s ``tag_styles``: links, quotes, ``pre``/``code`` in the mono font."""
    body = pdf.template.body
    mono = pdf.glyph_fonts.mono
    if mono is not None:
        for style in STYLES:  # one file serves every style: <pre><b> must not raise
            pdf.use_face(FontFace(mono.family, style, mono.path, mono.index))
    mono_family = mono.family if mono is not None else MAIN_FAMILY
    return {
        "a": FpdfFontFace(color="#1a4f8b", emphasis="UNDERLINE"),
        "blockquote": FpdfTextStyle(color="#5a5a5a", l_margin=10, t_margin=2, b_margin=2),
        "pre": FpdfTextStyle(font_family=mono_family, font_size_pt=body.size - 1, t_margin=2, b_margin=2),
        "code": FpdfFontFace(family=mono_family),
        "p": FpdfTextStyle(t_margin=0, b_margin=2),
        "li": FpdfTextStyle(l_margin=8, t_margin=1),
        "dt": FpdfTextStyle(font_style="B", t_margin=2),
    }


def write_html_body(pdf: TicketPdf, html: str, article_id: int, images: ArticleImages | None) -> None:
    """Draw an HTML body from ``pdf.y`` through the sanitising pipeline and ``write_html``.

    On any failure the partial output is rolled back first, so nothing is drawn twice, and
    the body appears as inscriptis text through :meth:`TicketPdf.write_lines`. Images the
    body references are drawn when ``images`` resolves them (and the template shows images),
    else named by :meth:`ArticleImages.label`.

    Args:
        pdf: the document; its text must be drawable (:meth:`TicketPdf.clean` is applied here).
        html: the article's body as Zammad stores it.
        article_id: the article's id (0 if unknown), for resolving ``cid:`` and attachment URLs.
        images: the ticket's prepared images, or ``None``.
    """
    body = pdf.template.body
    max_height = pdf.max_image_height()

    def resolve(src: str) -> tuple[str, int, int] | None:
        if images is None or not pdf.template.images:
            return None
        found = images.resolve(article_id, src)
        if found is None:
            return None
        key, image = found
        pdf.html_images[key] = image
        return key, image.width, image.height

    def label(src: str) -> str:
        return images.label(article_id, src) if images is not None else (src[:80] or "image")

    def image_map(key: str) -> io.BytesIO:
        image = pdf.html_images.get(key)
        if image is None:  # the normaliser only lets resolved keys through
            raise FileNotFoundError(key)
        return io.BytesIO(image.data)

    rollback: _Rollback | None = None
    try:
        prepared = pdf.clean(
            prepare_html(
                html,
                resolve=resolve,
                label=label,
                max_width=pdf.epw,
                max_height=max_height,
                image_text=pdf.tr.gettext("[image: {name}]"),
                no_source=pdf.tr.gettext("no source"),
            )
        )
        pdf.set_x(pdf.l_margin)
        rollback = _Rollback(pdf)
        pdf.use_fallbacks(prepared)
        pdf.set_text_shaping(bool(COMPLEX.search(prepared)))
        pdf.set_font(MAIN_FAMILY, "", body.size)
        pdf.set_text_color(*body.color)
        pdf.write_html(
            prepared,
            font_family=MAIN_FAMILY,
            tag_styles=_tag_styles(pdf),
            image_map=image_map,
            ul_bullet_char="•",
            li_prefix_color=(64, 64, 64),
            warn_on_tags_not_matching=False,
        )
        pdf.set_x(pdf.l_margin)
    except Exception:  # noqa: BLE001 - write_html is not a browser: any failure → text, no failed job
        if rollback is not None:
            rollback.restore(pdf)
        pdf.after_fpdf_text()
        pdf.write_lines(pdf.clean(html_to_text(html)), body)
    finally:
        pdf.after_fpdf_text()
        if rollback is not None:
            pdf.release_pages()
