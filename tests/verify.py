"""Independent checks of archived PDFs: poppler's pdftotext/pdfsig, veraPDF and pyHanko validation."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
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


@dataclass(frozen=True)
class VeraPdfVerdict:
    """veraPDF's verdict on one file of a :func:`verapdf_many` run.

    Attributes:
        compliant: the file passed the profile's rules.
        report: what ``validate.sh`` prints for it: ``PASS <profile>``, ``FAIL <profile>``
            with one line per failed rule (clause, failed checks, description), or
            ``ERROR: <why>`` (not parsed, no validation report).
    """

    compliant: bool
    report: str


def _verdict(job: ET.Element) -> VeraPdfVerdict:
    """One ``<job>`` of veraPDF's XML report, read as ``validate.sh`` reads its report."""
    report = job.find("validationReport")
    if report is None:
        message = job.findtext(".//exceptionMessage") or "no validation report"
        return VeraPdfVerdict(False, f"ERROR: {message.strip()}")
    compliant = report.get("isCompliant") == "true"
    lines = [f"{'PASS' if compliant else 'FAIL'} {report.get('profileName')}"]
    for rule in report.iter("rule"):
        if rule.get("status") == "failed":
            description = " ".join((rule.findtext("description") or "").split())
            lines.append(
                f"  {rule.get('specification')} {rule.get('clause')}-{rule.get('testNumber')}"
                f" ({rule.get('failedChecks')} failed checks): {description[:160]}"
            )
    return VeraPdfVerdict(compliant, "\n".join(lines))


def verapdf_many(paths: list[Path], flavour: str = "3b") -> dict[Path, VeraPdfVerdict]:
    """Validate every file of ``paths`` in one veraPDF run (one JVM start, ~3-5 s, for all).

    Runs the jar ``validate.sh`` runs (``$VERAPDF_JAR``, else ``verapdf-greenfield.jar``
    beside :func:`verapdf_script`) with the script's Java flags, and reads the XML report's
    ``<job>`` per file. Returns a verdict for each path as given; a file veraPDF could not
    parse gets ``compliant=False`` and an ``ERROR:`` report.

    Raises:
        AssertionError: veraPDF (the script, its jar or ``java``) is missing, or its run
            produced no report: a test that needs it fails, never skips.
    """
    jar = Path(os.environ.get("VERAPDF_JAR") or verapdf_script().parent / "verapdf-greenfield.jar")
    if not jar.is_file():
        raise AssertionError(f"veraPDF's jar not found at {jar} (set VERAPDF_JAR)")
    java = shutil.which("java")
    if java is None:
        raise AssertionError("java not found on PATH: veraPDF needs Java 17")
    absolute = {path: path.resolve() for path in paths}
    done = subprocess.run(
        [java, "-XX:ActiveProcessorCount=2", "-Xmx1g", "-jar", str(jar), "--flavour", flavour]
        + ["--format", "xml", *(str(path) for path in absolute.values())],
        capture_output=True,
        timeout=60 + 10 * len(paths),
    )
    try:
        root = ET.fromstring(done.stdout)
    except ET.ParseError as exc:
        raise AssertionError(
            f"veraPDF produced no report (exit {done.returncode}): {exc}; {done.stderr[-2000:]!r}"
        ) from exc
    jobs = {Path(job.findtext("item/name") or "").resolve(): job for job in root.iter("job")}
    return {
        path: _verdict(jobs[resolved])
        if resolved in jobs
        else VeraPdfVerdict(False, "ERROR: no job for this file in veraPDF's report")
        for path, resolved in absolute.items()
    }


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
