"""Archives for the LTA-refresh tests: the fixture ticket as PDF/A-3B, signed by a certomancer signer,
stored with its sidecar as the service stores it, and pyHanko's AdES long-term validation."""

from __future__ import annotations

import functools
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from certomancer.registry import CertLabel, KeyLabel
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from app.render import patches
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.signing.signer import ArchiveSigner
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import build_timestamper
from app.storage.store import ArchiveStore
from app.workflow.ports import StoredArchive, TicketSnapshot
from tests.signing.certomancer_pki import PFX_PASSWORD, CertomancerPki

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zammad"


def _load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@functools.cache
def ticket_pdf() -> bytes:
    """Ticket 4711 with its articles, rendered as PDF/A-3B (unsigned), with fpdf2's internals
    replaced as the render processes have them: a render without them leaves fpdf2 state in
    this process that changes the bytes of later renders (tests/render/test_pdf.py, "identical
    bytes in another process", failed when it ran after these tests)."""
    patches.install()
    return render_ticket_pdf(
        _load("ticket-expand.json"),
        _load("articles-by-ticket.json"),
        _load("tags.json")["tags"],
        archived_at=datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC),
        options=RenderOptions(timezone="Europe/Berlin"),
    ).data


async def sign(
    pki: CertomancerPki, session: aiohttp.ClientSession, *, cert: str = "signer", level: str = "B-T"
) -> bytes:
    """:func:`ticket_pdf` signed by certomancer's ``cert`` (with the signer's key) at ``level``,
    timestamped by certomancer's TSA."""
    pfx = pki.arch.package_pkcs12(CertLabel(cert), key_label=KeyLabel("signer"), password=PFX_PASSWORD)
    validation = LongTermValidation(load_certificates(pki.root_pem), session, fetch_timeout=5)
    signer = ArchiveSigner.from_pfx(
        pfx,
        PFX_PASSWORD,
        level=level,
        timestamper=build_timestamper(pki.tsa_url, session, timeout=5),
        validation=validation if level in ("B-LT", "B-LTA") else None,
    )
    return (await signer.sign(ticket_pdf())).data


async def store(root: Path, data: bytes, *, number: str, job_id: str, level: str = "B-T") -> StoredArchive:
    """Store ``data`` as the service does (path template, atomic write, sidecar with the run's facts)."""
    ticket = {**_load("ticket-expand.json"), "number": number}
    snapshot = TicketSnapshot(ticket, [], [], datetime(2025, 3, 6, 13, 20, 5, tzinfo=UTC))
    sidecar = {
        "ticket_id": ticket["id"],
        "ticket_number": number,
        "signed": True,
        "pades_level": level,
        "job_id": job_id,
        "delivery_id": None,
    }
    return await ArchiveStore(root, fsync=False).store(snapshot, data, sidecar=sidecar)


def lta_spec(pki: CertomancerPki) -> PdfSignatureValidationSpec:
    """AdES validation against the test root only, revocation data required, nothing fetched:
    what the PDF holds must suffice (ETSI EN 319 102-1 §5.6.3, validation with LTA)."""
    root = load_certificates(pki.root_pem)[0]
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[root]),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    gathering = RevocationInfoGatheringSpec(online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY)
    return PdfSignatureValidationSpec(
        SignatureValidationSpec(cert_validation_policy=policy, revinfo_gathering_policy=gathering)
    )


async def ades_lta(data: bytes, pki: CertomancerPki, *, at: datetime | None = None):
    """pyHanko's AdES LTA validation of the first signature, offline; with ``at``, as it would
    run at that future time (``simulate_future_ades_lta_validation``)."""
    sig = PdfFileReader(io.BytesIO(data)).embedded_signatures[0]
    if at is None:
        return await ades.ades_lta_validation(sig, lta_spec(pki))
    return await ades.simulate_future_ades_lta_validation(sig, lta_spec(pki), future_validation_time=at)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
