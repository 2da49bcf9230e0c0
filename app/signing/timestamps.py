"""What the signature timestamp of a signature just made says: the TSA's time and name.

Read back from the signed PDF for the note and the sidecar: the CMS (RFC 5652) sits in the gap
of the signature's ``/ByteRange`` (ISO 32000-1 §12.8.1); its signer info carries the RFC 3161
signature-timestamp token (RFC 3161 Appendix A), whose ``TSTInfo`` gives ``genTime``.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from typing import BinaryIO, NamedTuple

from asn1crypto import cms
from cryptography import x509
from pyhanko.sign.general import find_cms_attribute_iter

__all__ = ["TimestampFacts", "signature_timestamp", "signature_timestamp_in"]

TAIL_BYTES = 4 * 1024 * 1024
"""How far from the end of a signed PDF our signature's ``/ByteRange`` is looked for."""

_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


class TimestampFacts(NamedTuple):
    """What a signature-timestamp token says; both ``None`` when there is none (or it is unreadable).

    Attributes:
        time: the token's ``genTime`` (aware datetime).
        authority: the TSA certificate's subject as an RFC 4514 string, else the token's
            ``tsa`` name, else ``None``.
    """

    time: datetime | None
    authority: str | None


NO_TIMESTAMP = TimestampFacts(None, None)


def signature_timestamp_in(signed: BinaryIO) -> TimestampFacts:
    """:func:`signature_timestamp` on a signed PDF in a seekable file, reading only its last
    :data:`TAIL_BYTES` (the ``/ByteRange`` offsets are absolute; the tail is padded).

    Never raises: a file that cannot be read gives ``(None, None)``.
    """
    try:
        size = signed.seek(0, io.SEEK_END)
        base = max(0, size - TAIL_BYTES)
        signed.seek(base)
        tail = signed.read()
    except OSError:
        return NO_TIMESTAMP
    return signature_timestamp(tail, base)


def signature_timestamp(signed_pdf: bytes, base: int = 0) -> TimestampFacts:
    """``genTime`` and the TSA's name from the signature-timestamp token (RFC 3161 TSTInfo) of
    the signature we just made, or ``(None, None)``.

    Reads the CMS straight from the gap of the ``/ByteRange`` rather than re-parsing the PDF.
    Our signature is the first ``/ETSI.CAdES.detached`` one whose CMS holds a
    signature-timestamp token; a B-LTA document timestamp after it is a bare token, skipped.

    Args:
        signed_pdf: the signed PDF, or its end only (then starting at file offset ``base``).
        base: the file offset of ``signed_pdf[0]``.

    Never raises: the signature is already made, and a failed read-back is not an error.
    """
    try:
        for match in _BYTE_RANGE.finditer(signed_pdf, max(0, len(signed_pdf) - TAIL_BYTES)):
            start, length, end = int(match[1]) - base, int(match[2]), int(match[3]) - base
            if start + length < 0:
                continue  # a signature before the tail we read
            contents = signed_pdf[start + length : end].strip().strip(b"<>")
            der = bytes.fromhex(contents.decode("ascii"))
            signed_data = cms.ContentInfo.load(der, strict=False)["content"]
            for signer_info in signed_data["signer_infos"]:
                for token in find_cms_attribute_iter(
                    signer_info["unsigned_attrs"], "signature_time_stamp_token"
                ):
                    return _token_facts(token)
    except Exception:  # noqa: BLE001 - asn1crypto raises many types on odd bytes; read-back is best effort
        return NO_TIMESTAMP
    return NO_TIMESTAMP


def _token_facts(token: cms.ContentInfo) -> TimestampFacts:
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
    return TimestampFacts(gen_time, name)
