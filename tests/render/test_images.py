"""Images: what the workflow must fetch, normalisation to sRGB, placement and placeholders."""

from __future__ import annotations

import io
import subprocess

import pytest
from PIL import Image

from app.render.images import ImageError, ImageRef, image_references, normalise_image
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf

from .helpers import ARCHIVED_AT, pdftotext, write


def jpeg(mode: str, size=(120, 80), color=(0, 120, 200, 10)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color[: len(mode)] if mode != "L" else 128).save(out, format="JPEG")
    return out.getvalue()


def png(mode: str = "RGBA", size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 200, 30, 128) if mode == "RGBA" else 3).save(out, format="PNG")
    return out.getvalue()


ARTICLES = [
    {
        "id": 11,
        "content_type": "text/html",
        "created_at": "2025-03-03T08:00:00Z",
        "from": "a@example.com",
        "body": '<p>Hier der Fehler:</p><img src="/api/v1/ticket_attachment/4711/11/901?view=inline">'
        '<p>Und noch einer:</p><img src="cid:shot2@mail"><img src="cid:missing@mail"><p>Ende</p>',
        "attachments": [
            {
                "id": 90,
                "filename": "message.html",
                "size": 10,
                "preferences": {
                    "original-format": True,
                    "content-alternative": True,
                    "Mime-Type": "text/html",
                },
            },
            {
                "id": 902,
                "filename": "shot2.png",
                "size": 300,
                "preferences": {"Content-ID": "<shot2@mail>", "Mime-Type": "image/png"},
            },
            {
                "id": 903,
                "filename": "Lageplan-CMYK.jpg",
                "size": 5000,
                "preferences": {"Content-Type": "image/jpeg; name=x"},
            },
            {
                "id": 904,
                "filename": "Vertrag.pdf",
                "size": 5000,
                "preferences": {"Mime-Type": "application/pdf"},
            },
        ],
    },
    {
        "id": 12,
        "content_type": "text/plain",
        "created_at": "2025-03-03T09:00:00Z",
        "body": "Noch ein Foto.",
        "attachments": [
            {"id": 905, "filename": "verloren.webp", "size": 10, "preferences": {"Mime-Type": "image/webp"}},
            {"id": 902, "filename": "shot2.png", "size": 300, "preferences": {"Mime-Type": "image/png"}},
        ],
    },
]


def test_image_references_lists_inline_and_preview_images_once():
    refs = image_references(4711, ARTICLES)
    assert refs == [
        ImageRef(901, 11, 4711, "image-901", ""),
        ImageRef(902, 11, 4711, "shot2.png", "image/png", 300),  # the sizes the attachments declare
        ImageRef(903, 11, 4711, "Lageplan-CMYK.jpg", "image/jpeg", 5000),
        ImageRef(905, 12, 4711, "verloren.webp", "image/webp", 10),
    ]


def test_cid_without_angle_brackets_matches():
    article = {
        "id": 1,
        "content_type": "text/html",
        "body": '<img src="cid:abc">',
        "attachments": [
            {
                "id": 5,
                "filename": "a.gif",
                "preferences": {"Content-ID": "abc", "Mime-Type": "application/octet-stream"},
            }
        ],
    }
    assert [ref.attachment_id for ref in image_references(9, [article])] == [5]


def test_normalisation_gives_srgb_or_grey():
    for data in (jpeg("CMYK"), png("RGBA"), png("P"), jpeg("L")):
        prepared = normalise_image(data)
        assert Image.open(io.BytesIO(prepared.data)).mode in ("RGB", "RGBA", "L")
    sixteen = io.BytesIO()
    Image.new("I;16", (30, 30), 40000).save(sixteen, format="PNG")
    assert Image.open(io.BytesIO(normalise_image(sixteen.getvalue()).data)).mode == "L"
    plain = jpeg("RGB")
    assert normalise_image(plain).data == plain  # plain RGB JPEGs pass unchanged


def test_a_plain_jpeg_passes_unchanged_only_when_whole_and_upright():
    photo = io.BytesIO()
    noise = Image.effect_noise((640, 480), 60).convert("RGB")  # detail: a real scan to decode
    noise.save(photo, format="JPEG", quality=90)
    whole = photo.getvalue()
    prepared = normalise_image(whole)
    assert (prepared.data, prepared.width, prepared.height) == (whole, 640, 480)
    for broken in (whole[: len(whole) * 2 // 3], whole[: len(whole) // 3]):
        with pytest.raises(ImageError, match="truncated"):  # cut short: found by the small decode too
            normalise_image(broken)
    rotated, progressive = io.BytesIO(), io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90° clockwise to view
    noise.save(rotated, format="JPEG", exif=exif)
    noise.save(progressive, format="JPEG", progressive=True)
    upright = normalise_image(rotated.getvalue())
    assert (upright.width, upright.height) == (480, 640) and upright.data[:4] == b"\x89PNG"
    assert normalise_image(progressive.getvalue()).data[:4] == b"\x89PNG"


def test_inline_image_and_cmyk_preview_are_placed_and_missing_ones_named(tmp_path):
    images = {
        901: png("RGBA", (800, 400)),
        902: png("P"),
        903: jpeg("CMYK", (300, 200)),
        905: b"not an image",
    }
    rendered = render_ticket_pdf(
        {"number": "4711", "title": "Bilder"},
        ARTICLES,
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images=images,
    )
    path = write(tmp_path, rendered.data)
    listing = subprocess.run(
        ["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in listing.splitlines()[2:]]
    sizes = {(int(row[3]), int(row[4])) for row in rows if row[2] == "image"}
    assert {(800, 400), (300, 200)} <= sizes and len(sizes) == 3  # inline, cid, CMYK preview (shot2 once)
    assert all(row[5] in ("rgb", "gray") for row in rows if row[2] == "image"), listing
    text, stderr = pdftotext(path)
    assert "Hier der Fehler:" in text and "Ende" in text and "Preview: Lageplan-CMYK.jpg" in text
    assert "[image: missing@mail]" in text  # a cid nothing matches
    assert "[image: verloren.webp] (not available)" in text  # fetched bytes that are no image
    assert "message.html" not in text and "Vertrag.pdf" in text
    assert "No font" not in stderr


def test_image_not_fetched_leaves_its_filename(tmp_path):
    rendered = render_ticket_pdf(
        {"number": "4711", "title": "Bilder"},
        ARTICLES[:1],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images={},
    )
    text, _ = pdftotext(write(tmp_path, rendered.data))
    assert "[image: image-901]" in text and "[image: shot2.png]" in text
    assert "[image: Lageplan-CMYK.jpg] (not available)" in text


def normalised_peak_mib(
    tmp_path, make: str, name: str = "huge.png", save: str = "compress_level=1"
) -> tuple[int, int, int]:
    """``(width, height, peak RSS MiB)`` of :func:`normalise_image` on the image that the Python
    expression ``make`` (a Pillow ``Image``) saves as ``name`` (with the ``save`` arguments),
    measured in a process of its own (the image is made in another one: its pixels never count
    in the one measured)."""
    import sys
    import textwrap

    source = tmp_path / name
    subprocess.run(
        [sys.executable, "-c", f"from PIL import Image; ({make}).save({str(source)!r}, {save})"],
        check=True,
    )
    script = textwrap.dedent(f"""
        from app.render.images import normalise_image
        prepared = normalise_image(open({str(source)!r}, "rb").read())
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
        print(prepared.width, prepared.height, int(hwm) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) forked pytest
    # process, so a full run measured pytest's 450 MiB here.
    width, height, peak = (int(value) for value in done.stdout.split())
    return width, height, peak


@pytest.mark.parametrize(
    ("make", "limit_mib"),
    [
        # decoded 240 MB; converted to RGBA (a copy), then resized through a premultiplied copy of
        # all of it: 589 MiB. Reduced in strips now: 406 MiB.
        ("Image.new('RGBA', (7700, 7700), (10, 20, 30, 40))", 480),
        # 1 bit per pixel, converted to RGB (180 MB) before shrinking: 362 MiB; as grey: 174 MiB.
        ("Image.new('1', (7700, 7700), 1)", 250),
    ],
)
def test_a_huge_png_is_shrunk_without_copies_of_all_its_pixels(tmp_path, make, limit_mib):
    """A 7,700 × 7,700 px PNG (59 Mpx, under MAX_IMAGE_PIXELS; a file of ~1 MB) is shrunk to
    MAX_PIXELS_SIDE without a second copy of its decoded pixels (measured 2026-12-07)."""
    width, height, peak = normalised_peak_mib(tmp_path, make)
    assert (width, height) == (2000, 2000)
    assert peak < limit_mib, f"peak RSS {peak} MiB normalising one PNG"


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    """A 7,700 × 7,700 px CMYK JPEG (59 Mpx, under MAX_IMAGE_PIXELS) was decoded whole, then
    converted: the render process peaked at 536 MiB for one image (measured 2026-12-07). It is
    decoded at the smallest DCT scale still at least MAX_PIXELS_SIDE on its longer side."""
    width, height, peak_mib = normalised_peak_mib(
        tmp_path, "Image.new('CMYK', (7700, 7700), (10, 20, 30, 40))", name="huge.jpg", save=""
    )
    assert (width, height) == (2000, 2000)
    assert peak_mib < 250, f"peak RSS {peak_mib} MiB normalising one JPEG"
