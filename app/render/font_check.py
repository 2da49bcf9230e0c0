"""The service's font check at start: which scripts the fonts cover, logged once.

The check itself runs in a render process (:meth:`ProcessPoolRenderer.font_coverage`, which
calls :func:`app.render.coverage.check_fonts`), so the main process never loads a font.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from app.errors import RenderError
from app.render.coverage import FontCoverage
from app.render.pool import ProcessPoolRenderer

log = logging.getLogger("app")

__all__ = ["log_font_coverage"]


async def log_font_coverage(
    renderer: ProcessPoolRenderer, font_dirs: Sequence[str], *, strict: bool
) -> FontCoverage:
    """Check once, in a render process, which scripts the fonts cover, and log the result: one
    ``warning`` line naming the scripts without a font and the Debian packages to install, or
    one ``info`` line when every checked script is covered.

    Args:
        renderer: the service's render pool.
        font_dirs: ``PDF_FONT_DIRS`` as the renderer reads them (named in the log line).
        strict: ``STRICT_FONTS`` (named in the log line).

    Raises:
        RenderError: the render process died (logged too; ``/healthz?deep=true`` says so).
    """
    try:
        coverage = await renderer.font_coverage()
    except RenderError as exc:
        log.error("font check failed", extra={"error": str(exc)})
        raise
    fields = {"font_dirs": list(font_dirs), "strict_fonts": strict}
    if coverage.missing:
        log.warning(
            "fonts missing for some scripts: their characters become [U+XXXX] placeholders"
            + (" and fail the job (STRICT_FONTS=true)" if strict else ""),
            extra={
                "scripts": [script for script, _ in coverage.missing],
                "packages": list(coverage.packages),
                "missing": coverage.describe(),
                **fields,
            },
        )
    else:
        log.info("fonts cover every checked script", extra={"scripts": list(coverage.covered), **fields})
    return coverage
