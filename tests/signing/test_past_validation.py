"""Years later, in seconds: archives whose signer certificate expired after they were signed.

A signer certificate valid for a few seconds signs a PAdES B-T archive (an RFC 3161 signature
timestamp from the dev TSA's key, which stays valid) and a B-B archive while it is valid; the
tests then wait until it has expired and ask every tool of the project (ETSI EN 319 102-1:
validation with time, §5.5; basic validation, §5.3):

* B-T: VALID, "valid at <time>, proven by the signature timestamp";
* B-B: INDETERMINATE, "cannot be proven: no timestamp, signer certificate expired on …";
* tampered, or an untrusted root: INVALID, as before the expiry.

``scripts/ops/verify-pdf.sh`` (pyHanko's CLI, and verify-pdf.py), ``python -m app audit`` and
``python -m app extract --trust`` must agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import keys
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.signing.signer import ArchiveSigner
from tests.audit.archives import dev_timestamper, store_archives, ticket_pdf
from tests.signing.certomancer_pki import EXPIRING_IN
from tests.signing.signing_helpers import PFX_PASSWORD, REPO_ROOT, DevCerts, issue_test_pfx, load_asn1_cert
from tests.signing.test_verify_pdf import BACKENDS, VERIFY_PDF, write

LIFETIME = timedelta(seconds=4)
"""How long the short-lived signer certificate is valid after the fixture starts."""
LATER = ("faketime", "-f", "+1d")
"""Every tool runs a day later (Debian's libfaketime): pyHanko's CLI tolerates 30 s of clock skew
(``pyhanko.cli.config.DEFAULT_TIME_TOLERANCE``), so a few seconds after the expiry it would still
accept the certificate. The dev TSA's certificate is valid for 825 days."""


@dataclass(frozen=True)
class Expired:
    """Archives signed while the signer certificate was valid; it has expired when a test runs."""

    b_t: bytes
    b_b: bytes
    tsa_expired: bytes
    """B-T by the dev signer (valid for years) with a TSA certificate as short-lived."""
    not_after: datetime


@pytest.fixture(scope="module")
def expired(dev_certs: DevCerts, tmp_path_factory: pytest.TempPathFactory) -> Expired:
    start = datetime.now(UTC).replace(microsecond=0)
    not_after = start + LIFETIME
    pfx = issue_test_pfx(
        dev_certs,
        tmp_path_factory.mktemp("short-lived"),
        name="Short-lived Signer",
        start=f"{start - timedelta(hours=1):%Y%m%d%H%M%SZ}",
        end=f"{not_after:%Y%m%d%H%M%SZ}",
    )

    tsa_dir = tmp_path_factory.mktemp("short-lived-tsa")
    issue_test_pfx(
        dev_certs,
        tsa_dir,
        name="Short-lived TSA",
        key_usage="critical,digitalSignature\nextendedKeyUsage=critical,timeStamping",
        start=f"{start - timedelta(hours=1):%Y%m%d%H%M%SZ}",
        end=f"{not_after:%Y%m%d%H%M%SZ}",
    )
    tsa_cert = load_asn1_cert(tsa_dir / "ca-Short-lived TSA" / "leaf.pem")
    tsa_key = serialization.load_pem_private_key(
        (tsa_dir / "ca-Short-lived TSA" / "leaf.key").read_bytes(), None
    )
    short_tsa = DummyTimeStamper(
        tsa_cert,
        keys.PrivateKeyInfo.load(
            tsa_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        certs_to_embed=SimpleCertificateStore.from_certs([load_asn1_cert(dev_certs.root_pem)]),
    )

    async def sign() -> tuple[bytes, bytes, bytes]:
        pdf = ticket_pdf("Ticket 31000: printer on floor 2 jams.")
        b_t = ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode(), timestamper=dev_timestamper(dev_certs.dir))
        b_b = ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())
        long_lived = dev_certs.signer_pfx.read_bytes()
        tsa_expired = ArchiveSigner.from_pfx(long_lived, PFX_PASSWORD.encode(), timestamper=short_tsa)
        return (await b_t.sign(pdf)).data, (await b_b.sign(pdf)).data, (await tsa_expired.sign(pdf)).data

    b_t, b_b, tsa_expired = asyncio.run(sign())
    assert datetime.now(UTC) < not_after, "signed after the certificate expired: make LIFETIME longer"
    time.sleep(max(0.0, (not_after - datetime.now(UTC)).total_seconds()) + 2)  # expired for real, too
    return Expired(b_t, b_b, tsa_expired, not_after)


def run(path: Path, backend: str, **env: str) -> subprocess.CompletedProcess[str]:
    """scripts/ops/verify-pdf.sh a day later."""
    env = {**os.environ, "VERIFY_PDF_PYHANKO": BACKENDS[backend], **env}
    return subprocess.run(
        [*LATER, "bash", str(VERIFY_PDF), str(path)], capture_output=True, text=True, timeout=60, env=env
    )


def summary_lines(stdout: str) -> list[str]:
    """The verdict lines (``field:fingerprint:VERDICT …``) of verify-pdf's output."""
    return [line for line in stdout.splitlines() if line.startswith("Signature1:")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_b_t_stays_valid_after_the_signer_certificate_expired(
    expired: Expired, dev_certs: DevCerts, tmp_path: Path, backend: str
) -> None:
    proc = run(write(tmp_path, expired.b_t), backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = summary_lines(proc.stdout)
    assert ":VALID (valid at " in line and "proven by the signature timestamp" in line, proc.stdout
    assert f"signer certificate expired on {expired.not_after:%Y-%m-%dT%H:%M:%SZ}" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_b_b_after_the_signer_certificate_expired_is_indeterminate(
    expired: Expired, dev_certs: DevCerts, tmp_path: Path, backend: str
) -> None:
    proc = run(write(tmp_path, expired.b_b), backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    (line,) = summary_lines(proc.stdout)
    assert line.endswith(
        ":INDETERMINATE (cannot be proven: no timestamp, signer certificate expired on "
        f"{expired.not_after:%Y-%m-%dT%H:%M:%SZ})"
    ), proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_b_t_after_the_tsa_certificate_expired_is_indeterminate(
    expired: Expired, dev_certs: DevCerts, tmp_path: Path, backend: str
) -> None:
    """Validation with time needs the TSA's chain valid now: without a document timestamp after
    it, nothing proves the timestamp once its TSA's certificate expired."""
    proc = run(write(tmp_path, expired.tsa_expired), backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))

    assert proc.returncode == 3, proc.stdout + proc.stderr
    (line,) = summary_lines(proc.stdout)
    assert line.endswith(":INDETERMINATE (cannot be proven: AdES AdESIndeterminate/OUT_OF_BOUNDS_NO_POE)"), (
        line
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", ["b_t", "b_b"])
def test_tampered_or_untrusted_stays_invalid_after_the_expiry(
    expired: Expired, dev_certs: DevCerts, tmp_path: Path, backend: str, level: str
) -> None:
    data = getattr(expired, level)
    tampered = bytearray(data)
    tampered[tampered.index(b"/OneColumn") + 9] ^= 0x01  # /OneColumo: signed bytes, still a valid PDF
    broken = run(write(tmp_path, bytes(tampered)), backend, VERIFY_PDF_TRUST=str(dev_certs.root_pem))
    untrusted = run(write(tmp_path, data), backend, VERIFY_PDF_TRUST=str(dev_certs.tsa_pem))

    for proc in (broken, untrusted):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert any(":INVALID" in line for line in summary_lines(proc.stdout)), proc.stdout


def app_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNING_", "STORAGE_", "AUDIT_"))}
    return subprocess.run(
        [*LATER, sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
    )


def test_the_audit_agrees(expired: Expired, dev_certs: DevCerts, tmp_path: Path) -> None:
    """B-T: ``ok`` (not ``certificate_expiring``: its evidence is now the TSA's chain, valid for
    years); B-B, and B-T whose TSA certificate expired: ``signature_indeterminate``, with the
    expiry date, exit 1."""
    root = tmp_path / "archive"
    root.mkdir()
    b_t, b_b, tsa_expired = store_archives(root, [expired.b_t, expired.b_b, expired.tsa_expired])

    proc = app_cli(
        "audit", "--root", str(root), "--trust", str(dev_certs.root_pem), "--json", "--no-progress"
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = {item["path"]: item for item in json.loads(proc.stdout)["files"]}
    found_b_t, found_b_b, found_tsa = (files[str(s.path.relative_to(root))] for s in (b_t, b_b, tsa_expired))
    assert found_b_t["result"] == "ok", found_b_t
    tsa_expiry = datetime.fromisoformat(found_b_t["evidence_expires_at"])
    assert tsa_expiry > datetime.now(UTC) + timedelta(days=365)  # the dev TSA's chain, not the signer's
    assert found_b_b["result"] == "signature_indeterminate", found_b_b
    assert found_b_b["problems"] == [
        {
            "code": "signature_indeterminate",
            "detail": "cannot be proven: no timestamp, signer certificate expired on "
            f"{expired.not_after.date().isoformat()}",
        }
    ]
    assert found_tsa["result"] == "signature_indeterminate", found_tsa
    assert found_tsa["problems"][0]["detail"] == (
        "cannot be proven: the signature timestamp's TSA certificate chain expired on "
        f"{expired.not_after.date().isoformat()}"
    )


@pytest.mark.parametrize("level", ["b_t", "b_b"])
def test_extract_with_trust_agrees(expired: Expired, dev_certs: DevCerts, tmp_path: Path, level: str) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    (stored,) = store_archives(root, [getattr(expired, level)])

    proc = app_cli(
        "extract", str(stored.path), "-o", str(tmp_path / "out"), "--trust", str(dev_certs.root_pem)
    )

    if level == "b_t":
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "intact and trusted; valid at " in proc.stdout
        assert "proven by the signature timestamp (signer certificate expired on" in proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "NOT PROVEN (INDETERMINATE" in proc.stderr
        assert "cannot be proven: no timestamp, signer certificate expired on" in proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
async def test_b_lt_and_b_lta_stay_valid_after_the_signer_certificate_expired(
    cm_pki, animator, tmp_path: Path, backend: str, level: str
) -> None:
    """certomancer's ``signer-expiring`` (valid for 40 days) signs with validation data (and a
    document timestamp); 60 days later, with its OCSP responder and CRLs still answering, the
    archive is VALID at the time its signature timestamp proves, and the audit says ``ok``."""
    import aiohttp

    from tests.signing.lta_archives import sign

    async with aiohttp.ClientSession() as session:
        data = await sign(cm_pki, session, cert="signer-expiring", level=level)
    later = ("faketime", "-f", f"+{EXPIRING_IN.days + 20}d")
    path = write(tmp_path, data)
    env = {**os.environ, "VERIFY_PDF_PYHANKO": BACKENDS[backend], "VERIFY_PDF_TRUST": str(cm_pki.root_pem)}
    # In a thread: certomancer's OCSP responder and CRLs are served by this test's event loop.
    proc = await asyncio.to_thread(
        subprocess.run,
        [*later, "bash", str(VERIFY_PDF), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = summary_lines(proc.stdout)
    assert ":VALID (valid at " in line and "proven by the signature timestamp" in line, proc.stdout
    if level == "B-LTA":
        stamps = [x for x in proc.stdout.splitlines() if x.startswith("Timestamp-")]  # the document timestamp
        assert stamps and all(x.endswith(":VALID") for x in stamps), proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_revoked_signer_still_fails(cm_pki, animator, tmp_path: Path, backend: str) -> None:
    """Revocation stays soft-fail but binding under the AdES model: certomancer's
    ``signer-revoked`` (revoked since 2024, before any timestamp the TSA gives now) signs B-T;
    its OCSP responder says "revoked": INVALID, exit 1, by either backend."""
    import aiohttp

    from tests.signing.lta_archives import sign

    async with aiohttp.ClientSession() as session:
        data = await sign(cm_pki, session, cert="signer-revoked")
    env = {**os.environ, "VERIFY_PDF_PYHANKO": BACKENDS[backend], "VERIFY_PDF_TRUST": str(cm_pki.root_pem)}
    proc = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(VERIFY_PDF), str(write(tmp_path, data))],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = summary_lines(proc.stdout)
    assert ":INVALID (AdES AdESIndeterminate/REVOKED_NO_POE)" in line, proc.stdout
