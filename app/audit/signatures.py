"""Are an archive's signatures still valid? Byte ranges, CMS signatures, RFC 3161 timestamps, chains.

Two ways to the signatures of a PDF, one way to check each:

* **Byte range** (the archives this service writes at PAdES B-B and B-T): the file has
  exactly one ``/ByteRange``, in a signature dictionary in its last revision, covering the
  whole file except the ``/Contents`` hex string (ISO 32000-1 §12.8.1). Then every byte but
  the signature value is signed and there is nothing after the signature to analyse. The
  caller hashes the signed bytes while it streams the file for its SHA-256
  (:mod:`app.audit.fixity`), and :meth:`SignatureVerifier.verify_located` checks the CMS.
* **pyHanko** (everything else: B-LT and B-LTA, whose DSS and document-timestamp revisions
  follow the signature; more than one signature; an uncovered tail): pyHanko's reader finds
  the signature fields and runs its difference analysis over the revisions after each one
  (only validation data and document timestamps may follow a signature, ISO 32000-2
  §12.8.4.3); then the same CMS check runs on each.

Each signature is checked the same way (ETSI EN 319 102-1 §5.2, in the parts that apply
offline): its CMS by :func:`app.audit.cms_check.verify_signed_data` (signer certificate,
messageDigest against the byte range's digest, signature value); each signature-timestamp
token (RFC 3161) likewise, with a message imprint equal to the digest of the signature value
(RFC 3161 Appendix A); a document timestamp's imprint equal to the digest of its byte range.
Certificate paths come from :class:`~app.audit.certpaths.CertificatePaths`, the signer's at
the time its valid timestamp proves (else now), the TSA's at the timestamp's own time: a
timestamped signature (PAdES B-T and up) stays valid after its signer's certificate expired
(ETSI EN 319 102-1 §5.5, validation with time; what ``scripts/ops/verify-pdf.py`` asks of
pyHanko's AdES engine). A signature without a timestamp (B-B) whose signer certificate has
expired, but chained to a trust root while valid, is INDETERMINATE
(:attr:`SignatureFinding.indeterminate`): nothing proves it was made while the certificate
was valid; so is a timestamped one once its TSA's chain has expired, unless a document
timestamp follows (B-LTA). Document timestamps form a chain (ETSI EN 319 102-1 §5.6.3,
validation with long-term availability): the newest must have its TSA's chain valid now, else
it is INDETERMINATE; an older one whose TSA's chain has expired is valid when the next newer one
is valid and was made before that expiry, else INDETERMINATE
(:meth:`SignatureVerifier._judge_document_timestamps`). Without trust roots, integrity is
checked and trust is not.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import BinaryIO

from asn1crypto import cms, x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation.errors import SignatureValidationError

from app.audit.certpaths import CertificatePaths, Purpose
from app.audit.cms_check import read_signer, timestamp_facts, verify_cms
from app.audit.cms_types import OID_DATA, OID_TST_INFO, CertificateCache, CmsError, KnownCertificate
from app.audit.der import SignerFields
from app.signing.lta import evidence_in_force

BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")
BYTE_RANGE_TOKEN = b"/ByteRange"
"""Counted over the whole file by the caller: exactly one allows the byte-range way."""

TAIL_BYTES = 256 * 1024
"""How much of a file's end is read to find its signature (our ``/Contents`` reserve is 32 KB)."""

_SUBFILTER = re.compile(rb"/SubFilter\s*/([A-Za-z0-9.#_-]+)")
_DOC_TIMESTAMP = re.compile(rb"/Type\s*/DocTimeStamp\b")
_CADES_SUBFILTERS = (b"ETSI.CAdES.detached", b"adbe.pkcs7.detached")


@dataclass(frozen=True, slots=True)
class SignatureFinding:
    """The check of one signature or document timestamp.

    Attributes:
        kind: ``"signature"`` or ``"document_timestamp"``.
        signer: the signer's (or, for a document timestamp, the TSA's) subject.
        signer_cert_sha256: SHA-256 (hex) of that certificate.
        timestamp: the RFC 3161 ``genTime`` (signature timestamp, or the document timestamp's).
        problem: why it is not valid, ``None`` when intact, verified and (with trust roots) trusted.
        expires_at: when the chains it rests on expire: the earliest notAfter of the signer's
            and the signature timestamp's TSA's; once the signer's chain has expired after the
            time a valid signature timestamp proves, the TSA's alone (ETSI EN 319 102-1 §5.5:
            the timestamp proves the signature existed while the signer's chain was valid).
        indeterminate: ``problem`` says that the signature cannot be proven valid, not that it
            is invalid (ETSI EN 319 102-1 INDETERMINATE): no timestamp, and the signer's
            certificate, which chains to a trust root, has expired since; or a valid signature
            timestamp whose TSA's chain has expired since, with no document timestamp after it.
        signer_not_after: the signer's (a document timestamp: the TSA's) certificate's notAfter.
        proven_by: for a document timestamp whose TSA's chain has expired since, the
            ``genTime`` of the newer, valid document timestamp that proves it existed while
            that chain was valid (ETSI EN 319 102-1 §5.6.3); else ``None``.
    """

    kind: str
    signer: str | None
    signer_cert_sha256: str | None
    timestamp: datetime | None
    problem: str | None
    expires_at: datetime | None
    indeterminate: bool = False
    signer_not_after: datetime | None = None
    proven_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class PdfVerdict:
    """The signatures of one PDF.

    Attributes:
        findings: one per signature and document timestamp, in file order.
        method: ``"byte_range"``, ``"pyhanko"`` (see the module docstring) or ``"none"``.
        problem: a problem of the file as a whole (no signature, not a PDF, changed after
            signing), else ``None``.
    """

    findings: tuple[SignatureFinding, ...]
    method: str
    problem: str | None = None

    @property
    def problems(self) -> list[str]:
        """Every problem, the file's first."""
        found = [self.problem] if self.problem else []
        return found + [f.problem for f in self.findings if f.problem]

    @property
    def signed(self) -> bool:
        return bool(self.findings)

    @property
    def evidence_expires_at(self) -> datetime | None:
        """When the archive's newest evidence stops being checkable
        (:func:`app.signing.lta.evidence_in_force`): the expiry of the newest document
        timestamp's chain when there is one, else the earliest expiry of the signatures'
        chains (signer and signature timestamp). A document timestamp whose token could not
        be read (no expiry) is passed over."""
        stamps = [f for f in self.findings if f.kind == "document_timestamp" and f.expires_at]
        signatures = [f for f in self.findings if f.kind == "signature"]
        dates = [f.expires_at for f in evidence_in_force(signatures, stamps) if f.expires_at is not None]
        return min(dates, default=None)

    @property
    def signer_cert_sha256(self) -> str | None:
        """The first signature's signer certificate fingerprint."""
        for finding in self.findings:
            if finding.kind == "signature":
                return finding.signer_cert_sha256
        return None


@dataclass(frozen=True, slots=True)
class LocatedSignature:
    """The one signature of a file, found by :func:`locate_signature`.

    Attributes:
        byte_range: ``(0, b, c, d)``: the signed bytes are ``[0, b)`` and ``[c, c + d)``.
        contents: the CMS, DER (``/Contents`` without its zero padding is still DER: trailing
            zero bytes are ignored when it is parsed).
        digest_algorithm: the SignerInfo's digest algorithm (``"sha256"`` ...), or ``None``
            when the CMS cannot be parsed (the check then reports it).
        fields: the CMS as the DER reader read it (``None``: it did not take it).
    """

    byte_range: tuple[int, int, int, int]
    contents: bytes
    digest_algorithm: str | None
    fields: SignerFields | None = None


def locate_signature(tail: bytes, base: int, size: int) -> LocatedSignature | None:
    """The signature whose byte range covers the whole file, if the file's end has one that
    allows the byte-range way (see the module docstring), else ``None``.

    Args:
        tail: the last bytes of the file (e.g. :data:`TAIL_BYTES`).
        base: the file offset of ``tail[0]``.
        size: the file's size.
    """
    match = BYTE_RANGE.match(tail, tail.rfind(BYTE_RANGE_TOKEN))
    if match is None:
        return None
    a, b, c, d = (int(g) for g in match.groups())
    if a != 0 or b <= 0 or c <= b or c + d != size or b < base:
        return None
    lo, hi = b - base, c - base
    if tail[lo : lo + 1] != b"<" or tail[hi - 1 : hi] != b">":
        return None
    contents = _contents(tail, lo + 1, hi - 1)
    if contents is None:
        return None
    # The /ByteRange must be in the same object as the /Contents gap.
    start = tail.rfind(b" obj", 0, lo)
    end = tail.find(b"endobj", hi)
    if start < 0 or end < 0 or not (start < match.start() and match.end() <= end):
        return None
    if b"endobj" in tail[start:lo] or b"endobj" in tail[match.end() : end]:
        return None
    dictionary = tail[start:lo] + tail[hi:end]
    if _DOC_TIMESTAMP.search(dictionary):
        return None
    subfilter = _SUBFILTER.search(dictionary)
    if subfilter is None or subfilter[1] not in _CADES_SUBFILTERS:
        return None
    fields, algorithm = read_signer(contents)
    if algorithm is None:
        try:
            signed_data = cms.ContentInfo.load(contents)["content"]
            algorithm = signed_data["signer_infos"][0]["digest_algorithm"]["algorithm"].native
        except (ValueError, TypeError, KeyError, IndexError):
            algorithm = None
    return LocatedSignature((a, b, c, d), contents, algorithm, fields)


def _contents(tail: bytes, start: int, end: int) -> bytes | None:
    """The DER in the hex string ``tail[start:end]``: only as many hex digits as its outer
    length says are decoded; the rest must be the ``0`` padding of the reserved space.
    ``None`` for anything else (whitespace, other digits: pyHanko's reader then decides)."""
    if end - start < 4 or tail[start : start + 2] != b"30":
        return None
    try:
        first = int(tail[start + 2 : start + 4], 16)
        if first < 0x80:
            total = 2 + first
        elif 0x81 <= first <= 0x84:
            count = first & 0x7F
            total = 2 + count + int(tail[start + 4 : start + 4 + 2 * count], 16)
        else:
            return None
    except ValueError:
        return None
    used = start + 2 * total
    if used > end or tail.count(b"0", used, end) != end - used:
        return None
    try:
        return binascii.a2b_hex(tail[start:used])
    except (binascii.Error, ValueError):
        return None


def _digest(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(algorithm, data).digest()


@dataclass(frozen=True, slots=True)
class TimestampCheck:
    """The check of one RFC 3161 timestamp token.

    Attributes:
        gen_time: the token's ``genTime`` (``None`` when it could not be read).
        problem: why it is not valid, ``None`` when it is.
        expires_at: the earliest notAfter on the TSA's chain (its own notAfter untrusted).
        tsa: the TSA's certificate.
    """

    gen_time: datetime | None
    problem: str | None
    expires_at: datetime | None
    tsa: KnownCertificate | None


class SignatureVerifier:
    """Checks PDF signatures (see the module docstring). One instance per audit run.

    Args:
        trust_roots: anchors for the signer's and the TSA's chains; empty: integrity only.
        clock: the current time (aware), used when a signature has no timestamp.
    """

    def __init__(
        self,
        trust_roots: Sequence[x509.Certificate] = (),
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.paths = CertificatePaths(trust_roots) if trust_roots else None
        self.certificates = CertificateCache()
        self._clock = clock

    @property
    def checks_trust(self) -> bool:
        """Whether certificate paths are validated (trust roots were given)."""
        return self.paths is not None

    def close(self) -> None:
        """Release the path validator's event loop."""
        if self.paths is not None:
            self.paths.close()

    # -- the two ways -----------------------------------------------------------------------

    def verify_located(self, located: LocatedSignature, digest: bytes) -> PdfVerdict:
        """Check the one signature of a file found by :func:`locate_signature`; ``digest`` is
        the digest of its byte range with ``located.digest_algorithm``."""
        finding = self._signature(located.contents, lambda _alg: digest, located.fields)
        return PdfVerdict((finding,), "byte_range")

    def verify_stream(self, stream: BinaryIO) -> PdfVerdict:
        """Check every signature and document timestamp of the PDF in ``stream`` (seekable)
        with pyHanko's reader and difference analysis."""
        try:
            reader = PdfFileReader(stream, strict=False)
            embedded = list(reader.embedded_signatures)
        except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            return PdfVerdict((), "pyhanko", f"not a readable PDF: {exc}")
        if not embedded:
            return PdfVerdict((), "none")
        findings = []
        problem = None
        stamp_indices = [i for i, sig in enumerate(embedded) if sig.sig_object_type == "/DocTimeStamp"]
        for index, sig in enumerate(embedded):
            try:
                sig.compute_integrity_info()
                integrity = sig.summarise_integrity_info()
            except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
                findings.append(
                    SignatureFinding("signature", None, None, None, f"unreadable signature: {exc}", None)
                )
                continue
            if integrity.get("docmdp_ok") is False and problem is None:
                level = getattr(integrity.get("diff_result"), "modification_level", ModificationLevel.OTHER)
                problem = (
                    f"the file was changed after signature {sig.field_name!r} was made "
                    f"(modification level {getattr(level, 'name', level)})"
                )
            if sig.sig_object_type == "/DocTimeStamp":
                findings.append(self._document_timestamp(sig.pkcs7_content, sig.compute_digest))
            else:
                covered = any(i > index for i in stamp_indices)
                findings.append(self._signature(sig.pkcs7_content, sig.compute_digest, covered=covered))
        return PdfVerdict(tuple(self._judge_document_timestamps(findings)), "pyhanko", problem)

    def verify_bytes(self, pdf: bytes) -> PdfVerdict:
        """Check a PDF held in memory: the byte-range way when it applies, else pyHanko's
        (for tests and small tools; the audit streams files through :mod:`app.audit.fixity`)."""
        base = max(0, len(pdf) - TAIL_BYTES)
        located = locate_signature(pdf[base:], base, len(pdf)) if pdf.count(BYTE_RANGE_TOKEN) == 1 else None
        if located is not None and located.digest_algorithm is not None:
            a, b, c, d = located.byte_range
            try:
                digest = _digest(located.digest_algorithm, pdf[a : a + b] + pdf[c : c + d])
            except ValueError:
                digest = b""
            return self.verify_located(located, digest)
        return self.verify_stream(io.BytesIO(pdf))

    # -- one signature ------------------------------------------------------------------------

    def _signature(
        self,
        contents: bytes,
        digest_of: Callable[[str], bytes],
        fields: SignerFields | None = None,
        *,
        covered: bool = False,
    ) -> SignatureFinding:
        """A CAdES/PKCS#7 detached signature (DER) over what ``digest_of(algorithm)`` hashes;
        ``covered``: a document timestamp follows it (B-LTA), which proves the signature
        timestamp's existence while its TSA's chain was valid."""
        try:
            verdict = verify_cms(contents, digest_of, OID_DATA, self.certificates, fields)
        except (CmsError, ValueError, TypeError, KeyError, IndexError) as exc:
            return SignatureFinding("signature", None, None, None, f"signature is not usable: {exc}", None)
        signer = verdict.signer
        problems: list[str] = []
        if not verdict.intact:
            problems.append("the signed bytes changed: their digest differs from the signature's")
        if not verdict.valid:
            problems.append("the signature value does not verify with the signer's key")
        stamp = None
        signature_value = verdict.signature
        for token in verdict.signature_timestamps:
            stamp = self.verify_timestamp(
                token, lambda alg: _digest(alg, signature_value), "signature timestamp"
            )
            if stamp.problem is None:
                break
        if stamp is not None and stamp.problem:
            problems.append(stamp.problem)
        for token in verdict.content_timestamps:
            content = self.verify_timestamp(token, digest_of, "content timestamp")
            if content.problem:
                problems.append(content.problem)
        expiry = [stamp.expires_at] if stamp is not None and stamp.expires_at else []
        indeterminate = False
        if self.paths is not None and verdict.intact and verdict.valid:
            good_time = stamp.gen_time if stamp is not None and stamp.problem is None else None
            now = self._clock()
            if good_time is None and stamp is None and signer.not_after < now:
                # B-B after the signer's certificate expired: nothing proves the signature was made
                # while it was valid. Its chain is checked at its last valid moment: one that does
                # not chain to a trust root is still invalid; one that does is INDETERMINATE.
                path = self.paths.check(signer.cert, verdict.others, Purpose.SIGNER, signer.not_after)
                if path.problem:
                    problems.append(path.problem)
                elif not problems:
                    indeterminate = True
                    problems.append(
                        "cannot be proven: no timestamp, signer certificate expired on "
                        f"{signer.not_after.date().isoformat()}"
                    )
                expiry.append(path.expires_at)
            else:
                path = self.paths.check(signer.cert, verdict.others, Purpose.SIGNER, good_time or now)
                if path.problem:
                    problems.append(path.problem)
                if good_time is None or path.problem is not None or path.expires_at > now or not expiry:
                    expiry.append(path.expires_at)
                # else: the signer's chain expired after the time the timestamp proves; the
                # signature now rests on its timestamp, whose TSA chain is in ``expiry``.
                tsa_expiry = stamp.expires_at if stamp is not None else None
                if good_time and tsa_expiry and tsa_expiry < now and not covered and not problems:
                    # Validation with time needs the TSA's chain valid now (ETSI EN 319 102-1
                    # §5.5); without a later document timestamp nothing proves more.
                    indeterminate = True
                    problems.append(
                        "cannot be proven: the signature timestamp's TSA certificate chain expired on "
                        f"{tsa_expiry.date().isoformat()}"
                    )
        else:
            expiry.append(signer.not_after)
        return SignatureFinding(
            "signature",
            signer.subject,
            signer.sha256.hex(),
            stamp.gen_time if stamp is not None else None,
            "; ".join(problems) or None,
            min(expiry),
            indeterminate,
            signer.not_after,
        )

    def _document_timestamp(self, contents: bytes, digest_of: Callable[[str], bytes]) -> SignatureFinding:
        """A document timestamp (``/DocTimeStamp``, ETSI.RFC3161) over its byte range."""
        stamp = self.verify_timestamp(contents, digest_of, "document timestamp")
        tsa = stamp.tsa
        return SignatureFinding(
            "document_timestamp",
            tsa.subject if tsa is not None else None,
            tsa.sha256.hex() if tsa is not None else None,
            stamp.gen_time,
            stamp.problem,
            stamp.expires_at,
            signer_not_after=tsa.not_after if tsa is not None else None,
        )

    def _judge_document_timestamps(self, findings: list[SignatureFinding]) -> list[SignatureFinding]:
        """Judge the chain of document timestamps (PAdES B-LTA) as validation with long-term
        availability does (ETSI EN 319 102-1 §5.6.3; ``scripts/ops/verify-pdf.py`` asks
        pyHanko's AdES engine): the newest at the present time, INDETERMINATE once its TSA's
        chain has expired; an older one whose TSA's chain has expired is valid when the next
        newer one is valid and was made while that chain was still valid (it covers the older
        token: a document timestamp is over all revisions before it), else INDETERMINATE.
        Without trust roots nothing is changed: each was checked at its own time."""
        if self.paths is None:
            return findings
        now = self._clock()
        out = list(findings)
        newer: SignatureFinding | None = None
        for index in reversed(range(len(out))):
            finding = out[index]
            if finding.kind != "document_timestamp":
                continue
            expiry = finding.expires_at
            if finding.problem is None and expiry is not None and expiry <= now:
                if (
                    newer is not None
                    and newer.problem is None
                    and newer.timestamp is not None
                    and newer.timestamp <= expiry
                ):
                    finding = replace(finding, proven_by=newer.timestamp)
                else:
                    # Validation with time needs the TSA's chain valid now, or a valid later
                    # document timestamp made while it was.
                    finding = replace(
                        finding,
                        problem="cannot be proven: the document timestamp's TSA certificate chain "
                        f"expired on {expiry.date().isoformat()}",
                        indeterminate=True,
                    )
            out[index] = finding
            newer = finding
        return out

    def verify_timestamp(
        self, token: bytes, imprint_of: Callable[[str], bytes], what: str = "timestamp"
    ) -> TimestampCheck:
        """Check an RFC 3161 token (RFC 3161 §2.4.2): its own CMS signature, its message
        imprint against ``imprint_of(hash algorithm)``, and its TSA's path at ``genTime``.

        Args:
            token: the token, a DER ``ContentInfo`` (``SignedData`` over a ``TSTInfo``).
            imprint_of: the expected imprint for a hash algorithm name (``"sha256"`` ...).
            what: how problems name the token (``"document timestamp"`` ...).
        """
        try:
            verdict = verify_cms(token, None, OID_TST_INFO, self.certificates)
            assert verdict.content is not None
            algorithm, imprint, gen_time = timestamp_facts(verdict.content)
            expected = imprint_of(algorithm)
        except (CmsError, ValueError, TypeError, KeyError, IndexError) as exc:
            return TimestampCheck(None, f"{what} is not usable: {exc}", None, None)
        tsa = verdict.signer
        problems = []
        if not verdict.intact or not verdict.valid:
            problems.append(f"{what} token's own signature does not verify")
        if imprint != expected:
            problems.append(f"{what} does not cover the signed data (message imprint differs)")
        expires_at = tsa.not_after
        if self.paths is not None and not problems:
            path = self.paths.check(tsa.cert, verdict.others, Purpose.TSA, gen_time)
            if path.problem:
                problems.append(path.problem)
            expires_at = path.expires_at
        return TimestampCheck(gen_time, "; ".join(problems) or None, expires_at, tsa)
