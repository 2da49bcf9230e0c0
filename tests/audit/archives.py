"""Real archives for the audit tests: PDFs signed with the dev PKI (PAdES B-T, an RFC 3161 token
from the dev TSA's key), written by the real archive store with its manifest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys, pem
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from fpdf import FPDF
from pyhanko.sign.timestamps import DummyTimeStamper

from app.signing.signer import ArchiveSigner
from app.storage.manifest import ArchiveManifest
from app.storage.store import ArchiveStore
from app.workflow.ports import StoredArchive, TicketSnapshot

FONT = Path(__file__).resolve().parents[2] / "app" / "render" / "fonts" / "NotoSans-Regular.ttf"
ARCHIVED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def load_cert(path: Path) -> asn1_x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return asn1_x509.Certificate.load(data)


def dev_timestamper(pki: Path) -> DummyTimeStamper:
    """An in-process RFC 3161 TSA with the dev PKI's TSA certificate and key (real tokens)."""
    key = serialization.load_pem_private_key((pki / "tsa.key").read_bytes(), None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DummyTimeStamper(
        load_cert(pki / "tsa.pem"),
        keys.PrivateKeyInfo.load(der),
        certs_to_embed=[load_cert(pki / "root.pem")],
    )


def ticket_pdf(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_font("NotoSans", "", str(FONT))
    pdf.add_page()
    pdf.set_font("NotoSans", size=12)
    pdf.multi_cell(w=0, text=text)
    return bytes(pdf.output())


def sign_pdfs(pki: Path, pfx_password: str, texts: list[str]) -> list[bytes]:
    """PAdES B-T signatures of one small ticket PDF per text."""

    async def sign_all() -> list[bytes]:
        signer = ArchiveSigner.from_pfx(
            (pki / "signer.pfx").read_bytes(), pfx_password.encode(), timestamper=dev_timestamper(pki)
        )
        return [(await signer.sign(ticket_pdf(text))).data for text in texts]

    return asyncio.run(sign_all())


def snapshot(number: int, archived_at: datetime = ARCHIVED_AT) -> TicketSnapshot:
    ticket = {"id": number, "number": str(number), "group": "Support", "created_at": "2026-01-05T10:00:00Z"}
    return TicketSnapshot(ticket, [], [], archived_at)


def store_archives(
    root: Path, pdfs: list[bytes], *, manifest: ArchiveManifest | None = None, signed: bool = True
) -> list[StoredArchive]:
    """Write each PDF as the archive of its own ticket with the real store (and manifest)."""
    store = ArchiveStore(root, fsync=False, manifest=manifest or ArchiveManifest(root, fsync=False))

    async def write_all() -> list[StoredArchive]:
        stored = []
        for index, data in enumerate(pdfs):
            number = 31000 + index
            when = ARCHIVED_AT + timedelta(minutes=index)
            sidecar = {
                "ticket_id": number,
                "ticket_number": str(number),
                "job_id": f"job-{number}",
                "archived_at": when.isoformat(),
                "signed": signed,
                "pades_level": "B-T" if signed else None,
            }
            stored.append(await store.store(snapshot(number, when), data, sidecar=sidecar))
        return stored

    return asyncio.run(write_all())
