"""Which signer the settings give: the archive signer, a pass-through, or one that reports why not.

Built once in the application's lifespan, with the HTTP session for the TSA and OCSP/CRL
requests made here too (:func:`open_pki_session`). Every problem with the key, the certificate,
the trust roots or the TSA CA bundle becomes an :class:`UnavailableSigner`: the service starts,
reports the cause in ``/healthz?deep=true``, and every job fails Permanent with it.
"""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta
from pathlib import Path

import aiohttp

from app.config import Settings
from app.errors import ConfigError, SignerUnavailable, SigningError
from app.signing.options import PadesLevel, SigningOptions
from app.signing.signer import ArchiveSigner, UnsignedPassthrough
from app.signing.trust import LongTermValidation, load_certificates
from app.signing.tsa import timestamper_from_settings
from app.workflow.ports import SignedPdf, SignerPort

log = logging.getLogger("app")

__all__ = ["UnavailableSigner", "build_signer", "open_pki_session", "tsa_ssl_context"]


class UnavailableSigner:
    """Stands in when the signing key could not be loaded: every job fails at its signing
    step with the load error as :class:`~app.errors.SignerUnavailable` (Transient: the ticket
    keeps its trigger tag once the job is ``dead``, and the reconciliation sweep archives it
    after the fix and a restart), and ``/healthz?deep=true`` reports the signer as not ready.

    Attributes:
        error: the load error (Permanent in itself: it does not heal without the operator).
    """

    def __init__(self, error: SigningError) -> None:
        self.error = error

    async def sign(self, pdf: bytes) -> SignedPdf:
        """Raise :class:`~app.errors.SignerUnavailable` with the load error's message."""
        raise SignerUnavailable(f"the signing key is not loaded (fix it, then restart): {self.error}")

    async def sign_file(self, source: Path, target: Path) -> SignedPdf:
        """Raise :class:`~app.errors.SignerUnavailable`, as :meth:`sign`."""
        return await self.sign(b"")


def tsa_ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS trust for the TSA and for OCSP/CRL fetches: the system store plus ``TSA_CA_BUNDLE_PATH``.

    Independent of ``ZAMMAD_VERIFY_TLS``: timestamp and revocation connections are always verified.

    Raises:
        SigningError: ``transient=False`` when the bundle cannot be read or holds no certificate.
    """
    context = ssl.create_default_context()
    if settings.tsa_ca_bundle_path is not None:
        try:
            context.load_verify_locations(cafile=str(settings.tsa_ca_bundle_path))
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise SigningError(
                f"cannot load TSA_CA_BUNDLE_PATH {str(settings.tsa_ca_bundle_path)!r}: {reason}",
                transient=False,
            ) from None
    return context


def open_pki_session(settings: Settings) -> aiohttp.ClientSession:
    """The HTTP session for the TSA and OCSP/CRL requests (see :func:`tsa_ssl_context`).

    A bundle that cannot be loaded falls back to the system store here; :func:`build_signer`
    reports it and keeps the signer unavailable, so the fallback is never used for signing.
    """
    try:
        context = tsa_ssl_context(settings)
    except SigningError:
        context = ssl.create_default_context()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=16))


def build_signer(settings: Settings, session: aiohttp.ClientSession) -> SignerPort:
    """Build the signer from the settings: the PFX is read and its key parsed once.

    Args:
        settings: the service settings.
        session: the session for TSA and OCSP/CRL requests (:func:`open_pki_session`).

    Returns an :class:`~app.signing.signer.UnsignedPassthrough` when signing is off, an
    :class:`~app.signing.signer.ArchiveSigner` when it can sign, and an
    :class:`UnavailableSigner` (logged) when the key, the certificate, the trust roots or the
    TSA CA bundle cannot be used. Never raises.
    """
    if not settings.signing_enabled:
        return UnsignedPassthrough()
    options = SigningOptions(
        reason=settings.signing_reason, location=settings.signing_location, contact=settings.signing_contact
    )
    try:
        assert settings.signing_pfx_path is not None
        try:
            pfx = settings.signing_pfx_path.read_bytes()
        except OSError as exc:
            raise SigningError(
                f"cannot read SIGNING_PFX_PATH {str(settings.signing_pfx_path)!r}: {exc.strerror}",
                transient=False,
            ) from None
        password = settings.signing_pfx_password.reveal().encode() if settings.signing_pfx_password else None
        level = PadesLevel.parse(settings.signing_pades_level, has_timestamper=bool(settings.tsa_url))
        timestamper = None
        if settings.tsa_url and level.needs_timestamper:
            tsa_ssl_context(settings)  # a bad bundle is a clear Permanent error, not a TLS failure per job
            timestamper = timestamper_from_settings(settings, session)
        validation = None
        if level.needs_validation_data:
            if settings.signing_trust_roots_path is None:
                raise ConfigError(f"SIGNING_TRUST_ROOTS_PATH is required for PAdES {level.value}")
            validation = LongTermValidation(
                load_certificates(settings.signing_trust_roots_path),
                session,
                fetch_timeout=settings.tsa_timeout_seconds,
            )
        return ArchiveSigner.from_pfx(
            pfx,
            password,
            options=options,
            timestamper=timestamper,
            level=level,
            validation=validation,
            expiry_warning=timedelta(days=settings.signing_expiry_warn_days),
        )
    except (SigningError, ConfigError) as exc:
        error = exc if isinstance(exc, SigningError) else SigningError(str(exc), transient=False)
        log.error("signing key not loaded; jobs will fail until it is fixed", extra={"cause": str(error)})
        return UnavailableSigner(error)
