"""Does a CMS ``SignedData`` verify over given content? The audit's signature-value check.

For one SignerInfo (RFC 5652 §5.3) over detached content (a PDF byte range) or over its
encapsulated content (an RFC 3161 TSTInfo):

1. the signer's certificate is the one of the ``SignedData``'s certificates its ``sid``
   names (issuer and serial number, or subject key identifier);
2. the eContentType and the signed attributes' one content-type attribute are the expected
   type; the one message-digest attribute equals the content's digest (RFC 5652 §11.1,
   §11.2); a signing-certificate(-v2) attribute, when present, names the signer's
   certificate in its first ESSCertID (RFC 2634 §5.4, RFC 5035);
3. the signature value verifies over the DER of the signed attributes (as a ``SET OF``) with
   the certificate's public key.

These are the checks pyHanko makes in ``generic_cms.validate_sig_integrity`` and
``_check_signing_certificate`` (the audit's tests compare the verdicts). The common case —
DER, RSA PKCS#1 v1.5, ECDSA or EdDSA — is read with :mod:`app.audit.der` and verified with
``cryptography`` directly; everything else goes to :mod:`app.audit.cms_general`
(asn1crypto and pyHanko). Certificates are parsed once per distinct DER encoding
(:class:`~app.audit.cms_types.CertificateCache`). Kept for ``make bench`` audit: "audit --jobs 1 /
sha256sum, files/s".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.audit import cms_general
from app.audit.cms_types import (
    OID_ALGORITHM_PROTECTION,
    OID_CONTENT_TIMESTAMP,
    OID_CONTENT_TYPE,
    OID_DATA,
    OID_MESSAGE_DIGEST,
    OID_SIGNATURE_TIMESTAMP,
    OID_SIGNING_CERTIFICATE,
    OID_SIGNING_CERTIFICATE_V2,
    OID_TST_INFO,
    CertificateCache,
    CmsError,
    CmsVerdict,
    KnownCertificate,
    verify_raw,
)
from app.audit.der import (
    CONTEXT_0,
    INTEGER,
    OCTET_STRING,
    OID,
    SEQUENCE,
    SignerFields,
    Unsupported,
    children,
    expect,
    oid_bytes,
    signed_data_fields,
    tlv,
    tst_info_fields,
)

__all__ = [
    "OID_DATA",
    "OID_TST_INFO",
    "CertificateCache",
    "CmsError",
    "CmsVerdict",
    "read_signer",
    "verify_cms",
]

_DIGESTS = {
    oid_bytes("1.3.14.3.2.26"): "sha1",
    oid_bytes("2.16.840.1.101.3.4.2.4"): "sha224",
    oid_bytes("2.16.840.1.101.3.4.2.1"): "sha256",
    oid_bytes("2.16.840.1.101.3.4.2.2"): "sha384",
    oid_bytes("2.16.840.1.101.3.4.2.3"): "sha512",
    oid_bytes("2.16.840.1.101.3.4.2.8"): "sha3_256",
    oid_bytes("2.16.840.1.101.3.4.2.9"): "sha3_384",
    oid_bytes("2.16.840.1.101.3.4.2.10"): "sha3_512",
}
# signature algorithm OID → (mechanism, hash named by the OID or None: the digest algorithm's)
_MECHANISMS: dict[bytes, tuple[str, str | None]] = {
    oid_bytes("1.2.840.113549.1.1.1"): ("rsa", None),
    oid_bytes("1.2.840.113549.1.1.5"): ("rsa", "sha1"),
    oid_bytes("1.2.840.113549.1.1.14"): ("rsa", "sha224"),
    oid_bytes("1.2.840.113549.1.1.11"): ("rsa", "sha256"),
    oid_bytes("1.2.840.113549.1.1.12"): ("rsa", "sha384"),
    oid_bytes("1.2.840.113549.1.1.13"): ("rsa", "sha512"),
    oid_bytes("1.2.840.10045.4.3.1"): ("ecdsa", "sha224"),
    oid_bytes("1.2.840.10045.4.3.2"): ("ecdsa", "sha256"),
    oid_bytes("1.2.840.10045.4.3.3"): ("ecdsa", "sha384"),
    oid_bytes("1.2.840.10045.4.3.4"): ("ecdsa", "sha512"),
    oid_bytes("1.3.101.112"): ("eddsa", None),
    oid_bytes("1.3.101.113"): ("eddsa", None),
}
_NULL = b"\x05\x00"
_CONTENT_TYPE = oid_bytes(OID_CONTENT_TYPE)
_MESSAGE_DIGEST = oid_bytes(OID_MESSAGE_DIGEST)
_ESS_V1 = oid_bytes(OID_SIGNING_CERTIFICATE)
_ESS_V2 = oid_bytes(OID_SIGNING_CERTIFICATE_V2)
_ALGORITHM_PROTECTION = oid_bytes(OID_ALGORITHM_PROTECTION)
_SIGNATURE_TIMESTAMP = oid_bytes(OID_SIGNATURE_TIMESTAMP)
_CONTENT_TIMESTAMP = oid_bytes(OID_CONTENT_TIMESTAMP)
_DIRECTORY_NAME = 0xA4
_CONTENT_TYPES = {OID_DATA: oid_bytes(OID_DATA), OID_TST_INFO: oid_bytes(OID_TST_INFO)}


def read_signer(der: bytes) -> tuple[SignerFields | None, str | None]:
    """The DER reader's fields of a CMS ``ContentInfo`` and its SignerInfo's digest algorithm
    (``"sha256"`` ...); ``(None, None)`` when the DER reader does not take it."""
    try:
        fields = signed_data_fields(der)
    except Unsupported:
        return None, None
    return fields, _DIGESTS.get(fields.digest_algorithm)


def verify_cms(
    der: bytes,
    digest_of: Callable[[str], bytes] | None,
    expected_content_type: str,
    cache: CertificateCache,
    fields: SignerFields | None = None,
) -> CmsVerdict:
    """Check the one SignerInfo of the CMS ``ContentInfo`` in ``der`` (see the module docstring).

    Args:
        der: the ``ContentInfo`` (trailing zero padding, as in a PDF's ``/Contents``, is ignored).
        digest_of: the detached content's digest for a hash algorithm name; ``None`` when the
            content is encapsulated (a timestamp token), which is then hashed here.
        expected_content_type: dotted OID: :data:`OID_DATA` or :data:`OID_TST_INFO`.
        cache: the run's parsed certificates.
        fields: ``der`` as :func:`read_signer` read it already.

    Raises:
        CmsError: it cannot be checked (the message says what is wrong).
    """
    try:
        return _verify_fast(fields or signed_data_fields(der), digest_of, expected_content_type, cache)
    except Unsupported:
        return cms_general.verify_signed_data(der, digest_of, expected_content_type, cache)


def timestamp_facts(content: bytes) -> tuple[str, bytes, datetime]:
    """``(imprint hash algorithm, imprint, genTime)`` of a TSTInfo's DER (RFC 3161 §2.4.2).

    Raises:
        CmsError: not a TSTInfo, or an unknown imprint algorithm.
    """
    try:
        fields = tst_info_fields(content)
    except Unsupported:
        return cms_general.tst_info(content)
    algorithm = _DIGESTS.get(fields.imprint_algorithm)
    if algorithm is None:
        return cms_general.tst_info(content)
    return algorithm, fields.imprint, fields.gen_time


def _single(fields: SignerFields, oid: bytes, name: str, *, required: bool) -> bytes | None:
    values = fields.attributes.get(oid, [])
    if len(values) > 1:
        raise CmsError(f"{len(values)} {name} attributes, expected one")
    if not values:
        if required:
            raise CmsError(f"no {name} attribute")
        return None
    return values[0]


def _find_signer(fields: SignerFields, cache: CertificateCache) -> tuple[KnownCertificate, tuple[Any, ...]]:
    known = [cache.get(der) for der in fields.certificates]
    signer = None
    for cert in known:
        if fields.sid_key_id is not None:
            if cert.key_identifier == fields.sid_key_id:
                signer = cert
                break
        elif cert.serial_octets == fields.sid_serial and cert.issuer_der == fields.sid_issuer:
            signer = cert
            break
    if signer is None:
        raise Unsupported("no byte-equal signer certificate")  # the general path compares names
    return signer, tuple(c.cert for c in known if c is not signer)


def _check_ess(fields: SignerFields, signer: KnownCertificate) -> None:
    value = _single(fields, _ESS_V2, "signing-certificate-v2", required=False)
    v2 = value is not None
    if value is None:
        value = _single(fields, _ESS_V1, "signing-certificate", required=False)
        if value is None:
            return  # no constraint (as pyHanko)
    s, e = expect(value, 0, len(value), SEQUENCE)
    certs = children(value, s, e)
    if not certs or certs[0][0] != SEQUENCE:
        raise Unsupported("not a SigningCertificate")
    ids = children(value, certs[0][1], certs[0][2])
    if not ids or ids[0][0] != SEQUENCE:
        raise Unsupported("no ESSCertID")
    parts = children(value, ids[0][1], ids[0][2])
    algorithm = "sha1"
    if v2:
        algorithm = "sha256"
        if parts and parts[0][0] == SEQUENCE:  # hashAlgorithm, DEFAULT sha256
            alg = children(value, parts[0][1], parts[0][2])
            if not alg or alg[0][0] != OID or alg[0][1] == alg[0][2]:
                raise Unsupported("bad ESSCertIDv2 hashAlgorithm")
            algorithm = _DIGESTS.get(value[alg[0][1] : alg[0][2]], "")
            parts = parts[1:]
        if not algorithm:
            raise Unsupported("unknown ESSCertIDv2 hash")
    if not parts or parts[0][0] != OCTET_STRING:
        raise Unsupported("no certHash")
    cert_hash = signer.sha256 if algorithm == "sha256" else hashlib.new(algorithm, signer.der).digest()
    if cert_hash != value[parts[0][1] : parts[0][2]]:
        raise CmsError(
            f"the signing-certificate attribute does not name the signer's certificate {signer.subject!r}"
        )
    if len(parts) < 2:
        return
    issuer_serial = children(value, parts[1][1], parts[1][2])
    if len(issuer_serial) != 2 or issuer_serial[0][0] != SEQUENCE or issuer_serial[1][0] != INTEGER:
        raise Unsupported("not an IssuerSerial")
    if value[issuer_serial[1][1] : issuer_serial[1][2]] != signer.serial_octets:
        raise CmsError("the signing-certificate attribute names another serial number")
    for tag, ns, ne, _ in children(value, issuer_serial[0][1], issuer_serial[0][2]):
        if tag == _DIRECTORY_NAME:
            _, name_start, name_end = tlv(value, ns, ne)
            if value[name_start:name_end] == signer.issuer_contents:
                return
    raise Unsupported("issuer not byte-equal")  # the general path compares names


def _verify_value(key: Any, signature: bytes, data: bytes, mechanism: str, hash_name: str) -> bool:
    valid = verify_raw(key, signature, data, mechanism, hash_name)
    if valid is None:
        raise Unsupported("key and mechanism do not fit")
    return valid


def _verify_fast(
    fields: SignerFields,
    digest_of: Callable[[str], bytes] | None,
    expected_content_type: str,
    cache: CertificateCache,
) -> CmsVerdict:
    expected = _CONTENT_TYPES.get(expected_content_type) or oid_bytes(expected_content_type)
    if fields.content_type != expected:
        raise CmsError(f"content type is not {expected_content_type}")
    digest_algorithm = _DIGESTS.get(fields.digest_algorithm)
    mechanism = _MECHANISMS.get(fields.signature_algorithm)
    if digest_algorithm is None or mechanism is None:
        raise Unsupported("algorithm not handled here")
    if fields.digest_parameters not in (b"", _NULL) or fields.signature_parameters not in (b"", _NULL):
        raise Unsupported("algorithm parameters")
    if not fields.signed_attrs:
        raise CmsError("no signed attributes")
    if _ALGORITHM_PROTECTION in fields.attributes:
        raise Unsupported("CMS algorithm protection attribute")
    signer, others = _find_signer(fields, cache)
    if digest_of is None:
        if fields.content is None:
            raise CmsError("no encapsulated content")
        actual = hashlib.new(digest_algorithm, fields.content).digest()
    else:
        if fields.content is not None:
            raise CmsError("a detached signature must not encapsulate content")
        actual = digest_of(digest_algorithm)
    content_type = _single(fields, _CONTENT_TYPE, "content-type", required=True)
    assert content_type is not None
    s, e = expect(content_type, 0, len(content_type), OID)
    if content_type[s:e] != expected:
        raise CmsError("the content-type attribute names another type")
    digest_value = _single(fields, _MESSAGE_DIGEST, "message-digest", required=True)
    assert digest_value is not None
    s, e = expect(digest_value, 0, len(digest_value), OCTET_STRING)
    embedded = digest_value[s:e]
    _check_ess(fields, signer)
    if signer.public_key is None:
        raise Unsupported("public key type")
    signed = b"\x31" + fields.signed_attrs[1:]  # [0] IMPLICIT → SET OF (RFC 5652 §5.4)
    kind, named_hash = mechanism
    if fields.signed_attrs[0] != CONTEXT_0:
        raise Unsupported("signed attributes tag")
    valid = _verify_value(signer.public_key, fields.signature, signed, kind, named_hash or digest_algorithm)
    return CmsVerdict(
        signer=signer,
        others=others,
        digest_algorithm=digest_algorithm,
        intact=embedded == actual,
        valid=valid,
        signature=fields.signature,
        signature_timestamps=tuple(fields.unsigned.get(_SIGNATURE_TIMESTAMP, [])),
        content_timestamps=tuple(fields.attributes.get(_CONTENT_TIMESTAMP, [])),
        content=fields.content,
    )
