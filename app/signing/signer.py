"""PAdES signing of archive PDFs with a key loaded once from a PFX, optionally with an RFC 3161 timestamp.

Follows ETSI EN 319 142-1 (PAdES baseline B-B; B-T with a signature timestamp from an RFC 3161
TSA; B-LT with validation data in the document security store; B-LTA with a document
timestamp over all of it) as implemented by pyHanko (https://docs.pyhanko.eu/). Only pyHanko's async
APIs are used: its sync wrappers run ``asyncio.run()`` and fail inside the service's loop.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import gc
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import aiohttp
from asn1crypto import cms, core, tsp
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from pyhanko.keys.internal import (
    translate_pyca_cryptography_cert_to_asn1,
    translate_pyca_cryptography_key_to_asn1,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko.sign.attributes import CMSAttributeProvider, SigningCertificateV2Provider
from pyhanko.sign.general import find_cms_attribute_iter
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from app.errors import TRANSIENT_ERRNOS, ConfigError, SigningError
from app.signing.incremental import IncrementalSignature, UnsupportedLayout
from app.signing.trust import LongTermValidation, has_revocation_pointers, validation_data_error
from app.workflow.ports import SignedPdf

log = logging.getLogger("app.signing")

__all__ = [
    "DEFAULT_BYTES_RESERVED",
    "ArchiveSigner",
    "CachedKeySigner",
    "PadesLevel",
    "SigningKey",
    "SigningOptions",
    "UnsignedPassthrough",
    "build_timestamper",
    "check_signing_certificate",
    "load_signing_key",
]

#: Hex characters reserved for the CMS in ``/Contents`` (DER size × 2). Measured: a B-T CMS with an
#: RSA-3072 signer, the root, and an ``openssl ts`` token (RSA-3072 TSA + root, 3.1 KB) is 6.2 KB of
#: DER = 12.3 K hex, which leaves only 2 KB in 16384. Public TSAs embed 2–3 certificates (often
#: RSA-4096), so the default doubles that; the cost is ~16 KB of zero padding per PDF.
DEFAULT_BYTES_RESERVED = 32768

#: How long before expiry the certificate is reported (``SIGNING_EXPIRY_WARN_DAYS``).
DEFAULT_EXPIRY_WARNING = timedelta(days=30)

#: RFC 3161 ``PKIFailureInfo`` values that describe a TSA-side outage rather than a bad request.
_TRANSIENT_TSA_FAILURES = ("time_not_available", "system_failure")


class PadesLevel(str, enum.Enum):
    """PAdES baseline levels (ETSI EN 319 142-1 §6)."""

    B_B = "B-B"
    """CMS signature with the signing-certificate attribute."""
    B_T = "B-T"
    """+ an RFC 3161 signature timestamp: proves the signature existed at that time."""
    B_LT = "B-LT"
    """+ certificates, OCSP responses and CRLs of both chains in the DSS (offline validation)."""
    B_LTA = "B-LTA"
    """+ a document timestamp over the DSS, renewable before its algorithms weaken."""

    @property
    def needs_timestamper(self) -> bool:
        return self is not PadesLevel.B_B

    @property
    def needs_validation_data(self) -> bool:
        return self in (PadesLevel.B_LT, PadesLevel.B_LTA)

    @classmethod
    def parse(cls, value: str | PadesLevel | None, *, has_timestamper: bool) -> PadesLevel:
        """``SIGNING_PADES_LEVEL`` as given, or the default: B-T with a TSA, else B-B.

        Raises:
            ConfigError: an unknown name.
        """
        if value is None or value == "":
            return cls.B_T if has_timestamper else cls.B_B
        try:
            return cls(str(value.value if isinstance(value, PadesLevel) else value).upper().replace("_", "-"))
        except ValueError:
            raise ConfigError(f"unknown PAdES level {value!r}: use B-B, B-T, B-LT or B-LTA") from None


@dataclass(frozen=True, slots=True)
class SigningOptions:
    """What goes into each signature (pyHanko ``PdfSignatureMetadata``).

    Attributes:
        field_name: name of the invisible signature field created for the signature.
        reason, location, contact: optional ``/Reason``, ``/Location``, ``/ContactInfo``
            entries of the signature dictionary (ISO 32000-1 §12.8.1, Table 252).
        bytes_reserved: hex characters reserved in ``/Contents`` for the CMS object, i.e.
            twice its DER size in bytes. Setting it skips pyHanko's dummy signature (one raw
            signature and one TSA call per PDF instead of two). Too small a value makes
            every signature fail with a permanent :class:`SigningError`.
        md_algorithm: message digest for the document hash and the CMS signed attributes
            (``"sha256"``, ``"sha384"``, ``"sha512"``).
    """

    field_name: str = "Signature1"
    reason: str | None = None
    location: str | None = None
    contact: str | None = None
    bytes_reserved: int = DEFAULT_BYTES_RESERVED
    md_algorithm: str = "sha256"

    def __post_init__(self) -> None:
        if not self.field_name or "." in self.field_name:
            raise ConfigError("signature field name must be non-empty and contain no '.'")
        if self.bytes_reserved < 2048 or self.bytes_reserved % 2:
            raise ConfigError("bytes_reserved must be an even number of at least 2048 (hex characters)")
        try:
            get_pyca_cryptography_hash(self.md_algorithm)
        except Exception:
            raise ConfigError(f"unsupported digest algorithm {self.md_algorithm!r}") from None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """Key material loaded once from a PFX (PKCS#12, RFC 7292).

    Attributes:
        private_key: the parsed cryptography private key (not shown in ``repr``).
        certificate: the signing certificate.
        extra_certificates: the other certificates of the PFX (chain, root), embedded in
            each CMS so verifiers can build the path.
    """

    private_key: PrivateKeyTypes = field(repr=False)
    certificate: x509.Certificate
    extra_certificates: tuple[x509.Certificate, ...] = ()


def load_signing_key(pfx_bytes: bytes, password: bytes | None) -> SigningKey:
    """Parse a PFX once, at start-up.

    Args:
        pfx_bytes: the PKCS#12 file content (DER).
        password: the PFX password as bytes (a ``str`` is encoded as UTF-8), or ``None``
            for an unencrypted PFX.

    Returns:
        The key, the signing certificate and the other certificates of the PFX.

    Raises:
        SigningError: ``transient=False`` when the password is wrong, the data is not
            PKCS#12, or it holds no key or no certificate. Messages never contain the
            password.
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    try:
        key, cert, others = pkcs12.load_key_and_certificates(pfx_bytes, password)
    except Exception:
        if not _looks_like_pkcs12(pfx_bytes):
            raise SigningError(
                "cannot open the PFX: not a PKCS#12 file (corrupt or wrong file)", transient=False
            ) from None
        raise SigningError("cannot open the PFX: wrong password or corrupt file", transient=False) from None
    if key is None:
        raise SigningError("the PFX holds no private key", transient=False)
    if cert is None:
        raise SigningError("the PFX holds no certificate for its private key", transient=False)
    return SigningKey(private_key=key, certificate=cert, extra_certificates=tuple(others))


def _looks_like_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        return pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native is not None
    except Exception:
        return False


def check_signing_certificate(cert: x509.Certificate, now: datetime) -> None:
    """Refuse a certificate that cannot make a valid PAdES signature at ``now``.

    Checks (RFC 5280 §4.1.2.5 validity, §4.2.1.3 key usage; pyHanko's default validation
    policy requires non-repudiation for signatures):

    - ``notBefore <= now <= notAfter``;
    - a keyUsage extension containing digitalSignature **and** nonRepudiation
      (contentCommitment).

    Args:
        cert: the signing certificate.
        now: the time to check against (timezone-aware).

    Raises:
        SigningError: ``transient=False``, naming what is wrong and the relevant date.
    """
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    subject = cert.subject.rfc4514_string()
    if now < not_before:
        raise SigningError(
            f"signing certificate {subject!r} is not yet valid (valid from {not_before.isoformat()})",
            transient=False,
        )
    if now > not_after:
        raise SigningError(
            f"signing certificate {subject!r} expired on {not_after.isoformat()}: install a renewed PFX",
            transient=False,
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise SigningError(
            f"signing certificate {subject!r} has no keyUsage extension: "
            "it needs digitalSignature and nonRepudiation",
            transient=False,
        ) from None
    missing = [
        name
        for name, present in (
            ("digitalSignature", usage.digital_signature),
            ("nonRepudiation", usage.content_commitment),
        )
        if not present
    ]
    if missing:
        raise SigningError(
            f"signing certificate {subject!r} lacks key usage {' and '.join(missing)}: "
            "PAdES signatures need digitalSignature and nonRepudiation",
            transient=False,
        )


class CachedKeySigner(signers.SimpleSigner):
    """pyHanko ``SimpleSigner`` that keeps the parsed private key.

    The stock ``SimpleSigner.sign_raw`` re-parses the DER key for every raw signature, and
    cryptography's RSA consistency check then holds the GIL for 30–140 ms, stalling the event
    loop. This subclass signs RSA PKCS#1 v1.5 (RFC 8017 §8.2) with the cached key
    (< 1 ms) and falls back to the stock path for every other mechanism (PSS, ECDSA, …).
    """

    def __init__(self, *args, pyca_key: PrivateKeyTypes, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pyca_key = pyca_key
        self._encoded_attributes: dict[str, bytes] = {}

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        """Sign ``data`` (hashing it with ``digest_algorithm``); returns the raw signature bytes."""
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        try:
            algo = mechanism.signature_algo
        except ValueError:
            algo = mechanism["algorithm"].native
        if isinstance(self._pyca_key, RSAPrivateKey) and algo == "rsassa_pkcs1v15":
            return self._pyca_key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
        return super().sign_raw(data, digest_algorithm)

    def _signed_attr_providers(self, *args, **kwargs):
        """pyHanko's signed attribute providers, the signing-certificate-v2 one served from DER.

        That attribute (RFC 5035: hash, issuer and serial of the signing certificate) is
        the same for every signature; built per signature, asn1crypto copies and re-encodes
        the certificate's issuer name each time. Here it is built once (by pyHanko's own
        provider) and every signature gets it loaded from those bytes.
        """
        for provider in super()._signed_attr_providers(*args, **kwargs):
            if (
                isinstance(provider, SigningCertificateV2Provider)
                and provider.signing_cert is self.signing_cert
            ):
                yield _EncodedAttributeProvider(provider, self._encoded_attributes)
            else:
                yield provider

    @classmethod
    def from_signing_key(cls, key: SigningKey) -> CachedKeySigner:
        """Build the signer from loaded key material; the chain certificates are embedded in each CMS."""
        store = SimpleCertificateStore()
        store.register_multiple(translate_pyca_cryptography_cert_to_asn1(c) for c in key.extra_certificates)
        return cls(
            signing_cert=translate_pyca_cryptography_cert_to_asn1(key.certificate),
            signing_key=translate_pyca_cryptography_key_to_asn1(key.private_key),
            cert_registry=store,
            pyca_key=key.private_key,
        )


class _EncodedAttributeProvider(CMSAttributeProvider):
    """Serves a constant CMS attribute from its DER, built once by the wrapped provider.

    Args:
        provider: pyHanko's provider of an attribute that never changes for this signer.
        cache: where the DER is kept, by attribute type (the signer's, shared by all signatures).
    """

    def __init__(self, provider: CMSAttributeProvider, cache: dict[str, bytes]) -> None:
        self.attribute_type = provider.attribute_type
        self._provider = provider
        self._cache = cache

    async def build_attr_value(self, dry_run: bool = False):
        return await self._provider.build_attr_value(dry_run=dry_run)

    async def get_attribute(self, dry_run: bool = False) -> cms.CMSAttribute | None:
        """The attribute, loaded from the cached DER (built on the first call)."""
        der = self._cache.get(self.attribute_type)
        if der is None:
            attribute = await self._provider.get_attribute(dry_run=dry_run)
            if attribute is None:
                return None
            der = self._cache[self.attribute_type] = attribute.dump()
        return cms.CMSAttribute.load(der)


class _LenientTimeStampResp(core.Sequence):
    """RFC 3161 §2.4.2 ``TimeStampResp`` with the token OPTIONAL, as the RFC says: asn1crypto's
    class requires it, so a refusal (which carries no token) would otherwise fail to parse."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def _parse_tsa_response(data: bytes) -> tsp.TimeStampResp:
    """Parse a TSA answer eagerly; refusals and non-DER bodies become :class:`TimestampRequestError`."""
    try:
        status = _LenientTimeStampResp.load(data, strict=True)["status"]
        state = status["status"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampRequestError("TSA answer is not an RFC 3161 TimeStampResp") from exc
    if state not in ("granted", "granted_with_mods"):
        texts = "; ".join(status["status_string"].native or [])
        fail_info = ", ".join(sorted(status["fail_info"].native or []))
        raise TimestampRequestError(
            f"Timestamp server refused our request: status {state}, statusString {texts!r}, failInfo {fail_info!r}"
        )
    try:
        response = tsp.TimeStampResp.load(data, strict=True)
        response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed.native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampRequestError("TSA answer is not an RFC 3161 TimeStampResp") from exc
    return response


class _CheckedHTTPTimeStamper(HTTPTimeStamper):
    """``HTTPTimeStamper`` on a caller-owned session that parses the answer eagerly.

    pyHanko's version lets a body that is not DER escape as a bare asn1crypto ``ValueError``
    and cannot parse a refusal (no token). The HTTP exchange is the same: POST
    ``application/timestamp-query``, expect ``application/timestamp-reply`` (RFC 3161 §3.4).
    """

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        session: aiohttp.ClientSession = self._session  # type: ignore[assignment]  # set by build_timestamper
        headers = await self.async_request_headers()
        try:
            async with session.post(
                self.url,
                headers=headers,
                data=req.dump(),
                raise_for_status=True,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                data = await response.read()
                content_type = response.headers.get("Content-Type")
                if content_type != "application/timestamp-reply":
                    raise aiohttp.ContentTypeError(
                        response.request_info,
                        response.history,
                        message=f"expected application/timestamp-reply, got {content_type}",
                        headers=response.headers,
                    )
        except (aiohttp.ClientError, OSError) as exc:
            raise TimestampRequestError("Error while contacting timestamp service") from exc
        return _parse_tsa_response(data)


def build_timestamper(
    url: str,
    session: aiohttp.ClientSession,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> HTTPTimeStamper:
    """An RFC 3161 client (HTTP transport, RFC 3161 §3.4) on the application's shared session.

    Create one per application and reuse it: pyHanko caches per-digest state on the instance.

    Args:
        url: the TSA endpoint (``http://`` or ``https://``). For a private CA, give the
            session a connector whose SSL context trusts it.
        session: the application's ``aiohttp.ClientSession`` (not closed here).
        user, password: HTTP Basic credentials (RFC 7617), sent as an ``Authorization``
            header (``aiohttp.BasicAuth`` is deprecated in aiohttp 3.14). ``None`` = no auth.
        timeout: total seconds per TSA request.

    Returns:
        A pyHanko ``HTTPTimeStamper`` for :class:`ArchiveSigner`.

    Raises:
        ConfigError: password without user, a ``:`` in the user, or a non-positive timeout.
    """
    if timeout <= 0:
        raise ConfigError("TSA timeout must be positive")
    headers: dict[str, str] = {}
    if user is not None:
        if ":" in user:
            raise ConfigError("TSA user must not contain ':' (RFC 7617)")
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    elif password is not None:
        raise ConfigError("TSA password given without a TSA user")
    return _CheckedHTTPTimeStamper(url, timeout=timeout, headers=headers, session=session)


def _tsa_error(exc: TimestampRequestError, timeout: float | None) -> SigningError:
    """Map a pyHanko TSA failure to a :class:`SigningError` with ``transient`` pinned.

    Transient: timeouts, connection failures, HTTP 408/429/5xx, RFC 3161 failInfo
    timeNotAvailable/systemFailure. Permanent: HTTP 401/403 and other 4xx, a wrong
    Content-Type, TLS trust failures, refusals, a body that is not a TimeStampResp.
    """
    cause = exc.__cause__
    if cause is None:
        text = str(exc)
        transient = any(f in text for f in _TRANSIENT_TSA_FAILURES)
        return SigningError(f"TSA error: {text}", transient=transient)
    if isinstance(cause, TimeoutError):
        limit = f" within {timeout:g} s" if timeout else ""
        return SigningError(f"TSA did not answer{limit}", transient=True)
    if isinstance(cause, aiohttp.ContentTypeError):
        return SigningError(f"TSA answer has the wrong content type: {cause.message}", transient=False)
    if isinstance(cause, aiohttp.ClientResponseError):
        status = cause.status
        if status in (401, 403):
            return SigningError(
                f"TSA refused the credentials (HTTP {status}): check the TSA user and password",
                transient=False,
            )
        transient = status in (408, 429) or status >= 500
        return SigningError(f"TSA answered HTTP {status} {cause.message}".rstrip(), transient=transient)
    if isinstance(cause, aiohttp.ClientSSLError):
        return SigningError(
            f"TLS connection to the TSA failed ({type(cause).__name__}): check the CA bundle", transient=False
        )
    if isinstance(cause, aiohttp.InvalidURL):
        return SigningError("TSA URL is invalid", transient=False)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return SigningError(
            f"cannot connect to the TSA at {cause.host}:{cause.port}: {cause.os_error.strerror or cause.os_error}",
            transient=True,
        )
    if isinstance(cause, (aiohttp.ClientError, OSError)):
        return SigningError(f"TSA connection failed ({type(cause).__name__})", transient=True)
    if isinstance(cause, (ValueError, TypeError, KeyError)):
        return SigningError("TSA answer is not an RFC 3161 TimeStampResp", transient=False)
    return SigningError(f"TSA error: {exc} ({type(cause).__name__})", transient=False)


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
    ) -> None:
        """Prepare the signer; the certificate is checked now and before every signature.

        Args:
            key: key material from :func:`load_signing_key`.
            options: signature settings (defaults: :class:`SigningOptions`).
            timestamper: an RFC 3161 client from :func:`build_timestamper`; required for
                B-T and above.
            level: the PAdES level; default B-T with a timestamper, else B-B.
            validation: trust roots and HTTP session for B-LT/B-LTA (required there).
            expiry_warning: log a warning when the certificate expires within this time
                (at start, then at most once a day while signing).
            clock: returns the current time as an aware datetime (for tests).

        Raises:
            ConfigError: a level without what it needs (timestamper, validation data), or
                B-LT/B-LTA with a signing certificate chain that names no CRL or OCSP URL.
            SigningError: ``transient=False`` when :func:`check_signing_certificate` fails.
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
            roots = {r.dump() for r in validation.trust_roots}
            for cert in (key.certificate, *key.extra_certificates):
                self_signed = cert.issuer == cert.subject
                if (
                    not self_signed
                    and cert.public_bytes(Encoding.DER) not in roots
                    and not has_revocation_pointers(cert)
                ):
                    raise ConfigError(
                        f"PAdES {self._level.value} needs revocation data, but certificate "
                        f"{cert.subject.rfc4514_string()!r} names no CRL distribution point or OCSP responder"
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
        self._subject = key.certificate.subject.rfc4514_string()
        self._sha256 = hashlib.sha256(key.certificate.public_bytes(Encoding.DER)).hexdigest()

    @classmethod
    def from_pfx(
        cls,
        pfx_bytes: bytes,
        password: bytes | None,
        **kwargs,
    ) -> ArchiveSigner:
        """Load a PFX (see :func:`load_signing_key`) and check its certificate; ``kwargs`` as
        for the constructor.

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
        long_term = self._validation is not None
        return signers.PdfSignatureMetadata(
            field_name=self._options.field_name,
            reason=self._options.reason,
            location=self._options.location,
            contact_info=self._options.contact,
            md_algorithm=self._options.md_algorithm,
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=long_term,
            use_pades_lta=self._level is PadesLevel.B_LTA,
            validation_context=self._validation.context() if long_term else None,
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
            SigningError: ``transient=False`` when the certificate is no longer valid (or
                revoked, or untrusted for B-LT), the input is not a readable PDF,
                ``bytes_reserved`` is too small, or the TSA refuses (401/403, content type,
                garbage, PKI refusal); ``transient=True`` for TSA timeouts, connection errors,
                HTTP 5xx and unreachable OCSP/CRL services.
        """
        out = await self._sign_stream(io.BytesIO(pdf), None)
        data = out.getvalue()
        timestamp, authority = _signature_timestamp(data) if self._timestamper else (None, None)
        return self._result(data, None, timestamp, authority)

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        """Sign the PDF in the file ``source`` into the new file ``target``, as :meth:`sign`
        does in memory: the same bytes, but neither the input nor the output is ever held
        whole in memory (the file is copied and hashed in chunks).

        At B-B and B-T, a single-revision file with a classic cross-reference table (what
        fpdf2 writes) gets its signature revision from :mod:`app.signing.incremental`, which
        copies the catalog and first page byte for byte instead of parsing and re-serialising
        them with pyHanko (~3 ms instead of ~6 ms of CPU for a 143 KB, 11-page archive with 42
        embedded files); every other file, and B-LT/B-LTA, goes through pyHanko's ``PdfSigner``.

        Returns:
            As :meth:`sign`, with ``data=b""`` and ``path=target``. On failure ``target`` is
            removed.

        Raises:
            SigningError: as :meth:`sign`; also when ``source`` cannot be read or ``target``
                written (transient for a full disk).
        """
        try:
            with open(source, "rb") as pdf, open(target, "x+b") as out:
                await self._sign_stream(pdf, out)
                timestamp, authority = _signature_timestamp_in(out) if self._timestamper else (None, None)
        except OSError as exc:
            Path(target).unlink(missing_ok=True)
            raise SigningError(
                f"cannot read or write the PDF file: {exc.strerror or exc}",
                transient=exc.errno in TRANSIENT_ERRNOS,
            ) from None
        except BaseException:
            Path(target).unlink(missing_ok=True)
            raise
        finally:
            # pyHanko's reader and writer leave reference cycles behind (~65,000 objects, ~15 MB
            # for a 2,500-page archive) that only the cyclic collector frees, possibly long after
            # the next steps grew the heap beside them: collect them now for a big document (tens
            # of ms, on the event loop); a small one's few cycles go with the usual collections.
            with contextlib.suppress(OSError):
                if os.path.getsize(source) >= GC_AFTER_SIGNING_BYTES:
                    gc.collect()
        return self._result(b"", Path(target), timestamp, authority)

    def _result(
        self, data: bytes, path: Path | None, timestamp: datetime | None, authority: str | None
    ) -> SignedPdf:
        return SignedPdf(
            data=data,
            signed=True,
            pades_level=self._level.value,
            signer_subject=self._subject,
            signer_cert_sha256=self._sha256,
            timestamp=timestamp,
            timestamp_authority=authority,
            path=path,
        )

    async def _sign_stream(self, pdf: BinaryIO, output: BinaryIO | None) -> BinaryIO:
        """Sign the PDF read from ``pdf``; in place (``output=None``, ``pdf`` must be writable)
        or into ``output`` (readable, writable, seekable). Returns the stream with the result."""
        now = self._clock()
        check_signing_certificate(self._key.certificate, now)
        self._warn_if_expiring(now)
        if self._validation is None:
            update = self._prepare_update(pdf, now)
            if update is not None:
                return await self._sign_update(update, pdf, output, now)
        try:
            writer = IncrementalPdfFileWriter(pdf)
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise SigningError(f"the input is not a readable PDF: {exc}", transient=False) from exc
        pdf_signer = signers.PdfSigner(self._metadata(), signer=self._signer, timestamper=self._timestamper)
        try:
            return await pdf_signer.async_sign_pdf(
                writer, output=output, in_place=output is None, bytes_reserved=self._options.bytes_reserved
            )
        except TimestampRequestError as exc:
            raise _tsa_error(exc, getattr(self._timestamper, "timeout", None)) from exc
        except Exception as exc:
            mapped = validation_data_error(exc) if self._validation is not None else None
            if mapped is not None:
                raise mapped from exc
            if isinstance(exc, SigningError):
                raise
            message = str(exc)
            if "ByteRange" in message or "larger than expected" in message:
                message += f" (bytes_reserved={self._options.bytes_reserved} is too small)"
            raise SigningError(f"signing failed: {type(exc).__name__}: {message}", transient=False) from exc

    def _prepare_update(self, pdf: BinaryIO, now: datetime) -> IncrementalSignature | None:
        """The signature revision written by :mod:`app.signing.incremental`, or ``None`` when
        the file needs pyHanko's general writer (or is not readable by ours)."""
        options = self._options
        try:
            return IncrementalSignature.prepare(
                pdf, field_name=options.field_name, signing_time=now.astimezone(UTC),
                bytes_reserved=options.bytes_reserved, md_algorithm=options.md_algorithm,
                reason=options.reason, location=options.location, contact=options.contact,
            )  # fmt: skip
        except (UnsupportedLayout, ValueError, IndexError, KeyError, TypeError):
            return None  # pyHanko's writer decides (and names the problem if it is not a PDF)

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
            raise _tsa_error(exc, getattr(self._timestamper, "timeout", None)) from exc
        except Exception as exc:
            if isinstance(exc, SigningError):
                raise
            raise SigningError(f"signing failed: {type(exc).__name__}: {exc}", transient=False) from exc
        target.seek(0, io.SEEK_END)
        target.write(data)
        return target


GC_AFTER_SIGNING_BYTES = 4 * 1024 * 1024
"""From this PDF size on, :meth:`ArchiveSigner.sign_file` runs the cyclic garbage collector
after signing (pyHanko's reference cycles grow with the document)."""

_TAIL_BYTES = 4 * 1024 * 1024
"""How far from the end of a signed PDF our signature's ``/ByteRange`` is looked for."""


def _signature_timestamp_in(signed: BinaryIO) -> tuple[datetime | None, str | None]:
    """:func:`_signature_timestamp` on a signed PDF in a seekable file, reading only its last
    :data:`_TAIL_BYTES` (the ``/ByteRange`` offsets are absolute; the tail is padded)."""
    try:
        size = signed.seek(0, io.SEEK_END)
        base = max(0, size - _TAIL_BYTES)
        signed.seek(base)
        tail = signed.read()
    except OSError:
        return None, None
    return _signature_timestamp(tail, base)


_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def _signature_timestamp(signed_pdf: bytes, base: int = 0) -> tuple[datetime | None, str | None]:
    """``genTime`` and the TSA certificate's subject (RFC 4514) of the signature-timestamp token
    (RFC 3161 TSTInfo) of the signature we just made, or ``(None, None)``.

    Reads the CMS straight from the gap of the ``/ByteRange`` (ISO 32000-1 §12.8.1) rather than
    re-parsing the PDF. Our signature is the first ``/ETSI.CAdES.detached`` one whose CMS holds a
    signature-timestamp token; a B-LTA document timestamp after it is a bare token, skipped.
    ``signed_pdf`` may be the end of the file only, starting at file offset ``base``.
    """
    try:
        for match in _BYTE_RANGE.finditer(signed_pdf, max(0, len(signed_pdf) - _TAIL_BYTES)):
            start, length, end = int(match[1]) - base, int(match[2]), int(match[3]) - base
            if start + length < 0:
                continue  # a signature before the tail we read
            contents = signed_pdf[start + length : end].strip().strip(b"<>")
            signed_data = cms.ContentInfo.load(bytes.fromhex(contents.decode("ascii")), strict=False)[
                "content"
            ]
            for signer_info in signed_data["signer_infos"]:
                for token in find_cms_attribute_iter(
                    signer_info["unsigned_attrs"], "signature_time_stamp_token"
                ):
                    return _token_facts(token)
    except Exception:  # the signature is already made; a failed read-back is not an error
        return None, None
    return None, None


def _token_facts(token: cms.ContentInfo) -> tuple[datetime | None, str | None]:
    content = token["content"]
    gen_time = content["encap_content_info"]["content"].parsed["gen_time"].native
    name = None
    sid = content["signer_infos"][0]["sid"]
    for choice in content["certificates"] or []:
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number" and cert.issuer_serial == (
            sid.chosen["issuer"].sha256 + b":" + str(sid.chosen["serial_number"].native).encode()
        ):
            name = x509.load_der_x509_certificate(cert.dump()).subject.rfc4514_string()
            break
        if sid.name == "subject_key_identifier" and cert.key_identifier == sid.chosen.native:
            name = x509.load_der_x509_certificate(cert.dump()).subject.rfc4514_string()
            break
    if name is None:
        tsa = content["encap_content_info"]["content"].parsed["tsa"]
        if tsa.native is not None:
            name = str(tsa.native)
    return gen_time, name


class UnsignedPassthrough:
    """Stand-in :class:`~app.workflow.ports.SignerPort` when signing is disabled: returns the PDF as is."""

    async def sign(self, pdf: bytes) -> SignedPdf:
        """Returns ``SignedPdf(data=pdf, signed=False)``; never raises."""
        return SignedPdf(data=pdf, signed=False)

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        """Returns ``SignedPdf(signed=False, path=source)``: the unsigned file is the result
        (``target`` is not created); never raises."""
        return SignedPdf(data=b"", signed=False, path=Path(source))
