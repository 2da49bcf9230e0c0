"""The CMS check of :mod:`app.audit.cms_check` through asn1crypto's full parser and pyHanko.

Used for what the DER reader (:mod:`app.audit.der`) does not take: BER encodings, names
that match only when compared as names (RFC 5280 §7.1), RSASSA-PSS, a CMS
algorithm-protection attribute (RFC 6211), other mechanisms (pyHanko's
``validate_sig_integrity``). Same checks, same verdict type, several times slower.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, cms, core, tsp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.audit.cms_types import (
    HASHES,
    OID_ALGORITHM_PROTECTION,
    OID_CONTENT_TIMESTAMP,
    OID_CONTENT_TYPE,
    OID_MESSAGE_DIGEST,
    OID_SIGNATURE_TIMESTAMP,
    OID_SIGNING_CERTIFICATE,
    OID_SIGNING_CERTIFICATE_V2,
    CertificateCache,
    CmsError,
    CmsVerdict,
    KnownCertificate,
    verify_raw,
)


def _attributes(signed_attrs: cms.CMSAttributes) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for attribute in signed_attrs:
        values = attribute["values"]
        found.setdefault(attribute["type"].dotted, []).extend(values)
    return found


def _unsigned_values(signer_info: cms.SignerInfo, oid: str) -> list[Any]:
    """The values of the unsigned attribute ``oid`` (e.g. :data:`OID_SIGNATURE_TIMESTAMP`)."""
    attrs = signer_info["unsigned_attrs"]
    if isinstance(attrs, core.Void):
        return []
    return _attributes(attrs).get(oid, [])


def _one(attrs: dict[str, list[Any]], oid: str, name: str, *, required: bool) -> Any:
    values = attrs.get(oid, [])
    if len(values) > 1:
        raise CmsError(f"{len(values)} {name} attributes, expected one")
    if not values:
        if required:
            raise CmsError(f"no {name} attribute")
        return None
    return values[0]


def _find_signer(signed_data: cms.SignedData, sid: cms.SignerIdentifier, cache: CertificateCache):
    by_serial = sid.name == "issuer_and_serial_number"
    if by_serial:
        wanted_issuer = sid.chosen["issuer"].dump()
        wanted_serial = sid.chosen["serial_number"].native
    else:
        wanted_key = sid.chosen.native
    known_certs = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            known_certs.append(cache.get(choice.chosen.dump()))
    signer = None
    for known in known_certs:
        if by_serial:
            if known.serial == wanted_serial and known.issuer_der == wanted_issuer:
                signer = known
                break
        elif known.key_identifier == wanted_key:
            signer = known
            break
    if signer is None and by_serial:  # differently encoded but equal names (RFC 5280 §7.1)
        issuer = sid.chosen["issuer"]
        for known in known_certs:
            if known.serial == wanted_serial and known.cert.issuer == issuer:
                signer = known
                break
    if signer is None:
        raise CmsError("the signer's certificate is not in the signature")
    others = tuple(k.cert for k in known_certs if k is not signer)
    return signer, others


def _check_ess(attrs: dict[str, list[Any]], signer: KnownCertificate) -> None:
    value = _one(attrs, OID_SIGNING_CERTIFICATE_V2, "signing-certificate-v2", required=False)
    algorithm = None
    if value is not None:
        cert_id = value["certs"][0]
        algorithm = cert_id["hash_algorithm"]["algorithm"].native
    else:
        value = _one(attrs, OID_SIGNING_CERTIFICATE, "signing-certificate", required=False)
        if value is None:
            return  # no constraint (pyHanko alike)
        cert_id = value["certs"][0]
        algorithm = "sha1"
    der = signer.cert.dump()
    if hashlib.new(algorithm, der).digest() != cert_id["cert_hash"].native:
        raise CmsError(
            f"the signing-certificate attribute does not name the signer's certificate {signer.subject!r}"
        )
    issuer_serial = cert_id["issuer_serial"]
    if isinstance(issuer_serial, core.Void):
        return
    if issuer_serial["serial_number"].native != signer.serial:
        raise CmsError("the signing-certificate attribute names another serial number")
    names = [n.chosen for n in issuer_serial["issuer"] if n.name == "directory_name"]
    # [4] EXPLICIT around the Name: compare the SEQUENCE's contents, then as names (RFC 5280 §7.1).
    if not any(n.contents == signer.issuer_contents or n == signer.cert.issuer for n in names):
        raise CmsError("the signing-certificate attribute names another issuer")


def _check_algorithm_protection(attrs: dict[str, list[Any]], signer_info: cms.SignerInfo) -> None:
    value = _one(attrs, OID_ALGORITHM_PROTECTION, "CMS algorithm protection", required=False)
    if value is None:
        return
    if value["digest_algorithm"].native != signer_info["digest_algorithm"].native:
        raise CmsError("the digest algorithm differs from the CMS algorithm protection attribute")
    protected = value["signature_algorithm"]
    if protected.native is None or protected.native != signer_info["signature_algorithm"].native:
        raise CmsError("the signature algorithm differs from the CMS algorithm protection attribute")


#: asn1crypto's signature algorithm names → :func:`~app.audit.cms_types.verify_raw`'s mechanisms.
_MECHANISMS = {"rsassa_pkcs1v15": "rsa", "ecdsa": "ecdsa", "ed25519": "eddsa", "ed448": "eddsa"}


def _verify_value(
    public_key: Any,
    signature: bytes,
    data: bytes,
    mechanism: algos.SignedDigestAlgorithm,
    digest_algorithm: str,
) -> bool | None:
    """``True``/``False`` from ``cryptography``, or ``None`` when the mechanism is not one
    handled here (the caller then asks pyHanko)."""
    algo = mechanism.signature_algo
    try:
        hash_name = mechanism.hash_algo
    except ValueError:  # e.g. plain rsaEncryption: the digest algorithm decides
        hash_name = digest_algorithm
    if algo != "rsassa_pss":
        return verify_raw(public_key, signature, data, _MECHANISMS.get(algo, ""), hash_name)
    if not isinstance(public_key, rsa.RSAPublicKey):
        return None
    params = mechanism["parameters"]
    pss_hash = HASHES.get(params["hash_algorithm"]["algorithm"].native)
    mgf = params["mask_gen_algorithm"]
    mgf_hash = HASHES.get(mgf["parameters"]["algorithm"].native)
    if mgf["algorithm"].native != "mgf1" or pss_hash is None or mgf_hash is None:
        return None
    pss = padding.PSS(mgf=padding.MGF1(mgf_hash()), salt_length=params["salt_length"].native)
    try:
        public_key.verify(signature, data, pss, pss_hash())
    except InvalidSignature:
        return False
    return True


def verify_signed_data(
    der: bytes,
    digest_of: Callable[[str], bytes] | None,
    expected_content_type: str,
    cache: CertificateCache,
) -> CmsVerdict:
    """Check the one SignerInfo of the CMS ``ContentInfo`` in ``der`` (see
    :mod:`app.audit.cms_check`).

    Args:
        der: the ``ContentInfo`` (trailing zero padding is ignored).
        digest_of: the detached content's digest for an algorithm name; ``None`` when the
            content is encapsulated (a timestamp token), which is then hashed here.
        expected_content_type: the dotted OID the content-type attribute must name
            (:data:`OID_DATA`, :data:`OID_TST_INFO`).
        cache: the run's parsed certificates.

    Raises:
        CmsError: the structure is not checkable (the message says what is wrong).
    """
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise CmsError("not a CMS SignedData")
        signed_data = info["content"]
        infos = signed_data["signer_infos"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsError(f"not a CMS SignedData: {exc}") from exc
    if len(infos) != 1:
        raise CmsError(f"{len(infos)} SignerInfos, expected exactly one")
    signer_info = infos[0]
    signer, others = _find_signer(signed_data, signer_info["sid"], cache)
    digest_algorithm = signer_info["digest_algorithm"]["algorithm"].native
    encapsulated = signed_data["encap_content_info"]
    if encapsulated["content_type"].dotted != expected_content_type:
        raise CmsError(
            f"content type {encapsulated['content_type'].native}, expected {expected_content_type}"
        )
    content = encapsulated["content"]
    if digest_of is None:
        if isinstance(content, core.Void):
            raise CmsError("no encapsulated content")
        try:
            actual = hashlib.new(digest_algorithm, bytes(content)).digest()
        except ValueError as exc:
            raise CmsError(f"unsupported digest algorithm {digest_algorithm}") from exc
    else:
        if not isinstance(content, core.Void):
            raise CmsError("a detached signature must not encapsulate content")
        actual = digest_of(digest_algorithm)
    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, core.Void):
        raise CmsError("no signed attributes")
    # The DER as received, taken before any attribute is parsed: asn1crypto rewrites some
    # values it parses (NULL algorithm parameters), and dump() would then re-encode them.
    encoded = signed_attrs.dump()
    attrs = _attributes(signed_attrs)
    content_type = _one(attrs, OID_CONTENT_TYPE, "content-type", required=True)
    if content_type.dotted != expected_content_type:
        raise CmsError(f"the content-type attribute names {content_type.native}")
    embedded = _one(attrs, OID_MESSAGE_DIGEST, "message-digest", required=True).native
    _check_ess(attrs, signer)
    _check_algorithm_protection(attrs, signer_info)
    to_verify = b"\x31" + encoded[1:]  # [0] IMPLICIT → SET OF (RFC 5652 §5.4)
    signature = signer_info["signature"].native
    valid = None
    if signer.public_key is not None:
        valid = _verify_value(
            signer.public_key, signature, to_verify, signer_info["signature_algorithm"], digest_algorithm
        )
    if valid is None:
        from pyhanko.sign.validation.generic_cms import validate_sig_integrity

        _, valid = validate_sig_integrity(
            signer_info, signer.cert, expected_content_type=content_type.native, actual_digest=actual
        )
    return CmsVerdict(
        signer,
        others,
        digest_algorithm,
        embedded == actual,
        valid,
        signature,
        tuple(v.dump() for v in _unsigned_values(signer_info, OID_SIGNATURE_TIMESTAMP)),
        tuple(v.dump() for v in attrs.get(OID_CONTENT_TIMESTAMP, [])),
        bytes(content) if not isinstance(content, core.Void) else None,
        general=True,
    )


def tst_info(content: bytes) -> tuple[str, bytes, Any]:
    """``(imprint hash algorithm name, imprint, genTime)`` of a TSTInfo's DER.

    Raises:
        CmsError: not a TSTInfo.
    """
    try:
        parsed = tsp.TSTInfo.load(content)
        imprint = parsed["message_imprint"]
        return (
            imprint["hash_algorithm"]["algorithm"].native,
            imprint["hashed_message"].native,
            parsed["gen_time"].native,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsError(f"not a TSTInfo: {exc}") from exc
