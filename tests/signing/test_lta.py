"""PAdES B-LTA refresh of archives (app.signing.lta) against certomancer's TSA, OCSP responder and CRLs.

The archives are the fixture ticket as PDF/A-3B, signed B-T; ``signer-expiring`` is valid for
:data:`certomancer_pki.EXPIRING_IN` (40 days) from the test run.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from app.errors import SigningError
from app.signing.lta import LtaRefresher, evidence_in_force, read_evidence, refresh_reasons
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import build_timestamper
from tests.signing.certomancer_pki import EXPIRING_IN, build_pki
from tests.signing.lta_archives import ades_lta, sign
from tests.signing.signing_helpers import pdfsig
from tests.verify import verapdf

WINDOW = timedelta(days=90)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def refresher(pki, session, tsa_url: str | None = None) -> LtaRefresher:
    roots = load_certificates(pki.root_pem)
    return LtaRefresher(
        build_timestamper(tsa_url or pki.tsa_url, session, timeout=5),
        LongTermValidation(roots, session, fetch_timeout=5),
    )


def evidence(data: bytes, pki):
    return read_evidence(io.BytesIO(data), extra_certificates=load_certificates(pki.root_pem))


async def refreshed(pki, session, data: bytes) -> bytes:
    buffer = io.BytesIO(data)
    await refresher(pki, session).refresh(buffer)
    return buffer.getvalue()


def test_the_newest_document_timestamp_is_the_evidence_else_every_signature() -> None:
    assert evidence_in_force(["sig 1", "sig 2"], ["stamp 1", "stamp 2"]) == ["stamp 2"]
    assert evidence_in_force(["sig 1", "sig 2"], []) == ["sig 1", "sig 2"]
    assert evidence_in_force([], []) == []


async def test_a_signer_certificate_expiring_soon_makes_the_archive_due(cm_pki, animator, session) -> None:
    now = datetime.now(UTC)
    soon = evidence(await sign(cm_pki, session, cert="signer-expiring"), cm_pki)
    far = evidence(await sign(cm_pki, session), cm_pki)

    reasons = refresh_reasons(soon, now=now, within=WINDOW)

    assert soon.signatures == 1 and soon.document_timestamps == 0 and soon.latest_timestamp is not None
    assert len(reasons) == 1 and reasons[0].startswith("signer certificate 'CN=Helpdesk Signer")
    assert re.search(r"expires \d{4}-\d\d-\d\d \(in (39|40) days\)$", reasons[0]), reasons[0]
    assert soon.expires_at is not None and soon.expires_at - now < EXPIRING_IN + timedelta(minutes=5)
    assert refresh_reasons(soon, now=now, within=timedelta(days=10)) == ()
    assert refresh_reasons(far, now=now, within=WINDOW) == ()
    roles = {c.role for c in far.certificates}
    assert roles == {
        "signer certificate",
        "issuer of the signer certificate",
        "TSA certificate of the signature timestamp",
        "issuer of the signature timestamp's TSA certificate",
    }


async def test_refresh_gives_a_b_lta_archive_that_outlives_its_signer_certificate(
    cm_pki, animator, session, tmp_path: Path
) -> None:
    original = await sign(cm_pki, session, cert="signer-expiring")
    buffer = io.BytesIO(original)

    result = await refresher(cm_pki, session).refresh(buffer)
    data = buffer.getvalue()
    await animator.stop()  # TSA, OCSP and CRLs gone: the file must carry its own proof

    assert data.startswith(original), "earlier revisions must stay byte for byte"
    reader = PdfFileReader(io.BytesIO(data))
    assert [s.sig_object["/Type"] for s in reader.embedded_signatures] == ["/Sig", "/DocTimeStamp"]
    dss = reader.root["/DSS"]
    assert "/Certs" in dss and ("/OCSPs" in dss or "/CRLs" in dss)
    assert abs(result.timestamp - datetime.now(UTC)) < timedelta(minutes=5)
    assert result.timestamp_authority == "CN=Test TSA,O=Helpdesk Test PKI,C=DE"
    assert result.evidence.document_timestamps == 1
    assert result.evidence.expires_at is not None and result.evidence.expires_at.year == 2050
    now = await ades_lta(data, cm_pki)
    assert (now.ades_subindic.status.name, now.ades_subindic.name) == ("PASSED", "OK")
    later = datetime.now(UTC) + EXPIRING_IN + timedelta(days=30)  # the signer certificate has expired
    assert (await ades_lta(data, cm_pki, at=later)).ades_subindic.status.name == "PASSED"
    # The control: without the refresh, the archive no longer validates then.
    assert (await ades_lta(original, cm_pki, at=later)).ades_subindic.status.name != "PASSED"
    path = tmp_path / "lta.pdf"
    path.write_bytes(data)
    text = pdfsig(path)
    # The /Sig is valid; pdfsig cannot check the RFC 3161 document timestamp ("not yet verified").
    assert text.count("Signature Validation: Signature is Valid.") == 1, text
    assert "Signature Type: ETSI.CAdES.detached" in text and "Signature #2:" in text
    pdfa = await asyncio.to_thread(verapdf, path)
    assert pdfa.returncode == 0 and pdfa.stdout.startswith("PASS"), pdfa.stdout + pdfa.stderr


async def test_a_second_refresh_extends_the_timestamp_chain(cm_pki, animator, session) -> None:
    once = await refreshed(cm_pki, session, await sign(cm_pki, session, cert="signer-expiring"))

    twice = await refreshed(cm_pki, session, once)

    assert twice.startswith(once)
    reader = PdfFileReader(io.BytesIO(twice))
    assert [s.sig_object["/Type"] for s in reader.embedded_signatures] == [
        "/Sig",
        "/DocTimeStamp",
        "/DocTimeStamp",
    ]
    assert evidence(twice, cm_pki).document_timestamps == 2
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert [s.field_name for s in reader.embedded_timestamp_signatures] == [
        f"DocTimeStamp-{day}",
        f"DocTimeStamp-{day}-2",
    ]
    await animator.stop()
    assert (await ades_lta(twice, cm_pki)).ades_subindic.status.name == "PASSED"


async def test_an_altered_archive_is_not_refreshed(cm_pki, animator, session) -> None:
    data = bytearray(await sign(cm_pki, session, cert="signer-expiring"))
    at = data.index(b"Ticket")  # a byte of the signed content
    data[at] ^= 0x20
    buffer = io.BytesIO(bytes(data))

    with pytest.raises(SigningError, match="does not match the file's bytes") as info:
        await refresher(cm_pki, session).refresh(buffer)

    assert info.value.transient is False
    assert buffer.getvalue() == bytes(data)


async def test_an_unreachable_tsa_is_a_transient_error(cm_pki, animator, session) -> None:
    from tests.signing.certomancer_pki import free_port

    data = await sign(cm_pki, session, cert="signer-expiring")

    with pytest.raises(SigningError, match="TSA error") as info:
        await refresher(cm_pki, session, f"http://127.0.0.1:{free_port()}/tsa").refresh(io.BytesIO(data))

    assert info.value.transient is True


async def test_unreachable_revocation_services_are_transient_and_name_b_lta(
    cm_pki, animator, session
) -> None:
    data = await sign(cm_pki, session, cert="signer-expiring")
    await animator.stop()  # OCSP responder and CRLs gone (and the TSA, which is not reached)
    buffer = io.BytesIO(data)

    with pytest.raises(SigningError) as info:
        await refresher(cm_pki, session).refresh(buffer)

    assert info.value.transient is True
    assert "validation data for PAdES B-LTA could not be gathered" in str(info.value), info.value
    assert buffer.getvalue() == data


@pytest.mark.parametrize("level", ["B-T", "B-LTA"])
async def test_an_archive_whose_chains_do_not_end_in_the_trust_roots_is_refused_with_the_reason(
    cm_pki, animator, session, tmp_path: Path, level: str
) -> None:
    # Another PKI built like the archive's, its root named the same but with another key.
    elsewhere = build_pki(tmp_path / "elsewhere")
    data = await sign(cm_pki, session, level=level)
    buffer = io.BytesIO(data)
    untrusting = LtaRefresher(
        build_timestamper(cm_pki.tsa_url, session, timeout=5),
        LongTermValidation(load_certificates(elsewhere.root_pem), session, fetch_timeout=5),
    )

    with pytest.raises(SigningError) as info:
        await untrusting.refresh(buffer)

    # B-T: the signer's chain; B-LTA: the newest document timestamp's TSA chain.
    assert "does not lead to a root in SIGNING_TRUST_ROOTS_PATH" in str(info.value), info.value
    assert info.value.transient is False
    assert buffer.getvalue() == data


async def test_an_unsigned_pdf_has_no_evidence_and_is_refused(cm_pki, session) -> None:
    from tests.signing.lta_archives import ticket_pdf

    assert not evidence(ticket_pdf(), cm_pki).signed
    assert refresh_reasons(evidence(ticket_pdf(), cm_pki), now=datetime.now(UTC), within=WINDOW) == ()
    with pytest.raises(SigningError, match="holds no signature"):
        await refresher(cm_pki, session).refresh(io.BytesIO(ticket_pdf()))


async def test_an_archive_changed_after_signing_is_not_refreshed(cm_pki, animator, session) -> None:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    data = await sign(cm_pki, session, cert="signer-expiring")
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    page["/Rotate"] = generic.NumberObject(90)  # an incremental update that changes what a reader sees
    writer.update_container(page)
    changed = io.BytesIO()
    writer.write(changed)
    buffer = io.BytesIO(changed.getvalue())

    with pytest.raises(SigningError, match="changed after signature 'Signature1'"):
        await refresher(cm_pki, session).refresh(buffer)

    assert buffer.getvalue() == changed.getvalue()


async def test_an_archive_whose_certificates_name_no_revocation_service_is_refused_before_the_tsa(
    pfx_bytes: bytes, sample_pdf: bytes, dev_certs, local_tsa, session
) -> None:
    # The dev PKI (scripts/dev/gen-dev-certs.sh): its signer and TSA name no OCSP responder and no
    # CRL, so no revocation data can go into the DSS. A version labelled B-LTA without it would
    # not validate once the PKI is gone; the signer refuses B-LT/B-LTA with them at start too.
    from app.signing.signer import ArchiveSigner
    from tests.signing.signing_helpers import PFX_PASSWORD, TSA_PASSWORD, TSA_USER

    timestamper = build_timestamper(local_tsa.url, session, user=TSA_USER, password=TSA_PASSWORD)
    signer = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), timestamper=timestamper)
    data = (await signer.sign(sample_pdf)).data
    lta = LtaRefresher(timestamper, LongTermValidation(load_certificates(dev_certs.root_pem), session))
    buffer = io.BytesIO(data)
    asked = local_tsa.requests

    with pytest.raises(SigningError) as info:
        await lta.refresh(buffer)

    message = str(info.value)
    assert info.value.transient is False
    assert "signer certificate 'CN=Dev Archive Signer,O=zammad-pdf-archiver dev'" in message, message
    assert "names no OCSP responder or CRL distribution point" in message
    assert buffer.getvalue() == data and local_tsa.requests == asked, "refused before the TSA is asked"


async def test_a_tsa_whose_certificate_names_no_revocation_service_gives_no_b_lta_version(
    cm_pki, animator, dev_certs, local_tsa, session
) -> None:
    # The archive's evidence names its OCSP responder and CRLs, but the TSA now at TSA_URL signs
    # with a certificate that names neither: the new document timestamp could never be renewed.
    from tests.signing.signing_helpers import TSA_PASSWORD, TSA_USER

    data = await sign(cm_pki, session, cert="signer-expiring")
    roots = (*load_certificates(cm_pki.root_pem), *load_certificates(dev_certs.root_pem))
    lta = LtaRefresher(
        build_timestamper(local_tsa.url, session, user=TSA_USER, password=TSA_PASSWORD),
        LongTermValidation(roots, session, fetch_timeout=5),
    )

    with pytest.raises(SigningError) as info:
        await lta.refresh(io.BytesIO(data))

    message = str(info.value)
    assert info.value.transient is False
    assert "TSA certificate of the document timestamp 'CN=Dev TSA,O=zammad-pdf-archiver dev'" in message
    assert "names no OCSP responder or CRL distribution point" in message, message
