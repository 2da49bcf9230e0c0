"""Long-term validation refresh: when an archive's evidence expires, and how a PAdES B-LTA layer renews it.

A signed archive proves something only as long as its newest proof of existence can still be
validated (PAdES baseline levels: ETSI EN 319 142-1 §6; validation with long-term availability
of validation material: ETSI EN 319 102-1 §5.6.3). That is

* with a document timestamp (``/DocTimeStamp``, B-LTA): the newest one, whose TSA certificate
  chain must be valid when the next layer is added;
* without one (B-B, B-T, B-LT): the signature itself, i.e. the signer's certificate chain and
  the chain of the TSA that made the signature timestamp: revocation data for them can only
  be gathered while they are valid.

:func:`evidence_in_force` is that rule; the audit's
:attr:`app.audit.signatures.PdfVerdict.evidence_expires_at` follows it too.

:func:`read_evidence` finds those certificates in the PDF (offline: the CMS objects, the
timestamp tokens and the document security store); :func:`refresh_reasons` says whether one
of them expires within a window. :class:`LtaRefresher` then appends, as incremental updates
(ISO 32000-2 §12.8.4.3, §12.8.5), validation data (certificates, OCSP responses, CRLs) in the
DSS and a new RFC 3161 document timestamp over everything, with pyHanko's
``async_add_validation_info`` and ``PdfTimeStamper`` (``async_timestamp_pdf``, and
``async_update_archival_timestamp_chain`` once a document timestamp exists; what ``pyhanko
sign ltaupdate`` does, docs/cli-guide/signing.rst "ltv-signing" in pyHanko's repository).
Earlier revisions are left byte for byte, so the existing signature stays valid and a
PDF/A-3B file stays PDF/A-3B (checked with veraPDF in the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, TypeVar

import aiohttp
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.general import find_cms_attribute_iter
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    EmbeddedPdfSignature,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import CertificateValidator, ValidationContext

from app.errors import SigningError
from app.signing.options import PadesLevel
from app.signing.trust import LongTermValidation, revocation_source_gaps, validation_data_error

__all__ = [
    "DEFAULT_REFRESH_WINDOW",
    "CertificateExpiry",
    "LtaEvidence",
    "LtaRefresher",
    "LtaResult",
    "evidence_in_force",
    "read_evidence",
    "refresh_reasons",
    "require_revocation_sources",
]

DEFAULT_REFRESH_WINDOW = timedelta(days=90)
"""Refresh an archive whose evidence expires within this time (``lta-refresh --within-days``)."""

_STRONG_DIGESTS = ("sha256", "sha384", "sha512")

T = TypeVar("T")


def evidence_in_force(signatures: Sequence[T], document_timestamps: Sequence[T]) -> Sequence[T]:
    """What an archive's long-term validity rests on, of its signatures and its document
    timestamps (each in file order): the newest document timestamp when there is one, as it
    covers everything before it (PAdES B-LTA, ETSI EN 319 142-1 §6; ETSI EN 319 102-1
    §5.6.3), else every signature with its signature timestamps (B-B, B-T, B-LT).

    The evidence expires at the earliest ``notAfter`` on the certificate chains of what this
    returns (:attr:`LtaEvidence.expires_at`). Pure: the items are whatever the caller reads
    those chains from (pyHanko's signatures here, the audit's findings in
    :attr:`app.audit.signatures.PdfVerdict.evidence_expires_at`).
    """
    return document_timestamps[-1:] if document_timestamps else signatures


@dataclass(frozen=True, slots=True)
class CertificateExpiry:
    """One certificate the archive's evidence depends on.

    Attributes:
        role: what it is for, e.g. ``"signer certificate"``, ``"issuer of the signer
            certificate"``, ``"TSA certificate of the document timestamp"``.
        subject: its subject, RFC 4514.
        not_after: the end of its validity (aware UTC).
        certificate: the certificate itself (not compared).
    """

    role: str
    subject: str
    not_after: datetime
    certificate: asn1_x509.Certificate | None = field(default=None, compare=False, repr=False)

    def describe(self, now: datetime) -> str:
        """``"signer certificate 'CN=…' expires 2027-01-16 (in 40 days)"`` (or ``expired on``)."""
        days = (self.not_after - now).days
        when = (
            f"expires {self.not_after:%Y-%m-%d} (in {days} days)"
            if self.not_after > now
            else f"expired on {self.not_after:%Y-%m-%d}"
        )
        return f"{self.role} {self.subject!r} {when}"


@dataclass(frozen=True, slots=True)
class LtaEvidence:
    """What an archive's long-term validity rests on, read from the PDF alone.

    Attributes:
        signatures: how many signatures (``/Sig``) the PDF holds.
        document_timestamps: how many document timestamps (``/DocTimeStamp``) it holds.
        latest_timestamp: ``genTime`` of the newest document timestamp, else of the newest
            signature timestamp, else ``None`` (B-B).
        certificates: the certificates whose expiry ends the evidence
            (:func:`evidence_in_force`): the newest document timestamp's TSA chain when there
            is one, else every signer's chain and the chains of the TSAs of their signature
            timestamps.
    """

    signatures: int
    document_timestamps: int
    latest_timestamp: datetime | None
    certificates: tuple[CertificateExpiry, ...]

    @property
    def signed(self) -> bool:
        """Whether there is anything to keep valid (a signature or a document timestamp)."""
        return bool(self.signatures or self.document_timestamps)

    @property
    def expires_at(self) -> datetime | None:
        """The earliest ``notAfter`` among :attr:`certificates` (``None`` when unsigned)."""
        return min((c.not_after for c in self.certificates), default=None)


@dataclass(frozen=True, slots=True)
class LtaResult:
    """The outcome of one refresh.

    Attributes:
        timestamp: ``genTime`` of the new document timestamp.
        timestamp_authority: subject (RFC 4514) of the TSA certificate that signed it.
        evidence: the refreshed PDF's evidence (its :attr:`LtaEvidence.expires_at` is when
            the next refresh is due at the latest).
    """

    timestamp: datetime
    timestamp_authority: str
    evidence: LtaEvidence


def require_revocation_sources(
    evidence: LtaEvidence,
    trust_roots: Iterable[asn1_x509.Certificate] = (),
    *,
    level: PadesLevel = PadesLevel.B_LTA,
    outcome: str = "not refreshed",
) -> None:
    """Refuse ``evidence`` with a certificate no revocation data can be gathered for: one that
    names neither an OCSP responder nor a CRL distribution point (RFC 5280 §4.2.2.1,
    §4.2.1.13), other than self-signed ones and ``trust_roots``, which need none (the rule:
    :func:`~app.signing.trust.revocation_source_gaps`).

    B-LT and B-LTA hold revocation data for every other certificate of their chains (ETSI EN
    319 142-1 §5.4), so that they validate from what they hold once the CAs' services are gone
    (ETSI EN 319 102-1 §5.6.3); without it a validator can only answer *indeterminate*. A
    refresh (``lta-refresh``) or a signature (the signer, ``level`` B-LT or B-LTA,
    ``outcome`` ``"not signed"``) is refused instead of labelled ``level`` without it.

    Raises:
        SigningError: ``transient=False``, naming ``level``, each such certificate's role and
            subject, and ``outcome``.
    """
    lacking = revocation_source_gaps(
        ((c.role, c.certificate) for c in evidence.certificates if c.certificate is not None), trust_roots
    )
    if lacking:
        raise SigningError(
            f"PAdES {level.value} needs revocation data for every certificate below the trust roots, "
            f"but {'; '.join(lacking)}: {outcome}",
            transient=False,
        )


def refresh_reasons(evidence: LtaEvidence, *, now: datetime, within: timedelta) -> tuple[str, ...]:
    """Why ``evidence`` needs a refresh before ``now + within``; empty when it does not.

    One text per certificate (see :meth:`CertificateExpiry.describe`), soonest first.
    Unsigned PDFs never need one.
    """
    limit = now + within
    due = sorted((c for c in evidence.certificates if c.not_after <= limit), key=lambda c: c.not_after)
    return tuple(c.describe(now) for c in due)


# --- reading the evidence (offline) -------------------------------------------------------


def _subject(cert: asn1_x509.Certificate) -> str:
    return x509.load_der_x509_certificate(cert.dump()).subject.rfc4514_string()


def _cms_certificates(signed_data: cms.SignedData) -> Iterator[asn1_x509.Certificate]:
    for choice in signed_data["certificates"] or ():
        if choice.name == "certificate":
            yield choice.chosen


def _signature_timestamp_tokens(sig: EmbeddedPdfSignature) -> Iterator[cms.SignedData]:
    """The RFC 3161 signature-timestamp tokens (CAdES ``id-aa-signatureTimeStampToken``) of ``sig``."""
    for token in find_cms_attribute_iter(sig.signer_info["unsigned_attrs"], "signature_time_stamp_token"):
        yield token["content"]


def _token_signer(
    token: cms.SignedData, pool: Iterable[asn1_x509.Certificate]
) -> asn1_x509.Certificate | None:
    """The certificate that signed a timestamp token, found by its ``sid`` (RFC 5652 §5.3)."""
    sid = token["signer_infos"][0]["sid"]
    for cert in (*_cms_certificates(token), *pool):
        if sid.name == "issuer_and_serial_number":
            if (
                cert.issuer == sid.chosen["issuer"]
                and cert.serial_number == sid.chosen["serial_number"].native
            ):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    return None


def _gen_time(token: cms.SignedData) -> datetime:
    return token["encap_content_info"]["content"].parsed["gen_time"].native


def _chain(
    leaf: asn1_x509.Certificate, pool: list[asn1_x509.Certificate], leaf_role: str, issuer_role: str
) -> Iterator[CertificateExpiry]:
    """``leaf`` and its issuers as far as ``pool`` holds them (name and key identifier match)."""
    seen: set[bytes] = set()
    cert: asn1_x509.Certificate | None = leaf
    role = leaf_role
    while cert is not None and cert.issuer_serial not in seen:
        seen.add(cert.issuer_serial)
        yield CertificateExpiry(role, _subject(cert), cert.not_valid_after, cert)
        if cert.self_signed != "no":
            return
        role = issuer_role
        cert = next(
            (
                c
                for c in pool
                if c.subject == cert.issuer
                and (
                    cert.authority_key_identifier is None
                    or c.key_identifier is None
                    or c.key_identifier == cert.authority_key_identifier
                )
            ),
            None,
        )


def read_evidence(
    pdf: BinaryIO, *, extra_certificates: Iterable[asn1_x509.Certificate] = (), every_layer: bool = False
) -> LtaEvidence:
    """Read what the archive's long-term validity rests on (see the module docstring).

    With ``every_layer``, :attr:`LtaEvidence.certificates` holds the chains of every
    signature, signature timestamp and document timestamp instead of those
    :func:`evidence_in_force` picks (what a B-LT/B-LTA signature just made must hold
    revocation data for).

    Offline and read-only. Issuers are looked up among the certificates of the signatures,
    of their timestamp tokens, of the DSS and ``extra_certificates`` (e.g. the trust roots);
    a chain ends where none is found.

    Raises:
        SigningError: ``transient=False`` when the file is not a readable PDF or a signature
            in it cannot be parsed.
    """
    try:
        reader = PdfFileReader(pdf, strict=False)
        signatures = reader.embedded_signatures
        regular = [s for s in signatures if s.sig_object_type == "/Sig"]
        doc_timestamps = [s for s in signatures if s.sig_object_type == "/DocTimeStamp"]
        pool: list[asn1_x509.Certificate] = list(extra_certificates)
        for sig in signatures:
            pool.extend(_cms_certificates(sig.signed_data))
            for token in _signature_timestamp_tokens(sig):
                pool.extend(_cms_certificates(token))
        with contextlib.suppress(NoDSSFoundError):
            pool.extend(DocumentSecurityStore.read_dss(reader).load_certs())
        certificates: list[CertificateExpiry] = []
        latest: datetime | None = None
        for sig in [*regular, *doc_timestamps] if every_layer else evidence_in_force(regular, doc_timestamps):
            if sig.sig_object_type == "/DocTimeStamp":
                latest = _gen_time(sig.signed_data)
                certificates.extend(
                    _chain(
                        sig.signer_cert,
                        pool,
                        "TSA certificate of the document timestamp",
                        "issuer of the document timestamp's TSA certificate",
                    )
                )
                continue
            certificates.extend(
                _chain(sig.signer_cert, pool, "signer certificate", "issuer of the signer certificate")
            )
            for token in _signature_timestamp_tokens(sig):
                generated = _gen_time(token)
                latest = generated if latest is None else max(latest, generated)
                tsa = _token_signer(token, pool)
                if tsa is not None:
                    certificates.extend(
                        _chain(
                            tsa,
                            pool,
                            "TSA certificate of the signature timestamp",
                            "issuer of the signature timestamp's TSA certificate",
                        )
                    )
    except SigningError:
        raise
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SigningError(f"cannot read the signatures of the PDF: {exc}", transient=False) from exc
    unique = {(c.role, c.subject, c.not_after): c for c in certificates}
    return LtaEvidence(
        signatures=len(regular),
        document_timestamps=len(doc_timestamps),
        latest_timestamp=latest,
        certificates=tuple(unique.values()),
    )


# --- the refresh --------------------------------------------------------------------------


def _tsa_failure(exc: TimestampRequestError) -> SigningError:
    """A TSA failure as a :class:`SigningError`: transient for timeouts, connection errors and
    HTTP 408/429/5xx, permanent otherwise (credentials, refusals, wrong answers)."""
    cause = exc.__cause__
    transient = isinstance(cause, (TimeoutError, aiohttp.ClientConnectionError)) or (
        isinstance(cause, aiohttp.ClientResponseError)
        and not isinstance(cause, aiohttp.ContentTypeError)
        and (cause.status >= 500 or cause.status in (408, 429))
    )
    if isinstance(cause, aiohttp.ClientResponseError):
        detail = f"HTTP {cause.status} {cause.message}".rstrip()
    elif isinstance(cause, TimeoutError):
        detail = "no answer in time"
    elif cause is not None:
        detail = f"{type(cause).__name__}: {cause}"
    else:
        detail = ""
    return SigningError(f"TSA error: {exc}{f' ({detail})' if detail else ''}", transient=transient)


class LtaRefresher:
    """Adds validation data and a new document timestamp to signed PDFs (PAdES B-LTA).

    Args:
        timestamper: the RFC 3161 client (``build_timestamper`` of :mod:`app.signing.signer`).
        validation: trust roots and HTTP session for OCSP/CRL requests; every certificate of
            the chains must validate now, with revocation data (``hard-fail``).
        clock: returns the current time (aware); dates the document timestamp's field name.
    """

    def __init__(
        self,
        timestamper: TimeStamper,
        validation: LongTermValidation,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._timestamper = timestamper
        self._validation = validation
        self._clock = clock or (lambda: datetime.now(UTC))

    async def refresh(self, pdf: BinaryIO) -> LtaResult:
        """Refresh the signed PDF in ``pdf`` in place (readable, writable, seekable).

        1. Every signature and document timestamp must be intact, and nothing but LTA
           updates (DSS, document timestamps) may follow the first signature, and every
           certificate of the evidence (:func:`read_evidence`) must name an OCSP responder
           or CRL (:func:`require_revocation_sources`); otherwise nothing is written and the
           TSA is not asked.
        2. Without a document timestamp: validation data for each signature (its signer
           chain and its signature timestamp's TSA chain) goes into the DSS. With one:
           validation data for the newest document timestamp's TSA chain.
        3. A new document timestamp over the whole file, then the DSS entries for its TSA;
           the new TSA's certificates must name an OCSP responder or CRL too (else the
           result, which only that timestamp could keep valid, is refused).

        Returns:
            The new timestamp's time and TSA, and the evidence of the result.

        Raises:
            SigningError: ``transient=False`` when the file is unreadable, unsigned, altered
                or a certificate is expired, revoked, untrusted or names no OCSP responder
                or CRL (the message names it and its role); ``transient=True`` when the
                TSA or an OCSP responder/CRL server cannot be reached. ``pdf`` may then hold
                a partial update: discard it.
        """
        context = self._validation.context()
        try:
            reader = PdfFileReader(pdf)
            await self._check_integrity(reader)
            pdf.seek(0)
            roots = self._validation.trust_roots
            require_revocation_sources(read_evidence(pdf, extra_certificates=roots), roots)
            if reader.embedded_timestamp_signatures:
                await self._renew_chain(reader, context)
            else:
                await self._first_document_timestamp(pdf, reader, context)
        except SigningError:
            raise
        except TimestampRequestError as exc:
            raise _tsa_failure(exc) from exc
        except PdfError as exc:
            raise SigningError(f"cannot update the PDF: {exc}", transient=False) from exc
        except Exception as exc:
            mapped = validation_data_error(exc, level=PadesLevel.B_LTA)
            if mapped is not None:
                raise mapped from exc
            raise SigningError(f"LTA refresh failed: {type(exc).__name__}: {exc}", transient=False) from exc
        pdf.seek(0)
        newest = PdfFileReader(pdf).embedded_timestamp_signatures[-1]
        pdf.seek(0)
        evidence = read_evidence(pdf, extra_certificates=self._validation.trust_roots)
        require_revocation_sources(evidence, self._validation.trust_roots)
        return LtaResult(
            timestamp=_gen_time(newest.signed_data),
            timestamp_authority=_subject(newest.signer_cert),
            evidence=evidence,
        )

    def _field_name(self, reader: PdfFileReader) -> str:
        """``DocTimeStamp-YYYYMMDD`` (UTC), with ``-2``, ``-3``, … when a signature has that name."""
        taken = {sig.field_name for sig in reader.embedded_signatures}
        base = f"DocTimeStamp-{self._clock().astimezone(UTC):%Y%m%d}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        return name

    async def _check_integrity(self, reader: PdfFileReader) -> None:
        """Refuse a PDF whose signatures do not match its bytes or that was changed after signing."""
        if not reader.embedded_signatures:
            raise SigningError("the PDF holds no signature or document timestamp", transient=False)
        offline = ValidationContext(
            trust_roots=list(self._validation.trust_roots), allow_fetching=False, revocation_mode="soft-fail"
        )
        for sig in reader.embedded_signatures:
            status: object
            if sig.sig_object_type == "/DocTimeStamp":
                status = await async_validate_pdf_timestamp(sig, offline)
            else:
                status = await async_validate_pdf_signature(sig, offline, offline)
            intact = getattr(status, "intact", False) and getattr(status, "valid", False)
            level = getattr(status, "modification_level", None)
            if not intact:
                raise SigningError(
                    f"signature {sig.field_name!r} does not match the file's bytes: not refreshed",
                    transient=False,
                )
            if level is not None and level > ModificationLevel.LTA_UPDATES:
                raise SigningError(
                    f"the PDF was changed after signature {sig.field_name!r} "
                    f"({level.name.lower().replace('_', ' ')}): not refreshed",
                    transient=False,
                )

    async def _first_document_timestamp(
        self, pdf: BinaryIO, reader: PdfFileReader, context: ValidationContext
    ) -> None:
        regular = reader.embedded_regular_signatures
        for index in range(len(regular)):
            # Each update appends a revision: read the file again for the next one.
            pdf.seek(0)
            sig = PdfFileReader(pdf).embedded_regular_signatures[index]
            await async_add_validation_info(sig, context, in_place=True)
        md = regular[-1].md_algorithm if regular else "sha256"
        pdf.seek(0)
        writer = IncrementalPdfFileWriter(pdf)
        stamper = PdfTimeStamper(self._timestamper, field_name=self._field_name(reader))
        await stamper.async_timestamp_pdf(
            writer, md if md in _STRONG_DIGESTS else "sha256", context, in_place=True
        )

    async def _renew_chain(self, reader: PdfFileReader, context: ValidationContext) -> None:
        stamper = PdfTimeStamper(self._timestamper, field_name=self._field_name(reader))
        try:
            await stamper.async_update_archival_timestamp_chain(reader, context, in_place=True)
        except TypeError as exc:
            # pyHanko validates the newest document timestamp without raising: when its TSA's
            # chain does not validate, the status has no validation path, and the DSS update
            # that follows fails on it ("'NoneType' object is not iterable", pyHanko 0.38,
            # pyhanko.sign.validation.dss) before anything is written. Say why instead.
            problem = await self._newest_timestamp_problem(reader, context)
            if problem is None:
                raise
            raise problem from exc

    async def _newest_timestamp_problem(
        self, reader: PdfFileReader, context: ValidationContext
    ) -> SigningError | None:
        """Why the TSA certificate of the newest document timestamp does not validate now with
        ``context`` (no path to ``SIGNING_TRUST_ROOTS_PATH``, expired, revoked, no revocation
        data: see :func:`~app.signing.trust.validation_data_error`), or ``None`` when it does."""
        newest = reader.embedded_timestamp_signatures[-1]
        validator = CertificateValidator(
            newest.signer_cert,
            intermediate_certs=list(_cms_certificates(newest.signed_data)),
            validation_context=context,
        )
        try:
            await validator.async_validate_usage(key_usage=set(), extended_key_usage={"time_stamping"})
        except Exception as exc:  # noqa: BLE001 - whatever pyhanko_certvalidator raises is mapped or dropped
            mapped = validation_data_error(exc, level=PadesLevel.B_LTA)
            if mapped is not None:
                return SigningError(
                    f"newest document timestamp (TSA {_subject(newest.signer_cert)!r}): {mapped}",
                    transient=mapped.transient,
                )
        return None
