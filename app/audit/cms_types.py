"""What the audit's CMS checks share: OIDs, parsed certificates and the verdict."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
OID_ALGORITHM_PROTECTION = "1.2.840.113549.1.9.52"
OID_SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
OID_CONTENT_TIMESTAMP = "1.2.840.113549.1.9.16.2.20"
OID_DATA = "1.2.840.113549.1.7.1"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_224": hashes.SHA3_224,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}


class CmsError(ValueError):
    """The ``SignedData`` cannot be checked as it is (structure, unknown algorithm, no signer)."""


@dataclass(frozen=True, slots=True)
class KnownCertificate:
    """A certificate parsed once: what the checks need of it.

    Attributes:
        cert: the asn1crypto certificate (for path validation).
        der: its DER encoding.
        sha256: SHA-256 of its DER encoding.
        issuer_der, issuer_contents, serial, serial_octets: its issuer name (DER, and
            without the SEQUENCE header) and serial number (and its INTEGER content octets).
        key_identifier: its subject key identifier, if any.
        public_key: the ``cryptography`` public key (``None`` when unsupported).
    """

    cert: x509.Certificate
    der: bytes
    sha256: bytes
    issuer_der: bytes
    issuer_contents: bytes
    serial: int
    serial_octets: bytes
    key_identifier: bytes | None
    public_key: Any

    @property
    def subject(self) -> str:
        return str(self.cert.subject.human_friendly)

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after


class CertificateCache:
    """Certificates by the SHA-256 of their DER encoding, parsed once each."""

    def __init__(self) -> None:
        self._known: dict[bytes, KnownCertificate] = {}

    def __len__(self) -> int:
        return len(self._known)

    def get(self, der: bytes) -> KnownCertificate:
        """The parsed certificate for ``der``.

        Raises:
            ValueError: ``der`` is not an X.509 certificate.
        """
        fingerprint = hashlib.sha256(der).digest()
        known = self._known.get(fingerprint)
        if known is None:
            cert = x509.Certificate.load(der)
            tbs = cert["tbs_certificate"]
            try:
                public_key = load_der_public_key(tbs["subject_public_key_info"].dump())
            except (ValueError, UnsupportedAlgorithm):
                public_key = None
            known = KnownCertificate(
                cert=cert,
                der=der,
                sha256=fingerprint,
                issuer_der=tbs["issuer"].dump(),
                issuer_contents=tbs["issuer"].contents,
                serial=tbs["serial_number"].native,
                serial_octets=tbs["serial_number"].contents,
                key_identifier=cert.key_identifier,
                public_key=public_key,
            )
            self._known[fingerprint] = known
        return known


@dataclass(frozen=True, slots=True)
class CmsVerdict:
    """The outcome of a CMS check (:func:`app.audit.cms_check.verify_cms`).

    Attributes:
        signer: the signer's certificate.
        others: the ``SignedData``'s other certificates (helpers for path building).
        digest_algorithm: the SignerInfo's digest algorithm name (``"sha256"`` ...).
        intact: the message-digest attribute equals the content's digest.
        valid: the signature value verifies with the signer's key.
        signature: the signature value (a signature timestamp's imprint covers it).
        signature_timestamps: DER ``ContentInfo`` of each signature-timestamp token.
        content_timestamps: DER ``ContentInfo`` of each content-timestamp token.
        content: the encapsulated content (a timestamp token's TSTInfo DER), ``None`` when detached.
        general: whether asn1crypto's general parser was needed (statistics).
    """

    signer: KnownCertificate
    others: tuple[x509.Certificate, ...]
    digest_algorithm: str
    intact: bool
    valid: bool
    signature: bytes
    signature_timestamps: tuple[bytes, ...]
    content_timestamps: tuple[bytes, ...]
    content: bytes | None
    general: bool = False


def verify_raw(key: Any, signature: bytes, data: bytes, mechanism: str, hash_name: str) -> bool | None:
    """Check a raw signature value with ``cryptography``: ``True`` or ``False``, or ``None``
    when ``key`` and ``mechanism`` do not fit or the hash is not one of :data:`HASHES`.

    Args:
        key: the signer's public key (a ``cryptography`` key object).
        mechanism: ``"rsa"`` (PKCS #1 v1.5, RFC 8017 §8.2), ``"ecdsa"`` or ``"eddsa"``
            (RFC 8032; no separate hash).
        hash_name: the digest algorithm's name (``"sha256"``, …) for RSA and ECDSA.
    """
    hash_class = HASHES.get(hash_name)
    try:
        if mechanism == "rsa" and isinstance(key, rsa.RSAPublicKey) and hash_class is not None:
            key.verify(signature, data, padding.PKCS1v15(), hash_class())
        elif mechanism == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey) and hash_class is not None:
            key.verify(signature, data, ec.ECDSA(hash_class()))
        elif mechanism == "eddsa" and isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return None
    except InvalidSignature:
        return False
    return True
