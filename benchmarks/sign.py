"""Milliseconds per PAdES B-B signature: our ArchiveSigner vs pyHanko's stock SimpleSigner.

Usage: .venv/bin/python benchmarks/sign.py [--rounds N]

For RSA-2048 and RSA-3072 keys (a throw-away root + signer made in memory), signs a one-page
fpdf2 PDF ``N`` times with each signer after two warm-up rounds and prints the median and p95
wall time and the longest event-loop stall. "stock" is what pyHanko's docs show:
``SimpleSigner.load_pkcs12_data`` once, default ``bytes_reserved`` (a dummy signature sizes the
placeholder, so two raw signatures per PDF, each re-parsing the key). Runs in well under a minute.
``run(quick)`` gives the rows of ``make bench`` (target: ours at least as fast as stock at RSA-3072).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fpdf import FPDF
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers

from app.signing.signer import ArchiveSigner, SigningOptions
from benchmarks.common import Result

PASSWORD = b"bench"
KEY_SIZES = (2048, 3072)
TARGET_SPEEDUP = 1.0
"""Ours must be at least as fast as stock pyHanko (median, RSA-3072: the dev certificates' size)."""


def make_pfx(bits: int) -> bytes:
    """A root (same size) and a signer with digitalSignature + nonRepudiation, as a PFX."""
    now = datetime.now(UTC)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench Root {bits}")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench Signer {bits}")]))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(usage, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(PASSWORD)
    return pkcs12.serialize_key_and_certificates(b"bench", leaf_key, leaf, [root], encryption)


def make_pdf() -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(w=0, text="Ticket #1\n" + "Lorem ipsum dolor sit amet. " * 40)
    return bytes(pdf.output())


async def measure(sign, pdf: bytes, rounds: int) -> tuple[list[float], float]:
    """Per-signature wall times (ms) and the longest event-loop stall (ms) while signing."""
    max_gap = 0.0

    async def ticker() -> None:
        nonlocal max_gap
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            max_gap, last = max(max_gap, now - last), now

    for _ in range(2):
        await sign(pdf)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await sign(pdf)
        times.append((time.perf_counter() - start) * 1000)
    task.cancel()
    return times, max_gap * 1000


async def compare(rounds: int) -> tuple[int, list[tuple[int, list[float], float, list[float], float]]]:
    """PDF size and, per key size, ``(bits, ours ms, ours stall ms, stock ms, stock stall ms)``."""
    pdf = make_pdf()
    meta = signers.PdfSignatureMetadata(
        field_name="Signature1", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    rows = []
    for bits in KEY_SIZES:
        pfx = make_pfx(bits)
        ours = ArchiveSigner.from_pfx(pfx, PASSWORD, options=SigningOptions())
        stock_signer = signers.SimpleSigner.load_pkcs12_data(pfx, [], passphrase=PASSWORD)

        async def sign_stock(data: bytes, stock_signer=stock_signer) -> bytes:
            writer = IncrementalPdfFileWriter(io.BytesIO(data))
            out = await signers.PdfSigner(meta, signer=stock_signer).async_sign_pdf(writer, in_place=True)
            return out.getvalue()

        ours_t, ours_stall = await measure(ours.sign, pdf, rounds)
        stock_t, stock_stall = await measure(sign_stock, pdf, rounds)
        rows.append((bits, ours_t, ours_stall, stock_t, stock_stall))
    return len(pdf), rows


def p95(ts: list[float]) -> float:
    return statistics.quantiles(ts, n=20)[-1]


def run(quick: bool = False) -> list[Result]:
    """Median ms per signature for ours and stock, the speed-up stock/ours and the loop stall."""
    _, rows = asyncio.run(compare(10 if quick else 30))
    results = []
    for bits, ours_t, ours_stall, stock_t, _stock_stall in rows:
        ours_m, stock_m = statistics.median(ours_t), statistics.median(stock_t)
        speedup = stock_m / ours_m
        on_target = bits == max(KEY_SIZES)
        results += [
            Result(
                "sign", f"RSA-{bits} PAdES B-B: ours median, p95 {p95(ours_t):.1f} ms", round(ours_m, 1), "ms"
            ),
            Result("sign", f"RSA-{bits}: stock pyHanko SimpleSigner median", round(stock_m, 1), "ms"),
            Result(
                "sign",
                f"RSA-{bits}: stock / ours",
                round(speedup, 1),
                "ratio",
                f">= {TARGET_SPEEDUP:g}" if on_target else None,
                speedup >= TARGET_SPEEDUP if on_target else None,
            ),
            Result(
                "sign",
                f"RSA-{bits}: longest event-loop stall while signing (ours)",
                round(ours_stall, 1),
                "ms",
            ),
        ]
    return results


async def main(rounds: int) -> None:
    size, rows = await compare(rounds)
    print(
        f"PAdES B-B, {rounds} signatures each, one-page PDF ({size} bytes), "
        "median / p95 ms, max loop stall ms"
    )
    print(
        f"{'key':<9}{'ours med':>9}{'p95':>7}{'stall':>7}  "
        f"{'stock med':>9}{'p95':>7}{'stall':>7}  {'stock/ours':>10}"
    )
    for bits, ours_t, ours_stall, stock_t, stock_stall in rows:
        ours_m, stock_m = statistics.median(ours_t), statistics.median(stock_t)
        print(
            f"RSA-{bits:<5}{ours_m:>9.1f}{p95(ours_t):>7.1f}{ours_stall:>7.1f}  "
            f"{stock_m:>9.1f}{p95(stock_t):>7.1f}{stock_stall:>7.1f}  {stock_m / ours_m:>9.1f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=30, help="signatures per signer and key size (default 30)"
    )
    asyncio.run(main(parser.parse_args().rounds))
