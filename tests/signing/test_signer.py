"""B-B signatures checked by three verifiers: pdfsig (poppler), pyHanko, and openssl cms on the raw CMS."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from app.errors import ConfigError, SigningError
from app.observability.metrics import Metrics
from app.signing.options import SigningOptions
from app.signing.signer import ArchiveSigner, UnsignedPassthrough
from app.signing.tsa import build_timestamper
from tests.signing.signing_helpers import PFX_PASSWORD, load_asn1_cert, openssl, pdfsig, signed_content

OPTIONS = SigningOptions(reason="Ticket-Archivierung", location="Berlin", contact="archive@example.org")


@pytest.fixture(scope="module")
def signer(pfx_bytes: bytes) -> ArchiveSigner:
    return ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), options=OPTIONS)


async def validate(signed: bytes, root_cert):
    vc = ValidationContext(trust_roots=[root_cert], allow_fetching=False)
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    return sig, await async_validate_pdf_signature(sig, vc)


async def test_signed_pdf_metadata(signer: ArchiveSigner, sample_pdf: bytes, dev_certs) -> None:
    result = await signer.sign(sample_pdf)

    assert result.signed and result.pades_level == "B-B" and result.timestamp is None
    assert result.data.startswith(sample_pdf)  # one incremental update, input untouched
    assert result.signer_subject == "CN=Dev Archive Signer,O=zammad-pdf-archiver dev"
    fingerprint = openssl(
        "x509", "-in", str(dev_certs.signer_pem), "-noout", "-fingerprint", "-sha256"
    ).stdout
    assert result.signer_cert_sha256 == fingerprint.split("=", 1)[1].strip().replace(":", "").lower()
    assert signer.sha256_fingerprint == result.signer_cert_sha256
    assert signer.subject == result.signer_subject
    assert signer.not_before < signer.not_after


async def test_pdfsig_reports_valid_total_signature(
    signer: ArchiveSigner, sample_pdf: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "signed.pdf"
    path.write_bytes((await signer.sign(sample_pdf)).data)

    text = pdfsig(path)

    assert "Signature Validation: Signature is Valid." in text
    assert "Total document signed" in text
    assert "Signature Type: ETSI.CAdES.detached" in text
    assert "Signature Field Name: Signature1" in text


async def test_pyhanko_validation_intact_valid_trusted(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert
) -> None:
    signed = (await signer.sign(sample_pdf)).data

    sig, status = await validate(signed, root_cert)

    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert sig.sig_object["/Reason"] == OPTIONS.reason
    assert sig.sig_object["/Location"] == OPTIONS.location
    assert sig.sig_object["/ContactInfo"] == OPTIONS.contact
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert status.coverage.name == "ENTIRE_FILE"
    field = sig.sig_field
    assert [float(x) for x in field["/Rect"]] == [0, 0, 0, 0]  # invisible


async def test_openssl_cms_verifies_the_cms_independently(
    signer: ArchiveSigner, sample_pdf: bytes, dev_certs, tmp_path: Path
) -> None:
    signed = (await signer.sign(sample_pdf)).data
    (tmp_path / "signed.pdf").write_bytes(signed)
    dump = pdfsig_dump(tmp_path)
    (tmp_path / "content.bin").write_bytes(signed_content(signed))

    proc = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", str(dump), "-content", "content.bin",
        "-CAfile", str(dev_certs.root_pem), "-purpose", "any", "-out", "verified.bin", cwd=tmp_path,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    assert "Verification successful" in proc.stderr
    attrs = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", str(dump)).stdout
    assert "id-smime-aa-signingCertificateV2" in attrs and "messageDigest" in attrs
    assert "signingTime" not in attrs  # PAdES: the signing time lives in /M, not in the CMS


async def test_openssl_cms_rejects_other_content(
    signer: ArchiveSigner, sample_pdf: bytes, dev_certs, tmp_path: Path
) -> None:
    signed = (await signer.sign(sample_pdf)).data
    (tmp_path / "signed.pdf").write_bytes(signed)
    dump = pdfsig_dump(tmp_path)
    content = bytearray(signed_content(signed))
    content[100] ^= 0x01
    (tmp_path / "content.bin").write_bytes(bytes(content))

    proc = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", str(dump), "-content", "content.bin",
        "-CAfile", str(dev_certs.root_pem), "-purpose", "any", "-out", "verified.bin", cwd=tmp_path,
    )  # fmt: skip

    assert proc.returncode != 0


async def test_flipped_byte_in_signed_range_is_detected(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert, tmp_path: Path
) -> None:
    signed = bytearray((await signer.sign(sample_pdf)).data)
    at = signed.index(b"Ticket #31001")  # /Title in the info dictionary: inside the first range
    signed[at] ^= 0x20  # "T" -> "t": still a well-formed PDF
    path = tmp_path / "tampered.pdf"
    path.write_bytes(bytes(signed))

    text = pdfsig(path)
    _, status = await validate(bytes(signed), root_cert)

    assert "Digest Mismatch" in text
    assert "Signature is Valid." not in text
    assert not status.intact and not status.bottom_line


async def test_two_signatures_of_the_same_pdf_are_both_valid_and_independent(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert
) -> None:
    first, second = await signer.sign(sample_pdf), await signer.sign(sample_pdf)

    for result in (first, second):
        _, status = await validate(result.data, root_cert)
        assert status.bottom_line
    assert hashlib.sha256(first.data).digest() != hashlib.sha256(second.data).digest()


async def test_untrusted_root_is_not_trusted(signer: ArchiveSigner, sample_pdf: bytes, dev_certs) -> None:
    """The trust assertions above mean something: with another root the chain does not validate."""
    signed = (await signer.sign(sample_pdf)).data

    _, status = await validate(signed, load_asn1_cert(dev_certs.tsa_pem))

    assert status.intact and status.valid and not status.trusted


async def test_input_that_is_not_a_pdf_is_a_permanent_error(signer: ArchiveSigner) -> None:
    with pytest.raises(SigningError) as info:
        await signer.sign(b"<html>not a pdf</html>")

    assert info.value.transient is False


async def test_too_small_reservation_is_a_permanent_error(pfx_bytes: bytes, sample_pdf: bytes) -> None:
    tiny = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), options=SigningOptions(bytes_reserved=2048)
    )

    with pytest.raises(SigningError) as info:
        await tiny.sign(sample_pdf)

    assert info.value.transient is False
    assert "bytes_reserved" in str(info.value)


async def test_unsigned_passthrough_returns_input(sample_pdf: bytes) -> None:
    result = await UnsignedPassthrough().sign(sample_pdf)

    assert result.data is sample_pdf and result.signed is False
    assert result.pades_level is None and result.signer_subject is None and result.timestamp is None


def pdfsig_dump(workdir: Path) -> Path:
    subprocess.run(["pdfsig", "-dump", "signed.pdf"], cwd=workdir, capture_output=True)
    dump = workdir / "signed.pdf.sig0"
    assert dump.exists(), "pdfsig -dump wrote no CMS"
    return dump


async def test_signing_certificate_attribute_is_pyhankos_in_every_signature(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert
) -> None:
    """The signing-certificate-v2 attribute is encoded once per signer and reused: each
    signature still carries exactly what pyHanko's own provider builds, and validates."""
    from pyhanko.sign.attributes import SigningCertificateV2Provider

    expected = (await SigningCertificateV2Provider(signer._signer.signing_cert).get_attribute()).dump()
    for _ in range(3):
        signed = (await signer.sign(sample_pdf)).data
        sig, status = await validate(signed, root_cert)
        assert status.intact and status.valid and status.trusted
        attrs = sig.signer_info["signed_attrs"]
        found = [a.dump() for a in attrs if a["type"].native == "signing_certificate_v2"]
        assert found == [expected]
    assert set(signer._signer._encoded_attributes) == {"signing_certificate_v2"}


async def test_sign_file_signs_file_to_file(
    signer: ArchiveSigner, sample_pdf: bytes, root_cert, tmp_path: Path
) -> None:
    """The service's path: the PDF is read from a file and signed into a new one, never held
    whole in memory; same facts and a signature as valid as :meth:`sign`'s."""
    source, target = tmp_path / "rendered.pdf", tmp_path / "signed.pdf"
    source.write_bytes(sample_pdf)

    result = await signer.sign_file(source, target)

    assert result.data == b"" and result.path == target
    assert (
        result.signed,
        result.pades_level,
        result.signer_subject,
        result.signer_cert_sha256,
        result.timestamp,
    ) == (True, "B-B", signer.subject, signer.sha256_fingerprint, None)
    signed = target.read_bytes()
    assert signed.startswith(sample_pdf) and source.read_bytes() == sample_pdf  # one update, input untouched
    _, status = await validate(signed, root_cert)
    assert status.bottom_line and status.intact and status.valid and status.trusted
    assert "Signature is Valid." in pdfsig(target)


async def test_sign_file_failures_leave_no_target(signer: ArchiveSigner, tmp_path: Path) -> None:
    source, target = tmp_path / "not.pdf", tmp_path / "signed.pdf"
    source.write_bytes(b"<html>not a pdf</html>")
    with pytest.raises(SigningError, match="not a readable PDF") as info:
        await signer.sign_file(source, target)
    assert info.value.transient is False and not target.exists()
    with pytest.raises(SigningError, match="cannot read or write the PDF file"):
        await signer.sign_file(tmp_path / "missing.pdf", target)
    assert not target.exists()


async def test_unsigned_passthrough_sign_file_keeps_the_file(tmp_path: Path) -> None:
    source = tmp_path / "rendered.pdf"
    source.write_bytes(b"%PDF-1.7 ...")
    result = await UnsignedPassthrough().sign_file(source, tmp_path / "signed.pdf")
    assert (result.signed, result.path, result.data) == (False, source, b"")
    assert not (tmp_path / "signed.pdf").exists()


async def test_level_without_its_inputs_is_refused(pfx_bytes: bytes) -> None:
    with pytest.raises(ConfigError, match="TSA_URL"):
        ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), level="B-T")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="SIGNING_TRUST_ROOTS_PATH"):
            ArchiveSigner.from_pfx(
                pfx_bytes,
                PFX_PASSWORD.encode(),
                level="B-LT",
                timestamper=build_timestamper("http://127.0.0.1:9/", session),
            )


def test_expiry_warning_log_and_metric(pfx_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    probe = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())
    near = probe.not_after - timedelta(days=10)
    caplog.set_level(logging.WARNING, logger="app.signing")

    quiet = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), expiry_warning=timedelta(days=5), clock=lambda: near
    )
    assert not quiet.expires_soon() and not caplog.records
    loud = ArchiveSigner.from_pfx(
        pfx_bytes, PFX_PASSWORD.encode(), expiry_warning=timedelta(days=30), clock=lambda: near
    )

    assert loud.expires_soon()
    (record,) = caplog.records
    assert "expires soon" in record.getMessage() and record.days_left == 10.0
    metrics = Metrics()
    metrics.watch_signing_certificate(lambda: (loud.not_after - near).total_seconds(), loud.expires_soon)
    text = metrics.exposition()[0].decode()
    assert "zammad_pdf_archiver_signing_certificate_expiry_seconds 864000.0" in text
    assert "zammad_pdf_archiver_signing_certificate_expiring 1.0" in text
