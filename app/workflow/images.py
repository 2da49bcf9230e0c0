"""Which images the layout gets: downloaded from Zammad before rendering, within caps.

Zammad's inline images are relative, authenticated attachment URLs (``docs/reference/zammad.md``
§4) that no PDF engine can fetch: the run downloads them with the API token and hands the bytes
to the layout. An image that is not fetched is drawn as a placeholder with its file name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from app.workflow.ports import FETCH_CONCURRENCY, ImageRefLike, ZammadPort

log = logging.getLogger("app.workflow")

IMAGE_MAX_BYTES = 10 * 1024 * 1024
"""Largest image downloaded for the layout, in bytes."""
IMAGES_TOTAL_MAX_BYTES = 50 * 1024 * 1024
"""Most image bytes one ticket's layout downloads."""


async def fetch_images(
    zammad: ZammadPort,
    refs: Sequence[ImageRefLike],
    *,
    log_context: dict[str, Any],
    redact: Callable[[str], str] = lambda s: s,
    limit: asyncio.Semaphore | None = None,
) -> dict[int, bytes]:
    """Download the images ``refs``, at most :data:`~app.workflow.ports.FETCH_CONCURRENCY` at a
    time, or as many as ``limit`` (a bound shared with the caller's other downloads) lets;
    returns attachment id → bytes.

    An image that fails to download, or whose length is not the size Zammad declares for it
    (the ref's ``size``, when it has one: a cut connection's half file), or is larger than
    :data:`IMAGE_MAX_BYTES` (or would pass :data:`IMAGES_TOTAL_MAX_BYTES`) is left out and
    logged (with ``log_context`` and the ``redact``-ed cause): the layout draws a placeholder.
    Never raises for a download.
    """
    if not refs:
        return {}
    semaphore = limit if limit is not None else asyncio.Semaphore(FETCH_CONCURRENCY)
    images: dict[int, bytes] = {}
    total = 0

    async def fetch(ref: ImageRefLike) -> None:
        nonlocal total
        async with semaphore:
            try:
                data = await zammad.get_attachment(ref.ticket_id, ref.article_id, ref.attachment_id)
            except Exception as exc:  # noqa: BLE001 - a missing image is a placeholder, not a failure
                log.warning(
                    "image not fetched",
                    extra={
                        **log_context,
                        "attachment_id": ref.attachment_id,
                        "image": ref.filename,
                        "cause": redact(str(exc)),
                    },
                )
                return
        declared = getattr(ref, "size", None)
        if declared is not None and len(data) != declared:
            log.warning(
                "image not fetched",
                extra={
                    **log_context,
                    "attachment_id": ref.attachment_id,
                    "image": ref.filename,
                    "cause": f"got {len(data)} bytes, Zammad declares {declared}",
                },
            )
            return
        if len(data) > IMAGE_MAX_BYTES or total + len(data) > IMAGES_TOTAL_MAX_BYTES:
            log.warning(
                "image too large to embed",
                extra={
                    **log_context,
                    "attachment_id": ref.attachment_id,
                    "image": ref.filename,
                    "size": len(data),
                },
            )
            return
        total += len(data)
        images[ref.attachment_id] = data

    await asyncio.gather(*(fetch(ref) for ref in refs))
    return images
