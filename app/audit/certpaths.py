"""Certificate-path validation for the audit against the configured trust roots, cached per certificate.

Archives of one service share a handful of certificates (the signer, its issuing CA, the
TSA), so 100,000 archives need a few path validations, not 200,000. A path found valid for a
certificate is kept together with the window in which every certificate on it is within its
validity period; a later check of the same certificate at a moment inside that window is
answered from the cache. A failure that does not depend on the moment (no path to a trust
root, a wrong key usage, a bad certificate signature) is cached too, per certificate and set
of helper certificates; a failure because of the moment (expired, not yet valid) is not.

Validation follows RFC 5280 §6 through pyhanko-certvalidator, with the key usages pyHanko's
default validation policy asks for: nonRepudiation for a signer (``PdfSignatureStatus``),
the critical extended key usage timeStamping for a TSA (RFC 3161 §2.3). Revocation is **not**
checked (no OCSP/CRL fetching, ``soft-fail``): the audit runs offline and repeatedly; B-LT and
B-LTA archives carry their revocation data for a validator that needs it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.path import ValidationPath


class Purpose(enum.Enum):
    """What a certificate is validated for (the key usages required)."""

    SIGNER = "signer"
    """A document signer: keyUsage nonRepudiation (pyHanko's default policy)."""
    TSA = "tsa"
    """An RFC 3161 timestamp authority: extendedKeyUsage timeStamping."""


_USAGES: dict[Purpose, tuple[set[str], set[str] | None]] = {
    Purpose.SIGNER: ({"non_repudiation"}, None),
    Purpose.TSA: (set(), {"time_stamping"}),
}


@dataclass(frozen=True, slots=True)
class PathVerdict:
    """The outcome of validating one certificate at one moment.

    Attributes:
        trusted: a valid path to a trust root exists, with the required key usage.
        problem: why not (``None`` when trusted).
        expires_at: the earliest notAfter on the path (the certificate's own notAfter when no
            path was found): from then on this chain proves nothing new.
    """

    trusted: bool
    problem: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _Valid:
    not_before: datetime
    not_after: datetime


class CertificatePaths:
    """Validates certificates against ``trust_roots``, caching the verdicts (see the module docstring).

    Not thread-safe; one instance per audit run. Runs pyhanko-certvalidator's async API on
    its own event loop (from a thread with a running loop: in a helper thread).

    Args:
        trust_roots: the anchors (``SIGNING_TRUST_ROOTS_PATH``); must not be empty.
    """

    def __init__(self, trust_roots: Sequence[x509.Certificate]) -> None:
        if not trust_roots:
            raise ValueError("at least one trust root is needed")
        self._roots = list(trust_roots)
        self._valid: dict[tuple[bytes, Purpose], _Valid] = {}
        self._failed: dict[tuple[bytes, Purpose, frozenset[bytes]], str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.validations = 0
        """Path validations actually run (cache misses), for the audit's statistics."""

    def close(self) -> None:
        """Close the private event loop."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def check(
        self, cert: x509.Certificate, others: Iterable[x509.Certificate], purpose: Purpose, moment: datetime
    ) -> PathVerdict:
        """Whether ``cert`` chains to a trust root and is fit for ``purpose`` at ``moment``.

        Args:
            cert: the certificate to validate.
            others: certificates that may help build the path (those embedded in the CMS).
            purpose: :attr:`Purpose.SIGNER` or :attr:`Purpose.TSA`.
            moment: the time the validity periods are checked at (timezone-aware).
        """
        fingerprint = cert.sha256
        cached = self._valid.get((fingerprint, purpose))
        if cached is not None and cached.not_before <= moment <= cached.not_after:
            return PathVerdict(True, None, cached.not_after)
        helpers = list(others)
        failure_key = (fingerprint, purpose, frozenset(c.sha256 for c in helpers))
        failed = self._failed.get(failure_key)
        if failed is not None:
            return PathVerdict(False, failed, cert.not_valid_after)
        return self._validate(cert, helpers, purpose, moment, failure_key)

    def _validate(
        self,
        cert: x509.Certificate,
        helpers: list[x509.Certificate],
        purpose: Purpose,
        moment: datetime,
        failure_key: tuple[bytes, Purpose, frozenset[bytes]],
    ) -> PathVerdict:
        self.validations += 1
        context = ValidationContext(
            trust_roots=self._roots,
            other_certs=helpers,
            moment=moment,
            allow_fetching=False,
            revocation_mode="soft-fail",
        )
        key_usage, extended = _USAGES[purpose]
        validator = CertificateValidator(cert, intermediate_certs=helpers, validation_context=context)
        try:
            path = self._run(validator.async_validate_usage(key_usage, extended))
        except (cv_errors.ExpiredError, cv_errors.NotYetValidError) as exc:
            return PathVerdict(False, f"{_role(purpose)} certificate path: {exc}", cert.not_valid_after)
        except cv_errors.PathBuildingError:
            problem = f"{_role(purpose)} certificate {_subject(cert)!r} does not chain to a trust root"
        except (cv_errors.PathValidationError, cv_errors.InvalidCertificateError) as exc:
            problem = f"{_role(purpose)} certificate {_subject(cert)!r} is not valid: {exc}"
        else:
            certs = list(path.iter_certs(include_root=True))
            window = _Valid(max(c.not_valid_before for c in certs), min(c.not_valid_after for c in certs))
            self._valid[(cert.sha256, purpose)] = window
            return PathVerdict(True, None, window.not_after)
        self._failed[failure_key] = problem
        return PathVerdict(False, problem, cert.not_valid_after)

    def _run(self, coroutine: Coroutine[Any, Any, ValidationPath]) -> ValidationPath:
        """Run pyhanko-certvalidator's coroutine: on this instance's own loop, or — called
        from a thread whose event loop is running — on a loop in a helper thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(coroutine)
        with ThreadPoolExecutor(1) as helper:
            return helper.submit(asyncio.run, coroutine).result()


def _role(purpose: Purpose) -> str:
    return "signer" if purpose is Purpose.SIGNER else "TSA"


def _subject(cert: x509.Certificate) -> str:
    return str(cert.subject.human_friendly)
