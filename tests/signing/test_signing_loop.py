"""Signing must not stall the event loop: the cached-key signer keeps each synchronous step short."""

from __future__ import annotations

import asyncio
import time

from signing_helpers import PFX_PASSWORD

from app.signing.signer import ArchiveSigner, CachedKeySigner, load_signing_key

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
        time.sleep(0.08)

    assert meter.max_gap >= 0.08


def test_cached_key_signer_skips_the_key_reparse(pfx_bytes: bytes, monkeypatch) -> None:
    """RSA PKCS#1 v1.5 uses the cached key: pyHanko's re-parse (load_der_private_key) is never called."""
    from pyhanko.sign.signers import pdf_cms

    signer = CachedKeySigner.from_signing_key(load_signing_key(pfx_bytes, PFX_PASSWORD.encode()))
    calls = []
    original = pdf_cms.serialization.load_der_private_key
    monkeypatch.setattr(
        pdf_cms.serialization, "load_der_private_key", lambda *a, **k: calls.append(1) or original(*a, **k)
    )

    raw = signer.sign_raw(b"data", "sha256")

    assert calls == [] and len(raw) == 384  # RSA-3072 signature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

    signer._pyca_key.public_key().verify(raw, b"data", PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
