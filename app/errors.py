"""The archiver's error hierarchy.

Every error that can end a job derives from :class:`ArchiverError`. Messages never hold
secrets (tokens, passwords): they are written into Zammad notes and logs as they are.
Whether a failure is Transient or Permanent is decided in :mod:`app.workflow.classify`;
an error may pin it with ``transient``. :data:`TRANSIENT_ERRNOS` is the one answer to
"may this ``OSError`` heal by itself?" for every adapter that pins it.
"""

from __future__ import annotations

import errno

TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,  # disk full
        errno.EDQUOT,  # quota exceeded
        errno.EIO,  # I/O error (a network share's hiccup)
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ENOLCK,  # no lock available (NFS)
        errno.ESTALE,  # stale file handle (NFS)
    }
)
"""``errno`` values of an ``OSError`` that may heal by itself: Transient, the trigger tag is
kept. Every classifier uses this set: the workflow's (:mod:`app.workflow.classify`, also for
:class:`StorageError`), the render spool and PDF writes, and the signer's file I/O. Anything
else (``EACCES``, ``EROFS``, ``ENOENT`` ...) needs a person: Permanent."""


class ArchiverError(Exception):
    """Base class of all job-ending errors.

    Attributes:
        code: short stable machine code, e.g. ``"zammad_http_error"``.
        transient: ``True``/``False`` to pin the classification, ``None`` to let the
            classifier decide from the error's other attributes.
    """

    code = "archiver_error"
    transient: bool | None = None

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class ZammadApiError(ArchiverError):
    """A Zammad REST call failed.

    Attributes:
        status: the HTTP status code, or ``None`` when no response arrived (connection
            error, timeout).
        method, path: the request that failed (path without query secrets).
        retry_after: seconds a 429 or 503 answer asked the client to wait (its ``Retry-After``
            header, RFC 9110 §10.2.3), else ``None``.
    """

    code = "zammad_api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.retry_after = retry_after


class ZammadUnauthorized(ZammadApiError):
    """Zammad refused the service's API token, not the request for this ticket: 401 (``Can't
    find User for Token``: a wrong or deleted token; ``Not authorized (token expired)!``; an
    inactive user), or 403 ``API token access disabled!`` (Zammad's setting ``api_token_access``
    off). Which answers count is decided by :func:`app.zammad.client.refuses_credentials`.

    Transient: every ticket fails alike until the operator fixes the token, and each job is
    retried (``WORKFLOW_*`` backoff, then ``dead`` with the trigger tag back), so the tickets
    are archived once Zammad takes the token again. The message quotes Zammad's error text,
    never the token.
    """

    code = "zammad_unauthorized"
    transient = True


class ZammadMaintenance(ZammadApiError):
    """Zammad is in maintenance mode: 403 ``Maintenance mode enabled!`` to every user but
    admins (``docs/reference/zammad.md`` §3.6: transient). Transient, like a 503: the job is
    retried, and the tickets are archived once the maintenance ends."""

    code = "zammad_maintenance"
    transient = True


class RenderError(ArchiverError):
    """The ticket could not be laid out as a PDF."""

    code = "render_error"


class SigningError(ArchiverError):
    """The PDF could not be signed (key, certificate or TSA problem)."""

    code = "signing_error"


class SignerUnavailable(SigningError):
    """The signing key, its certificate, the trust roots or the TSA CA bundle could not be
    loaded at start (:class:`app.signing.factory.UnavailableSigner`): every job fails at its
    signing step until the operator fixes the setting and restarts. Transient: the jobs retry,
    end ``dead`` keeping the trigger tag, and the reconciliation sweep archives them after the
    fix, as for a refused Zammad token; nothing has to be re-tagged by hand."""

    code = "signer_unavailable"
    transient = True


class StorageError(ArchiverError):
    """The archive could not be written under the storage root.

    Attributes:
        errno: the OS error number when the cause was an ``OSError``, else ``None``.
    """

    code = "storage_error"

    def __init__(self, message: str, *, errno: int | None = None, transient: bool | None = None) -> None:
        super().__init__(message, transient=transient)
        self.errno = errno


class ConfigError(ArchiverError):
    """A setting is missing or invalid; raised at start-up and names the bad key."""

    code = "config_error"
    transient = False
