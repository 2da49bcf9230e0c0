"""An article's ``text/html`` body on the page: our own layout, rolled back to text on failure.

The body goes through :func:`app.render.html.prepare_tree` (quotes marked, sanitised,
normalised, images resolved to normalised attachments), :func:`app.render.html_blocks.body_blocks`
and :func:`app.render.html_layout.draw_blocks`. fpdf2's ``write_html`` is not used for any
construct: everything the sanitiser lets through is drawn by our layout (what it draws
differently from a browser is listed in :mod:`app.render.html_layout`). When anything raises
half-way, whatever was drawn (content, pages, links) is cut back (:class:`_Rollback`) and the
body is drawn as clean text (:func:`app.render.html.html_to_text`) instead, so an odd e-mail
never fails a job (``docs/reference/rendering.md`` §4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.render.document import TicketPdf
from app.render.html import ImageLabeler, ImageResolver, html_to_text, prepare_trees
from app.render.html_blocks import Block, body_blocks
from app.render.html_layout import draw_blocks
from app.render.images import ArticleImages


class _Rollback:
    """What is needed to undo a half-drawn body: page, content length, links, state.

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


class PreparedBody:
    """An HTML body made ready to draw before its turn (:func:`prepare_html_bodies`).

    Attributes:
        blocks: its blocks (:func:`app.render.html_blocks.body_blocks`), or ``None`` when the
            pipeline raised: the body is then drawn as text.
    """

    __slots__ = ("blocks",)

    def __init__(self, blocks: list[Block] | None) -> None:
        self.blocks = blocks


def prepare_html_body(
    pdf: TicketPdf, html: str, article_id: int, images: ArticleImages | None
) -> PreparedBody:
    """One HTML body made ready to draw: :func:`prepare_html_bodies` of it alone."""
    return prepare_html_bodies(pdf, [(html, article_id)], images)[0]


def prepare_html_bodies(
    pdf: TicketPdf, bodies: Sequence[tuple[str, int]], images: ArticleImages | None
) -> list[PreparedBody]:
    """HTML bodies, each ``(body, article id)``, sanitised, parsed, normalised and turned into
    blocks, not yet drawn; in order.

    The renderer prepares the bodies of a run of articles together before drawing them
    (:func:`app.render.sections.draw_articles`), step by step (:func:`app.render.html.prepare_trees`,
    then the blocks walk for all): nh3, libxml2 and the walk then run back to back with their
    caches warm, not once between every two articles' drawing (``make bench`` render row
    "Zammad mix, 20 articles: HTML / plain twin, render CPU"). Images the bodies reference
    are resolved now (:attr:`TicketPdf.html_images`), their text made drawable
    (:meth:`TicketPdf.clean`, missing glyphs counted now). Never raises: a body whose
    pipeline failed is kept as such for :func:`write_html_body`, which draws it as text.

    Args:
        pdf: the document the bodies will be drawn on.
        bodies: each article's body as Zammad stores it and the article's id (0 if unknown).
        images: the ticket's prepared images, or ``None``.
    """

    def resolver(article_id: int) -> ImageResolver:
        def resolve(src: str) -> tuple[str, int, int] | None:
            if images is None or not pdf.template.images:
                return None
            found = images.resolve(article_id, src)
            if found is None:
                return None
            key, image = found
            pdf.html_images[key] = image
            return key, image.width, image.height

        return resolve

    def labeler(article_id: int) -> ImageLabeler:
        def label(src: str) -> str:
            return images.label(article_id, src) if images is not None else (src[:80] or "image")

        return label

    try:
        trees: list[Any] = prepare_trees(
            [(html, resolver(article_id), labeler(article_id)) for html, article_id in bodies],
            max_width=pdf.epw,
            max_height=pdf.max_image_height(),
            image_text=pdf.tr.gettext("[image: {name}]"),
            no_source=pdf.tr.gettext("no source"),
            clean=pdf.clean,
        )
    except Exception:  # noqa: BLE001 - the pipeline itself cannot start → every body as text, no failed job
        trees = [None] * len(bodies)
    prepared = []
    for tree in trees:
        blocks: list[Block] | None = None
        if tree is not None and not isinstance(tree, Exception):
            try:
                blocks = body_blocks(tree)
            except Exception:  # noqa: BLE001 - e.g. RecursionError on a deep body → text, no failed job
                blocks = None
        prepared.append(PreparedBody(blocks))
    return prepared


def write_html_body(
    pdf: TicketPdf,
    html: str,
    article_id: int,
    images: ArticleImages | None,
    prepared: PreparedBody | None = None,
) -> None:
    """Draw an HTML body from ``pdf.y`` through the sanitising pipeline and our layout.

    On any failure the partial output is rolled back first, so nothing is drawn twice, and
    the body appears as inscriptis text through :meth:`TicketPdf.write_lines`. Images the
    body references are drawn when ``images`` resolves them (and the template shows images),
    else named by :meth:`ArticleImages.label`.

    Args:
        pdf: the document; the body's text is made drawable here (:meth:`TicketPdf.clean`).
        html: the article's body as Zammad stores it.
        article_id: the article's id (0 if unknown), for resolving ``cid:`` and attachment URLs.
        images: the ticket's prepared images, or ``None``.
        prepared: this body from :func:`prepare_html_bodies` on the same document, or ``None``
            to prepare it now.
    """
    if prepared is None:
        prepared = prepare_html_body(pdf, html, article_id, images)
    blocks = prepared.blocks
    if blocks is None:
        _draw_as_text(pdf, html)
        return
    rollback: _Rollback | None = None
    try:
        pdf.set_x(pdf.l_margin)
        rollback = _Rollback(pdf)
        draw_blocks(pdf, blocks)
    except Exception:  # noqa: BLE001 - an e-mail the layout cannot take → text, no failed job
        if rollback is not None:
            rollback.restore(pdf)
        _draw_as_text(pdf, html)
    finally:
        if rollback is not None:
            pdf.release_pages()


def _draw_as_text(pdf: TicketPdf, html: str) -> None:
    """The body as inscriptis text (:func:`app.render.html.html_to_text`), after fpdf2's state is reset."""
    pdf.after_fpdf_text()
    pdf.write_lines(pdf.clean(html_to_text(html)), pdf.template.body)
