"""Fuzzing the signature revision writer (``app.signing.incremental``) against pyHanko's own.

A few hundred seeded PDFs (:mod:`tests.signing.pdf_corpus`: well-formed, other writers',
broken) are signed twice: by an :class:`ArchiveSigner` that writes the revision itself where
it can, and by one that always uses pyHanko's ``PdfSigner``. For every case:

- no exception but a permanent :class:`SigningError` escapes either signer;
- every signed output starts with the input, and pyHanko validates its signature against the
  test root (intact, valid, trusted, covering the whole file);
- ``qpdf --check`` finds nothing in an output that it did not find in the input, and the
  direct writer's output is never judged worse than pyHanko's for the same input;
- the two signers agree on whether a file can be signed at all, so the direct writer takes
  only files pyHanko's writer takes too. One documented exception: pyHanko parses and updates
  the XMP packet, which the direct writer leaves as it is, so a file whose XMP is not XML is
  refused by pyHanko's writer and signed by the direct one.

Outputs of pyHanko's writer (the files the direct writer leaves to it) are held to the same
checks, except for one known defect of pyHanko 0.38's writer, :data:`PYHANKO_NUL_NAME`.

The corpus is seeded (``FUZZ_SEED`` overrides the fixed seed) so a failure is reproducible;
the failing inputs are written to the test's temporary directory.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyhanko.pdf_utils.metadata.xmp_xml import XmpXmlProcessingError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from app.errors import SigningError
from app.signing.signer import INCREMENTAL_WRITER, ArchiveSigner
from tests.signing.pdf_corpus import Case, generate
from tests.signing.signing_helpers import FONT, PFX_PASSWORD

SEED = int(os.environ.get("FUZZ_SEED", "20261207"))
MIN_DIRECT = 100
"""At least this many cases must take the direct writer, or the fuzz no longer exercises it."""

PYHANKO_NUL_NAME = re.compile(rb"/[!-~]*#00")
"""A name holding a NUL byte (``/N#00``): pyHanko 0.38's writer re-encodes it as ``/N#0``, which
no reader parses, so its signed output of such a file cannot be validated (a pyHanko defect,
not the direct writer's: it leaves such keys to pyHanko)."""

#: ``qpdf --check`` exit codes by severity: 0 clean, 3 warnings, 2 errors (else: 3, a crash).
_SEVERITY = {0: 0, 3: 1, 2: 2}


def qpdf_severity(data: bytes, path: Path) -> int:
    """``qpdf --check`` on ``data`` as a severity (0 clean, 1 warnings, 2 errors, 3 crash)."""
    path.write_bytes(data)
    try:
        done = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, timeout=60)
    finally:
        path.unlink()
    return _SEVERITY.get(done.returncode, 3)


@dataclass
class Outcome:
    """One signer's result for one case."""

    signed: bytes | None = None
    error: BaseException | None = None
    direct: bool = False
    qpdf: Future[int] | None = None


@dataclass
class Finding:
    case: Case
    problems: list[str] = field(default_factory=list)


async def sign(signer: ArchiveSigner, data: bytes) -> Outcome:
    before = signer.revisions_by_writer.get(INCREMENTAL_WRITER, 0)
    outcome = Outcome()
    try:
        outcome.signed = (await signer.sign(data)).data
    except Exception as exc:  # noqa: BLE001 - every exception is a finding, judged below
        outcome.error = exc
    outcome.direct = signer.revisions_by_writer.get(INCREMENTAL_WRITER, 0) > before
    return outcome


def error_problems(who: str, outcome: Outcome) -> list[str]:
    exc = outcome.error
    if exc is None or (isinstance(exc, SigningError) and exc.transient is False):
        return []
    return [f"{who} raised {type(exc).__name__} (transient={getattr(exc, 'transient', None)}): {exc}"]


def disagreement(ours: Outcome, theirs: Outcome) -> list[str]:
    if (ours.signed is None) == (theirs.signed is None):
        return []
    if ours.signed is not None and isinstance(
        getattr(theirs.error, "__cause__", None), XmpXmlProcessingError
    ):
        return []  # the documented difference: the direct writer leaves the XMP as it is
    said = [
        f"{who} {'signed' if o.signed else repr(o.error)}"
        for who, o in (("direct", ours), ("pyHanko", theirs))
    ]
    return ["the signers disagree: " + ", ".join(said)]


async def signature_problems(signed: bytes, original: bytes, root_cert) -> list[str]:
    if not signed.startswith(original):
        return ["the output does not start with the input"]
    try:
        sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[-1]
        status = await async_validate_pdf_signature(
            sig, ValidationContext(trust_roots=[root_cert], allow_fetching=False)
        )
    except Exception as exc:  # noqa: BLE001 - an output pyHanko cannot read is a finding
        return [f"pyHanko cannot validate the output: {type(exc).__name__}: {exc}"]
    if not (status.intact and status.valid and status.trusted):
        return [f"signature not intact/valid/trusted: {status.summary()}"]
    if status.coverage.name != "ENTIRE_FILE":
        return [f"signature covers {status.coverage.name}, not the entire file"]
    return []


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    return generate(SEED, FONT)


async def test_the_direct_writer_is_never_worse_than_pyhankos(
    corpus: list[Case], pfx_bytes: bytes, root_cert, tmp_path: Path
) -> None:
    direct = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode())
    stock = ArchiveSigner.from_pfx(pfx_bytes, PFX_PASSWORD.encode(), incremental_writer=False)
    findings: list[Finding] = []
    checks: list[tuple[Finding, Outcome, Outcome, Future[int]]] = []
    # qpdf runs in two threads beside the signing, which holds the event loop (and a core).
    with ThreadPoolExecutor(2) as qpdf:
        for index, case in enumerate(corpus):
            finding = Finding(case)
            ours, theirs = await sign(direct, case.data), await sign(stock, case.data)
            finding.problems += error_problems("the direct signer", ours)
            finding.problems += error_problems("pyHanko's writer", theirs)
            finding.problems += disagreement(ours, theirs)
            if ours.signed is not None:
                problems = await signature_problems(ours.signed, case.data, root_cert)
                if not (problems and not ours.direct and PYHANKO_NUL_NAME.search(case.data)):
                    finding.problems += problems
                ours.qpdf = qpdf.submit(qpdf_severity, ours.signed, tmp_path / f"{index}-out.pdf")
                if ours.direct and theirs.signed is not None:
                    theirs.qpdf = qpdf.submit(qpdf_severity, theirs.signed, tmp_path / f"{index}-ref.pdf")
                source = qpdf.submit(qpdf_severity, case.data, tmp_path / f"{index}-in.pdf")
                checks.append((finding, ours, theirs, source))
            if finding.problems:
                findings.append(finding)

        for finding, ours, theirs, source in checks:
            assert ours.qpdf is not None
            before, after = source.result(), ours.qpdf.result()
            if after > before:
                finding.problems.append(f"qpdf --check: input severity {before}, output {after}")
            if theirs.qpdf is not None and after > (reference := theirs.qpdf.result()):
                finding.problems.append(
                    f"qpdf --check: direct writer's output {after}, pyHanko's {reference}"
                )
            if finding.problems and finding not in findings:
                findings.append(finding)

    for number, finding in enumerate(findings):
        (tmp_path / f"finding-{number}.pdf").write_bytes(finding.case.data)
    report = "\n".join(f"{f.case.name}: {'; '.join(f.problems)}" for f in findings)
    assert not findings, (
        f"{len(findings)} of {len(corpus)} cases (seed {SEED}, inputs in {tmp_path}):\n{report}"
    )
    taken = direct.revisions_by_writer.get(INCREMENTAL_WRITER, 0)
    assert taken >= MIN_DIRECT, f"the direct writer took only {taken} of {len(corpus)} files"
