"""How a ticket is laid out: the few choices the renderer takes from settings."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.i18n import LANGUAGES, language_for_group
from app.render.glyphs import DEFAULT_FONT_DIRS
from app.render.templates import TEMPLATES as _TEMPLATE_TABLE

#: Templates :func:`app.render.pdf.render_ticket_pdf` knows.
TEMPLATES = tuple(_TEMPLATE_TABLE)

#: What happens when a ticket has more than ``max_articles`` articles.
LIMIT_MODES = ("fail", "cap_and_continue")


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Layout options, built once from settings and passed to every render.

    Plain data, so it crosses a ``ProcessPoolExecutor`` boundary (picklable).

    Attributes:
        template: layout name, one of :data:`TEMPLATES`.
        timezone: IANA zone name (``"Europe/Berlin"``) used for every time shown in the PDF;
            times are printed with their UTC offset, e.g. ``2025-03-03 09:12:44 +01:00``.
        service_name: written as the PDF author and creator and in the page footer.
        max_articles: most articles a PDF holds; 0 means no limit.
        limit_mode: ``"fail"`` (a ticket over the limit is a permanent render error) or
            ``"cap_and_continue"`` (the oldest ``max_articles`` are rendered, by ``created_at``
            then ``id``: :func:`app.render.content.kept_positions`; page 1 says so).
        font_dirs: directories searched (recursively) for fallback fonts: Arabic, Hebrew,
            CJK, emoji, symbols. Scripts without a font become visible placeholders.
        pdfa: write PDF/A-3B (ISO 19005-3, fpdf2's ``enforce_compliance="PDFA_3B"``): XMP
            with ``pdfaid``, the sRGB output intent, embedded fonts only, no encryption.
            Off, the same layout is written as plain PDF 1.7 with an Info dictionary.
        strict_fonts: a character no font can draw fails the render (a permanent
            :class:`~app.errors.RenderError` naming the script, package and font file) instead
            of becoming a visible placeholder; unassigned, private-use and control characters
            stay placeholders (no font package draws them).
        language: the archive's language (:data:`app.i18n.LANGUAGES`): labels, headings,
            dates, the PDF's ``/Lang`` and XMP ``dc:language``.
        language_by_group: ``(Zammad group name, language)`` pairs that override
            ``language`` for tickets of that group (:meth:`language_of`).

    Raises:
        ValueError: on an unknown template, time zone, language or limit mode, or a negative
            limit (the message names the field).
    """

    template: str = "default"
    timezone: str = "UTC"
    service_name: str = "zammad-pdf-archiver"
    max_articles: int = 0
    limit_mode: str = "fail"
    font_dirs: tuple[str, ...] = DEFAULT_FONT_DIRS
    pdfa: bool = True
    strict_fonts: bool = False
    language: str = "en"
    language_by_group: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(
                f"template: unknown template {self.template!r}, use one of {', '.join(TEMPLATES)}"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"timezone: unknown time zone {self.timezone!r}, use an IANA name such as 'Europe/Berlin'"
            ) from exc
        if self.max_articles < 0:
            raise ValueError("max_articles: must be 0 (unlimited) or more")
        if self.limit_mode not in LIMIT_MODES:
            raise ValueError(
                f"limit_mode: unknown mode {self.limit_mode!r}, use one of {', '.join(LIMIT_MODES)}"
            )
        object.__setattr__(self, "font_dirs", tuple(self.font_dirs))
        object.__setattr__(self, "language_by_group", tuple(tuple(p) for p in self.language_by_group))
        for language in (self.language, *(language for _, language in self.language_by_group)):
            if language not in LANGUAGES:
                raise ValueError(
                    f"language: unknown language {language!r}, use one of {', '.join(LANGUAGES)}"
                )

    def language_of(self, group: str) -> str:
        """The language of a ticket in Zammad group ``group`` (its name, ``""`` when unknown)."""
        return language_for_group(group, self.language, self.language_by_group)
