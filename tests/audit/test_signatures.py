"""The audit's signature check against pyHanko's validation, on real signatures from the dev PKI.

Every case is judged twice: by :class:`app.audit.signatures.SignatureVerifier` (the byte-range
way or pyHanko's reader, our CMS and timestamp checks, cached path validation) and by pyHanko's
``async_validate_pdf_signature`` / ``async_validate_pdf_timestamp`` with the same trust root.
The verdicts must agree.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext

from app.audit import cms_general
from app.audit.cms_check import verify_cms
from app.audit.cms_types import OID_DATA, CertificateCache
from app.audit.signatures import PdfVerdict, SignatureFinding, SignatureVerifier
from tests.audit.archives import dev_timestamper, load_cert, ticket_pdf
from tests.conftest import DevPki

BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


async def pyhanko_ok(pdf: bytes, dev_pki: DevPki) -> bool:
    """pyHanko's verdict: every signature's bottom line, every document timestamp valid and trusted."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = reader.embedded_signatures
    except Exception:  # noqa: BLE001 - any reader failure is "not valid" here
        return False
    if not embedded:
        return False
    context = ValidationContext(
        trust_roots=[load_cert(dev_pki.root_pem)], allow_fetching=False, revocation_mode="soft-fail"
    )
    for sig in embedded:
        try:
            if sig.sig_object_type == "/DocTimeStamp":
                status = await async_validate_pdf_timestamp(sig, context)
                if not (status.valid and status.intact and status.trusted):
                    return False
            elif not (await async_validate_pdf_signature(sig, context)).bottom_line:
                return False
        except Exception:  # noqa: BLE001 - a validation error is a failed validation
            return False
    return True


def ours(pdf: bytes, dev_pki: DevPki) -> tuple[bool, str]:
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])
    try:
        verdict = verifier.verify_bytes(pdf)
    finally:
        verifier.close()
    return verdict.signed and not verdict.problems, verdict.method


def gap(pdf: bytes) -> tuple[int, int]:
    *_, match = BYTE_RANGE.finditer(pdf)
    _, b, c, _ = (int(x) for x in match.groups())
    return b, c


def flip_signature_value(pdf: bytes) -> bytes:
    """Flip a bit of the CMS signature value itself (hex digits inside /Contents)."""
    b, c = gap(pdf)
    der = bytes.fromhex(pdf[b + 1 : c - 1].decode())
    from asn1crypto import cms

    value = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
    at = der.index(value) + len(value) // 2
    hex_at = b + 1 + 2 * at
    digit = pdf[hex_at : hex_at + 1]
    flipped = b"0" if digit != b"0" else b"1"
    return pdf[:hex_at] + flipped + pdf[hex_at + 1 :]


def transplant_timestamp(pdf: bytes, donor: bytes) -> bytes:
    """Replace the signature-timestamp token (an unsigned attribute) by another archive's."""
    from asn1crypto import cms

    def signed_data(data: bytes) -> tuple[cms.ContentInfo, int, int]:
        b, c = gap(data)
        return cms.ContentInfo.load(bytes.fromhex(data[b + 1 : c - 1].decode())), b, c

    target, b, c = signed_data(pdf)
    source, _, _ = signed_data(donor)
    info = target["content"]["signer_infos"][0]
    donated = source["content"]["signer_infos"][0]["unsigned_attrs"].dump()
    info["unsigned_attrs"] = cms.CMSAttributes.load(b"\x31" + donated[1:])  # [1] IMPLICIT → SET OF
    hex_der = target.dump(force=False).hex().encode()
    assert len(hex_der) <= c - b - 2
    return pdf[: b + 1] + hex_der.ljust(c - b - 2, b"0") + pdf[c - 1 :]


async def add_document_timestamp(pdf: bytes, dev_pki: DevPki) -> bytes:
    """A PAdES B-LTA-shaped update: a document timestamp (/DocTimeStamp) after the signature."""
    stamper = signers.PdfTimeStamper(dev_timestamper(dev_pki.folder))
    out = await stamper.async_timestamp_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), "sha256")
    return out.getvalue()


def change_after_signing(pdf: bytes) -> bytes:
    """An incremental update that changes the page's content stream after the signature."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    from pyhanko.pdf_utils import generic

    stream = generic.StreamObject(stream_data=b"BT /F1 24 Tf 50 700 Td (PAID IN FULL) Tj ET")
    page["/Contents"] = writer.add_object(stream)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


CASES = [
    "good",
    "flipped_signed_byte",
    "flipped_signature_value",
    "transplanted_timestamp",
    "truncated",
    "changed_after_signing",
    "document_timestamp",
    "unsigned",
]


@pytest.mark.parametrize("case", CASES)
async def test_verdict_agrees_with_pyhanko(case: str, signed_pdfs: list[bytes], dev_pki: DevPki) -> None:
    signed = signed_pdfs[0]
    b, _ = gap(signed)
    pdf = {
        "good": lambda: signed,
        "flipped_signed_byte": lambda: signed[: b // 2] + bytes([signed[b // 2] ^ 1]) + signed[b // 2 + 1 :],
        "flipped_signature_value": lambda: flip_signature_value(signed),
        "transplanted_timestamp": lambda: transplant_timestamp(signed, signed_pdfs[1]),
        "truncated": lambda: signed[:-200],
        "changed_after_signing": lambda: change_after_signing(signed),
        "document_timestamp": lambda: None,
        "unsigned": lambda: ticket_pdf("never signed"),
    }[case]()
    if case == "document_timestamp":
        pdf = await add_document_timestamp(signed, dev_pki)
    assert pdf is not None

    expected = await pyhanko_ok(pdf, dev_pki)
    verdict, method = ours(pdf, dev_pki)

    assert verdict == expected, (case, method)
    assert expected == (case in {"good", "document_timestamp"})
    assert method == {
        "good": "byte_range",
        "flipped_signed_byte": "byte_range",
        "flipped_signature_value": "byte_range",
    }.get(case, method)


async def test_document_timestamp_is_checked_as_a_timestamp(
    signed_pdfs: list[bytes], dev_pki: DevPki
) -> None:
    pdf = await add_document_timestamp(signed_pdfs[0], dev_pki)
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])
    verdict = verifier.verify_bytes(pdf)

    assert verdict.method == "pyhanko"
    assert [f.kind for f in verdict.findings] == ["signature", "document_timestamp"]
    stamp = verdict.findings[1]
    assert stamp.problem is None and stamp.timestamp is not None and "TSA" in (stamp.signer or "")
    assert verdict.evidence_expires_at == stamp.expires_at  # the newest timestamp's chain decides


def test_both_ways_find_the_same_for_one_signature(signed_pdfs: list[bytes], dev_pki: DevPki) -> None:
    verifier = SignatureVerifier([load_cert(dev_pki.root_pem)])
    fast = verifier.verify_bytes(signed_pdfs[1])
    full = verifier.verify_stream(io.BytesIO(signed_pdfs[1]))

    assert (fast.method, full.method) == ("byte_range", "pyhanko")
    assert fast.findings == full.findings
    (finding,) = fast.findings
    assert finding.problem is None and finding.timestamp is not None
    assert finding.timestamp <= datetime.now(UTC)
    # One path validation per certificate (signer, TSA), then the cache answers.
    assert verifier.paths is not None and verifier.paths.validations == 2


@pytest.mark.parametrize("tamper", ["none", "digest", "signature"])
def test_der_reader_and_asn1crypto_agree(tamper: str, signed_pdfs: list[bytes]) -> None:
    """The lean DER path of the CMS check and the general (asn1crypto + pyHanko) path give the
    same verdict on the same CMS."""
    pdf = signed_pdfs[2] if tamper != "signature" else flip_signature_value(signed_pdfs[2])
    b, c = gap(pdf)
    der = bytes.fromhex(pdf[b + 1 : c - 1].decode())
    import hashlib

    a_b = pdf[:b] + pdf[c:]
    digest = hashlib.sha256(a_b).digest() if tamper != "digest" else hashlib.sha256(b"other").digest()

    fast = verify_cms(der, lambda _alg: digest, OID_DATA, CertificateCache())
    general = cms_general.verify_signed_data(der, lambda _alg: digest, OID_DATA, CertificateCache())

    assert (fast.general, general.general) == (False, True)
    assert (fast.intact, fast.valid) == (general.intact, general.valid)
    assert (fast.intact, fast.valid) == {
        "none": (True, True),
        "digest": (False, True),
        "signature": (True, False),
    }[tamper]
    assert fast.signer.sha256 == general.signer.sha256
    assert fast.signature_timestamps == general.signature_timestamps


def finding(kind: str, expires: int | None) -> SignatureFinding:
    return SignatureFinding(
        kind, None, None, None, None, None if expires is None else datetime(expires, 1, 1, tzinfo=UTC)
    )


def test_evidence_expires_with_the_newest_readable_document_timestamp_else_the_earliest_chain() -> None:
    def expires(*findings: SignatureFinding) -> int | None:
        at = PdfVerdict(findings, "pyhanko").evidence_expires_at
        return None if at is None else at.year

    assert expires(finding("signature", 2030), finding("signature", 2028)) == 2028
    assert expires(finding("signature", 2028), finding("document_timestamp", 2040)) == 2040
    two_stamps = (finding("document_timestamp", 2040), finding("document_timestamp", 2035))
    assert expires(finding("signature", 2028), *two_stamps) == 2035  # the newest, not the latest date
    unreadable = finding("document_timestamp", None)
    assert expires(finding("signature", 2028), finding("document_timestamp", 2040), unreadable) == 2040
    assert expires(finding("signature", 2028), unreadable) == 2028
    assert expires(finding("signature", None)) is None
