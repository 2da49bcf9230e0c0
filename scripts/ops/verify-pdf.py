#!/usr/bin/env python3
"""Verify an archived PDF with pyHanko's library and its AdES validation engine.

Usage: verify-pdf.py [--signatures-only] FILE.pdf

Every signature and document timestamp must be intact (the signed byte ranges hash to the
signed digest), cryptographically valid and chain to a root in ``VERIFY_PDF_TRUST``
(colon-separated PEM files; ``VERIFY_PDF_OTHER_CERTS`` adds intermediates). Signatures are
judged by the AdES validation model (ETSI EN 319 102-1; PAdES: ETSI EN 319 142-1) with
pyHanko's AdES engine (:func:`check_signature`): a signature with a signature timestamp
(B-T, B-LT, B-LTA) is valid when the signer's certificate was valid at the time the timestamp
proves and the TSA's chain is valid now (B-LTA: at the time a later document timestamp proves),
so an archive stays valid after its signer certificate expired; a signature without one (B-B)
is validated at the present time, and once its signer certificate has expired it is
INDETERMINATE (nothing proves it was made while the certificate was valid). Document
timestamps (B-LTA) are judged as a chain (§5.6.3, :func:`check_document_timestamps`): the newest
at the present time, INDETERMINATE once its TSA's chain has expired; an older one whose TSA's
chain has expired is valid at the time the next newer, valid one proves. Revocation is
soft-fail: checked online where the certificates name a service; an unreachable service does
not fail the check, a "revoked" answer does (for a timestamped signature: a revocation dated
before the time the timestamp proves; ETSI EN 319 102-1 §5.5.4). Unless ``--signatures-only``,
the sidecar ``FILE.pdf.json`` (when present) must give the file's SHA-256 and size.
``VERIFY_PDF_SHOW_DETAILS=true`` prints pyHanko's full report per signature.

Prints one line per signature and document timestamp, as pyHanko's CLI does with
``--executive-summary``: ``Signature1:<SHA-256 of the signer's (a document timestamp: the
TSA's) certificate>:VALID``, ``INVALID`` or ``INDETERMINATE``, followed by a note in
parentheses where there is one: ``(valid at 2026-12-07T21:36:57Z, proven by the signature
timestamp; signer certificate expired on …)``, ``(cannot be proven: no timestamp, signer
certificate expired on …)``, ``(valid at …, proven by the document timestamp of …; TSA
certificate expired on …)``, or the cause of a failure.

Exit status: 0 all valid (and the sidecar matches); 1 invalid, untrusted or mismatching;
2 usage or set-up error; 3 (:data:`EXIT_INDETERMINATE`) nothing invalid, but a signature
cannot be proven valid.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_INDETERMINATE = 3
"""Exit status when no check failed but a signature cannot be proven valid (INDETERMINATE)."""


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


_EXPIRY_INDICATIONS = frozenset({"OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED", "NO_POE", "EXPIRED"})
"""AdES sub-indications (ETSI EN 319 102-1 Table 5) that say "the certificate is outside its
validity period and nothing proves the signature existed before": INDETERMINATE, not INVALID."""


def _spec(roots: list, others: list) -> Any:
    """The AdES validation settings: ``roots`` as the only trust anchors, ``others`` as helper
    certificates, revocation soft-fail (checked online where the certificates name a service; an
    unreachable service does not fail, a "revoked" answer does; pyHanko-certvalidator's legacy
    ``soft-fail`` policy)."""
    from pyhanko.sign.validation.policy_decl import LocalKnowledge, SignatureValidationSpec
    from pyhanko_certvalidator.context import CertValidationPolicySpec
    from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy
    from pyhanko_certvalidator.registry import SimpleTrustManager

    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=roots),
        revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy.from_legacy("soft-fail")),
    )
    return SignatureValidationSpec(
        cert_validation_policy=policy, local_knowledge=LocalKnowledge(known_certs=others)
    )


def _imprint(digest: bytes) -> Callable[[str], bytes]:
    """The expected message imprint of a document timestamp: the digest of its byte range."""
    return lambda _algorithm: digest


def _utc(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def check_signature(sig: Any, roots: list, others: list) -> tuple[str, str | None, Any]:
    """Validate one signature field by the AdES validation model (ETSI EN 319 102-1) with
    pyHanko's AdES engine (``pyhanko.sign.validation.ades``).

    * With a signature timestamp (PAdES B-T, B-LT, B-LTA): validation with time (§5.5,
      ``ades_with_time_validation``): the signer's certificate must be valid at the time the
      timestamp proves, the TSA's chain now. When that fails and the file holds document
      timestamps (B-LTA), validation with long-term availability (§5.6.3,
      ``ades_lta_validation``), whose past validation uses them and the DSS's data.
    * Without one (B-B): basic validation at the present time (§5.3, pyHanko's
      ``async_validate_pdf_signature``); a signer certificate that has expired makes it
      INDETERMINATE: nothing proves that the signature existed while it was valid.

    Returns:
        ``(verdict, note, status)``: ``"VALID"``, ``"INVALID"`` or ``"INDETERMINATE"``; a note
        for the summary line (the time a timestamp proves, or the cause), or ``None``; pyHanko's
        status object (for the details report), or ``None``.
    """
    from pyhanko.sign.ades.report import AdESPassed
    from pyhanko.sign.general import find_unique_cms_attribute
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.ades import ades_lta_validation, ades_with_time_validation
    from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec
    from pyhanko.sign.validation.status import PdfSignatureStatus
    from pyhanko_certvalidator import ValidationContext

    now = datetime.now(UTC)
    signer_expiry = sig.signer_cert.not_valid_after
    try:
        find_unique_cms_attribute(sig.signer_info["unsigned_attrs"], "signature_time_stamp_token")
        timestamped = True
    except Exception:  # noqa: BLE001 - NonexistentAttributeError, or no unsigned attributes at all
        timestamped = False
    spec = _spec(roots, others)
    if timestamped:
        sig.compute_integrity_info()
        result = await ades_with_time_validation(
            sig.signed_data,
            spec,
            raw_digest=sig.compute_digest(),
            extra_status_kwargs=sig.summarise_integrity_info(),
            status_cls=PdfSignatureStatus,
        )
        proof = "the signature timestamp"
        if result.ades_subindic != AdESPassed.OK and sig.reader.embedded_timestamp_signatures:
            result = await ades_lta_validation(sig, PdfSignatureValidationSpec(spec))
            proof = "the document timestamps"
        status = result.api_status
        ok = result.ades_subindic == AdESPassed.OK and status is not None and status.bottom_line
        if ok:
            if signer_expiry <= now:
                return (
                    "VALID",
                    f"valid at {_utc(result.best_signature_time)}, proven by {proof}; "
                    f"signer certificate expired on {_utc(signer_expiry)}",
                    status,
                )
            return "VALID", None, status
        indication = getattr(result.ades_subindic, "name", str(result.ades_subindic))
        cause = f"AdES {type(result.ades_subindic).__name__}/{indication}"
        if result.failure_msg:
            cause += f": {result.failure_msg}"
        if indication in _EXPIRY_INDICATIONS and (status is None or (status.intact and status.valid)):
            return "INDETERMINATE", f"cannot be proven: {cause}", status
        return "INVALID", cause, status
    vc = ValidationContext(
        trust_roots=roots, other_certs=others, allow_fetching=True, revocation_mode="soft-fail"
    )
    try:
        status = await async_validate_pdf_signature(sig, vc)
    finally:
        await vc.aclose()
    if status.bottom_line:
        return "VALID", None, status
    indication = getattr(status.trust_problem_indic, "name", None)
    if (
        indication in _EXPIRY_INDICATIONS
        and status.intact
        and status.valid
        and status.docmdp_ok is not False
        and signer_expiry <= now
    ):
        return (
            "INDETERMINATE",
            f"cannot be proven: no timestamp, signer certificate expired on {_utc(signer_expiry)}",
            status,
        )
    return "INVALID", None, status


async def check_document_timestamps(
    reader: Any, roots: list, others: list
) -> dict[int, tuple[str, str | None, Any]]:
    """Validate the chain of document timestamps of ``reader`` (a ``PdfFileReader``) by the AdES
    model for evidence records (ETSI EN 319 102-1 §5.6.3, as pyHanko's ``ades_lta_validation``
    processes the document timestamps of a PAdES B-LTA file, ETSI EN 319 142-1), one verdict each.

    Oldest first, each timestamp token is validated at the present time
    (``ades_timestamp_validation``, §5.4); when that is INDETERMINATE because its TSA's chain has
    expired (or a CA's was revoked since), past validation (``ades_past_signature_validation``,
    §5.6.2.4) at the time the next newer document timestamp proves, with the validation data of
    the DSS. Such a timestamp is VALID only when that newer one is VALID in turn: the newest is
    judged at the present time alone, INDETERMINATE once its TSA's chain has expired.

    Returns:
        ``{index in reader.embedded_signatures: (verdict, note, status)}`` for each document
        timestamp, as :func:`check_signature` returns them.
    """
    from pyhanko.sign.ades.report import AdESPassed, AdESStatus
    from pyhanko.sign.validation import ades
    from pyhanko.sign.validation.policy_decl import LocalKnowledge
    from pyhanko.sign.validation.status import DocumentTimestampStatus
    from pyhanko_certvalidator.ltv.poe import POEManager
    from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

    signatures = reader.embedded_signatures
    stamps = [i for i, sig in enumerate(signatures) if sig.sig_object_type == "/DocTimeStamp"]
    now = datetime.now(UTC)
    timing = ValidationTimingInfo(
        validation_time=now, best_signature_time=now, point_in_time_validation=False
    )
    spec = _spec(roots, others)
    # The DSS's certificates, CRLs and OCSP responses, and which objects each document timestamp
    # proves to have existed at its time (pyHanko's own evidence-record index; private API of
    # pyHanko 0.38; pyproject.toml allows 0.38.x only).
    dss = ades._dss_to_local_knowledge(reader)
    spec = dataclasses.replace(
        spec,
        local_knowledge=LocalKnowledge(
            known_certs=list(spec.local_knowledge.known_certs) + list(dss.known_certs),
            known_crls=dss.known_crls,
            known_ocsps=dss.known_ocsps,
        ),
    )
    proofs = {
        p.pdf_revision: p
        for p in ades._build_prima_facie_poe_index_from_pdf_timestamps(
            reader, include_content_ts=False, diff_policy=None
        )
    }
    # verdict, note, status, and the index of the newer timestamp it rests on (past validation)
    results: dict[int, tuple[str, str | None, Any, int | None]] = {}
    async with ades._operation_scoped_spec(spec) as scoped:
        proven = POEManager()
        scoped.local_knowledge.add_to_poe_manager(proven)
        for position, index in enumerate(stamps):
            sig = signatures[index]
            newer = stamps[position + 1] if position + 1 < len(stamps) else None
            this = proofs.get(sig.signed_revision)
            following = proofs.get(signatures[newer].signed_revision) if newer is not None else None
            poes = copy.copy(proven)
            if following is not None:
                following.add_to_poe_manager(poes)  # prima facie: holds once ``newer`` is valid
            sig.compute_integrity_info()
            result = await ades.ades_timestamp_validation(
                sig.signed_data,
                scoped,
                expected_tst_imprint=_imprint(sig.compute_digest()),
                timing_info=timing,
                validation_data_handlers=ades.bootstrap_validation_data_handlers(
                    scoped, timing_info=timing, poe_manager_override=poes
                ),
                extra_status_kwargs=sig.summarise_integrity_info(),
                status_cls=DocumentTimestampStatus,
            )
            status = result.api_status
            subindic = result.ades_subindic
            cause = f"AdES {type(subindic).__name__}/{getattr(subindic, 'name', subindic)}"
            if result.failure_msg:
                cause += f": {result.failure_msg}"
            intact = status is not None and status.intact and status.valid
            if subindic == AdESPassed.OK and intact and getattr(status, "docmdp_ok", None) is not False:
                results[index] = ("VALID", None, status, None)
                if this is not None:
                    this.add_to_poe_manager(proven)
                continue
            if (
                subindic.status == AdESStatus.INDETERMINATE
                and subindic in ades._LTA_TS_FURTHER_PROC
                and intact
                and following is not None
            ):
                past = await ades.ades_past_signature_validation(
                    sig.signed_data, scoped, poes, subindic, init_control_time=now
                )
                if past == AdESPassed.OK:
                    results[index] = ("VALID", None, status, newer)
                    if this is not None:
                        this.add_to_poe_manager(proven)
                    continue
                # e.g. REVOCATION_OUT_OF_BOUNDS_NO_POE: no revocation data for the TSA in the DSS
                cause += (
                    "; past validation at the time the newer document timestamp proves: "
                    f"{type(past).__name__}/{getattr(past, 'name', past)}"
                )
            if getattr(subindic, "name", None) in _EXPIRY_INDICATIONS and intact:
                results[index] = ("INDETERMINATE", f"cannot be proven: {cause}", status, None)
            else:
                results[index] = ("INVALID", cause, status, None)
    # Newest first: a timestamp past-validated at the time a newer one proves is valid only if
    # that one is.
    out: dict[int, tuple[str, str | None, Any]] = {}
    for index in reversed(stamps):
        verdict, note, status, rests_on = results[index]
        if rests_on is not None:
            sig = signatures[index]
            gen_time = _utc(ades._get_tst_timestamp(sig.signed_data))
            proof = _utc(ades._get_tst_timestamp(signatures[rests_on].signed_data))
            expired = f"TSA certificate expired on {_utc(sig.signer_cert.not_valid_after)}"
            if out[rests_on][0] == "VALID":
                note = f"valid at {gen_time}, proven by the document timestamp of {proof}; {expired}"
            else:
                verdict = "INDETERMINATE"
                note = f"cannot be proven: {expired}, and the document timestamp of {proof} is not valid"
        out[index] = (verdict, note, status)
    return out


async def check_signatures(pdf: Path, roots: list, others: list, details: bool) -> str:
    """Check every signature and document timestamp of ``pdf``; print one line each.

    Returns:
        ``"VALID"`` when all are valid, ``"INDETERMINATE"`` when none is invalid but one cannot
        be proven (:func:`check_signature`), else ``"INVALID"`` (also for a PDF without any).
    """
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.status import DocumentTimestampStatus, PdfSignatureStatus

    reader = PdfFileReader(io.BytesIO(await asyncio.to_thread(pdf.read_bytes)), strict=False)
    signatures = reader.embedded_signatures
    if not signatures:
        print("signatures: NONE (the PDF holds no signature)")
        return "INVALID"
    verdicts = set()
    stamps: dict[int, tuple[str, str | None, Any]] | None = None
    for index, sig in enumerate(signatures):
        note: str | None = None
        status: DocumentTimestampStatus | PdfSignatureStatus | None
        try:
            if sig.sig_object.get("/Type") == "/DocTimeStamp":
                if stamps is None:
                    stamps = await check_document_timestamps(reader, roots, others)
                verdict, note, status = stamps[index]
            else:
                verdict, note, status = await check_signature(sig, roots, others)
        except Exception as exc:  # noqa: BLE001 - a broken signature is a verdict, not a crash
            print(f"{sig.field_name}:{_fingerprint(sig)}:INVALID ({type(exc).__name__}: {exc})")
            verdicts.add("INVALID")
            continue
        print(f"{sig.field_name}:{_fingerprint(sig)}:{verdict}" + (f" ({note})" if note else ""))
        verdicts.add(verdict)
        if details:  # a document timestamp has no detail report of its own: its trust, and a summary
            if isinstance(status, PdfSignatureStatus):
                print(status.pretty_print_details())
            elif isinstance(status, DocumentTimestampStatus):
                print(f"{status.describe_timestamp_trust()}; {status.summary()}")
    for verdict in ("INVALID", "INDETERMINATE"):
        if verdict in verdicts:
            return verdict
    return "VALID"


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
    if not details:  # pyHanko logs each failed path validation with a traceback; the line says it
        logging.getLogger("pyhanko").setLevel(logging.ERROR)
    sidecar_ok = None if args.signatures_only else check_sidecar(args.file)
    try:
        signatures = asyncio.run(check_signatures(args.file, roots, others, details))
    except Exception as exc:  # noqa: BLE001 - unreadable PDF
        print(f"{args.file}: cannot read signatures: {type(exc).__name__}: {exc}")
        signatures = "INVALID"
    if signatures == "INVALID" or sidecar_ok is False:
        return 1
    return EXIT_INDETERMINATE if signatures == "INDETERMINATE" else 0


if __name__ == "__main__":
    sys.exit(main())
