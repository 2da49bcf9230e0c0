"""The signing key: loaded once from a PFX, its certificate checked, kept parsed for every signature.

A PFX is PKCS#12 (RFC 7292); the certificate checks follow RFC 5280 (§4.1.2.5 validity,
§4.2.1.3 key usage) and pyHanko's default validation policy, which requires non-repudiation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import cms
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.keys.internal import (
    translate_pyca_cryptography_cert_to_asn1,
    translate_pyca_cryptography_key_to_asn1,
)
from pyhanko.sign import signers
from pyhanko.sign.attributes import CMSAttributeProvider, SigningCertificateV2Provider
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from app.errors import SigningError

__all__ = ["CachedKeySigner", "SigningKey", "check_signing_certificate", "load_signing_key"]


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


def load_signing_key(pfx_bytes: bytes, password: bytes | str | None) -> SigningKey:
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
    except (ValueError, TypeError):
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
    except Exception:  # noqa: BLE001 - asn1crypto raises many types on arbitrary bytes; any means "no"
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
    cryptography's RSA consistency check then holds the GIL for tens of milliseconds, stalling
    the event loop. This subclass signs RSA PKCS#1 v1.5 (RFC 8017 §8.2) with the cached key
    and falls back to the stock path for every other mechanism (PSS, ECDSA, …).

    Kept for `make bench` sign: "RSA-3072: stock / ours" and "longest event-loop stall while
    signing (ours)".
    """

    def __init__(self, *args: Any, pyca_key: PrivateKeyTypes, **kwargs: Any) -> None:
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

    def _signed_attr_providers(self, *args: Any, **kwargs: Any) -> Iterator[CMSAttributeProvider]:
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

    async def build_attr_value(self, dry_run: bool = False) -> Any:
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
