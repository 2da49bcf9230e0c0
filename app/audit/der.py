"""A minimal DER reader for the parts of CMS ``SignedData`` and RFC 3161 ``TSTInfo`` the audit needs.

It reads tag-length-value triples by offset into the original bytes (no copies, no objects
per node) and extracts, for one SignerInfo: the certificates' DER, the signer identifier,
the algorithms, the signed attributes' exact DER, each attribute's values, the signature
value and the unsigned attributes (RFC 5652 §5). It accepts only what DER allows and what our
archives and RFC 3161 tokens use — one-byte tags, definite lengths — and raises
:class:`Unsupported` for anything else, so the caller falls back to asn1crypto and pyHanko.
Kept for ``make bench`` audit: "audit --jobs 1 / sha256sum, files/s".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
INTEGER = 0x02
OCTET_STRING = 0x04
GENERALIZED_TIME = 0x18
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_1 = 0xA1
CONTEXT_0_PRIMITIVE = 0x80


class Unsupported(ValueError):
    """Not DER this reader handles (the caller uses the general parser instead)."""


def oid_bytes(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (X.690 §8.19), e.g. for comparisons."""
    first, second, *rest = (int(a) for a in dotted.split("."))
    out = bytearray()
    for arc in (first * 40 + second, *rest):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at ``pos``: ``(tag, content start, content end)``.

    Raises:
        Unsupported: a multi-byte tag, an indefinite or over-long length, or an element
            running past ``end``.
    """
    if pos + 2 > end:
        raise Unsupported("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise Unsupported("multi-byte tag")
    first = data[pos + 1]
    if first < 0x80:
        start = pos + 2
        stop = start + first
    elif first == 0x80 or first > 0x84:
        raise Unsupported("indefinite or over-long length")
    else:
        count = first & 0x7F
        start = pos + 2 + count
        stop = start + int.from_bytes(data[pos + 2 : start], "big")
    if stop > end:
        raise Unsupported("element runs past its parent")
    return tag, start, stop


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside ``[start, end)``: ``(tag, content start, content end, element start)``."""
    found = []
    pos = start
    while pos < end:
        tag, s, e = tlv(data, pos, end)
        found.append((tag, s, e, pos))
        pos = e
    return found


def expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Content bounds of the element at ``pos``, which must have ``tag``."""
    found, s, e = tlv(data, pos, end)
    if found != tag:
        raise Unsupported(f"tag 0x{found:02x}, expected 0x{tag:02x}")
    return s, e


@dataclass(frozen=True, slots=True)
class SignerFields:
    """One SignerInfo of a ``SignedData``, as byte slices of the original DER.

    Attributes:
        content_type: content octets of the eContentType OID.
        content: the eContent octets (``None`` for detached content).
        certificates: DER of each certificate in ``certificates`` (other choices skipped).
        sid_issuer, sid_serial: the IssuerAndSerialNumber (issuer Name DER, serial content
            octets), or ``None``.
        sid_key_id: the subjectKeyIdentifier, or ``None``.
        digest_algorithm: content octets of the digest algorithm OID.
        digest_parameters: DER of its parameters (``b""`` when absent).
        signed_attrs: the signed attributes' DER exactly as received (``[0]`` tag included).
        attributes: signed attribute type OID content octets → DER of each value.
        signature_algorithm: content octets of the signature algorithm OID.
        signature_parameters: DER of its parameters (``b""`` when absent).
        signature: the signature value.
        unsigned: unsigned attribute type OID content octets → DER of each value.
    """

    content_type: bytes
    content: bytes | None
    certificates: tuple[bytes, ...]
    sid_issuer: bytes | None
    sid_serial: bytes | None
    sid_key_id: bytes | None
    digest_algorithm: bytes
    digest_parameters: bytes
    signed_attrs: bytes
    attributes: dict[bytes, list[bytes]]
    signature_algorithm: bytes
    signature_parameters: bytes
    signature: bytes
    unsigned: dict[bytes, list[bytes]]


def _algorithm(data: bytes, start: int, end: int) -> tuple[bytes, bytes]:
    parts = children(data, start, end)
    if not parts or parts[0][0] != OID or len(parts) > 2:
        raise Unsupported("not an AlgorithmIdentifier")
    oid = data[parts[0][1] : parts[0][2]]
    params = data[parts[1][3] : parts[1][2]] if len(parts) == 2 else b""
    return oid, params


def _attributes(data: bytes, start: int, end: int) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for tag, s, e, _ in children(data, start, end):
        if tag != SEQUENCE:
            raise Unsupported("an attribute is not a SEQUENCE")
        parts = children(data, s, e)
        if len(parts) != 2 or parts[0][0] != OID or parts[1][0] != SET:
            raise Unsupported("not an Attribute")
        values = found.setdefault(data[parts[0][1] : parts[0][2]], [])
        values.extend(data[p:ve] for _, _, ve, p in children(data, parts[1][1], parts[1][2]))
    return found


def signed_data_fields(der: bytes, content_info: bool = True) -> SignerFields:
    """The fields of the one SignerInfo of a ``ContentInfo`` (or bare ``SignedData``) in ``der``.

    Trailing bytes after the ``ContentInfo`` (the zero padding of a PDF's ``/Contents``) are
    ignored.

    Raises:
        Unsupported: not DER of this shape, or not exactly one SignerInfo.
    """
    end = len(der)
    if content_info:
        s, e = expect(der, 0, end, SEQUENCE)
        parts = children(der, s, e)
        if len(parts) != 2 or parts[0][0] != OID or parts[1][0] != CONTEXT_0:
            raise Unsupported("not a ContentInfo")
        if der[parts[0][1] : parts[0][2]] != OID_SIGNED_DATA:
            raise Unsupported("not SignedData")
        s, e = expect(der, parts[1][1], parts[1][2], SEQUENCE)
    else:
        s, e = expect(der, 0, end, SEQUENCE)
    fields = children(der, s, e)
    # version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
    if len(fields) < 4 or fields[0][0] != INTEGER or fields[1][0] != SET or fields[2][0] != SEQUENCE:
        raise Unsupported("not a SignedData")
    eci = children(der, fields[2][1], fields[2][2])
    if not eci or eci[0][0] != OID or len(eci) > 2:
        raise Unsupported("not an EncapsulatedContentInfo")
    content = None
    if len(eci) == 2:
        if eci[1][0] != CONTEXT_0:
            raise Unsupported("eContent is not [0]")
        cs, ce = expect(der, eci[1][1], eci[1][2], OCTET_STRING)
        content = der[cs:ce]
    certificates: list[bytes] = []
    rest = fields[3:]
    if rest and rest[0][0] == CONTEXT_0:
        for tag, _, ce, cp in children(der, rest[0][1], rest[0][2]):
            if tag == SEQUENCE:
                certificates.append(der[cp:ce])
        rest = rest[1:]
    if rest and rest[0][0] == CONTEXT_1:
        rest = rest[1:]
    if len(rest) != 1 or rest[0][0] != SET:
        raise Unsupported("no signerInfos")
    infos = children(der, rest[0][1], rest[0][2])
    if len(infos) != 1 or infos[0][0] != SEQUENCE:
        raise Unsupported(f"{len(infos)} SignerInfos")
    parts = children(der, infos[0][1], infos[0][2])
    if len(parts) < 5 or parts[0][0] != INTEGER:
        raise Unsupported("not a SignerInfo")
    sid_issuer = sid_serial = sid_key_id = None
    tag, s, e, _ = parts[1]
    if tag == SEQUENCE:
        ias = children(der, s, e)
        if len(ias) != 2 or ias[0][0] != SEQUENCE or ias[1][0] != INTEGER:
            raise Unsupported("not an IssuerAndSerialNumber")
        sid_issuer = der[ias[0][3] : ias[0][2]]
        sid_serial = der[ias[1][1] : ias[1][2]]
    elif tag == CONTEXT_0_PRIMITIVE:
        sid_key_id = der[s:e]
    else:
        raise Unsupported("unknown SignerIdentifier")
    if parts[2][0] != SEQUENCE:
        raise Unsupported("no digestAlgorithm")
    digest_algorithm, digest_parameters = _algorithm(der, parts[2][1], parts[2][2])
    index = 3
    signed_attrs = b""
    attributes: dict[bytes, list[bytes]] = {}
    if parts[index][0] == CONTEXT_0:
        signed_attrs = der[parts[index][3] : parts[index][2]]
        attributes = _attributes(der, parts[index][1], parts[index][2])
        index += 1
    if len(parts) < index + 2 or parts[index][0] != SEQUENCE or parts[index + 1][0] != OCTET_STRING:
        raise Unsupported("no signatureAlgorithm and signature")
    signature_algorithm, signature_parameters = _algorithm(der, parts[index][1], parts[index][2])
    signature = der[parts[index + 1][1] : parts[index + 1][2]]
    unsigned: dict[bytes, list[bytes]] = {}
    tail = parts[index + 2 :]
    if tail:
        if len(tail) != 1 or tail[0][0] != CONTEXT_1:
            raise Unsupported("unexpected SignerInfo fields")
        unsigned = _attributes(der, tail[0][1], tail[0][2])
    return SignerFields(
        content_type=der[eci[0][1] : eci[0][2]],
        content=content,
        certificates=tuple(certificates),
        sid_issuer=sid_issuer,
        sid_serial=sid_serial,
        sid_key_id=sid_key_id,
        digest_algorithm=digest_algorithm,
        digest_parameters=digest_parameters,
        signed_attrs=signed_attrs,
        attributes=attributes,
        signature_algorithm=signature_algorithm,
        signature_parameters=signature_parameters,
        signature=signature,
        unsigned=unsigned,
    )


@dataclass(frozen=True, slots=True)
class TstFields:
    """What the audit needs of an RFC 3161 ``TSTInfo`` (§2.4.2)."""

    imprint_algorithm: bytes
    imprint: bytes
    gen_time: datetime


def tst_info_fields(der: bytes) -> TstFields:
    """``messageImprint`` and ``genTime`` of a DER ``TSTInfo``.

    Raises:
        Unsupported: another shape, or a ``genTime`` this reader does not parse.
    """
    s, e = expect(der, 0, len(der), SEQUENCE)
    parts = children(der, s, e)
    if len(parts) < 5 or parts[2][0] != SEQUENCE or parts[4][0] != GENERALIZED_TIME:
        raise Unsupported("not a TSTInfo")
    imprint = children(der, parts[2][1], parts[2][2])
    if len(imprint) != 2 or imprint[0][0] != SEQUENCE or imprint[1][0] != OCTET_STRING:
        raise Unsupported("not a MessageImprint")
    algorithm, _ = _algorithm(der, imprint[0][1], imprint[0][2])
    gen_time = generalized_time(der[parts[4][1] : parts[4][2]])
    return TstFields(algorithm, der[imprint[1][1] : imprint[1][2]], gen_time)


def generalized_time(octets: bytes) -> datetime:
    """A DER GeneralizedTime (X.690 §11.7: ``YYYYMMDDHHMMSS[.f+]Z``) as an aware UTC datetime.

    Raises:
        Unsupported: another form (an offset, missing seconds).
    """
    text = octets.decode("ascii", "replace")
    if len(text) < 15 or not text.endswith("Z") or not text[:14].isdigit():
        raise Unsupported("genTime is not YYYYMMDDHHMMSS[.f]Z")
    fraction = text[14:-1]
    micro = 0
    if fraction:
        digits = fraction[1:]
        if fraction[0] != "." or not digits.isdigit():
            raise Unsupported("bad fraction in genTime")
        micro = int((digits + "000000")[:6])
    try:
        return datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
            int(text[12:14]), micro, tzinfo=UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise Unsupported(f"genTime out of range: {exc}") from None


OID_SIGNED_DATA = oid_bytes("1.2.840.113549.1.7.2")
