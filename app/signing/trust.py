"""Trust anchors and revocation data for long-term signatures (PAdES B-LT and B-LTA).

B-LT embeds the certificates, OCSP responses and CRLs a verifier needs into the PDF's
document security store (ETSI EN 319 142-1 §5.4, ISO 32000-2 §12.8.4.3). pyHanko gathers
them while signing through a ``ValidationContext``; this module builds one per signature
from trust roots loaded once and the service's HTTP session, and maps a failed gathering to
a :class:`SigningError` with the right classification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.keys.internal import translate_pyca_cryptography_cert_to_asn1
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from app.errors import ConfigError, SigningError
from app.signing.options import PadesLevel

__all__ = [
    "LongTermValidation",
    "has_revocation_pointers",
    "load_certificates",
    "revocation_source_gaps",
    "validation_data_error",
]


def load_certificates(path: Path) -> tuple[asn1_x509.Certificate, ...]:
    """Read every certificate of a PEM bundle (or one DER certificate) at ``path``.

    Raises:
        ConfigError: the file cannot be read or holds no certificate.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read certificate file {str(path)!r}: {exc.strerror}") from None
    try:
        if pem.detect(data):
            certs = tuple(
                asn1_x509.Certificate.load(der)
                for kind, _, der in pem.unarmor(data, multiple=True)
                if kind == "CERTIFICATE"
            )
        else:
            certs = (asn1_x509.Certificate.load(data, strict=True),)
        for cert in certs:
            cert.native  # noqa: B018 - parse eagerly so a broken file fails here, not while signing
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"certificate file {str(path)!r} is not PEM or DER X.509: {exc}") from None
    if not certs:
        raise ConfigError(f"certificate file {str(path)!r} holds no certificate")
    return certs


def has_revocation_pointers(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names a CRL distribution point or an OCSP responder (RFC 5280 §4.2.1.13,
    §4.2.2.1): without one, no revocation data can be embedded for it."""
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        return True
    except x509.ExtensionNotFound:
        pass
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == x509.AuthorityInformationAccessOID.OCSP for d in aia)


def revocation_source_gaps(
    certificates: Iterable[tuple[str, asn1_x509.Certificate]],
    trust_roots: Iterable[asn1_x509.Certificate] = (),
) -> list[str]:
    """The certificates no revocation data can be gathered for, of ``certificates`` (pairs of
    a role such as ``"TSA certificate of the signature timestamp"`` and the certificate): those
    naming neither an OCSP responder nor a CRL distribution point (:func:`has_revocation_pointers`),
    other than self-signed ones and ``trust_roots``, which need none.

    This is the rule for B-LT and B-LTA (the signer and ``lta-refresh``): their DSS must hold
    revocation data for every other certificate of the signer's and the TSAs' chains (ETSI EN
    319 142-1 §5.4) for them to validate once the CAs' services are gone (ETSI EN 319 102-1
    §5.6.3). pyHanko's ``hard-fail`` mode does not enforce it: it asks for revocation data
    only for certificates that name a source.

    Returns:
        One text per such certificate, in the given order:
        ``"<role> '<subject, RFC 4514>' names no OCSP responder or CRL distribution point"``.
    """
    anchors = {root.dump() for root in trust_roots}
    gaps = []
    for role, cert in certificates:
        if cert.self_signed != "no" or cert.dump() in anchors:
            continue
        pyca = x509.load_der_x509_certificate(cert.dump())
        if not has_revocation_pointers(pyca):
            gaps.append(
                f"{role} {pyca.subject.rfc4514_string()!r} names no OCSP responder or CRL distribution point"
            )
    return gaps


@dataclass(frozen=True)
class LongTermValidation:
    """What B-LT/B-LTA signing needs to collect validation data.

    Attributes:
        trust_roots: the anchors the signer's and the TSA's chains must end in
            (``SIGNING_TRUST_ROOTS_PATH``).
        session: the HTTP session for OCSP and CRL requests (not closed here).
        other_certs: intermediates to help path building (e.g. from the PFX).
        fetch_timeout: seconds per OCSP/CRL/certificate request.
    """

    trust_roots: tuple[asn1_x509.Certificate, ...]
    session: aiohttp.ClientSession = field(repr=False)
    other_certs: tuple[asn1_x509.Certificate, ...] = ()
    fetch_timeout: float = 10.0

    @classmethod
    def from_pyca(
        cls, roots: Iterable[x509.Certificate], session: aiohttp.ClientSession, **kw
    ) -> LongTermValidation:
        """Build from ``cryptography`` certificates."""
        return cls(tuple(translate_pyca_cryptography_cert_to_asn1(c) for c in roots), session, **kw)

    def context(self) -> ValidationContext:
        """A fresh ``ValidationContext`` (they cache per-validation state) that fetches
        revocation data and requires it for every certificate (``hard-fail``): a B-LT or
        B-LTA signature, or an LTA refresh, whose validation data could not be gathered is not made."""
        return ValidationContext(
            trust_roots=list(self.trust_roots),
            other_certs=list(self.other_certs),
            allow_fetching=True,
            revocation_mode="hard-fail",
            fetcher_backend=AIOHttpFetcherBackend(self.session, per_request_timeout=self.fetch_timeout),
        )


def validation_data_error(exc: BaseException, *, level: PadesLevel) -> SigningError | None:
    """Map pyHanko's failure to validate the signer (or TSA) certificate while making a
    signature or a refresh at ``level`` (B-LT or B-LTA) to a :class:`SigningError`, or
    ``None`` when ``exc`` is something else.

    Transient: revocation data could not be fetched (OCSP responder or CRL server down); the
    message names ``level``. Permanent: revoked, expired, untrusted (no path to
    ``SIGNING_TRUST_ROOTS_PATH``), unsuitable certificate.
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for cause in chain:
        if isinstance(cause, cv_errors.RevokedError):
            return SigningError(f"certificate is revoked: {cause}", transient=False)
        if isinstance(cause, (cv_errors.ExpiredError, cv_errors.NotYetValidError)):
            return SigningError(f"certificate is outside its validity period: {cause}", transient=False)
        if isinstance(cause, cv_errors.InsufficientRevinfoError):
            return SigningError(
                f"validation data for PAdES {level.value} could not be gathered (OCSP responder or "
                f"CRL server unreachable?): {cause}",
                transient=True,
            )
        if isinstance(cause, cv_errors.PathBuildingError):
            return SigningError(
                f"certificate chain does not lead to a root in SIGNING_TRUST_ROOTS_PATH: {cause}",
                transient=False,
            )
        if isinstance(cause, (cv_errors.PathValidationError, cv_errors.InvalidCertificateError)):
            return SigningError(f"certificate could not be validated: {cause}", transient=False)
    return None
