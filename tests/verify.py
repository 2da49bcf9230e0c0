"""Independent checks of archived PDFs: poppler's pdftotext/pdfsig and pyHanko validation."""

from __future__ import annotations

import io
import os
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


def verapdf_script() -> Path:
    """The shared veraPDF wrapper (``../shared/tools/verapdf/validate.sh FILE.pdf 3b``, the
    reference PDF/A validator): ``$VERAPDF_VALIDATE``, else ``shared/`` beside the checkout,
    else ``/work/shared``. A test that needs it fails (never skips) when none exists."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(p) for p in (os.environ.get("VERAPDF_VALIDATE"),) if p] + [
        repo.parent / "shared" / "tools" / "verapdf" / "validate.sh",
        Path("/work/shared/tools/verapdf/validate.sh"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AssertionError(f"veraPDF's validate.sh not found (set VERAPDF_VALIDATE); looked at {candidates}")


def verapdf(path: Path, flavour: str = "3b") -> subprocess.CompletedProcess[str]:
    """Run veraPDF on ``path``; ``returncode == 0`` and ``stdout`` starting ``PASS`` mean valid."""
    return subprocess.run(
        ["bash", str(verapdf_script()), str(path), flavour], capture_output=True, text=True, timeout=300
    )


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
