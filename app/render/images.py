"""Images in a ticket: which ones the workflow must fetch, and how fetched bytes become PDF images.

Zammad keeps inline images as article attachments with a ``Content-ID``; bodies reference
them as ``cid:…`` or, as the API rewrites them, ``/api/v1/ticket_attachment/T/A/ATT?view=inline``
(``docs/reference/zammad.md`` §4). :func:`image_references` lists them, and the image attachments shown as
previews, for the workflow to download; the renderer receives ``attachment id → bytes`` and
uses :class:`ArticleImages` to look sources up. Every image is normalised with Pillow to
sRGB (CMYK, 16-bit, palette and odd JPEGs included) before fpdf2 embeds it.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from math import ceil
from typing import Any
from urllib.parse import unquote

from app.workflow.ports import ImagePlaceholder
from app.zammad.attachments import declared_size

#: Content types shown as previews under their article.
PREVIEW_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

#: Largest side, in pixels, an embedded image keeps (larger ones are downscaled).
MAX_PIXELS_SIDE = 2000

#: Images with more pixels than this are refused before decoding (decompression bombs).
MAX_IMAGE_PIXELS = 60_000_000

_INLINE_URL = re.compile(r"/api/v1/ticket_attachment/(\d+)/(\d+)/(\d+)")
_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_MIME_PARAMS = re.compile(r";.*$", re.DOTALL)

UNDECODABLE = "image_undecodable"
"""The :attr:`~app.workflow.ports.ImagePlaceholder.code` of an image that was downloaded but
cannot be drawn (:class:`ImageError`: not an image, truncated, too many pixels)."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image the workflow should download for the layout.

    Attributes:
        attachment_id, article_id, ticket_id: the attachment's coordinates
            (``GET /api/v1/ticket_attachment/{ticket_id}/{article_id}/{attachment_id}``).
        filename: the attachment's file name (shown in the placeholder when it is missing).
        content_type: its MIME type without parameters, or ``""``.
        size: the bytes Zammad's article JSON declares for it (``size``, a string there), or
            ``None`` when unknown: a download of another length is a failed one.
    """

    attachment_id: int
    article_id: int
    ticket_id: int
    filename: str
    content_type: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image ready for fpdf2: sRGB (or grey) bytes and its pixel size.

    Attributes:
        data: JPEG (untouched when it already was a plain RGB/grey JPEG) or PNG bytes.
        width, height: size in pixels.
    """

    data: bytes
    width: int
    height: int


class ImageError(Exception):
    """Bytes that are no image Pillow can decode (or too large to decode safely)."""


def content_type_of(attachment: Mapping[str, Any]) -> str:
    """An attachment's MIME type from its preferences, lower-case, without parameters."""
    preferences = attachment.get("preferences") or {}
    if not isinstance(preferences, Mapping):
        return ""
    raw = str(preferences.get("Mime-Type") or preferences.get("Content-Type") or "")
    return _MIME_PARAMS.sub("", raw).strip().lower()


def content_id_of(attachment: Mapping[str, Any]) -> str:
    """An attachment's ``Content-ID`` without ``<>`` (``""`` when it has none)."""
    preferences = attachment.get("preferences") or {}
    if not isinstance(preferences, Mapping):
        return ""
    raw = (
        preferences.get("Content-ID") or preferences.get("content_id") or preferences.get("Content-Id") or ""
    )
    return str(raw).strip().strip("<>").strip()


def _attachments(article: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        a for a in article.get("attachments") or [] if isinstance(a, Mapping) and isinstance(a.get("id"), int)
    ]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def image_sources(body: str) -> list[str]:
    """Every ``<img src>`` value in an HTML body, in order, entity-decoded."""
    from html import unescape

    return [
        unescape(next(group for group in match.groups() if group is not None))
        for match in _IMG_SRC.finditer(body)
    ]


def image_references(ticket_id: int, articles: Iterable[dict[str, Any]]) -> list[ImageRef]:
    """What the workflow must download so the PDF shows every image it can.

    Inline images referenced by HTML bodies, as ``/api/v1/ticket_attachment/T/A/ATT`` URLs
    (any query) or ``cid:`` references matched to the article's attachments by
    ``Content-ID`` (with or without ``<>``), then image attachments
    (:data:`PREVIEW_TYPES`) for previews. Each attachment id appears once, first mention wins.
    """
    refs: dict[int, ImageRef] = {}
    for article in articles:
        if not isinstance(article, Mapping):
            continue
        article_id = _int(article.get("id")) or 0
        attachments = _attachments(article)
        by_id = {a["id"]: a for a in attachments}
        by_cid = {content_id_of(a): a for a in attachments if content_id_of(a)}
        body = article.get("body")
        if isinstance(body, str) and "text/html" in str(article.get("content_type") or "").lower():
            for src in image_sources(body):
                match = _INLINE_URL.search(src)
                if match:
                    t_id, a_id, att_id = (int(g) for g in match.groups())
                    known = by_id.get(att_id) or {}
                    refs.setdefault(
                        att_id,
                        ImageRef(
                            att_id,
                            a_id,
                            t_id,
                            str(known.get("filename") or f"image-{att_id}"),
                            content_type_of(known),
                            declared_size(known),
                        ),
                    )
                elif src[:4].lower() == "cid:":
                    found = by_cid.get(unquote(src[4:]).strip().strip("<>"))
                    if found is not None:
                        refs.setdefault(
                            found["id"],
                            ImageRef(
                                found["id"],
                                article_id,
                                ticket_id,
                                str(found.get("filename") or ""),
                                content_type_of(found),
                                declared_size(found),
                            ),
                        )
        for attachment in attachments:
            kind = content_type_of(attachment)
            if kind in PREVIEW_TYPES:
                refs.setdefault(
                    attachment["id"],
                    ImageRef(
                        attachment["id"],
                        article_id,
                        ticket_id,
                        str(attachment.get("filename") or ""),
                        kind,
                        declared_size(attachment),
                    ),
                )
    return list(refs.values())


def normalise_image(data: bytes) -> PreparedImage:
    """Decode ``data`` and re-encode it as an sRGB (or grey) image fpdf2 embeds faithfully.

    Plain RGB/greyscale baseline JPEGs pass unchanged, and so do PNGs whose image data the
    PDF can hold as it is (:func:`app.render.png_passthrough.png_raster_info`); everything
    else (CMYK or YCCK JPEGs, 16-bit, palette, alpha, GIF, WebP, TIFF…) becomes PNG in RGB,
    RGBA or L. EXIF rotation is applied, animated images keep their first frame, and sides
    above :data:`MAX_PIXELS_SIDE` are downscaled.

    Raises:
        ImageError: not an image, truncated, or larger than :data:`MAX_IMAGE_PIXELS`.
    """
    from PIL import Image, ImageOps  # here: the service's main process only lists images, never decodes them

    from app.render.png_passthrough import png_raster_info  # likewise (it imports fpdf2)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image: Image.Image = Image.open(io.BytesIO(data))
            except Image.UnidentifiedImageError:  # its message names a BytesIO's address
                raise ImageError("not a readable image: no image format Pillow knows") from None
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageError(f"image of {image.width}×{image.height} pixels is too large")
            if (
                image.format == "PNG"
                and max(image.size) <= MAX_PIXELS_SIDE
                and png_raster_info(data) is not None
            ):
                # Goes into the PDF as it is: every chunk's CRC checked (PNG §5.3), the pixels
                # not inflated here.
                image.verify()
                return PreparedImage(data=data, width=image.width, height=image.height)
            if _plain_jpeg(image):
                # Goes into the PDF as it is (DCTDecode): decoded at an eighth of its size only
                # to find a truncated or corrupt file (every scan is still read).
                width, height = image.size
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
                return PreparedImage(data=data, width=width, height=height)
            if image.format == "JPEG" and max(image.size) > MAX_PIXELS_SIDE:
                # Decoded at the smallest DCT scale (1/2, 1/4, 1/8) still at least MAX_PIXELS_SIDE
                # on its longer side: a 7,700 px CMYK JPEG took 537 MiB decoded whole.
                shrink = MAX_PIXELS_SIDE / max(image.size)
                image.draft(image.mode, (ceil(image.width * shrink), ceil(image.height * shrink)))
            image.load()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile input
        raise ImageError(f"not a readable image: {exc}") from None
    try:
        ImageOps.exif_transpose(image, in_place=True)  # else a copy even when upright: 240 MB at 7,700 px
        if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
        elif image.mode == "RGBA":
            pass  # convert() would copy it: a second 240 MB for a 7,700 px image
        elif image.mode in ("P", "PA", "LA", "La") or "transparency" in image.info:
            image = image.convert("RGBA")
        elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = (
                image.point(lambda value: value / 256).convert("L")
                if image.mode != "F"
                else image.convert("L")
            )
        elif image.mode == "1":
            image = image.convert("L")  # not RGB: three times the bytes for the same greys
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        if max(image.size) > MAX_PIXELS_SIDE:
            image = _shrink(image)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=False)
    except Exception as exc:  # noqa: BLE001 - as above: any Pillow failure is an unusable image
        raise ImageError(f"cannot convert image: {exc}") from None
    return PreparedImage(data=out.getvalue(), width=image.width, height=image.height)


STRIP_PIXELS = 4_000_000
"""About how many pixels of a large image :func:`_shrink` reduces at a time."""


def _shrink(image: Any) -> Any:
    """``image`` (a loaded Pillow image) downscaled to at most :data:`MAX_PIXELS_SIDE` on each side.

    An image over twice that is first reduced by the whole factor that keeps it at least
    :data:`MAX_PIXELS_SIDE` (a box filter), in strips of rows: Pillow reduces or resizes an
    image with alpha through a premultiplied copy of all of it (a 7,700 px RGBA PNG, 240 MB
    decoded, peaked at 608 MiB). ``thumbnail`` then resamples what is left.
    """
    from PIL import Image  # as in normalise_image: the render processes only

    factor = max(image.size) // MAX_PIXELS_SIDE
    if factor >= 2:
        rows = factor * max(1, STRIP_PIXELS // (image.width * factor))
        strips = [
            image.crop((0, top, image.width, min(top + rows, image.height))).reduce(factor)
            for top in range(0, image.height, rows)
        ]
        reduced = Image.new(image.mode, (strips[0].width, sum(strip.height for strip in strips)))
        top = 0
        for strip in strips:
            reduced.paste(strip, (0, top))
            top += strip.height
        image = reduced
    image.thumbnail((MAX_PIXELS_SIDE, MAX_PIXELS_SIDE))
    return image


def _plain_jpeg(image: Any) -> bool:
    """Whether a Pillow image just opened is a JPEG the PDF holds as it is: baseline, RGB or
    grey, upright (no EXIF rotation), at most :data:`MAX_PIXELS_SIDE` on each side."""
    return bool(
        image.format == "JPEG"
        and image.mode in ("RGB", "L")
        and max(image.size) <= MAX_PIXELS_SIDE
        and not image.info.get("progressive")
        and image.getexif().get(0x0112, 1) in (0, 1)
    )


def decode_data_uri(src: str) -> bytes | None:
    """The bytes of a ``data:image/…;base64,…`` URI, or ``None`` for anything else."""
    if not src[:11].lower().startswith("data:image/"):
        return None
    header, _, payload = src.partition(",")
    if ";base64" not in header.lower():
        return None
    try:
        return base64.b64decode(payload.strip(), validate=False)
    except (binascii.Error, ValueError):
        return None


class ArticleImages:
    """Looks up the images of one ticket's articles in the fetched bytes.

    Args:
        articles: the ticket's articles (for file names and Content-IDs).
        images: attachment id → bytes, as fetched by the workflow.

    Normalised images are kept per attachment id, so an image shown twice is converted once
    (and fpdf2 embeds it once). An attachment whose bytes were fetched but cannot be decoded
    is drawn as a placeholder and listed in :attr:`undecodable`.

    Attributes:
        undecodable: attachment id → :class:`~app.workflow.ports.ImagePlaceholder` (code
            :data:`UNDECODABLE`, Permanent) of each fetched image looked up
            (:meth:`by_attachment`, :meth:`resolve`) that :func:`normalise_image` refused, in
            the order they were first looked up: the render hands them back to the workflow,
            whose download placeholders do not know them.
    """

    def __init__(self, articles: Iterable[dict[str, Any]], images: Mapping[int, bytes]) -> None:
        self._images = images
        self._prepared: dict[str, PreparedImage | None] = {}
        self.filenames: dict[int, str] = {}
        self._cids: dict[int, dict[str, int]] = {}
        self.undecodable: dict[int, ImagePlaceholder] = {}
        for article in articles:
            article_id = _int(article.get("id")) or 0
            for attachment in _attachments(article):
                self.filenames[attachment["id"]] = str(
                    attachment.get("filename") or f"image-{attachment['id']}"
                )
                cid = content_id_of(attachment)
                if cid:
                    self._cids.setdefault(article_id, {})[cid] = attachment["id"]

    def attachment_id(self, article_id: int, src: str) -> int | None:
        """The attachment id an ``<img src>`` names (inline URL or ``cid:``), else ``None``."""
        named = self._named(article_id, src)
        return named[1] if named is not None else None

    def _named(self, article_id: int, src: str) -> tuple[int, int] | None:
        """``(article id, attachment id)`` an ``<img src>`` of article ``article_id`` names: an
        inline URL's own article (as :func:`image_references` has it), ``article_id`` for a
        ``cid:``; else ``None``."""
        match = _INLINE_URL.search(src)
        if match:
            return int(match.group(2)), int(match.group(3))
        if src[:4].lower() == "cid:":
            found = self._cids.get(article_id, {}).get(unquote(src[4:]).strip().strip("<>"))
            return (article_id, found) if found is not None else None
        return None

    def label(self, article_id: int, src: str) -> str:
        """What a placeholder for ``src`` says: the file name, or the source shortened."""
        found = self.attachment_id(article_id, src)
        if found is not None:  # Zammad hides rewritten inline attachments: name them by id then
            return self.filenames.get(found, f"image-{found}")
        if src[:4].lower() == "cid:":
            return src[4:] or "inline image"
        if src[:5].lower() == "data:":
            return "embedded image"
        return src if len(src) <= 80 else src[:77] + "…"

    def prepared(
        self, key: str, data: bytes | None, on_error: Callable[[ImageError], None] | None = None
    ) -> PreparedImage | None:
        """``data`` normalised once under ``key``; ``None`` when absent or unreadable (then
        ``on_error`` is called with why, the first time)."""
        if key not in self._prepared:
            try:
                self._prepared[key] = normalise_image(data) if data is not None else None
            except ImageError as exc:
                self._prepared[key] = None
                if on_error is not None:
                    on_error(exc)
        return self._prepared[key]

    def by_attachment(self, attachment_id: int, article_id: int) -> PreparedImage | None:
        """The normalised image of an attachment of article ``article_id``, or ``None`` when
        not fetched or unreadable (then listed in :attr:`undecodable`)."""
        data = self._images.get(attachment_id)

        def undecodable(exc: ImageError) -> None:
            assert data is not None  # only bytes are decoded
            self.undecodable[attachment_id] = ImagePlaceholder(
                self.filenames.get(attachment_id, f"image-{attachment_id}"),
                article_id,
                attachment_id,
                "Permanent",  # the same bytes on every attempt (Classification.PERMANENT)
                UNDECODABLE,
                f"downloaded ({len(data)} bytes) but cannot be drawn: {exc}",
            )

        return self.prepared(f"att:{attachment_id}", data, undecodable)

    def resolve(self, article_id: int, src: str) -> tuple[str, PreparedImage] | None:
        """``(key, image)`` for an ``<img src>``: inline URLs, ``cid:`` and ``data:`` URIs; else ``None``."""
        named = self._named(article_id, src)
        if named is not None:
            owner, found = named
            image = self.by_attachment(found, owner)
            return (f"att:{found}", image) if image is not None else None
        data = decode_data_uri(src)
        if data is not None:
            import hashlib

            key = "data:" + hashlib.sha256(data).hexdigest()
            image = self.prepared(key, data)
            return (key, image) if image is not None else None
        return None

    def image(self, key: str) -> PreparedImage | None:
        """A prepared image by the key :meth:`resolve` gave."""
        return self._prepared.get(key)
