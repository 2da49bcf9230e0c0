"""The signature revision written without pyHanko's PDF writer (``app.signing.incremental``):
taken for fpdf2 output, checked by pdfsig, openssl and pyHanko, shaped like pyHanko's own update,
and left to pyHanko for every file it does not handle."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

import app.signing.signer as signer_module
from app.signing.incremental import IncrementalSignature, UnsupportedLayout
from app.signing.options import SigningOptions
from app.signing.signer import ArchiveSigner
from tests.signing.signing_helpers import PFX_PASSWORD, openssl, pdfsig, signed_content

OPTIONS = SigningOptions(
    reason="Ticket-Archivierung (Test) – ü", location="Berlin", contact="archive@example.org"
)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer(pfx_bytes: bytes) -> ArchiveSigner:
    return ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), options=OPTIONS)


@pytest.fixture
def no_pyhanko_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if pyHanko's general signing flow is used (the fast path must take the file)."""

    def refuse(*args, **kwargs):
        raise AssertionError("pyHanko's IncrementalPdfFileWriter was used")

    monkeypatch.setattr(signer_module, "IncrementalPdfFileWriter", refuse)


async def status_of(signed: bytes, root_cert, index: int = 0):
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[index]
    return await async_validate_pdf_signature(
        sig, ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    )


def build_pdf(
    objects: dict[int, bytes], root: int, *, header: bytes = b"%PDF-1.4", trailer_extra: bytes = b""
) -> bytes:
    """A single-revision PDF with a classic xref table from raw object bodies."""
    out = bytearray(header + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (num, objects[num])
    size = max(objects) + 1
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets[num] if num in objects else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        trailer_extra,
        xref_at,
    )
    return bytes(out)


def content_stream(text: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text)


TRICKY = build_pdf(
    {
        1: b"<< /Type /Catalog % a comment with >> and ( in it\n /Pages 2 0 R /Lang (de\\)\\\\) "
        b"/Names << /Dests << /Names [(a\\(b) [3 0 R /XYZ null null null] (c\\)) [3 0 R /Fit]] >> >>"
        b" /ViewerPreferences << /DisplayDocTitle true >> /PageLabels << /Nums [0 << /S /D >>] >>"
        b" /Nested (x (y) \\(z\\) w) /Big [" + b" ".join(b"(entry-%04d)" % i for i in range(400)) + b"] >>",
        2: b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        5: b"<< /Type /Pages /Parent 2 0 R /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 5 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << >>"
        b" /Annots [6 0 R] >>",
        4: content_stream(b"0 0 m 10 10 l S"),
        6: b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /Border [0 0 0]"
        b" /A << /S /URI /URI (https://x) >> >>",
    },
    root=1,
    trailer_extra=b"/ID [<0102> <0304>] ",
)


async def test_fpdf2_output_is_signed_without_pyhankos_writer_and_verifies_everywhere(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert, dev_certs, tmp_path: Path, no_pyhanko_writer
) -> None:
    signed = (await signer.sign(sample_pdf)).data

    assert signed.startswith(sample_pdf)
    status = await status_of(signed, root_cert)
    assert status.bottom_line and status.intact and status.valid and status.trusted
    assert status.coverage.name == "ENTIRE_FILE" and status.docmdp_ok
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    text = pdfsig(path)
    assert "Signature is Valid." in text and "Total document signed" in text
    assert "Signature Type: ETSI.CAdES.detached" in text and "Signature Field Name: Signature1" in text
    (tmp_path / "content.bin").write_bytes(signed_content(signed))
    (tmp_path / "sig.der").write_bytes(status_of_cms(signed))
    verify = openssl(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        "sig.der",
        "-binary",
        "-content",
        "content.bin",
        "-CAfile",
        str(dev_certs.root_pem),
        "-purpose",
        "any",
        "-out",
        "/dev/null",
        cwd=tmp_path,
    )
    assert verify.returncode == 0, verify.stderr


def status_of_cms(signed: bytes) -> bytes:
    return PdfFileReader(io.BytesIO(signed)).embedded_signatures[0].pkcs7_content


async def test_the_update_has_the_shape_of_pyhankos_own(
    signer: ArchiveSigner, sample_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same catalog entries, field, widget and signature dictionary keys as pyHanko's
    ``PdfSigner`` writes (the XMP metadata stream is the one difference: left as it was)."""
    fast = (await signer.sign(sample_pdf)).data
    monkeypatch.setattr(ArchiveSigner, "_prepare_update", lambda self, pdf, now: None)
    stock = (await signer.sign(sample_pdf)).data

    def shape(data: bytes):
        reader = PdfFileReader(io.BytesIO(data))
        root = reader.root
        form = root["/AcroForm"]
        assert len(form["/Fields"]) == 1
        field = form["/Fields"][0]
        sig = field["/V"]
        page = reader.root["/Pages"]["/Kids"][0]
        return (
            str(root.get("/Version")),
            root["/Extensions"]["/ESIC"],
            dict(form.items()).keys(),
            int(form["/SigFlags"]),
            {k: field[k] for k in ("/FT", "/T", "/Type", "/Subtype", "/F")},
            list(field["/Rect"]),
            field["/P"]["/Type"],
            field["/P"]["/Contents"] == page["/Contents"],
            [(a.get_object()["/T"], a.get_object()["/Subtype"]) for a in page["/Annots"]],
            sorted(sig.keys()),
            {k: sig[k] for k in ("/Type", "/Filter", "/SubFilter", "/Reason", "/Location", "/ContactInfo")},
            reader.trailer["/ID"][0],
            len(reader.embedded_signatures),
        )

    assert shape(fast) == shape(stock)


async def test_tricky_syntax_and_an_existing_annotation(
    signer: ArchiveSigner, root_cert, tmp_path: Path, no_pyhanko_writer
) -> None:
    """Comments, escaped and nested parentheses, nested dictionaries and arrays in a catalog
    larger than the first read (4 KiB), a nested page tree and an existing link on the first
    page: copied as they are, the widget added."""
    signed = (await signer.sign(TRICKY)).data

    status = await status_of(signed, root_cert)
    assert status.bottom_line and status.intact and status.valid and status.trusted
    reader = PdfFileReader(io.BytesIO(signed))
    assert str(reader.root["/Lang"]) == "de)\\" and str(reader.root["/Version"]) == "/1.7"
    names = reader.root["/Names"]["/Dests"]["/Names"]
    assert [str(names[i]) for i in (0, 2)] == ["a(b", "c)"]
    assert reader.root["/PageLabels"]["/Nums"][1]["/S"] == "/D"
    assert str(reader.root["/Nested"]) == "x (y) (z) w" and len(reader.root["/Big"]) == 400  # > 4 KiB catalog
    annots = [a.get_object() for a in reader.root["/Pages"]["/Kids"][0]["/Kids"][0]["/Annots"]]
    assert [a["/Subtype"] for a in annots] == ["/Link", "/Widget"]
    assert reader.trailer["/ID"][0] == b"\x01\x02" and reader.trailer["/ID"][1] != b"\x03\x04"
    path = tmp_path / "tricky.pdf"
    path.write_bytes(signed)
    assert "Signature is Valid." in pdfsig(path)


async def test_a_second_signature_goes_through_pyhanko(
    pfx_bytes: bytes, sample_pdf: bytes, root_cert
) -> None:
    """A signed file has two revisions and an /AcroForm: pyHanko's writer signs it again."""
    first = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())
    second = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), options=SigningOptions(field_name="Signature2")
    )
    once = (await first.sign(sample_pdf)).data
    with pytest.raises(UnsupportedLayout):
        prepare(once)

    twice = (await second.sign(once)).data

    assert twice.startswith(once)
    for index in (0, 1):
        status = await status_of(twice, root_cert, index)
        assert status.intact and status.valid and status.trusted


def prepare(pdf: bytes) -> IncrementalSignature:
    return IncrementalSignature.prepare(
        io.BytesIO(pdf), field_name="Signature1", signing_time=NOW, bytes_reserved=8192
    )


def xref_stream_pdf() -> bytes:
    writer = PdfFileWriter(stream_xrefs=True)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("pdf, why", [
    (b"<html>not a pdf</html>", "header"),
    (xref_stream_pdf(), "cross-reference stream"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [] >> >>",
                2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", 3: b"<< /Type /Page /Parent 2 0 R >>"}, 1), "/AcroForm"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: b"<< /Type /Page /Parent 2 0 R /Annots 4 0 R >>", 4: b"[]"}, 1), "/Annots"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: b"<< /Type /Page /Parent 2 0 R >>"}, 1, header=b"%PDF-2.0"), "PDF 2.0"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: b"<< /Type /Page /Parent 2 0 R >>"}, 1, trailer_extra=b"/Encrypt 9 0 R "), "/Encrypt"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: content_stream(b"q Q")}, 1), "not a plain dictionary"),
    # /Acro#46orm is /AcroForm and /Ann#6fts is /Annots (ISO 32000-1 §7.3.5): adding the
    # plain key would duplicate it.
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R /Acro#46orm << /Fields [] >> >>",
                2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", 3: b"<< /Type /Page /Parent 2 0 R >>"}, 1),
     "catalog has a key written with # escapes"),
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: b"<< /Type /Page /Parent 2 0 R /Ann#6fts [] >>"}, 1), "first page has a key written with #"),
    # A trailer /Size below the highest object: new objects would overwrite listed ones.
    (build_pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                3: b"<< /Type /Page /Parent 2 0 R >>"}, 1).replace(b"/Size 4 ", b"/Size 2 "), "beyond /Size"),
])  # fmt: skip
def test_unusual_files_are_left_to_pyhanko(pdf: bytes, why: str) -> None:
    with pytest.raises(UnsupportedLayout, match=why):
        prepare(pdf)


async def test_a_key_with_escapes_is_signed_by_pyhanko_without_a_duplicate(
    signer: ArchiveSigner, root_cert, tmp_path: Path
) -> None:
    pdf = build_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /Ext#65nsions << >> >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
        },
        1,
    )

    signed = (await signer.sign(pdf)).data

    status = await status_of(signed, root_cert)  # pyHanko reads it in strict mode: no duplicate key
    assert status.intact and status.valid and status.trusted


async def test_files_it_does_not_handle_are_still_signed(signer: ArchiveSigner, root_cert) -> None:
    pdf = build_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Annots 4 0 R >>",
            4: b"[]",
        },
        1,
    )

    signed = (await signer.sign(pdf)).data

    status = await status_of(signed, root_cert)
    assert status.intact and status.valid and status.trusted
