"""A PNG drawn without being decoded and compressed again: its ``IDAT`` data as the image stream.

A PNG's image data is a zlib stream of scanlines, each led by its PNG filter type byte —
exactly what a PDF ``/FlateDecode`` stream with ``/DecodeParms << /Predictor 15 … >>``
holds (PDF 32000-1:2008 §7.4.4.4, "LZW and Flate predictor functions"; PNG: ISO/IEC
15948 / W3C PNG §11). So an 8-bit greyscale or RGB PNG, not interlaced, without transparency
or ICC profile, goes into the PDF as its ``IDAT`` chunks joined, where fpdf2 would decode the
pixels and deflate them again (img2pdf does the same).

:func:`png_raster_info` says whether a PNG qualifies and gives the fields fpdf2 writes the
image object from; :func:`preload_png` puts them in a document's image cache under the key
fpdf2's ``image()`` looks the same bytes up by, so ``image()`` draws without decoding.
Anything else is left to fpdf2.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from fpdf.image_datastructures import RasterImageInfo

__all__ = ["png_raster_info", "preload_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type → (PDF colour space, components): 0 greyscale, 2 truecolour.
_COLOUR_TYPES = {0: ("DeviceGray", 1), 2: ("DeviceRGB", 3)}
#: Chunks that change what the pixels mean: transparency, an ICC profile (fpdf2 handles those),
#: EXIF (it may rotate the image; the decoding path applies it).
_DECLINED = {b"tRNS", b"iCCP", b"eXIf"}


def png_raster_info(data: bytes) -> dict[str, Any] | None:
    """The image fields of a PNG that can go into a PDF as it is, else ``None``.

    Qualifies: a well-formed chunk sequence with ``IHDR`` first and ``IEND`` last, bit depth 8,
    colour type 0 (grey) or 2 (RGB), compression and filter method 0, no interlacing, at least
    one ``IDAT``, and no ``tRNS``, ``iCCP`` or ``eXIf`` chunk. Chunk CRCs are not checked here
    (:func:`app.render.images.normalise_image` has Pillow verify them); the zlib stream carries
    its own Adler-32, which the PDF reader checks.

    Returns:
        ``{"data", "w", "h", "cs", "dpn", "bpc", "f", "dp", "iccp", "inverted"}`` as fpdf2's
        ``RasterImageInfo`` names them: the joined ``IDAT`` bytes, width and height in pixels,
        the colour space, components per pixel, 8, ``"FlateDecode"`` and the decode parameters.
    """
    if not data.startswith(_SIGNATURE):
        return None
    position, end = len(_SIGNATURE), len(data)
    header: tuple[int, ...] | None = None
    idat: list[bytes] = []
    while position + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        stop = start + length
        if stop + 4 > end:
            return None  # truncated chunk
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = struct.unpack_from(">IIBBBBB", data, start)
        elif kind == b"IDAT":
            idat.append(data[start:stop])
        elif kind == b"IEND":
            break
        elif kind in _DECLINED:
            return None
        position = stop + 4
    else:
        return None  # no IEND
    if header is None or not idat:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in _COLOUR_TYPES or (compression, filtering, interlace) != (0, 0, 0):
        return None
    if not (width and height):
        return None
    space, components = _COLOUR_TYPES[colour]
    return {
        "data": b"".join(idat),
        "w": width,
        "h": height,
        "cs": space,
        "dpn": components,
        "bpc": 8,
        "f": "FlateDecode",
        "dp": f"/Predictor 15 /Colors {components} /Columns {width}",
        "iccp": None,
        "inverted": False,
    }


def preload_png(image_cache: Any, data: bytes) -> bool:
    """Put a qualifying PNG (:func:`png_raster_info`) in fpdf2's ``image_cache`` (an
    ``FPDF.image_cache``) under the key ``FPDF.image(io.BytesIO(data))`` finds it by (the MD5
    of the stripped bytes, as fpdf2's ``preload_image`` computes it), unless it is there.

    Returns:
        Whether ``data`` is in the cache now (``False``: fpdf2 decodes it itself).
    """
    key = hashlib.md5(data.strip(), usedforsecurity=False).hexdigest()
    images = image_cache.images
    if key in images:
        return True
    fields = png_raster_info(data)
    if fields is None:
        return False
    info = RasterImageInfo(fields)
    info["i"] = len(images) + 1
    info["usages"] = 0  # fpdf2's image() counts this use
    info["iccp_i"] = None
    images[key] = info
    return True
