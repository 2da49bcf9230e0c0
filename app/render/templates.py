"""Layout templates: small descriptions of what a ticket PDF shows and how dense it is.

A template is data, not code: the renderer (:mod:`app.render.pdf`) reads it. ``default``
shows everything; ``compact`` sets the same content smaller, with article fields on one
wrapped line, for long tickets; ``minimal`` keeps the ticket's metadata and the article
bodies (each article still says who wrote it, when, and whether it is internal).
"""

from __future__ import annotations

from dataclasses import dataclass

BLACK = (0, 0, 0)
GREY = (96, 96, 96)
INTERNAL_RED = (176, 32, 32)


@dataclass(frozen=True, slots=True)
class TextStyle:
    """A font style, size (pt), colour and line advance (pt) for one kind of text."""

    style: str
    size: float
    leading: float
    color: tuple[int, int, int] = BLACK


@dataclass(frozen=True, slots=True)
class Template:
    """What the PDF shows and how densely.

    Attributes:
        name: the ``PDF_TEMPLATE`` value.
        body, quote, note: article body text, quoted lines (``>``) and notes like "(no text)".
        field_label, field_value: the label/value columns of ticket and article fields.
        heading: the article heading band ("Article 3 of 12 · time", Internal/Public).
        label_width: width of the label column, in points.
        ticket_fields: ``"full"`` (all ticket fields and custom attributes) or ``"core"``
            (number, title, state, customer, group, created, tags).
        article_fields: ``"table"`` (one field a line), ``"inline"`` (one wrapped line) or
            ``"none"`` (the heading only).
        attachments: list each article's attachments.
        images: draw inline images and image-attachment previews (else placeholders name them).
        html: lay ``text/html`` bodies out as HTML (:mod:`app.render.html_layout`; else as
            converted text).
        article_gap: space before each article, in points.
    """

    name: str
    body: TextStyle
    quote: TextStyle
    note: TextStyle
    field_label: TextStyle
    field_value: TextStyle
    heading: TextStyle
    label_width: float
    ticket_fields: str
    article_fields: str
    attachments: bool
    images: bool
    html: bool
    article_gap: float

    @property
    def internal_mark(self) -> TextStyle:
        """The "Internal" mark: the heading style in red."""
        return TextStyle(self.heading.style, self.heading.size, self.heading.leading, INTERNAL_RED)


TEMPLATES: dict[str, Template] = {
    "default": Template(
        name="default",
        body=TextStyle("", 9.5, 12.6),
        quote=TextStyle("", 9.5, 12.6, GREY),
        note=TextStyle("I", 9.0, 12.0, GREY),
        field_label=TextStyle("B", 8.5, 11.5, GREY),
        field_value=TextStyle("", 8.5, 11.5),
        heading=TextStyle("B", 10.0, 13.0),
        label_width=78.0,
        ticket_fields="full",
        article_fields="table",
        attachments=True,
        images=True,
        html=True,
        article_gap=6.0,
    ),
    "compact": Template(
        name="compact",
        body=TextStyle("", 8.0, 10.0),
        quote=TextStyle("", 8.0, 10.0, GREY),
        note=TextStyle("I", 7.5, 9.5, GREY),
        field_label=TextStyle("B", 7.5, 9.5, GREY),
        field_value=TextStyle("", 7.5, 9.5),
        heading=TextStyle("B", 8.5, 11.0),
        label_width=70.0,
        ticket_fields="full",
        article_fields="inline",
        attachments=True,
        images=True,
        html=True,
        article_gap=3.0,
    ),
    "minimal": Template(
        name="minimal",
        body=TextStyle("", 9.5, 12.6),
        quote=TextStyle("", 9.5, 12.6, GREY),
        note=TextStyle("I", 9.0, 12.0, GREY),
        field_label=TextStyle("B", 8.5, 11.5, GREY),
        field_value=TextStyle("", 8.5, 11.5),
        heading=TextStyle("B", 9.5, 12.5),
        label_width=78.0,
        ticket_fields="core",
        article_fields="none",
        attachments=False,
        images=False,
        html=False,
        article_gap=6.0,
    ),
}
