"""The RFC 3161 timestamp client: requests over the application's HTTP session, answers checked
eagerly, and every failure classified as a transient or permanent :class:`SigningError`.

RFC 3161 §3.4 (HTTP transport: POST ``application/timestamp-query``, answer
``application/timestamp-reply``) and §2.4.2 (``TimeStampResp``); pyHanko's ``HTTPTimeStamper``
builds the request and embeds the token.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import aiohttp
from asn1crypto import cms, core, tsp
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from app.errors import ConfigError, SigningError

if TYPE_CHECKING:
    from app.config import Settings

__all__ = ["build_timestamper", "timestamper_from_settings", "tsa_error"]

#: RFC 3161 ``PKIFailureInfo`` values that describe a TSA-side outage rather than a bad request.
_OTHER_NONCE = "its token's nonce is not the one asked for"
"""A reply to another request (a mixed-up proxy or cache): asking again may get ours."""
_TRANSIENT_TSA_FAILURES = ("time_not_available", "system_failure", _OTHER_NONCE)


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
        A pyHanko ``HTTPTimeStamper`` for :class:`~app.signing.signer.ArchiveSigner`.

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
    return _CheckedHTTPTimeStamper(url, session, timeout=timeout, headers=headers)


def timestamper_from_settings(settings: Settings, session: aiohttp.ClientSession) -> HTTPTimeStamper:
    """:func:`build_timestamper` for ``TSA_URL`` with ``TSA_USER``, ``TSA_PASS`` and
    ``TSA_TIMEOUT_SECONDS`` (the signer, the manifest's day timestamps and ``lta-refresh``).

    Raises:
        ConfigError: ``TSA_URL`` is not set, or as :func:`build_timestamper`.
    """
    if not settings.tsa_url:
        raise ConfigError("TSA_URL is not set")
    return build_timestamper(
        settings.tsa_url,
        session,
        user=settings.tsa_user,
        password=settings.tsa_pass.reveal() if settings.tsa_pass else None,
        timeout=settings.tsa_timeout_seconds,
    )


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
            f"Timestamp server refused our request: status {state}, "
            f"statusString {texts!r}, failInfo {fail_info!r}"
        )
    try:
        response = tsp.TimeStampResp.load(data, strict=True)
        token_info = response["time_stamp_token"]["content"]["encap_content_info"]["content"]
        token_info.parsed.native  # noqa: B018 - parse it now, so a broken token fails here
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampRequestError("TSA answer is not an RFC 3161 TimeStampResp") from exc
    return response


class _CheckedHTTPTimeStamper(HTTPTimeStamper):
    """``HTTPTimeStamper`` on a caller-owned session that parses the answer eagerly.

    pyHanko's version lets a body that is not DER escape as a bare asn1crypto ``ValueError``
    and cannot parse a refusal (no token). The HTTP exchange is the same: POST
    ``application/timestamp-query``, expect ``application/timestamp-reply`` (RFC 3161 §3.4).
    """

    def __init__(
        self, url: str, session: aiohttp.ClientSession, *, timeout: float, headers: dict[str, str]
    ) -> None:
        super().__init__(url, timeout=timeout, headers=headers, session=session)
        self._client_session = session

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        headers = await self.async_request_headers()
        try:
            async with self._client_session.post(
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
        response = _parse_tsa_response(data)
        sent = req["nonce"].native
        info = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
        if sent is not None and info["nonce"].native != sent:  # pyHanko's own check crashes on it
            raise TimestampRequestError(f"TSA answered another request: {_OTHER_NONCE} (RFC 3161 §2.4.2)")
        return response


def tsa_error(exc: TimestampRequestError, timeout: float | None) -> SigningError:
    """Map a pyHanko TSA failure to a :class:`SigningError` with ``transient`` pinned.

    Transient: timeouts, connection failures, HTTP 408/429/5xx, RFC 3161 failInfo
    timeNotAvailable/systemFailure, a token with another request's nonce. Permanent: HTTP
    401/403 and other 4xx, a wrong Content-Type, TLS trust failures, refusals, a body that is
    not a TimeStampResp.

    Args:
        exc: what pyHanko raised; its ``__cause__`` says what went wrong underneath.
        timeout: the TSA timeout in seconds, named in the message of a timeout.
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
        reason = cause.os_error.strerror or cause.os_error
        return SigningError(
            f"cannot connect to the TSA at {cause.host}:{cause.port}: {reason}", transient=True
        )
    if isinstance(cause, (aiohttp.ClientError, OSError)):
        return SigningError(f"TSA connection failed ({type(cause).__name__})", transient=True)
    if isinstance(cause, (ValueError, TypeError, KeyError)):
        return SigningError("TSA answer is not an RFC 3161 TimeStampResp", transient=False)
    return SigningError(f"TSA error: {exc} ({type(cause).__name__})", transient=False)
