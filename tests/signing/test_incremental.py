"""The signature revision written without pyHanko's PDF writer (``app.signing.incremental``):
taken for fpdf2 output, checked by pdfsig, openssl and pyHanko, shaped like pyHanko's own update,
and left to pyHanko (logged) for every file it does not handle. The fuzzing is in
``test_incremental_fuzz.py``."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from app.errors import SigningError
from app.signing.incremental import IncrementalSignature
from app.signing.options import SigningOptions
from app.signing.pdf_syntax import MAX_NESTING, MAX_OBJECT_NUMBER, UnsupportedLayout
from app.signing.signer import INCREMENTAL_WRITER, PYHANKO_WRITER, ArchiveSigner
from tests.signing.signing_helpers import PFX_PASSWORD, openssl, pdfsig, signed_content

OPTIONS = SigningOptions(
    reason="Ticket-Archivierung (Test) – ü", location="Berlin", contact="archive@example.org"
)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer(pfx_bytes: bytes) -> ArchiveSigner:
    return ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), options=OPTIONS)


async def sign_directly(signer: ArchiveSigner, pdf: bytes) -> bytes:
    """Sign ``pdf`` and check that the direct writer, not pyHanko's, wrote the revision."""
    before = signer.revisions_by_writer
    signed = (await signer.sign(pdf)).data
    after = signer.revisions_by_writer
    assert after.get(INCREMENTAL_WRITER, 0) == before.get(INCREMENTAL_WRITER, 0) + 1, (
        "pyHanko's writer was used"
    )
    assert after.get(PYHANKO_WRITER, 0) == before.get(PYHANKO_WRITER, 0)
    return signed


async def status_of(signed: bytes, root_cert, index: int = 0):
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[index]
    return await async_validate_pdf_signature(
        sig, ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    )


def build_pdf(
    objects: dict[int, bytes],
    root: int,
    *,
    header: bytes = b"%PDF-1.4",
    trailer_extra: bytes = b"",
    generations: dict[int, int] | None = None,
) -> bytes:
    """A single-revision PDF with a classic xref table from raw object bodies."""
    generations = generations or {}
    out = bytearray(header + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d %d obj\n%s\nendobj\n" % (num, generations.get(num, 0), objects[num])
    size = max(objects) + 1
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        if num in objects:
            out += b"%010d %05d n \n" % (offsets[num], generations.get(num, 0))
        else:
            out += b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d %d R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        generations.get(root, 0),
        trailer_extra,
        xref_at,
    )
    return bytes(out)


def simple_pdf(catalog: bytes = b"", page: bytes = b"", **kwargs) -> bytes:
    """Catalog (1), page tree (2), one page (3), with ``catalog``/``page`` added to their
    dictionaries and ``kwargs`` (``extra`` objects by number, others) passed to :func:`build_pdf`."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] " + page + b" >>",
        **kwargs.pop("extra", {}),
    }
    return build_pdf(objects, 1, **kwargs)


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
    signer: ArchiveSigner, sample_pdf: bytes, root_cert, dev_certs, tmp_path: Path
) -> None:
    signed = await sign_directly(signer, sample_pdf)

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
    signer: ArchiveSigner, pfx_bytes: bytes, sample_pdf: bytes
) -> None:
    """Same catalog entries, field, widget and signature dictionary keys as pyHanko's
    ``PdfSigner`` writes (the XMP metadata stream is the one difference: left as it was)."""
    stock_signer = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), options=OPTIONS, incremental_writer=False
    )
    fast = await sign_directly(signer, sample_pdf)
    stock = (await stock_signer.sign(sample_pdf)).data
    assert stock_signer.revisions_by_writer == {PYHANKO_WRITER: 1}

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
    signer: ArchiveSigner, root_cert, tmp_path: Path
) -> None:
    """Comments, escaped and nested parentheses, nested dictionaries and arrays in a catalog
    larger than the first read (4 KiB), a nested page tree and an existing link on the first
    page: copied as they are, the widget added."""
    signed = await sign_directly(signer, TRICKY)

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


UNUSUAL = {
    "header": b"<html>not a pdf</html>",
    "cross-reference stream": xref_stream_pdf(),
    "catalog has /AcroForm": simple_pdf(b"/AcroForm << /Fields [] >>"),
    "catalog has /Extensions": simple_pdf(b"/Extensions << >>"),
    "catalog has /Perms": simple_pdf(b"/Perms << >>"),
    "/Annots is not a direct array": simple_pdf(page=b"/Annots 4 0 R", extra={4: b"[]"}),
    "PDF 2.0": simple_pdf(header=b"%PDF-2.0"),
    "trailer has /Encrypt": simple_pdf(trailer_extra=b"/Encrypt 9 0 R "),
    "trailer has /Prev": simple_pdf(trailer_extra=b"/Prev 9 "),
    "trailer has /XRefStm": simple_pdf(trailer_extra=b"/XRefStm 9 "),
    "not a plain dictionary": build_pdf(
        {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
         3: content_stream(b"q Q")}, 1),
    # /Acro#46orm is /AcroForm and /Ann#6fts is /Annots (ISO 32000-1 §7.3.5): adding the
    # plain key would duplicate it.
    "catalog has a key written with # escapes": simple_pdf(b"/Acro#46orm << /Fields [] >>"),
    "first page has a key written with #": simple_pdf(page=b"/Ann#6fts []"),
    # A trailer /Size below the highest object: new objects would overwrite listed ones.
    "beyond /Size": simple_pdf().replace(b"/Size 4 ", b"/Size 2 "),
    "no room below object number": simple_pdf().replace(b"/Size 4 ", b"/Size %d " % (MAX_OBJECT_NUMBER - 1)),
    # pyHanko's strict reader refuses an object in use at a higher generation in one revision.
    "in use at a generation above 0": simple_pdf(generations={3: 1}).replace(b"[3 0 R]", b"[3 1 R]"),
    "entries malformed": simple_pdf().replace(b" n \n", b" n\n"),
    "/ID is not an array of two strings": simple_pdf(trailer_extra=b"/ID [<01>] "),
    "/ID is not an array": simple_pdf(trailer_extra=b"/ID 1 0 R "),
    "/Type twice": simple_pdf(b"/Type /Catalog"),
    "nested deeper than": simple_pdf(b"/Deep " + b"[" * (MAX_NESTING + 2) + b"]" * (MAX_NESTING + 2)),
    "unexpected": simple_pdf(b"/Odd [1 \xc4 2]"),
    "unexpected b'1x'": simple_pdf(b"/Odd 1x"),
    "malformed hex string": simple_pdf(b"/Odd <0g>"),
    "not found at its offset": simple_pdf(extra={4: b"<< /Title (x) >>"}, trailer_extra=b"/Info 4 0 R ")
    .replace(b"4 0 obj\n<< /Title", b"4 0 ob \n<< /Title"),
    "not a stream with a direct /Length": simple_pdf(
        b"/Metadata 4 0 R", extra={4: b"<< /Length 5 0 R >>\nstream\nxx\nendstream", 5: b"2"}),
    "does not end where its /Length says": simple_pdf(
        b"/Metadata 4 0 R", extra={4: b"<< /Length 9 >>\nstream\nxx\nendstream"}),
}  # fmt: skip


@pytest.mark.parametrize("why", list(UNUSUAL))
def test_unusual_files_are_left_to_pyhanko(why: str) -> None:
    with pytest.raises(UnsupportedLayout, match=why):
        prepare(UNUSUAL[why])


def test_the_writer_accepts_the_simple_file_the_unusual_ones_are_made_from() -> None:
    """Control: each case above differs from an accepted file only in what its name says."""
    prepare(simple_pdf())
    prepare(simple_pdf(extra={4: b"<< /Title (x) >>"}, trailer_extra=b"/Info 4 0 R /ID [<01> (x)] "))
    prepare(simple_pdf(b"/Metadata 4 0 R", extra={4: b"<< /Length 2 >>\nstream\nxx\nendstream"}))
    prepare(
        simple_pdf(b"/Deep " + b"[" * MAX_NESTING + b"]" * MAX_NESTING + b" /Odd [1 2.5 -.5 true null /N]")
    )


@pytest.mark.parametrize("digest", ["sha1", "shake256", "md5"])
def test_digests_it_does_not_compute_are_left_to_pyhanko(digest: str) -> None:
    with pytest.raises(UnsupportedLayout, match="left to pyHanko"):
        IncrementalSignature.prepare(
            io.BytesIO(simple_pdf()),
            field_name="S",
            signing_time=NOW,
            bytes_reserved=8192,
            md_algorithm=digest,
        )


async def test_a_file_left_to_pyhanko_is_logged_and_counted(
    pfx_bytes: bytes, root_cert, caplog: pytest.LogCaptureFixture
) -> None:
    signer = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())
    caplog.set_level(logging.INFO, logger="app.signing")

    await sign_directly(signer, simple_pdf())
    signed = (await signer.sign(UNUSUAL["catalog has /Extensions"])).data

    assert signer.revisions_by_writer == {INCREMENTAL_WRITER: 1, PYHANKO_WRITER: 1}
    (record,) = [r for r in caplog.records if "left to pyHanko" in r.getMessage()]
    assert vars(record)["reason"] == "catalog has /Extensions"
    status = await status_of(signed, root_cert)
    assert status.intact and status.valid and status.trusted


async def test_an_annots_array_ending_in_a_comment_gets_the_widget(signer: ArchiveSigner, root_cert) -> None:
    """The widget goes after the comment's end of line, not into the comment."""
    pdf = simple_pdf(page=b"/Annots [% no annotations yet ]\n]")

    signed = await sign_directly(signer, pdf)

    status = await status_of(signed, root_cert)
    assert status.intact and status.valid and status.trusted
    page = PdfFileReader(io.BytesIO(signed)).root["/Pages"]["/Kids"][0]
    assert [a.get_object()["/Subtype"] for a in page["/Annots"]] == ["/Widget"]


async def test_a_size_beyond_the_object_number_limit_is_refused_by_either_writer(
    signer: ArchiveSigner,
) -> None:
    """pyHanko's writer would number the new objects past what readers support (qpdf: 2^31)."""
    pdf = simple_pdf().replace(b"/Size 4 ", b"/Size 1000000000000 ")

    with pytest.raises(SigningError, match="Annex C.2") as info:
        await signer.sign(pdf)

    assert info.value.transient is False


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
