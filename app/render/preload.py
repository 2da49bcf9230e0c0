"""Warm render caches once in the render pool's fork server, so every render process starts warm.

:class:`app.render.pool.ProcessPoolRenderer` uses the ``forkserver`` start method and names
this module as a fork server preload: the fork server imports it once, and every render
process (a new one every ``MAX_TASKS_PER_CHILD`` renders) is forked from it with the
modules imported and the per-process caches already filled:

* the render modules themselves (fpdf2, fontTools, HarfBuzz bindings: ~0.3 s to import);
* the main fonts parsed (:mod:`app.render.fontcache`, :mod:`app.render.glyphs`);
* the font output of each main face for tier 1 and for tiers 1 + 2
  (:mod:`app.render.fontsubset`), which every document drawing only those characters
  reuses: ~0.1 s of fontTools subsetting per face and tier otherwise.

Without it each new render process spends ~0.7 s of CPU before its first PDF. Then the
heap is frozen out of the garbage collector (``gc.freeze``): the caches are long-lived,
and the children inherit them copy-on-write.

Importing this module does the warm-up (:func:`warm`); a failure is swallowed, since the
fork server must start regardless: a render process then fills its caches itself.
"""

from __future__ import annotations

import gc
from datetime import datetime, timezone

from app.render.glyphs import MAIN_FAMILY, STYLES, font_set
from app.render.options import RenderOptions
from app.render.pdf import PAGE_FOOTER, _TicketPdf, render_ticket_pdf
from app.render.fontsubset import ArchiveOutputProducer
from app.render.templates import TEMPLATES, TextStyle
from app.workflow.ports import EmbeddedFile

#: Text drawn in every main style: tier 1 only, then with a tier 2 character.
WARM_TEXTS = ("Warm-up", "Warm-up \u00e4")

_WARM_AT = datetime(2025, 1, 1, tzinfo=timezone.utc)


def warm(options: RenderOptions | None = None) -> None:
    """Fill this process's render caches: one small ticket, then each main face in each tier.

    Args:
        options: the render options (font directories) to warm for; defaults otherwise.

    Raises:
        RenderError: the warm-up ticket failed to render (fonts missing, for instance).
    """
    options = options or RenderOptions()
    article = {"id": 1, "from": "a@example.com", "to": "b@example.com", "subject": "Warm-up", "type": "email",
               "sender": "Customer", "internal": False, "content_type": "text/plain",
               "created_at": "2025-01-01T00:00:00Z", "body": "Warm-up", "attachments": []}
    render_ticket_pdf({"number": "1", "title": "Warm-up"}, [article], ["warm"], archived_at=_WARM_AT,
                      options=options, embedded=(EmbeddedFile("warm.txt", b"warm", "text/plain", "Source", "warm"),))
    fonts = font_set(options.font_dirs)
    template = TEMPLATES[options.template]
    for text in WARM_TEXTS:
        pdf = _TicketPdf(fonts, template, pdfa=options.pdfa)
        pdf.add_page()
        for style in STYLES:
            pdf.draw_line(pdf.l_margin, pdf.y, text, TextStyle(style, PAGE_FOOTER.size, PAGE_FOOTER.leading))
            pdf.y += PAGE_FOOTER.leading
        pdf.output(output_producer_class=ArchiveOutputProducer)
    assert all(f"{MAIN_FAMILY.lower()}{style}" in pdf.fonts for style in STYLES)


def _preload() -> None:
    try:
        warm()
    except Exception:  # noqa: BLE001 - the fork server must start; renders then warm themselves
        return
    gc.collect()
    gc.freeze()


_preload()
