"""PNGs drawn undecoded (:mod:`app.render.png_passthrough`): which qualify, and that the PDF's
image is the PNG's pixels (read back by poppler's ``pdfimages``, an independent decoder)."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.render.images import ImageError, normalise_image
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.render.png_passthrough import png_raster_info

from .helpers import ARCHIVED_AT, write


def noisy(mode: str, size: tuple[int, int] = (97, 41), **save: object) -> bytes:
    """A PNG of random pixels (every PNG row filter gets used), saved by Pillow."""
    rng = random.Random(mode)
    if mode == "I;16":
        image = Image.new("I;16", size, 40000)
    else:
        bands = len(mode) if mode != "P" else 1
        image = Image.frombytes(
            mode, size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * bands))
        )
    out = io.BytesIO()
    image.save(out, format="PNG", **save)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def interlaced(data: bytes) -> bytes:
    """``data`` with its IHDR saying Adam7 (Pillow writes no interlaced PNG; the pixels do not
    matter to the header check)."""
    header = bytearray(data[16:29])
    header[12] = 1
    return data[:8] + chunk(b"IHDR", bytes(header)) + data[33:]


def test_eight_bit_grey_and_rgb_qualify_with_their_idat_as_the_stream():
    for mode, space, components in (("RGB", "DeviceRGB", 3), ("L", "DeviceGray", 1)):
        data = noisy(mode)
        info = png_raster_info(data)
        assert info is not None
        assert (info["w"], info["h"], info["cs"], info["dpn"], info["bpc"]) == (97, 41, space, components, 8)
        assert info["dp"] == f"/Predictor 15 /Colors {components} /Columns 97"
        # the stream inflates to the filtered rows: one filter byte + the row's bytes
        assert len(zlib.decompress(info["data"])) == 41 * (1 + 97 * components)


def test_what_the_pdf_cannot_hold_as_is_is_declined():
    declined = {
        "alpha": noisy("RGBA"),
        "palette": noisy("P"),
        "grey with alpha": noisy("LA"),
        "16 bit": noisy("I;16"),
        "interlaced": interlaced(noisy("RGB")),
        "transparency": noisy("RGB", transparency=(1, 2, 3)),
        "ICC profile": noisy("RGB", icc_profile=b"\0" * 128),
        "EXIF": noisy("RGB", exif=b"Exif\0\0MM\0*\0\0\0\x08\0\0"),
        "not a PNG": b"GIF89a" + b"\0" * 40,
    }
    for name, data in declined.items():
        assert png_raster_info(data) is None, name
    good = noisy("RGB")
    assert png_raster_info(good[:-12]) is None  # no IEND
    assert png_raster_info(good[:40]) is None  # cut inside a chunk
    header_first = good[:8] + chunk(b"tEXt", b"a\0b") + good[8:]
    assert png_raster_info(header_first) is None  # IHDR must come first
    no_data = good[:33] + chunk(b"IEND", b"")
    assert png_raster_info(no_data) is None


def test_a_qualifying_png_passes_normalisation_unchanged_and_others_are_converted():
    good = noisy("RGB")
    assert normalise_image(good).data == good
    broken = bytearray(good)
    broken[60] ^= 0xFF  # inside the IDAT: its CRC no longer matches
    with pytest.raises(ImageError):
        normalise_image(bytes(broken))
    palette = noisy("P")
    converted = normalise_image(palette)
    assert converted.data != palette and Image.open(io.BytesIO(converted.data)).mode == "RGBA"


def extracted(path: Path, tmp_path: Path) -> list[Image.Image]:
    subprocess.run(["pdfimages", "-png", str(path), str(tmp_path / "x")], check=True)
    return [Image.open(p) for p in sorted(tmp_path.glob("x-*.png"))]


def test_the_drawn_image_has_the_pngs_pixels(tmp_path: Path):
    images = {901: noisy("RGB"), 902: noisy("L", (50, 30))}
    articles = [
        {
            "id": 11,
            "content_type": "text/html",
            "created_at": "2025-03-03T08:00:00Z",
            "body": '<p>Bild</p><img src="cid:rgb@x"><img src="cid:grey@x">',
            "attachments": [
                {"id": 901, "filename": "rgb.png", "preferences": {"Content-ID": "rgb@x"}, "size": 1},
                {"id": 902, "filename": "grey.png", "preferences": {"Content-ID": "grey@x"}, "size": 1},
            ],
        }
    ]
    rendered = render_ticket_pdf(
        {"number": "1", "title": "Bilder"},
        articles,
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images=images,
    )
    assert png_raster_info(images[901])["data"] in rendered.data  # the IDAT went in as it is
    found = extracted(write(tmp_path, rendered.data), tmp_path)
    originals = [Image.open(io.BytesIO(images[key])) for key in (901, 902)]
    assert sorted((i.mode, i.size) for i in found) == sorted((i.mode, i.size) for i in originals)
    for original in originals:
        match = next(i for i in found if i.size == original.size)
        assert match.tobytes() == original.tobytes()
