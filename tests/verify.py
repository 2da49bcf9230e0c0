"""Independent checks of archived PDFs: poppler's pdftotext/pdfsig and pyHanko validation."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext


def pdftotext(path: Path) -> str:
    """The PDF's text (``pdftotext -layout -`` is not used: plain reading order), whitespace folded."""
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True)
    assert b"No font" not in out.stderr, out.stderr
    return " ".join(out.stdout.decode("utf-8").split())


def pdfsig(path: Path) -> str:
    """``pdfsig`` text output (it exits 0 even on a digest mismatch, so callers parse the text)."""
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout


def load_root(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


async def pyhanko_status(path: Path, root_pem: Path):
    """Validate the first signature against ``root_pem`` only; returns pyHanko's status object."""
    reader = PdfFileReader(io.BytesIO(path.read_bytes()))
    sig = reader.embedded_signatures[0]
    vc = ValidationContext(
        trust_roots=[load_root(root_pem)], allow_fetching=False, revocation_mode="soft-fail"
    )
    return await async_validate_pdf_signature(sig, vc)
