"""PAdES B-T, B-LT and B-LTA against certomancer's TSA, OCSP responder and CRLs on loopback.

The B-LTA archive must still validate, offline, once every service is stopped; the CMS and
both timestamp tokens are also checked with openssl alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest
from asn1crypto import cms
from certomancer.registry import CertLabel, KeyLabel
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import find_cms_attribute_iter
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation import ades, async_validate_pdf_signature
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from app.errors import ConfigError, SigningError
from app.signing.options import DEFAULT_BYTES_RESERVED
from app.signing.signer import ArchiveSigner
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import build_timestamper
from tests.signing.certomancer_pki import PFX_PASSWORD
from tests.signing.signing_helpers import PFX_PASSWORD as DEV_PFX_PASSWORD
from tests.signing.signing_helpers import REPO_ROOT, TSA_PASSWORD, TSA_USER, openssl, signed_content

VERIFY_PDF = REPO_ROOT / "scripts" / "ops" / "verify-pdf.sh"
TSA_SUBJECT = "CN=Test TSA,O=Helpdesk Test PKI,C=DE"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_signer(pki, session, level: str, *, timestamper=None, pfx: bytes | None = None) -> ArchiveSigner:
    validation = LongTermValidation(load_certificates(pki.root_pem), session, fetch_timeout=5)
    return ArchiveSigner.from_pfx(
        pfx or pki.signer_pfx.read_bytes(),
        PFX_PASSWORD,
        level=level,
        timestamper=timestamper or build_timestamper(pki.tsa_url, session, timeout=5),
        validation=validation if level in ("B-LT", "B-LTA") else None,
    )


def lta_spec(pki) -> PdfSignatureValidationSpec:
    root = load_certificates(pki.root_pem)[0]
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[root]),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    gathering = RevocationInfoGatheringSpec(online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY)
    return PdfSignatureValidationSpec(
        SignatureValidationSpec(cert_validation_policy=policy, revinfo_gathering_policy=gathering)
    )


def verify_pdf(path: Path, trust: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(VERIFY_PDF), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VERIFY_PDF_TRUST": str(trust), **env},
    )


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA"])
async def test_levels_validate_with_trusted_timestamp(
    cm_pki, animator, session, sample_pdf: bytes, level: str
) -> None:
    result = await make_signer(cm_pki, session, level).sign(sample_pdf)

    assert result.pades_level == level and result.timestamp is not None
    assert result.timestamp_authority == TSA_SUBJECT
    reader = PdfFileReader(io.BytesIO(result.data))
    sig = reader.embedded_signatures[0]
    assert len(sig.sig_object["/Contents"]) * 2 == DEFAULT_BYTES_RESERVED  # reserved once, at the default
    vc = ValidationContext(
        trust_roots=[load_certificates(cm_pki.root_pem)[0]], allow_fetching=True, revocation_mode="hard-fail"
    )
    status = await async_validate_pdf_signature(sig, vc)
    await vc.aclose()
    assert status.bottom_line and status.timestamp_validity.trusted
    if level == "B-T":
        assert "/DSS" not in reader.root and len(reader.embedded_signatures) == 1
    else:
        dss = reader.root["/DSS"]  # pyHanko's __getitem__ resolves the reference; .get() would not
        assert "/Certs" in dss and ("/OCSPs" in dss or "/CRLs" in dss)
        assert len(dss["/Certs"]) >= 4  # signer, issuing CA, root, TSA (+ OCSP responder)
    if level == "B-LTA":
        assert [s.sig_object["/Type"] for s in reader.embedded_signatures] == ["/Sig", "/DocTimeStamp"]
    else:
        assert len(reader.embedded_signatures) == 1


async def test_b_lta_still_validates_with_every_service_stopped(
    cm_pki, animator, session, sample_pdf: bytes, tmp_path: Path
) -> None:
    lta = (await make_signer(cm_pki, session, "B-LTA").sign(sample_pdf)).data
    lt = (await make_signer(cm_pki, session, "B-LT").sign(sample_pdf)).data
    await animator.stop()  # TSA, OCSP responder and CRL repositories gone

    lta_result = await ades.ades_lta_validation(
        PdfFileReader(io.BytesIO(lta)).embedded_signatures[0], lta_spec(cm_pki)
    )
    lt_result = await ades.ades_lta_validation(
        PdfFileReader(io.BytesIO(lt)).embedded_signatures[0], lta_spec(cm_pki)
    )

    assert lta_result.ades_subindic.name == "OK" and lta_result.ades_subindic.status.name == "PASSED"
    # The control: B-LT without a document timestamp lacks the proof of existence for offline validation.
    assert lt_result.ades_subindic.status.name != "PASSED"
    path = tmp_path / "lta.pdf"
    path.write_bytes(lta)
    for pyhanko in ("", "none"):  # pyHanko's CLI, then the verify-pdf.py fallback
        proc = verify_pdf(path, cm_pki.root_pem, VERIFY_PDF_PYHANKO=pyhanko)
        assert proc.returncode == 0, (pyhanko, proc.stdout, proc.stderr)


async def test_openssl_alone_verifies_cms_and_both_timestamp_tokens(
    cm_pki, animator, session, sample_pdf: bytes, tmp_path: Path
) -> None:
    signed = (await make_signer(cm_pki, session, "B-LTA").sign(sample_pdf)).data
    (tmp_path / "signed.pdf").write_bytes(signed)
    await asyncio.to_thread(
        subprocess.run, ["pdfsig", "-dump", "signed.pdf"], cwd=tmp_path, capture_output=True
    )
    sig0, sig1 = tmp_path / "signed.pdf.sig0", tmp_path / "signed.pdf.sig1"
    assert sig0.exists() and sig1.exists(), "pdfsig -dump wrote no CMS"
    reader = PdfFileReader(io.BytesIO(signed))
    first_range = reader.embedded_signatures[0].sig_object["/ByteRange"]
    a, b, c, d = (int(x) for x in first_range)
    (tmp_path / "content.bin").write_bytes(signed[a : a + b] + signed[c : c + d])
    (tmp_path / "lta.bin").write_bytes(signed_content(signed))  # the document timestamp's range
    root = str(cm_pki.root_pem)

    cms_check = openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        str(sig0),
        "-content",
        "content.bin",
        "-CAfile",
        root,
        "-purpose",
        "any",
        "-out",
        "verified.bin",
        cwd=tmp_path,
    )
    doc_ts = openssl(
        "ts", "-verify", "-token_in", "-in", str(sig1), "-data", "lta.bin", "-CAfile", root, cwd=tmp_path
    )
    signer_info = cms.ContentInfo.load(sig0.read_bytes())["content"]["signer_infos"][0]
    token = next(find_cms_attribute_iter(signer_info["unsigned_attrs"], "signature_time_stamp_token"))
    (tmp_path / "tst.der").write_bytes(token.dump())
    imprint = hashlib.sha256(signer_info["signature"].native).hexdigest()
    sig_ts = openssl(
        "ts", "-verify", "-token_in", "-in", "tst.der", "-digest", imprint, "-CAfile", root, cwd=tmp_path
    )

    assert cms_check.returncode == 0 and "Verification successful" in cms_check.stderr, cms_check.stderr
    assert doc_ts.returncode == 0 and "Verification: OK" in doc_ts.stdout, doc_ts.stdout + doc_ts.stderr
    assert sig_ts.returncode == 0 and "Verification: OK" in sig_ts.stdout, sig_ts.stdout + sig_ts.stderr
    wrong = openssl(
        "ts", "-verify", "-token_in", "-in", "tst.der", "-digest", "00" * 32, "-CAfile", root, cwd=tmp_path
    )
    assert wrong.returncode != 0  # the check can fail


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
async def test_revocation_services_down_is_transient(
    cm_pki, animator, session, sample_pdf: bytes, level: str
) -> None:
    arch = cm_pki.arch
    tsa = DummyTimeStamper(
        tsa_cert=arch.get_cert(CertLabel("tsa")), tsa_key=arch.key_set.get_private_key(KeyLabel("tsa"))
    )
    signer = make_signer(cm_pki, session, level, timestamper=tsa)
    await animator.stop()  # the in-process TSA still answers; OCSP and CRLs do not

    with pytest.raises(SigningError) as info:
        await signer.sign(sample_pdf)

    assert info.value.transient is True
    assert f"validation data for PAdES {level} could not be gathered" in str(info.value), info.value


async def test_revoked_signer_is_permanent(cm_pki, animator, session, sample_pdf: bytes) -> None:
    pfx = cm_pki.arch.package_pkcs12(
        CertLabel("signer-revoked"), key_label=KeyLabel("signer"), password=PFX_PASSWORD
    )

    with pytest.raises(SigningError) as info:
        await make_signer(cm_pki, session, "B-LT", pfx=pfx).sign(sample_pdf)

    assert info.value.transient is False and "revoked" in str(info.value)


async def test_b_lt_refuses_a_chain_without_revocation_urls(pfx_bytes: bytes, dev_certs, session) -> None:
    validation = LongTermValidation(load_certificates(dev_certs.root_pem), session)
    tsa = build_timestamper("http://127.0.0.1:9/tsa", session)

    with pytest.raises(ConfigError, match="names no OCSP responder or CRL distribution point"):
        ArchiveSigner.from_pfx(
            pfx_bytes, DEV_PFX_PASSWORD.encode(), level="B-LT", timestamper=tsa, validation=validation
        )


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA"])
async def test_a_tsa_whose_certificate_names_no_revocation_service_gives_no_b_lt_signature(
    cm_pki, animator, dev_certs, local_tsa, session, sample_pdf: bytes, tmp_path: Path, level: str
) -> None:
    # The signer's chain names its OCSP responder and CRLs, but the TSA (the dev PKI's, roots of
    # both trusted) signs with a certificate that names neither. pyHanko's hard-fail asks for no
    # revocation data for it, so the DSS had none for the TSA, yet the archive was labelled
    # B-LT/B-LTA. B-T embeds no validation data and is unaffected.
    roots = (*load_certificates(cm_pki.root_pem), *load_certificates(dev_certs.root_pem))
    signer = ArchiveSigner.from_pfx(
        cm_pki.signer_pfx.read_bytes(),
        PFX_PASSWORD,
        level=level,
        timestamper=build_timestamper(
            local_tsa.url, session, user=TSA_USER, password=TSA_PASSWORD, timeout=5
        ),
        validation=LongTermValidation(roots, session, fetch_timeout=5) if level != "B-T" else None,
    )
    source, target = tmp_path / "in.pdf", tmp_path / "out.pdf"
    source.write_bytes(sample_pdf)

    if level == "B-T":
        result = await signer.sign_file(source, target)
        assert result.timestamp_authority == "CN=Dev TSA,O=zammad-pdf-archiver dev"
        return
    with pytest.raises(SigningError) as info:
        await signer.sign_file(source, target)
    with pytest.raises(SigningError) as in_memory:
        await signer.sign(sample_pdf)

    message = str(info.value)
    assert info.value.transient is False and str(in_memory.value) == message
    assert message.startswith(
        f"PAdES {level} needs revocation data for every certificate below the trust roots"
    )
    assert (
        "TSA certificate of the signature timestamp 'CN=Dev TSA,O=zammad-pdf-archiver dev' "
        "names no OCSP responder or CRL distribution point" in message
    ), message
    assert message.endswith(": not signed") and "Helpdesk Signer" not in message
    assert not target.exists()
