"""Loading the PFX and the certificate checks made at start-up and before each signature."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from app.errors import SigningError
from app.signing.keys import CachedKeySigner, check_signing_certificate, load_signing_key
from app.signing.signer import ArchiveSigner
from tests.signing.signing_helpers import GEN_DEV_CERTS, PFX_PASSWORD, issue_test_pfx


def all_text(exc: BaseException) -> str:
    """Everything a log handler could print about ``exc``: str, repr and the full traceback chain."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_loads_key_certificate_and_chain(pfx_bytes: bytes) -> None:
    key = load_signing_key(pfx_bytes, PFX_PASSWORD.encode())

    assert key.certificate.subject.rfc4514_string() == "CN=Dev Archive Signer,O=zammad-pdf-archiver dev"
    assert [c.subject.rfc4514_string() for c in key.extra_certificates] == [
        "CN=Dev Root CA,O=zammad-pdf-archiver dev"
    ]
    assert isinstance(key.private_key, RSAPrivateKey) and key.private_key.key_size == 3072
    assert "private_key" not in repr(key)


def test_wrong_password_is_permanent_and_never_leaks(pfx_bytes: bytes) -> None:
    wrong = "Wr0ng-Guess-Pa55"

    with pytest.raises(SigningError) as info:
        ArchiveSigner.from_pfx(pfx_bytes, wrong.encode())

    exc = info.value
    assert exc.transient is False
    assert "wrong password or corrupt file" in str(exc)
    assert wrong not in all_text(exc) and PFX_PASSWORD not in all_text(exc)


def test_missing_password_for_encrypted_pfx(pfx_bytes: bytes) -> None:
    with pytest.raises(SigningError) as info:
        load_signing_key(pfx_bytes, None)

    assert info.value.transient is False and "PFX" in str(info.value)


def test_corrupt_pfx_names_the_cause(pfx_bytes: bytes) -> None:
    with pytest.raises(SigningError) as info:
        load_signing_key(b"-----BEGIN CERTIFICATE-----\nnope\n", PFX_PASSWORD.encode())

    assert info.value.transient is False
    assert "not a PKCS#12 file" in str(info.value)
    assert PFX_PASSWORD not in all_text(info.value)


def test_truncated_pfx_fails_cleanly(pfx_bytes: bytes) -> None:
    with pytest.raises(SigningError) as info:
        load_signing_key(pfx_bytes[: len(pfx_bytes) // 2], PFX_PASSWORD.encode())

    assert info.value.transient is False and "cannot open the PFX" in str(info.value)


def test_expired_certificate_is_refused(dev_certs, tmp_path: Path) -> None:
    pfx = issue_test_pfx(
        dev_certs, tmp_path, name="Expired Signer", start="20200101000000Z", end="20210101000000Z"
    )

    with pytest.raises(SigningError) as info:
        ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())

    assert info.value.transient is False
    assert "expired on 2021-01-01" in str(info.value)


def test_not_yet_valid_certificate_is_refused(dev_certs, tmp_path: Path) -> None:
    pfx = issue_test_pfx(
        dev_certs, tmp_path, name="Future Signer", start="20990101000000Z", end="20991231000000Z"
    )

    with pytest.raises(SigningError) as info:
        ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())

    assert info.value.transient is False and "not yet valid" in str(info.value)


def test_certificate_without_non_repudiation_is_refused(dev_certs, tmp_path: Path) -> None:
    pfx = issue_test_pfx(dev_certs, tmp_path, name="DS Only", key_usage="critical,digitalSignature")

    with pytest.raises(SigningError) as info:
        ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())

    assert info.value.transient is False
    assert "lacks key usage nonRepudiation" in str(info.value)


def test_certificate_without_digital_signature_is_refused(dev_certs, tmp_path: Path) -> None:
    pfx = issue_test_pfx(dev_certs, tmp_path, name="NR Only", key_usage="critical,nonRepudiation")

    with pytest.raises(SigningError) as info:
        ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())

    assert info.value.transient is False
    assert "lacks key usage digitalSignature" in str(info.value)


def test_valid_certificate_from_the_same_helper_is_accepted(dev_certs, tmp_path: Path) -> None:
    """Control for the refusals above: the helper's default certificate signs fine."""
    pfx = issue_test_pfx(dev_certs, tmp_path, name="Good Signer")

    signer = ArchiveSigner.from_pfx(pfx, PFX_PASSWORD.encode())

    assert signer.subject == "CN=Good Signer"


def test_check_is_pure_and_uses_the_given_time(pfx_bytes: bytes) -> None:
    cert: x509.Certificate = load_signing_key(pfx_bytes, PFX_PASSWORD.encode()).certificate

    check_signing_certificate(cert, cert.not_valid_before_utc)  # boundaries are inclusive
    check_signing_certificate(cert, cert.not_valid_after_utc)
    with pytest.raises(SigningError, match="not yet valid"):
        check_signing_certificate(cert, cert.not_valid_before_utc - timedelta(seconds=1))
    with pytest.raises(SigningError, match="expired"):
        check_signing_certificate(cert, cert.not_valid_after_utc + timedelta(seconds=1))


async def test_certificate_is_rechecked_before_each_signature(pfx_bytes: bytes, sample_pdf: bytes) -> None:
    key = load_signing_key(pfx_bytes, PFX_PASSWORD.encode())
    now = [datetime.now(UTC)]
    signer = ArchiveSigner(key, clock=lambda: now[0])
    assert (await signer.sign(sample_pdf)).signed

    now[0] = key.certificate.not_valid_after_utc + timedelta(days=1)

    with pytest.raises(SigningError) as info:
        await signer.sign(sample_pdf)
    # Transient (signer_unavailable): the jobs wait for a renewed PFX, keeping the trigger tag.
    assert info.value.transient is True and info.value.code == "signer_unavailable"
    assert "expired" in str(info.value)


def test_gen_dev_certs_is_idempotent_and_keys_are_private(tmp_path: Path) -> None:
    env = {**os.environ, "DEV_PFX_PASSWORD": "idem"}
    first = subprocess.run(
        ["bash", str(GEN_DEV_CERTS), str(tmp_path)], env=env, capture_output=True, text=True
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = subprocess.run(
        ["bash", str(GEN_DEV_CERTS), str(tmp_path)], env=env, capture_output=True, text=True
    )

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert set(before) == {
        "root.pem",
        "root.key",
        "signer.pem",
        "signer.key",
        "signer.pfx",
        "tsa.pem",
        "tsa.key",
    }
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    for name in ("root.key", "signer.key", "tsa.key", "signer.pfx"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name
    tsa = x509.load_pem_x509_certificate(before["tsa.pem"])
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]
    signer = x509.load_pem_x509_certificate(before["signer.pem"])
    ku = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert load_signing_key(before["signer.pfx"], b"idem").certificate == signer


# --- the cached key keeps the event loop free ---------------------------------------------

MAX_STALL_S = 0.050


class StallMeter:
    """Ticks every millisecond and records the longest gap between ticks (the loop stall)."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    async def __aenter__(self) -> StallMeter:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.005)  # let the ticker start
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.005)
        assert self._task is not None
        self._task.cancel()


async def test_five_signatures_never_stall_the_loop_over_50_ms(pfx_bytes: bytes, sample_pdf: bytes) -> None:
    signer = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())  # RSA-3072 dev key

    async with StallMeter() as meter:
        for _ in range(5):
            assert (await signer.sign(sample_pdf)).signed

    assert meter.max_gap < MAX_STALL_S, f"event loop stalled {meter.max_gap * 1000:.1f} ms"


async def test_stall_meter_detects_a_blocking_call() -> None:
    """Control: the meter really sees a blocked loop, so the bound above can fail."""
    async with StallMeter() as meter:
        time.sleep(0.08)  # noqa: ASYNC251 - the blocking call the meter must see

    assert meter.max_gap >= 0.08


def test_cached_key_signer_skips_the_key_reparse(pfx_bytes: bytes, monkeypatch) -> None:
    """RSA PKCS#1 v1.5 uses the cached key: pyHanko's re-parse (load_der_private_key) is never called."""
    from pyhanko.sign.signers import pdf_cms

    key = load_signing_key(pfx_bytes, PFX_PASSWORD.encode())
    signer = CachedKeySigner.from_signing_key(key)
    calls = []
    original = pdf_cms.serialization.load_der_private_key
    monkeypatch.setattr(
        pdf_cms.serialization, "load_der_private_key", lambda *a, **k: calls.append(1) or original(*a, **k)
    )

    raw = signer.sign_raw(b"data", "sha256")

    assert calls == [] and len(raw) == 384  # RSA-3072 signature
    assert isinstance(key.private_key, RSAPrivateKey)
    key.private_key.public_key().verify(raw, b"data", PKCS1v15(), hashes.SHA256())
