"""How a ticket is laid out: the few choices the renderer takes from settings."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Templates :func:`app.render.pdf.render_ticket_pdf` knows.
TEMPLATES = ("default",)


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Layout options, built once from settings and passed to every render.

    Plain data, so it crosses a ``ProcessPoolExecutor`` boundary (picklable).

    Attributes:
        template: layout name, one of :data:`TEMPLATES`.
        timezone: IANA zone name (``"Europe/Berlin"``) used for every time shown in the PDF;
            times are printed with their UTC offset, e.g. ``2025-03-03 09:12:44 +01:00``.
        service_name: written as the PDF author and creator and in the page footer.

    Raises:
        ValueError: on an unknown template or time zone (the message names the field).
    """

    template: str = "default"
    timezone: str = "UTC"
    service_name: str = "zammad-pdf-archiver"

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"template: unknown template {self.template!r}, use one of {', '.join(TEMPLATES)}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}, use an IANA name such as 'Europe/Berlin'") from exc
