#!/usr/bin/env python3
"""Verify an archived PDF with pyHanko's library: the fallback of verify-pdf.sh without pyHanko's CLI.

Usage: verify-pdf.py [--signatures-only] FILE.pdf

Every signature and document timestamp must be intact (the signed byte ranges hash to the
signed digest), cryptographically valid and chain to a root in ``VERIFY_PDF_TRUST``
(colon-separated PEM files; ``VERIFY_PDF_OTHER_CERTS`` adds intermediates); a signature
timestamp, when present, must be trusted too. Revocation is soft-fail: checked online where
reachable, a "revoked" answer fails. Unless ``--signatures-only``, the sidecar ``FILE.pdf.json``
(when present) must give the file's SHA-256 and size. ``VERIFY_PDF_SHOW_DETAILS=true``
prints pyHanko's full report per signature.

Prints one line per signature and document timestamp, as pyHanko's CLI does with
``--executive-summary``: ``Signature1:<SHA-256 of the signer's (a document timestamp: the
TSA's) certificate>:VALID`` (or ``INVALID``, with the cause when validation raised).

Exit status: 0 all good; 1 invalid, untrusted or mismatching; 2 usage or set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any


def _certs(paths: str) -> list:
    from pyhanko.keys import load_certs_from_pemder

    out = []
    for part in paths.split(":"):
        if part:
            out.extend(load_certs_from_pemder([part]))
    return out


def check_sidecar(pdf: Path) -> bool | None:
    """``None`` without a sidecar, else whether its ``sha256`` and ``size`` match the file."""
    sidecar = pdf.with_name(pdf.name + ".json")
    if not sidecar.is_file():
        return None
    data = pdf.read_bytes()
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        expected = (meta["sha256"], int(meta["size"]))
    except (ValueError, KeyError, TypeError):
        print(f"sidecar: {sidecar} is not valid JSON with sha256 and size")
        return False
    actual = (hashlib.sha256(data).hexdigest(), len(data))
    if expected == actual:
        print(f"sidecar: OK (sha256 {actual[0]})")
        return True
    print(f"sidecar: MISMATCH (sidecar: {expected[0]} {expected[1]}, file: {actual[0]} {actual[1]})")
    return False


def _fingerprint(sig: Any) -> str:
    """The SHA-256 (hex) of the certificate that signed ``sig`` (an ``EmbeddedPdfSignature``):
    the signer's, or for a document timestamp the TSA's; ``?`` when the CMS names none that it
    carries. The same field as in pyHanko CLI's ``--executive-summary`` line
    (``name:fingerprint:VALID``)."""
    try:
        return str(sig.signer_cert.sha256.hex())
    except Exception:  # noqa: BLE001 - a broken CMS still gets its verdict line
        return "?"


async def check_signatures(pdf: Path, roots: list, others: list, details: bool) -> bool:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
    from pyhanko.sign.validation.status import DocumentTimestampStatus, PdfSignatureStatus
    from pyhanko_certvalidator import ValidationContext

    reader = PdfFileReader(io.BytesIO(await asyncio.to_thread(pdf.read_bytes)), strict=False)
    signatures = reader.embedded_signatures
    if not signatures:
        print("signatures: NONE (the PDF holds no signature)")
        return False
    ok = True
    for sig in signatures:
        vc = ValidationContext(
            trust_roots=roots, other_certs=others, allow_fetching=True, revocation_mode="soft-fail"
        )
        try:
            status: DocumentTimestampStatus | PdfSignatureStatus
            if sig.sig_object.get("/Type") == "/DocTimeStamp":
                status = await async_validate_pdf_timestamp(sig, validation_context=vc)
                good = status.intact and status.valid and status.trusted
            else:
                status = signature = await async_validate_pdf_signature(sig, vc)
                ts = signature.timestamp_validity
                good = signature.bottom_line and (ts is None or (ts.intact and ts.valid and ts.trusted))
        except Exception as exc:  # noqa: BLE001 - a broken signature is a verdict, not a crash
            print(f"{sig.field_name}:{_fingerprint(sig)}:INVALID ({type(exc).__name__}: {exc})")
            ok = False
            continue
        finally:
            await vc.aclose()
        print(f"{sig.field_name}:{_fingerprint(sig)}:{'VALID' if good else 'INVALID'}")
        if details:  # a document timestamp has no detail report of its own: its trust, and a summary
            if isinstance(status, PdfSignatureStatus):
                print(status.pretty_print_details())
            else:
                print(f"{status.describe_timestamp_trust()}; {status.summary()}")
        ok = ok and good
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--signatures-only", action="store_true", help="do not check the sidecar")
    args = parser.parse_args(argv)
    trust = os.environ.get("VERIFY_PDF_TRUST", "")
    if not trust:
        print(
            "verify-pdf: set VERIFY_PDF_TRUST to the trust root PEM file(s), colon-separated", file=sys.stderr
        )
        return 2
    if not args.file.is_file():
        print(f"verify-pdf: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        roots = _certs(trust)
        others = _certs(os.environ.get("VERIFY_PDF_OTHER_CERTS", ""))
    except (OSError, ValueError) as exc:
        print(f"verify-pdf: cannot read certificates: {exc}", file=sys.stderr)
        return 2
    details = os.environ.get("VERIFY_PDF_SHOW_DETAILS", "").strip().lower() in {"1", "true", "yes", "on"}
    sidecar_ok = None if args.signatures_only else check_sidecar(args.file)
    try:
        signatures_ok = asyncio.run(check_signatures(args.file, roots, others, details))
    except Exception as exc:  # noqa: BLE001 - unreadable PDF
        print(f"{args.file}: cannot read signatures: {type(exc).__name__}: {exc}")
        signatures_ok = False
    return 0 if signatures_ok and sidecar_ok is not False else 1


if __name__ == "__main__":
    sys.exit(main())
