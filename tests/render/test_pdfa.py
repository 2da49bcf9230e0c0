"""PDF/A-3B archives checked without veraPDF (``rendering.md`` §7), before and after signing.

The originals come from the Zammad simulator, byte for byte as it serves them (ticket and
articles JSON, ``ticket_article_plain`` e-mails, attachments incl. a CMYK JPEG and a 16-bit
PNG), named the way the workflow names them. :func:`pdfa_problems` is the offline
substitute for veraPDF: qpdf (``--check`` and its JSON object dump), poppler (pdffonts,
pdftotext, pdfinfo) and pyHanko's reader for the XMP packet.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fpdf import FPDF
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from app.errors import RenderError
from app.render.images import image_references
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.signing.signer import ArchiveSigner
from app.workflow.ports import EmbeddedFile, OmittedFile, RenderedPdf
from devtools.zammad_simulator import ZammadSimulator
from tests.conftest import FIXTURES, PFX_PASSWORD
from tests.verify import pdfsig, pyhanko_status, verapdf

from .helpers import ARCHIVED_AT, pdfinfo, pdftotext, write, xmp_properties

TOKEN = "pdfa-test-token"
EVIL_NAME = "../../outside/Prüfbericht: Q1\\final.txt"


def cmyk_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 160, 255, 10)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def png_16bit() -> bytes:
    out = io.BytesIO()
    Image.new("I;16", (40, 30), 40000).save(out, format="PNG")
    return out.getvalue()


#: Attachments of the e-mail article the fixture adds: (filename, MIME type, bytes).
NEW_ATTACHMENTS = [
    ("scan-cmyk.jpg", "image/jpeg", cmyk_jpeg()),
    ("messwerte-16bit.png", "image/png", png_16bit()),
    ("every-byte.bin", "application/octet-stream", bytes(range(256)) * 64),
    (EVIL_NAME, "text/plain", "Grüße\r\nZeile 2\r\n".encode()),
]


@dataclass
class Served:
    """What the simulator served, exactly: raw bodies by request."""

    ticket_id: int
    ticket_raw: bytes
    articles_raw: bytes
    tags: list[str]
    emls: dict[int, bytes] = field(default_factory=dict)
    #: (article id, attachment id) → (filename, MIME type, bytes)
    attachments: dict[tuple[int, int], tuple[str, str, bytes]] = field(default_factory=dict)
    images: dict[int, bytes] = field(default_factory=dict)

    @property
    def ticket(self) -> dict[str, Any]:
        return json.loads(self.ticket_raw)

    @property
    def articles(self) -> list[dict[str, Any]]:
        return json.loads(self.articles_raw)


async def _fetch_from_simulator() -> Served:
    sim = ZammadSimulator(api_token=TOKEN)
    ticket_id = sim.seed_fixture_ticket(FIXTURES)
    base = await sim.start()
    try:
        headers = {"Authorization": f"Token token={TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def get(path: str) -> tuple[int, bytes, str]:
                async with session.get(base.rstrip("/") + path) as resp:
                    return resp.status, await resp.read(), resp.headers.get("Content-Type", "")

            new_article = {
                "ticket_id": ticket_id,
                "type": "email",
                "sender": "Customer",
                "content_type": "text/plain",
                "from": "Katrin Vogelsang <k.vogelsang@example.com>",
                "to": "billing@example.com",
                "subject": "Scans und Messwerte",
                "body": "Anbei die Scans.\n\nGrüße\nK. Vogelsang",
                "attachments": [
                    {"filename": n, "mime-type": m, "data": base64.b64encode(d).decode()}
                    for n, m, d in NEW_ATTACHMENTS
                ],
            }
            async with session.post(base.rstrip("/") + "/api/v1/ticket_articles", json=new_article) as resp:
                assert resp.status == 201, await resp.text()
            status, ticket_raw, _ = await get(f"/api/v1/tickets/{ticket_id}?expand=true")
            assert status == 200
            status, articles_raw, _ = await get(f"/api/v1/ticket_articles/by_ticket/{ticket_id}")
            assert status == 200
            status, tags_raw, _ = await get(f"/api/v1/tags?object=Ticket&o_id={ticket_id}")
            served = Served(ticket_id, ticket_raw, articles_raw, json.loads(tags_raw)["tags"])
            for article in served.articles:
                if article.get("type") == "email":
                    status, eml, _ = await get(f"/api/v1/ticket_article_plain/{article['id']}")
                    assert status == 200 and eml
                    served.emls[article["id"]] = eml
                for attachment in article.get("attachments") or []:
                    status, data, kind = await get(
                        f"/api/v1/ticket_attachment/{ticket_id}/{article['id']}/{attachment['id']}"
                    )
                    assert status == 200
                    served.attachments[(article["id"], attachment["id"])] = (
                        attachment["filename"],
                        kind.split(";")[0].strip(),
                        data,
                    )
            for ref in image_references(ticket_id, served.articles):
                status, data, _ = await get(
                    f"/api/v1/ticket_attachment/{ref.ticket_id}/{ref.article_id}/{ref.attachment_id}"
                )
                if status == 200:
                    served.images[ref.attachment_id] = data
            return served
    finally:
        await sim.stop()


def originals_of(served: Served) -> list[EmbeddedFile]:
    """The originals named as the workflow names them (issue 8)."""
    files = [
        EmbeddedFile(
            "ticket.json",
            served.ticket_raw,
            "application/json",
            "Source",
            "GET /api/v1/tickets/{id}?expand=true as fetched",
        ),
        EmbeddedFile(
            "articles.json",
            served.articles_raw,
            "application/json",
            "Source",
            "GET /api/v1/ticket_articles/by_ticket/{id} as fetched",
        ),
    ]
    for article in served.articles:
        article_id = article["id"]
        html = "html" in str(article.get("content_type"))
        files.append(
            EmbeddedFile(
                f"article-{article_id}-body.{'html' if html else 'txt'}",
                str(article.get("body") or "").encode("utf-8"),
                "text/html" if html else "text/plain",
                "Source",
                "Article body",
                article_id=article_id,
            )
        )
        if article_id in served.emls:
            files.append(
                EmbeddedFile(
                    f"article-{article_id}.eml",
                    served.emls[article_id],
                    "message/rfc822",
                    "Source",
                    "Original e-mail",
                    article_id=article_id,
                )
            )
        for (owner, attachment_id), (filename, mime, data) in served.attachments.items():
            if owner == article_id:
                files.append(
                    EmbeddedFile(
                        f"article-{article_id}-{attachment_id}-{filename}",
                        data,
                        mime,
                        "Data",
                        "Attachment",
                        article_id=article_id,
                        attachment_id=attachment_id,
                    )
                )
    return files


def render_served(
    served: Served, *, embedded=None, omitted=(), options: RenderOptions | None = None
) -> RenderedPdf:
    return render_ticket_pdf(
        served.ticket,
        served.articles,
        served.tags,
        archived_at=ARCHIVED_AT,
        options=options or RenderOptions(timezone="Europe/Berlin"),
        images=served.images,
        embedded=originals_of(served) if embedded is None else embedded,
        omitted=omitted,
    )


@dataclass
class Archive:
    served: Served
    embedded: list[EmbeddedFile]
    rendered: RenderedPdf
    signed: bytes
    folder: Path


def build_archive(signer_pfx: Path, folder: Path) -> Archive:
    """The simulator's ticket 4711 plus an e-mail with four attachments, rendered as PDF/A-3B and
    signed with ``signer_pfx``; ``folder`` is the archive's scratch folder."""
    served = asyncio.run(_fetch_from_simulator())
    rendered = render_served(served)
    signer = ArchiveSigner.from_pfx(signer_pfx.read_bytes(), PFX_PASSWORD.encode())
    signed = asyncio.run(signer.sign(rendered.data))
    assert signed.signed
    return Archive(served, originals_of(served), rendered, signed.data, folder)


@pytest.fixture(scope="module")
def archive(dev_pki, tmp_path_factory) -> Archive:
    """:func:`build_archive` once for this module."""
    return build_archive(dev_pki.signer_pfx, tmp_path_factory.mktemp("pdfa"))


# --- the offline PDF/A checker ------------------------------------------------------------


def qpdf_objects(path: Path) -> dict[str, Any]:
    """qpdf's JSON v2 object dump (newest revision): ``{"obj:N 0 R": {...}, "trailer": {...}}``."""
    done = subprocess.run(["qpdf", "--json=2", "--json-key=qpdf", str(path)], capture_output=True)
    assert done.returncode in (0, 3), done.stderr  # 3: warnings, which qpdf --check reports separately
    return json.loads(done.stdout)["qpdf"][1]


def pdfa_problems(data: bytes, folder: Path, name: str = "check.pdf") -> list[str]:
    """Everything that breaks PDF/A-3B that we can see offline (empty list = all checks passed)."""
    path = write(folder, data, name)
    problems: list[str] = []
    if not data.startswith(b"%PDF-1.7"):
        problems.append(f"header is {data[:8]!r}, PDF/A-3 uses PDF 1.7")
    check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    if check.returncode != 0 or "No syntax or stream encoding errors" not in check.stdout:
        problems.append(f"qpdf --check: {check.stdout.strip()} {check.stderr.strip()}")

    objects = qpdf_objects(path)

    def deref(value: Any) -> Any:
        if isinstance(value, str) and value.endswith(" R"):
            entry = objects.get(f"obj:{value}", {})
            return entry.get("value", entry.get("stream", {}).get("dict"))
        return value

    trailer = objects["trailer"]["value"]
    if "/Encrypt" in trailer:
        problems.append("trailer has /Encrypt")
    if "/ID" not in trailer:
        problems.append("trailer has no /ID")
    root = deref(trailer["/Root"])

    intents = deref(root.get("/OutputIntents")) or []
    if not intents:
        problems.append("catalog has no /OutputIntents")
    else:
        intent = deref(intents[0])
        profile_ref = intent.get("/DestOutputProfile")
        profile = deref(profile_ref) or {}
        if intent.get("/S") != "/GTS_PDFA1":
            problems.append(f"output intent /S is {intent.get('/S')}, not /GTS_PDFA1")
        if not (
            isinstance(profile_ref, str)
            and "stream" in objects.get(f"obj:{profile_ref}", {})
            and profile.get("/N") == 3
        ):
            problems.append("output intent has no RGB /DestOutputProfile stream")

    reader = PdfFileReader(io.BytesIO(data), strict=False)
    if "/Metadata" not in reader.root:
        problems.append("catalog has no /Metadata (XMP)")
    else:
        xmp = xmp_properties(reader.root["/Metadata"].data)
        if (xmp.get("part"), xmp.get("conformance")) != ("3", "B"):
            problems.append(f"XMP pdfaid is part={xmp.get('part')} conformance={xmp.get('conformance')}")

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key in ("/JavaScript", "/JS", "/AA"):
                if key in value:
                    problems.append(f"{where} has {key}")
            if value.get("/S") in ("/JavaScript", "/Launch", "/ImportData", "/ResetForm"):
                problems.append(f"{where} has a forbidden {value['/S']} action")
            for child in value.values():
                walk(child, where)
        elif isinstance(value, list):
            for child in value:
                walk(child, where)

    for key, entry in objects.items():
        if key == "trailer":
            continue
        value = entry.get("value", entry.get("stream", {}).get("dict"))
        walk(value, key)
        if not isinstance(value, dict):
            continue
        if value.get("/Subtype") == "/Image" and "/DeviceCMYK" in json.dumps(deref(value.get("/ColorSpace"))):
            problems.append(f"{key}: image in /DeviceCMYK under an sRGB output intent")
        annotation = value.get("/Type") == "/Annot" or (
            "/Rect" in value and value.get("/Subtype") in ("/Link", "/Widget")
        )
        if annotation and value.get("/Subtype") != "/Popup" and not int(value.get("/F", 0)) & 4:
            problems.append(f"{key}: annotation without the Print flag")

    file_specs: list[str] = []
    tree = deref(deref(root.get("/Names") or {}).get("/EmbeddedFiles")) or {}
    pairs = deref(tree.get("/Names")) or []
    keys = [pairs[i] for i in range(0, len(pairs), 2)]
    if keys != sorted(
        keys, key=lambda k: k.encode() if k.startswith("u:") and k.isascii() else b"\xff" + k.encode()
    ):
        problems.append("the /EmbeddedFiles name tree is not sorted")
    for index in range(1, len(pairs), 2):
        spec_ref = pairs[index]
        file_specs.append(spec_ref)
        spec = deref(spec_ref)
        stream = deref(deref(spec.get("/EF") or {}).get("/F")) or {}
        label = pairs[index - 1]
        if spec.get("/AFRelationship") not in (
            "/Source",
            "/Data",
            "/Alternative",
            "/Supplement",
            "/Unspecified",
        ):
            problems.append(f"{label}: /AFRelationship is {spec.get('/AFRelationship')}")
        if not spec.get("/UF") or not spec.get("/F"):
            problems.append(f"{label}: file specification lacks /F or /UF")
        if not str(stream.get("/Subtype", "")).count("/") >= 2:  # /type#2Fsubtype → "/type/subtype"
            problems.append(f"{label}: embedded file has no MIME /Subtype ({stream.get('/Subtype')})")
        if "/ModDate" not in (deref(stream.get("/Params")) or {}):
            problems.append(f"{label}: embedded file has no /Params /ModDate")
    associated = deref(root.get("/AF")) or []
    if sorted(associated) != sorted(file_specs):
        problems.append(f"catalog /AF {associated} does not list the embedded files {file_specs}")

    fonts = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()[2:]
    if not fonts:
        problems.append("pdffonts lists no font")
    for line in fonts:
        columns = line.split()
        emb, _, uni = columns[-5:-2]  # emb sub uni (Type 3 emoji glyphs are never "subset")
        if (emb, uni) != ("yes", "yes"):
            problems.append(f"font not embedded or without ToUnicode: {line}")
    _, stderr = pdftotext(path)
    if "No font" in stderr or "Syntax Error" in stderr:
        problems.append(f"pdftotext: {stderr.strip()}")
    info = pdfinfo(path)
    if info.get("Encrypted") != "no" or info.get("JavaScript", "no") != "no":
        problems.append(f"pdfinfo: Encrypted={info.get('Encrypted')} JavaScript={info.get('JavaScript')}")
    return problems


# --- tests -----------------------------------------------------------------------------------


def test_rendered_archive_passes_the_structural_pdfa_checks(archive: Archive):
    assert archive.rendered.pdfa == "3B"
    assert pdfa_problems(archive.rendered.data, archive.folder, "unsigned.pdf") == []


def test_signed_archive_still_passes_and_the_signature_is_valid(archive: Archive, dev_pki):
    assert archive.signed.startswith(archive.rendered.data)  # an incremental update, nothing rewritten
    assert pdfa_problems(archive.signed, archive.folder, "signed.pdf") == []
    path = write(archive.folder, archive.signed, "signed.pdf")
    verdict = pdfsig(path)
    assert "Signature is Valid." in verdict and "Total document signed" in verdict
    status = asyncio.run(pyhanko_status(path, dev_pki.root_pem))
    assert status.intact and status.valid and status.trusted
    xmp = xmp_properties(PdfFileReader(io.BytesIO(archive.signed)).root["/Metadata"].data)
    assert (xmp["part"], xmp["conformance"], xmp["title"]) == (
        "3",
        "B",
        "Ticket #25004711: Rechnung 2025-0117: Position 3 doppelt berechnet",
    )


def test_the_checker_catches_what_breaks_pdfa(archive: Archive, tmp_path: Path):
    plain = render_served(archive.served, options=RenderOptions(pdfa=False))
    problems = " | ".join(pdfa_problems(plain.data, tmp_path, "plain.pdf"))
    assert "no /OutputIntents" in problems and "no /Metadata" in problems

    raw = FPDF()  # core font, CMYK JPEG, encryption: each a PDF/A failure fpdf2 allows without compliance
    raw.add_page()
    raw.set_font("helvetica", size=12)
    raw.cell(text="core font")
    raw.image(io.BytesIO(cmyk_jpeg()), x=10, y=30, w=40)
    raw.set_encryption(owner_password="owner")
    problems = " | ".join(pdfa_problems(bytes(raw.output()), tmp_path, "raw.pdf"))
    assert "/DeviceCMYK" in problems and "font not embedded" in problems and "/Encrypt" in problems

    writer = IncrementalPdfFileWriter(io.BytesIO(archive.rendered.data))
    writer.root["/OpenAction"] = generic.DictionaryObject(
        {
            generic.NameObject("/S"): generic.NameObject("/JavaScript"),
            generic.NameObject("/JS"): generic.TextStringObject("app.alert(1)"),
        }
    )
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    problems = " | ".join(pdfa_problems(out.getvalue(), tmp_path, "js.pdf"))
    assert "has /JS" in problems and "forbidden /JavaScript action" in problems


def test_every_original_is_embedded_with_relationship_and_mime_type(archive: Archive):
    expected = {f.name: f for f in archive.embedded}
    assert [name for name, _, _ in archive.rendered.embedded] == [f.name for f in archive.embedded]
    for name, digest, size in archive.rendered.embedded:
        assert digest == hashlib.sha256(expected[name].data).hexdigest() and size == len(expected[name].data)
    reader = PdfFileReader(io.BytesIO(archive.signed))
    pairs = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    seen = {}
    for index in range(0, len(pairs), 2):
        spec = pairs[index + 1]
        stream = spec["/EF"]["/F"]
        seen[str(spec["/UF"])] = (str(spec["/AFRelationship"]), str(stream["/Subtype"]), stream.data)
    assert set(seen) == set(expected)
    for name, (relationship, subtype, data) in seen.items():
        assert relationship == "/" + expected[name].relationship
        assert subtype == "/" + expected[name].mime_type
        assert data == expected[name].data
    filters = {
        str(pairs[i + 1]["/UF"]): pairs[i + 1]["/EF"]["/F"].get("/Filter") for i in range(0, len(pairs), 2)
    }
    # compressed formats are stored as they are, everything else deflated
    stored = {name for name, kind in filters.items() if kind is None}
    assert stored == {
        n for n, f in expected.items() if f.mime_type in ("application/pdf", "image/jpeg", "image/png")
    }
    assert stored and all(filters[n] == "/FlateDecode" for n in set(filters) - stored)
    kinds = {name.rsplit(".", 1)[-1] for name in seen}
    assert {"json", "eml", "html", "txt", "jpg", "png", "bin", "pdf"} <= kinds
    assert len(archive.served.emls) == 3  # two fixture e-mails and the added one


def test_images_are_srgb_including_a_cmyk_jpeg(archive: Archive):
    path = write(archive.folder, archive.rendered.data, "images.pdf")
    listing = subprocess.run(
        ["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in listing.splitlines()[2:]]
    colours = {row[5] for row in rows if row[2] == "image"}
    assert len([row for row in rows if row[2] == "image"]) >= 2  # the CMYK scan and the 16-bit PNG previews
    assert colours <= {"rgb", "gray", "icc"} and "cmyk" not in colours


def test_pages_say_what_is_embedded_and_what_was_left_out(archive: Archive, tmp_path: Path):
    served = archive.served
    big = next(key for key, (name, _, _) in served.attachments.items() if name == "every-byte.bin")
    embedded = [f for f in archive.embedded if f.attachment_id != big[1]]
    omitted = [
        OmittedFile(
            "every-byte.bin",
            16384,
            "larger than PDF_EMBED_MAX_BYTES (10000)",
            article_id=big[0],
            attachment_id=big[1],
        ),
        OmittedFile(
            "Rechnung-2025-0117.pdf",
            183764,
            "over PDF_EMBED_TOTAL_MAX_BYTES (200000) for the ticket",
            article_id=23051,
            attachment_id=91203,
        ),
    ]
    embedded = [f for f in embedded if f.attachment_id != 91203]
    rendered = render_served(served, embedded=embedded, omitted=omitted)
    text, stderr = pdftotext(write(tmp_path, rendered.data))
    flat = " ".join(text.split())
    assert "No font" not in stderr
    assert "scan-cmyk.jpg — image/jpeg, " in flat and "— embedded in this PDF" in flat
    assert (
        "every-byte.bin — application/octet-stream, 16.0 KiB (16,384 bytes) — not embedded: larger than "
        "PDF_EMBED_MAX_BYTES (10000)" in flat
    )
    assert "not embedded: over PDF_EMBED_TOTAL_MAX_BYTES (200000) for the ticket" in flat
    ticket_block = flat[: flat.index("Article 1 of")]
    assert "Originals" in ticket_block and f" {len(embedded)} files embedded in this PDF (" in ticket_block
    assert "2 left out – see “Originals” at the end" in ticket_block
    originals = flat[flat.index("Originals Not embedded (2)") :]
    for name in ("ticket.json", "articles.json", "article-23051.eml", "article-23054.eml"):
        assert name in originals
    assert f"SHA-256 {hashlib.sha256(served.ticket_raw).hexdigest()}" in originals
    assert f"Embedded ({len(embedded)})" in originals
    assert "every-byte.bin — 16.0 KiB (16,384 bytes) — larger than PDF_EMBED_MAX_BYTES (10000)" in originals
    assert "Rechnung-2025-0117.pdf — 179.5 KiB (183,764 bytes) — over PDF_EMBED_TOTAL_MAX_BYTES" in originals
    assert {name for name, _, _ in rendered.embedded} == {f.name for f in embedded}


def test_pdfa_output_is_reproducible(archive: Archive):
    again = render_served(archive.served)
    assert again.data == archive.rendered.data
    xmp = xmp_properties(PdfFileReader(io.BytesIO(again.data)).root["/Metadata"].data)
    assert xmp["CreateDate"] == xmp["ModifyDate"] == xmp["MetadataDate"] == "2025-03-07T12:00:00+00:00"
    assert b"/ModDate (D:20250307120000Z)" in again.data or b"D:20250307120000" in again.data


def test_empty_and_duplicate_names_are_embedded_and_made_unique(tmp_path: Path):
    files = [
        EmbeddedFile("a.txt", b"one", "text/plain", "Data"),
        EmbeddedFile("a.txt", b"two", "text/plain", "Data"),
        EmbeddedFile("empty.bin", b"", "application/octet-stream", "Data"),
        EmbeddedFile("Zürich.txt", b"\xfc", "text/plain; charset=latin-1", "Source"),
    ]
    rendered = render_ticket_pdf(
        {"number": "9", "title": "Dateien"},
        [],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        embedded=files,
    )
    assert [name for name, _, _ in rendered.embedded] == ["a.txt", "a-2.txt", "empty.bin", "Zürich.txt"]
    assert rendered.embedded[2] == ("empty.bin", hashlib.sha256(b"").hexdigest(), 0)
    assert pdfa_problems(rendered.data, tmp_path) == []


def test_an_attachment_with_a_huge_name_and_description_keeps_the_archive_pdfa(tmp_path: Path):
    """The workflow describes an attachment as "Attachment {file name} of article N": a file name
    of 40,000 characters made a /Desc over the 32,767 bytes a PDF/A string may hold (ISO 19005-3
    §6.1.13), and veraPDF failed the archive. Names and descriptions are cut (the extension kept)."""
    files = [
        EmbeddedFile("n" * 40_000 + ".txt", b"one", "text/plain", "Data", "Attachment " + "ü" * 40_000),
        EmbeddedFile("n" * 40_000 + ".txt", b"two", "text/plain", "Data"),
    ]
    rendered = render_ticket_pdf(
        {"number": "9", "title": "Dateien"},
        [],
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        embedded=files,
    )
    first, second = (name for name, _, _ in rendered.embedded)
    assert len(first) == 255 and first.endswith("n….txt") and second == first[:-4] + "-2.txt"
    path = write(tmp_path, rendered.data)
    verdict = verapdf(path, "3b")
    assert verdict.returncode == 0 and verdict.stdout.startswith("PASS"), verdict.stdout


def test_unknown_relationship_is_a_permanent_render_error():
    with pytest.raises(RenderError, match="AFRelationship") as info:
        render_ticket_pdf(
            {"number": "9", "title": "x"},
            [],
            [],
            archived_at=ARCHIVED_AT,
            options=RenderOptions(),
            embedded=[EmbeddedFile("a.txt", b"a", "text/plain", "Original")],
        )
    assert info.value.transient is False


async def test_both_renderers_pass_the_originals_through():
    from app.render.pool import InlineRenderer, ProcessPoolRenderer
    from app.workflow.ports import TicketSnapshot

    snapshot = TicketSnapshot(
        ticket={"number": "7", "title": "Pool"},
        articles=[],
        tags=[],
        archived_at=ARCHIVED_AT,
        embedded=(EmbeddedFile("ticket.json", b'{"id": 7}', "application/json", "Source"),),
        omitted=(OmittedFile("huge.iso", 10**9, "larger than PDF_EMBED_MAX_BYTES (1000)"),),
    )
    pool = ProcessPoolRenderer(RenderOptions(), processes=1)
    try:
        results = [await InlineRenderer(RenderOptions()).render(snapshot), await pool.render(snapshot)]
    finally:
        pool.close()
    for rendered in results:
        assert rendered.pdfa == "3B"
        assert rendered.embedded == (("ticket.json", hashlib.sha256(b'{"id": 7}').hexdigest(), 9),)
        assert read_names(rendered.data) == ["ticket.json"]
    assert results[0].data == results[1].data


def read_names(data: bytes) -> list[str]:
    pairs = PdfFileReader(io.BytesIO(data)).root["/Names"]["/EmbeddedFiles"]["/Names"]
    return [str(pairs[i]) for i in range(0, len(pairs), 2)]


def test_the_email_corpus_in_one_ticket_passes_the_checks(tmp_path: Path):
    """Messy HTML (pre/code, links, tables, RTL, CJK, emoji, images): no core font, every annotation
    printable."""
    from .email_corpus import CORPUS, PNG_RED
    from .test_email_corpus import CID_ATTACHMENT

    articles = [
        {
            "id": index,
            "type": "email",
            "sender": "Customer",
            "content_type": content_type,
            "body": body,
            "created_at": f"2025-03-03T08:{index // 60:02d}:{index % 60:02d}Z",
            "attachments": [CID_ATTACHMENT],
        }
        for index, (name, (body, content_type, _)) in enumerate(sorted(CORPUS.items()), start=1)
        if len(body) < 20_000
    ]
    assert len(articles) >= 35
    rendered = render_ticket_pdf(
        {"number": "1", "title": "Korpus"},
        articles,
        [],
        archived_at=ARCHIVED_AT,
        options=RenderOptions(),
        images={501: PNG_RED},
    )
    path = write(tmp_path, rendered.data)
    objects = json.dumps(qpdf_objects(path))
    assert '"/Subtype": "/Link"' in objects  # links became annotations, so the Print-flag check had work
    assert pdfa_problems(rendered.data, tmp_path) == []
