"""Which images the layout gets: downloaded from Zammad before rendering, within caps.

Zammad's inline images are relative, authenticated attachment URLs (``docs/reference/zammad.md``
§4) that no PDF engine can fetch: the run downloads them with the API token and hands the bytes
to the layout. An image that is not fetched is drawn as a placeholder with its file name; the
note and the sidecar list it with the cause (:class:`~app.workflow.ports.ImagePlaceholder`).

A signed archive is not degraded by a passing fault: a download that may heal (Zammad 5xx,
408/425/429, a refused API token, maintenance mode, a timeout, a connection error:
:func:`app.workflow.classify.classify`; or a length other than Zammad's declared size) fails the
run Transient and the job is retried like any other fetch failure (``dead`` when it persists,
then queued again by the reconciliation sweep, a new job each time). It is never stuck for good
either: once the ticket has been failing to archive for ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS``
(:class:`~app.jobs.records.FailingStreak`: since its first failing job, across retries and sweeps),
the job's last attempt gives up on the image (:attr:`~app.workflow.originals.Attempt.gives_up`):
a placeholder, classification ``Transient``, whose cause says how long and over how many
attempts it failed and that it was given up on after the waiting time; the archive is made and
signed. The originals follow the same rule (:mod:`app.workflow.originals`). A refusal for good
(403/404/422: the file is gone or not in that article), an image over a size cap or one the
layout cannot decode is a placeholder at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.workflow.classify import Classification, classify
from app.workflow.originals import ONLY_ATTEMPT, Attempt, DownloadFailed
from app.workflow.ports import FETCH_CONCURRENCY, ImagePlaceholder, ImageRefLike, ZammadPort
from app.workflow.tasks import reaped

log = logging.getLogger("app.workflow")

IMAGE_MAX_BYTES = 10 * 1024 * 1024
"""Largest image downloaded for the layout, in bytes."""
IMAGES_TOTAL_MAX_BYTES = 50 * 1024 * 1024
"""Most image bytes one ticket's layout downloads."""

TOO_LARGE = "image_too_large"
"""The :attr:`~app.workflow.ports.ImagePlaceholder.code` of an image over a size cap."""


@dataclass(frozen=True, slots=True)
class LayoutImages:
    """What :func:`fetch_images` got.

    Attributes:
        images: attachment id → bytes, as downloaded.
        placeholders: the images left out, in the order of the refs, each with its cause.
    """

    images: dict[int, bytes]
    placeholders: tuple[ImagePlaceholder, ...] = ()


async def fetch_images(
    zammad: ZammadPort,
    refs: Sequence[ImageRefLike],
    *,
    log_context: dict[str, Any],
    redact: Callable[[str], str] = lambda s: s,
    limit: asyncio.Semaphore | None = None,
    attempt: Attempt = ONLY_ATTEMPT,
) -> LayoutImages:
    """Download the images ``refs``, at most :data:`~app.workflow.ports.FETCH_CONCURRENCY` at a
    time, or as many as ``limit`` (a bound shared with the caller's other downloads) lets.

    An image is left out, logged (with ``log_context`` and the ``redact``-ed cause) and listed
    in :attr:`LayoutImages.placeholders` (the layout draws a placeholder) when Zammad refuses
    it for good (a failure :func:`~app.workflow.classify.classify` calls Permanent: 403, 404,
    422, a defect), when it is larger than :data:`IMAGE_MAX_BYTES` (or would pass
    :data:`IMAGES_TOTAL_MAX_BYTES`), or when its length is not the size Zammad declares for it
    (the ref's ``size``, when it has one), and when its download failed in a way that may heal
    (Transient) and ``attempt`` gives up on it (:attr:`~app.workflow.originals.Attempt.gives_up`:
    the job's last attempt, once the ticket has been failing for ``WORKFLOW_DOWNLOAD_GIVE_UP_HOURS``;
    the cause is :meth:`~app.workflow.originals.Attempt.omission`).

    Raises:
        ZammadApiError: (or whatever the download raised) a download failed in a way that may
            heal (Transient) and ``attempt`` does not give up: the run fails Transient and is
            retried; the other downloads still running are cancelled first.
        DownloadFailed: an image's length is not the size Zammad declares (a cut connection's
            half file) and ``attempt`` does not give up (Transient).
    """
    if not refs:
        return LayoutImages({})
    semaphore = limit if limit is not None else asyncio.Semaphore(FETCH_CONCURRENCY)
    images: dict[int, bytes] = {}
    left_out: dict[int, ImagePlaceholder] = {}
    total = 0

    def placeholder(ref: ImageRefLike, kind: Classification, code: str, cause: str, **extra: Any) -> None:
        name = ref.filename or f"image-{ref.attachment_id}"
        log.warning(
            "image too large to embed" if code == TOO_LARGE else "image not fetched",
            extra={
                **log_context,
                "attachment_id": ref.attachment_id,
                "image": name,
                "classification": kind.value,
                "code": code,
                "cause": cause,
                **extra,
            },
        )
        left_out[ref.attachment_id] = ImagePlaceholder(
            name, ref.article_id, ref.attachment_id, kind.value, code, cause
        )

    async def fetch(ref: ImageRefLike) -> None:
        nonlocal total
        async with semaphore:
            try:
                data = await zammad.get_attachment(ref.ticket_id, ref.article_id, ref.attachment_id)
            except Exception as exc:
                failure = classify(exc)
                if failure.transient and not attempt.gives_up:
                    raise  # may heal: the run is retried, no placeholder in a signed archive
                cause = redact(failure.cause)
                placeholder(
                    ref,
                    failure.classification,
                    failure.code,
                    attempt.omission(cause) if failure.transient else cause,
                )
                return
        declared = getattr(ref, "size", None)
        if declared is not None and len(data) != declared:
            cause = f"got {len(data)} bytes, Zammad declares {declared}"
            if not attempt.gives_up:
                raise DownloadFailed(f"download of image {ref.filename or ref.attachment_id} failed: {cause}")
            placeholder(ref, Classification.TRANSIENT, DownloadFailed.code, attempt.omission(cause))
            return
        if len(data) > IMAGE_MAX_BYTES:
            cause = f"larger than {IMAGE_MAX_BYTES} bytes, the layout's limit per image"
            placeholder(ref, Classification.PERMANENT, TOO_LARGE, cause, size=len(data))
            return
        if total + len(data) > IMAGES_TOTAL_MAX_BYTES:
            cause = f"over {IMAGES_TOTAL_MAX_BYTES} image bytes for the ticket, the layout's limit"
            placeholder(ref, Classification.PERMANENT, TOO_LARGE, cause, size=len(data))
            return
        total += len(data)
        images[ref.attachment_id] = data

    tasks = [asyncio.ensure_future(fetch(ref)) for ref in refs]
    async with reaped(*tasks):  # the first failure ends the wait: the others are of no use now
        await asyncio.gather(*tasks)
    order = {ref.attachment_id: index for index, ref in enumerate(refs)}
    return LayoutImages(images, tuple(sorted(left_out.values(), key=lambda p: order[p.attachment_id])))
