"""The archive signer: PAdES signatures of archive PDFs at the configured level.

It ties the parts of this package together: the key loaded once (:mod:`app.signing.keys`), the
RFC 3161 client (:mod:`app.signing.tsa`), trust roots and revocation data for B-LT/B-LTA
(:mod:`app.signing.trust`), the signature revision written directly for plain files
(:mod:`app.signing.incremental`) or by pyHanko's ``PdfSigner`` for every other one, and the
timestamp read back from the result (:mod:`app.signing.timestamps`).

Follows ETSI EN 319 142-1 (PAdES baseline B-B; B-T with a signature timestamp from an RFC 3161
TSA; B-LT with validation data in the document security store; B-LTA with a document
timestamp over all of it) as implemented by pyHanko (https://docs.pyhanko.eu/). Only pyHanko's async
APIs are used: its sync wrappers run ``asyncio.run()`` and fail inside the service's loop.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from app.errors import TRANSIENT_ERRNOS, ConfigError, SignerUnavailable, SigningError
from app.signing.incremental import IncrementalSignature
from app.signing.keys import CachedKeySigner, SigningKey, check_signing_certificate, load_signing_key
from app.signing.lta import read_evidence, require_revocation_sources
from app.signing.options import PadesLevel, SigningOptions
from app.signing.pdf_syntax import MAX_OBJECT_NUMBER, UnsupportedLayout
from app.signing.timestamps import NO_TIMESTAMP, TimestampFacts, signature_timestamp, signature_timestamp_in
from app.signing.trust import LongTermValidation, revocation_source_gaps, validation_data_error
from app.signing.tsa import tsa_error
from app.workflow.ports import SignedPdf

log = logging.getLogger("app.signing")

__all__ = [
    "DEFAULT_EXPIRY_WARNING",
    "GC_AFTER_SIGNING_BYTES",
    "INCREMENTAL_WRITER",
    "PYHANKO_WRITER",
    "ArchiveSigner",
    "UnsignedPassthrough",
]

#: How long before expiry the certificate is reported (``SIGNING_EXPIRY_WARN_DAYS``).
DEFAULT_EXPIRY_WARNING = timedelta(days=30)

GC_AFTER_SIGNING_BYTES = 4 * 1024 * 1024
"""From this PDF size on, :meth:`ArchiveSigner.sign_file` runs the cyclic garbage collector
after signing (pyHanko's reference cycles grow with the document)."""


_NEW_OBJECTS_MARGIN = 1000
"""Object numbers kept free above the input's ``/Size`` for what signing adds (B-LTA: the DSS,
its certificates, OCSP responses and CRLs, the document timestamp)."""

INCREMENTAL_WRITER = "incremental"
"""Key of :attr:`ArchiveSigner.revisions_by_writer`: revisions written by :mod:`app.signing.incremental`."""
PYHANKO_WRITER = "pyhanko"
"""Key of :attr:`ArchiveSigner.revisions_by_writer`: revisions written by pyHanko's ``PdfSigner``."""


class ArchiveSigner:
    """Signs archive PDFs as PAdES B-B, B-T, B-LT or B-LTA (ETSI EN 319 142-1).

    One instance per application: the key is parsed once; concurrent :meth:`sign` calls
    share the signer and timestamper safely. The signature goes into a new invisible field
    (``/Rect [0 0 0 0]``) as ``/ETSI.CAdES.detached``; ``/Contents`` is reserved once at
    :attr:`SigningOptions.bytes_reserved` (B-LT/B-LTA validation data and the document
    timestamp go into later incremental updates, not into that space).
    """

    def __init__(
        self,
        key: SigningKey,
        *,
        options: SigningOptions | None = None,
        timestamper: TimeStamper | None = None,
        level: PadesLevel | str | None = None,
        validation: LongTermValidation | None = None,
        expiry_warning: timedelta = DEFAULT_EXPIRY_WARNING,
        clock: Callable[[], datetime] | None = None,
        incremental_writer: bool = True,
    ) -> None:
        """Prepare the signer; the certificate is checked now and before every signature.

        Args:
            key: key material from :func:`~app.signing.keys.load_signing_key`.
            options: signature settings (defaults: :class:`SigningOptions`).
            timestamper: an RFC 3161 client from :func:`~app.signing.tsa.build_timestamper`; required for
                B-T and above.
            level: the PAdES level; default B-T with a timestamper, else B-B.
            validation: trust roots and HTTP session for B-LT/B-LTA (required there).
            expiry_warning: log a warning when the certificate expires within this time
                (at start, then at most once a day while signing).
            clock: returns the current time as an aware datetime (for tests).
            incremental_writer: write the signature revision of plain files with
                :mod:`app.signing.incremental` (B-B and B-T); ``False`` leaves every file to
                pyHanko's ``PdfSigner`` (for comparisons in tests and benchmarks).

        Raises:
            ConfigError: a level without what it needs (timestamper, validation data), or
                B-LT/B-LTA with a signing certificate chain that names no CRL or OCSP URL
                (:func:`~app.signing.trust.revocation_source_gaps`; the TSA's chain is only
                known from its answers and checked after each signature).
            SigningError: ``transient=False`` when
                :func:`~app.signing.keys.check_signing_certificate` fails.
        """
        self._key = key
        self._options = options or SigningOptions()
        self._level = PadesLevel.parse(level, has_timestamper=timestamper is not None)
        if self._level.needs_timestamper and timestamper is None:
            raise ConfigError(f"PAdES {self._level.value} needs a timestamp authority: set TSA_URL")
        if self._level.needs_validation_data:
            if validation is None:
                raise ConfigError(
                    f"PAdES {self._level.value} needs trust roots: set SIGNING_TRUST_ROOTS_PATH"
                )
            chain = [("signer certificate", key.certificate)]
            chain += [("certificate from the PFX", cert) for cert in key.extra_certificates]
            gaps = revocation_source_gaps(
                ((role, asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))) for role, cert in chain),
                validation.trust_roots,
            )
            if gaps:
                raise ConfigError(
                    f"PAdES {self._level.value} needs revocation data for every certificate below "
                    f"the trust roots, but {'; '.join(gaps)}"
                )
        self._timestamper = timestamper if self._level.needs_timestamper else None
        self._validation = validation if self._level.needs_validation_data else None
        self._expiry_warning = expiry_warning
        self._clock = clock or (lambda: datetime.now(UTC))
        self._warned_at: datetime | None = None
        now = self._clock()
        check_signing_certificate(key.certificate, now)
        self._warn_if_expiring(now)
        self._signer = CachedKeySigner.from_signing_key(key)
        self._incremental_writer = incremental_writer
        self._writer_counts: Counter[str] = Counter()
        self._subject = key.certificate.subject.rfc4514_string()
        self._sha256 = hashlib.sha256(key.certificate.public_bytes(Encoding.DER)).hexdigest()

    @classmethod
    def from_pfx(
        cls,
        pfx_bytes: bytes,
        password: bytes | str | None,
        **kwargs: Any,
    ) -> ArchiveSigner:
        """Load a PFX (see :func:`~app.signing.keys.load_signing_key`) and check its certificate;
        ``kwargs`` as for the constructor.

        Raises:
            SigningError: ``transient=False`` for a wrong password, corrupt PFX, or an
                expired/not-yet-valid certificate or one without digitalSignature +
                nonRepudiation.
            ConfigError: see the constructor.
        """
        return cls(load_signing_key(pfx_bytes, password), **kwargs)

    @property
    def subject(self) -> str:
        """The signing certificate's subject as an RFC 4514 string."""
        return self._subject

    @property
    def sha256_fingerprint(self) -> str:
        """SHA-256 of the signing certificate's DER encoding, lowercase hex."""
        return self._sha256

    @property
    def not_before(self) -> datetime:
        """Start of the certificate's validity (aware UTC)."""
        return self._key.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of the certificate's validity (aware UTC)."""
        return self._key.certificate.not_valid_after_utc

    @property
    def expiry_warning(self) -> timedelta:
        """The warning window before :attr:`not_after`."""
        return self._expiry_warning

    def expires_soon(self, now: datetime | None = None) -> bool:
        """Whether the certificate expires within :attr:`expiry_warning` of ``now``."""
        return self.not_after - (now or self._clock()) <= self._expiry_warning

    @property
    def pades_level(self) -> str:
        """The level every signature is made at: ``"B-B"``, ``"B-T"``, ``"B-LT"`` or ``"B-LTA"``."""
        return self._level.value

    @property
    def revisions_by_writer(self) -> dict[str, int]:
        """Signature revisions written so far, by writer: :data:`INCREMENTAL_WRITER` (the
        direct writer) and :data:`PYHANKO_WRITER` (pyHanko's ``PdfSigner``, also every
        B-LT/B-LTA signature); a failed signature counts where it was attempted."""
        return dict(self._writer_counts)

    def _warn_if_expiring(self, now: datetime) -> None:
        if not self.expires_soon(now):
            return
        if self._warned_at is not None and now - self._warned_at < timedelta(days=1):
            return
        self._warned_at = now
        days = (self.not_after - now).total_seconds() / 86400
        log.warning(
            "signing certificate expires soon: install a renewed PFX",
            extra={
                "subject": self._key.certificate.subject.rfc4514_string(),
                "not_after": self.not_after.isoformat(),
                "days_left": round(days, 1),
            },
        )

    def _metadata(self) -> signers.PdfSignatureMetadata:
        validation = self._validation
        return signers.PdfSignatureMetadata(
            field_name=self._options.field_name,
            reason=self._options.reason,
            location=self._options.location,
            contact_info=self._options.contact,
            md_algorithm=self._options.md_algorithm,
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=validation is not None,
            use_pades_lta=self._level is PadesLevel.B_LTA,
            validation_context=validation.context() if validation is not None else None,
        )

    async def sign(self, pdf: bytes) -> SignedPdf:
        """Sign ``pdf`` (a complete PDF, e.g. fpdf2 output) with incremental updates.

        B-B and B-T add one revision; B-LT adds the DSS in a second; B-LTA then a document
        timestamp and a final DSS update.

        Returns:
            ``SignedPdf(signed=True)`` with the level, the signer's subject and certificate
            fingerprint and, from B-T on, the TSA's ``genTime`` and the TSA certificate's
            subject read back from the signature-timestamp token.

        Raises:
            SignerUnavailable: the signing certificate has expired since the start
                (Transient: jobs wait for a renewed PFX and a restart, keeping the trigger tag).
            SigningError: ``transient=False`` when the certificate is revoked (or untrusted
                for B-LT), a certificate of the signer's or the TSA's chain
                below the trust roots names no OCSP responder or CRL (B-LT/B-LTA: "… names no
                OCSP responder or CRL distribution point: not signed"), the input is not a readable PDF,
                ``bytes_reserved`` is too small, or the TSA refuses (401/403, content type,
                garbage, PKI refusal); ``transient=True`` for TSA timeouts, connection errors,
                HTTP 5xx and unreachable OCSP/CRL services.
        """
        out = await self._sign_stream(io.BytesIO(pdf), None)
        out.seek(0)
        data = out.read()
        return self._result(data, None, signature_timestamp(data) if self._timestamper else NO_TIMESTAMP)

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        """Sign the PDF in the file ``source`` into the new file ``target``, as :meth:`sign`
        does in memory: the same bytes, but neither the input nor the output is ever held
        whole in memory (the file is copied and hashed in chunks).

        At B-B and B-T, a single-revision file with a classic cross-reference table (what
        fpdf2 writes) gets its signature revision from :mod:`app.signing.incremental`, which
        copies the catalog and first page byte for byte instead of parsing and re-serialising
        them with pyHanko; every other file, and B-LT/B-LTA, goes through pyHanko's ``PdfSigner``.

        Returns:
            As :meth:`sign`, with ``data=b""`` and ``path=target``. On failure ``target`` is
            removed.

        Raises:
            SigningError: as :meth:`sign`; also when ``source`` cannot be read or ``target``
                written (transient for a full disk).
        """
        # The files are the job's spool on local disk, read and written on the event loop as
        # pyHanko reads them anyway (its reader is synchronous).
        try:
            with open(source, "rb") as pdf, open(target, "x+b") as out:  # noqa: ASYNC230 - local spool, see above
                await self._sign_stream(pdf, out)
                timestamp = signature_timestamp_in(out) if self._timestamper else NO_TIMESTAMP
        except OSError as exc:
            Path(target).unlink(missing_ok=True)  # noqa: ASYNC240 - local spool, see above
            raise SigningError(
                f"cannot read or write the PDF file: {exc.strerror or exc}",
                transient=exc.errno in TRANSIENT_ERRNOS,
            ) from None
        except BaseException:
            Path(target).unlink(missing_ok=True)  # noqa: ASYNC240 - local spool, see above
            raise
        finally:
            # pyHanko's reader and writer leave reference cycles behind, growing with the
            # document, that only the cyclic collector frees, possibly long after the next steps
            # grew the heap beside them: collect them now for a big document (on the event loop);
            # a small one's few cycles go with the usual collections.
            with contextlib.suppress(OSError):
                if os.path.getsize(source) >= GC_AFTER_SIGNING_BYTES:  # noqa: ASYNC240 - a stat of the spool file
                    gc.collect()
        return self._result(b"", Path(target), timestamp)

    def _result(self, data: bytes, path: Path | None, timestamp: TimestampFacts) -> SignedPdf:
        return SignedPdf(
            data=data,
            signed=True,
            pades_level=self._level.value,
            signer_subject=self._subject,
            signer_cert_sha256=self._sha256,
            timestamp=timestamp.time,
            timestamp_authority=timestamp.authority,
            path=path,
        )

    async def _sign_stream(self, pdf: BinaryIO, output: BinaryIO | None) -> BinaryIO:
        """Sign the PDF read from ``pdf``; in place (``output=None``, ``pdf`` must be writable)
        or into ``output`` (readable, writable, seekable). Returns the stream with the result."""
        now = self._clock()
        try:
            check_signing_certificate(self._key.certificate, now)
        except SigningError as exc:  # expired since the start: the operator installs a renewed PFX
            raise SignerUnavailable(str(exc)) from None
        self._warn_if_expiring(now)
        if self._validation is None and self._incremental_writer:
            update = self._prepare_update(pdf, now)
            if update is not None:
                self._writer_counts[INCREMENTAL_WRITER] += 1
                return await self._sign_update(update, pdf, output, now)
        self._writer_counts[PYHANKO_WRITER] += 1
        try:
            writer = IncrementalPdfFileWriter(pdf)
            size = writer.prev.trailer["/Size"]
        except Exception as exc:
            raise SigningError(f"the input is not a readable PDF: {exc}", transient=False) from exc
        if not isinstance(size, int) or size + _NEW_OBJECTS_MARGIN > MAX_OBJECT_NUMBER:
            raise SigningError(
                f"the input's trailer /Size ({size}) leaves no room for the signature's objects "
                f"below object number {MAX_OBJECT_NUMBER} (ISO 32000-1 Annex C.2)",
                transient=False,
            )
        pdf_signer = signers.PdfSigner(self._metadata(), signer=self._signer, timestamper=self._timestamper)
        try:
            signed = await pdf_signer.async_sign_pdf(
                writer, output=output, in_place=output is None, bytes_reserved=self._options.bytes_reserved
            )
        except TimestampRequestError as exc:
            raise tsa_error(exc, getattr(self._timestamper, "timeout", None)) from exc
        except Exception as exc:
            mapped = validation_data_error(exc, level=self._level) if self._validation is not None else None
            if mapped is not None:
                raise mapped from exc
            if isinstance(exc, SigningError):
                raise
            message = str(exc)
            if "ByteRange" in message or "larger than expected" in message:
                message += f" (bytes_reserved={self._options.bytes_reserved} is too small)"
            raise SigningError(f"signing failed: {type(exc).__name__}: {message}", transient=False) from exc
        if self._validation is not None:
            self._require_revocation_sources(signed, self._validation)
        return signed

    def _require_revocation_sources(self, signed: BinaryIO, validation: LongTermValidation) -> None:
        """Refuse a B-LT/B-LTA result that lacks revocation data for a certificate below the
        trust roots because it names no OCSP responder or CRL: pyHanko's ``hard-fail`` does not
        ask for data such a certificate cannot have. The signer's chain is checked at start; the
        TSA's is seen only in its tokens (the signature timestamp, at B-LTA also the document
        timestamp), so it is checked here, in the signed PDF.

        Raises:
            SigningError: ``transient=False`` naming the certificate and its role
                (:func:`~app.signing.lta.require_revocation_sources`).
        """
        signed.seek(0)
        evidence = read_evidence(signed, extra_certificates=validation.trust_roots, every_layer=True)
        require_revocation_sources(evidence, validation.trust_roots, level=self._level, outcome="not signed")

    def _prepare_update(self, pdf: BinaryIO, now: datetime) -> IncrementalSignature | None:
        """The signature revision written by :mod:`app.signing.incremental`, or ``None`` when
        the file is not one that module fully understands (:class:`UnsupportedLayout`, logged):
        pyHanko's writer signs it then, or names the problem if it is not a readable PDF.

        Raises:
            OSError: reading ``pdf`` failed.
        """
        options = self._options
        try:
            return IncrementalSignature.prepare(
                pdf, field_name=options.field_name, signing_time=now.astimezone(UTC),
                bytes_reserved=options.bytes_reserved, md_algorithm=options.md_algorithm,
                reason=options.reason, location=options.location, contact=options.contact,
            )  # fmt: skip
        except UnsupportedLayout as exc:
            log.info("signature revision left to pyHanko's writer", extra={"reason": str(exc)})
            return None

    async def _sign_update(
        self, update: IncrementalSignature, pdf: BinaryIO, output: BinaryIO | None, now: datetime
    ) -> BinaryIO:
        """B-B/B-T: hash the input and the prepared update, let pyHanko build the CMS
        (``Signer.async_sign`` with PAdES attributes and the signature timestamp, as
        ``PdfSigner`` does), and append the update. Same errors as :meth:`_sign_stream`."""
        target = pdf if output is None else output
        try:
            digest = update.digest(pdf, None if output is None else output.write)
        except UnsupportedLayout as exc:
            raise SigningError(f"the input is not a readable PDF: {exc}", transient=False) from exc
        try:
            signed_data = await self._signer.async_sign(
                digest, self._options.md_algorithm, use_pades=True, timestamper=self._timestamper,
                signed_attr_settings=PdfCMSSignedAttributes(signing_time=now),
            )  # fmt: skip
            data = update.finish(signed_data.dump())
        except TimestampRequestError as exc:
            raise tsa_error(exc, getattr(self._timestamper, "timeout", None)) from exc
        except Exception as exc:
            if isinstance(exc, SigningError):
                raise
            raise SigningError(f"signing failed: {type(exc).__name__}: {exc}", transient=False) from exc
        target.seek(0, io.SEEK_END)
        target.write(data)
        return target


class UnsignedPassthrough:
    """Stand-in :class:`~app.workflow.ports.SignerPort` when signing is disabled: returns the PDF as is."""

    async def sign(self, pdf: bytes) -> SignedPdf:
        """Returns ``SignedPdf(data=pdf, signed=False)``; never raises."""
        return SignedPdf(data=pdf, signed=False)

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        """Returns ``SignedPdf(signed=False, path=source)``: the unsigned file is the result
        (``target`` is not created); never raises."""
        return SignedPdf(data=b"", signed=False, path=Path(source))
