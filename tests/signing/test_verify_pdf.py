"""scripts/ops/verify-pdf.sh: exit 0 only for intact, trusted signatures and a matching sidecar."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from app.signing.signer import ArchiveSigner
from tests.signing.signing_helpers import PFX_PASSWORD, REPO_ROOT

VERIFY_PDF = REPO_ROOT / "scripts" / "ops" / "verify-pdf.sh"
BACKENDS = {"cli": "", "fallback": "none"}  # pyHanko's CLI, or scripts/ops/verify-pdf.py


def run(path: Path, backend: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERIFY_PDF_PYHANKO": BACKENDS[backend], **env}
    return subprocess.run(
        ["bash", str(VERIFY_PDF), str(path)], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture(scope="module")
def signed(pfx_bytes: bytes, sample_pdf: bytes) -> bytes:
    return asyncio.run(ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode()).sign(sample_pdf)).data


def write(tmp_path: Path, data: bytes, *, sidecar_sha: str | None = None) -> Path:
    path = tmp_path / "Ticket-31001.pdf"
    path.write_bytes(data)
    if sidecar_sha is not None:
        (tmp_path / "Ticket-31001.pdf.json").write_text(
            json.dumps({"sha256": sidecar_sha, "size": len(data)})
        )
    return path


@pytest.mark.parametrize("backend", BACKENDS)
async def test_intact_trusted_pdf_with_sidecar_passes(
    signed: bytes, dev_certs, tmp_path: Path, backend: str
) -> None:
    path = write(tmp_path, signed, sidecar_sha=hashlib.sha256(signed).hexdigest())

    proc = run(path, backend, VERIFY_PDF_TRUST=f"{dev_certs.tsa_pem}:{dev_certs.root_pem}")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sidecar: OK" in proc.stdout
    assert signature_lines(proc.stdout) == [("Signature1", "VALID")], proc.stdout


def signature_lines(stdout: str) -> list[tuple[str, str]]:
    """``(field, verdict)`` of each ``field:<certificate SHA-256>:VALID`` line (pyHanko CLI's
    executive summary; verify-pdf.py prints the same); a line without the fingerprint fails."""
    lines = [line for line in stdout.splitlines() if not line.startswith("sidecar:")]
    found = [re.fullmatch(r"([^:]+):([0-9a-f]{64}):(VALID|INVALID)", line) for line in lines]
    assert all(found), f"not field:fingerprint:verdict: {stdout!r}"
    return [(m[1], m[3]) for m in found if m]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_one_flipped_byte_in_the_signed_range_fails(
    signed: bytes, dev_certs, tmp_path: Path, backend: str
) -> None:
    tampered = bytearray(signed)
    tampered[tampered.index(b"Ticket #31001")] ^= 0x20  # inside the first signed range; still a valid PDF
    path = write(tmp_path, bytes(tampered))

    proc = run(path, backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "INVALID" in proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_pdf_pyhanko_cannot_parse_fails_with_the_reason(
    signed: bytes, dev_certs, tmp_path: Path, backend: str
) -> None:
    """A damaged object (here the signature field's /Widget name) leaves pyHanko's CLI without a
    per-signature verdict; the script still says on stdout which check failed and why."""
    damaged = bytearray(signed)
    damaged[damaged.index(b"/Widget") + 1] ^= 0xFF  # /Widget -> a name with an unescaped 0xA8 byte
    path = write(tmp_path, bytes(damaged))

    proc = run(path, backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "must be escaped in a PDF name" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_sidecar", [True, False])
async def test_an_unsigned_pdf_fails(
    sample_pdf: bytes, dev_certs, tmp_path: Path, backend: str, with_sidecar: bool
) -> None:
    """pyHanko's CLI reports nothing and exits 0 for a PDF without signatures: an archive
    replaced by an unsigned file (and its sidecar edited to match) must still fail, and say so."""
    sidecar_sha = hashlib.sha256(sample_pdf).hexdigest() if with_sidecar else None
    path = write(tmp_path, sample_pdf, sidecar_sha=sidecar_sha)

    proc = run(path, backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))
    details = run(path, backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem), VERIFY_PDF_SHOW_DETAILS="true")

    for done in (proc, details):
        assert done.returncode == 1, done.stdout + done.stderr
        assert "signatures: NONE (the PDF holds no signature)" in done.stdout, done.stdout
    assert ("sidecar: OK" if with_sidecar else "sidecar: none (") in proc.stdout, proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
async def test_untrusted_root_fails(signed: bytes, dev_certs, tmp_path: Path, backend: str) -> None:
    proc = run(write(tmp_path, signed), backend, VERIFY_PDF_TRUST=str(dev_certs.tsa_pem))

    assert proc.returncode == 1, proc.stdout + proc.stderr


async def test_sidecar_mismatch_fails_even_with_a_valid_signature(
    signed: bytes, dev_certs, tmp_path: Path
) -> None:
    path = write(tmp_path, signed, sidecar_sha="0" * 64)

    proc = run(path, "cli", VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 1 and "sidecar: MISMATCH" in proc.stdout


async def test_details_and_usage_errors(signed: bytes, dev_certs, tmp_path: Path) -> None:
    path = write(tmp_path, signed)

    details = run(path, "fallback", VERIFY_PDF_TRUST=str(dev_certs.root_pem), VERIFY_PDF_SHOW_DETAILS="true")
    no_trust = run(path, "cli", VERIFY_PDF_TRUST="")
    missing = run(tmp_path / "absent.pdf", "cli", VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert details.returncode == 0 and "Dev Archive Signer" in details.stdout
    assert no_trust.returncode == 2 and "VERIFY_PDF_TRUST" in no_trust.stderr
    assert missing.returncode == 2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_b_lta_document_timestamp_is_checked_too(
    cm_pki, animator, tmp_path: Path, backend: str
) -> None:
    """pyHanko's CLI passes over document timestamps: a B-LTA archive whose document timestamp
    was altered must still fail, whichever backend is asked for (the script hands such a file
    to verify-pdf.py), and the intact archive must pass."""
    import io

    import aiohttp

    from app.signing.lta import LtaRefresher
    from app.signing.trust import LongTermValidation, load_certificates
    from app.signing.tsa import build_timestamper
    from tests.signing.lta_archives import sign

    async with aiohttp.ClientSession() as session:
        buffer = io.BytesIO(await sign(cm_pki, session))
        roots = load_certificates(cm_pki.root_pem)
        await LtaRefresher(
            build_timestamper(cm_pki.tsa_url, session, timeout=5),
            LongTermValidation(roots, session, fetch_timeout=5),
        ).refresh(buffer)
    data = buffer.getvalue()
    # In a thread: certomancer's OCSP responder and CRLs are served by this test's event loop.
    intact = await asyncio.to_thread(
        run, write(tmp_path, data), backend, VERIFY_PDF_TRUST=str(cm_pki.root_pem)
    )
    assert intact.returncode == 0, intact.stdout + intact.stderr
    verdicts = signature_lines(intact.stdout)  # the signature and the document timestamp(s)
    assert len(verdicts) >= 2 and {v for _, v in verdicts} == {"VALID"}, intact.stdout
    tampered = bytearray(data)
    digit = data.rindex(b"/Contents <") + len(b"/Contents <") + 600  # inside the timestamp token
    tampered[digit] = ord("0") if tampered[digit] != ord("0") else ord("1")
    proc = await asyncio.to_thread(
        run, write(tmp_path, bytes(tampered)), backend, VERIFY_PDF_TRUST=str(cm_pki.root_pem)
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "INVALID" in proc.stdout or "NOT" in proc.stdout, proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("setting", ["VERIFY_PDF_TRUST", "VERIFY_PDF_OTHER_CERTS"])
async def test_a_certificate_file_that_is_not_there_is_a_set_up_error(
    signed: bytes, dev_certs, tmp_path: Path, backend: str, setting: str
) -> None:
    """A mistyped trust root path is exit 2 (set-up), never exit 1, which says the archive
    is invalid or untrusted."""
    path = write(tmp_path, signed, sidecar_sha=hashlib.sha256(signed).hexdigest())
    env = {
        "VERIFY_PDF_TRUST": str(dev_certs.root_pem),
        setting: f"{dev_certs.root_pem}:{tmp_path / 'roots.pem'}",
    }

    proc = run(path, backend, **env)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{setting} names {tmp_path / 'roots.pem'}, which is not a readable file" in proc.stderr
    assert "sidecar:" not in proc.stdout
