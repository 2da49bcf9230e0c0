"""What each signature is asked to be: the PAdES level and the signature dictionary's options.

Levels follow ETSI EN 319 142-1 §6 (PAdES baseline B-B, B-T, B-LT, B-LTA); the options map onto
pyHanko's ``PdfSignatureMetadata`` and the signature dictionary of ISO 32000-1 §12.8.1.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from app.errors import ConfigError

__all__ = ["DEFAULT_BYTES_RESERVED", "PadesLevel", "SigningOptions"]

#: Hex characters reserved for the CMS in ``/Contents`` (DER size × 2). A B-T CMS with an
#: RSA-3072 signer, the root, and an ``openssl ts`` token (RSA-3072 TSA + root, 3.1 KB) is 6.2 KB of
#: DER = 12.3 K hex, which leaves only 2 KB in 16384. Public TSAs embed 2–3 certificates (often
#: RSA-4096), so the default doubles that; the cost is ~16 KB of zero padding per PDF.
DEFAULT_BYTES_RESERVED = 32768


class PadesLevel(enum.StrEnum):
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
        """Whether the level needs an RFC 3161 TSA (B-T and up)."""
        return self is not PadesLevel.B_B

    @property
    def needs_validation_data(self) -> bool:
        """Whether the level embeds validation data, which needs trust roots (B-LT, B-LTA)."""
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
            every signature fail with a permanent :class:`~app.errors.SigningError`.
        md_algorithm: message digest for the document hash and the CMS signed attributes
            (``"sha256"``, ``"sha384"``, ``"sha512"``).

    Raises:
        ConfigError: an empty field name or one with ``.``, an odd or too small
            ``bytes_reserved`` (< 2048), or a digest algorithm cryptography does not know.
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
        except (AttributeError, TypeError, ValueError):  # an unknown name, or one needing parameters
            raise ConfigError(f"unsupported digest algorithm {self.md_algorithm!r}") from None
