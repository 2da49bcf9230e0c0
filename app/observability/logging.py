"""Structured JSON logs, one object per line, with secrets redacted.

Every record becomes ``{"ts", "level", "logger", "msg", ...extra}``; fields passed as
``logger.info("...", extra={"ticket_id": 4711})`` are merged in, and so are the job's
``job_id`` and ``ticket_id`` on every line logged while a worker handles it
(:func:`job_log_context`). Tracebacks are included as
``exc``. Before a line is written, every configured secret value is replaced by ``***`` —
in the message, the extra fields and the traceback alike — so a secret that slipped into an
exception text still never reaches the log.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import orjson

from app.observability.warning_capture import route_to_logging

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
REDACTED = "***"


class Redactor:
    """Replaces known secret values in text.

    Secrets shorter than 4 characters are ignored: replacing them would mangle ordinary
    words without protecting anything worth protecting.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the set of secrets (longest first, so overlapping secrets redact fully)."""
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


REDACTOR = Redactor()
"""The process-wide redactor used by :class:`JsonFormatter`; filled by :func:`configure_logging`."""


_JOB_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("job_log_fields", default=None)
"""The fields of the job the current task works on (see :func:`job_log_context`)."""


@contextlib.contextmanager
def job_log_context(**fields: Any) -> Iterator[None]:
    """Within the block (and in the tasks and threads started from it, which copy the
    context), every line :class:`JsonFormatter` writes carries ``fields`` — e.g. ``job_id``
    and ``ticket_id`` — unless the record names them itself: so a line logged while a job runs
    (a Zammad client's answer, a library's warning) can be told to its job."""
    token = _JOB_FIELDS.set(fields)
    try:
        yield
    finally:
        _JOB_FIELDS.reset(token)


_ts_cache: tuple[int, str] = (-1, "")
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))
"""``".000Z"`` … ``".999Z"``: the end of a timestamp, looked up instead of formatted (hot path)."""


def _timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds; the part up to the second is cached (hot path)."""
    global _ts_cache
    second = int(created)
    if _ts_cache[0] != second:
        _ts_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return _ts_cache[1] + _MILLISECONDS[int((created - second) * 1000)]


_CLASSIFYING_LIBRARIES = ("pyhanko", "pyhanko_certvalidator")
"""Libraries that log a validation failure they have caught and classified (a chain that
ends in no trusted root, a revoked or expired certificate) as a WARNING with its traceback,
e.g. pyHanko's ``Failed to build path for …`` (``pyhanko.sign.validation.generic_cms``)."""


def _classified_library_error(record: logging.LogRecord) -> BaseException | None:
    """The exception of ``record`` when it is one of :data:`_CLASSIFYING_LIBRARIES`' own
    errors, logged by that library below ERROR: an expected outcome, whose traceback says
    nothing to an operator (our own error line states the reason). ``None`` otherwise — our
    records, a library's ERROR, or a library's warning about an exception of another kind
    (a defect) keep their traceback."""
    if record.levelno >= logging.ERROR or not record.exc_info:
        return None
    exc = record.exc_info[1]
    if exc is None or record.name.split(".", 1)[0] not in _CLASSIFYING_LIBRARIES:
        return None
    return exc if type(exc).__module__.split(".", 1)[0] in _CLASSIFYING_LIBRARIES else None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, redacted by :data:`REDACTOR`.

    A record with an exception gets its traceback as ``exc``; except pyHanko's warnings
    about a validation failure of its own kind, which get the exception's one line as
    ``error`` (``"PathBuildingError: Unable to build a validation path …"``), as our own
    lines do for an expected failure.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        job_fields = _JOB_FIELDS.get()
        if job_fields:
            for key, value in job_fields.items():
                entry.setdefault(key, value)
        classified = _classified_library_error(record)
        if classified is not None:
            entry["error"] = f"{type(classified).__name__}: {classified}"
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return REDACTOR(line)


def _writes_lines_out(stream: Any) -> bool:
    """Whether a line written to ``stream`` is out of its buffers at once: a line-buffered text
    stream, or one that writes through to an unbuffered file (``sys.stderr`` when it is not a
    terminal, since Python 3.9)."""
    if getattr(stream, "line_buffering", False) is True:
        return True
    return getattr(stream, "write_through", False) is True and isinstance(
        getattr(stream, "buffer", None), io.RawIOBase
    )


class AccessLog:
    """A fast path for the one-line-per-request access log.

    Writes the same JSON shape as :class:`JsonFormatter` (logger ``app.access``, message
    ``request``) straight to the configured handler's stream, without building a
    ``LogRecord``: the access log runs once per request, and the logging machinery costs
    more than the rest of the middleware chain together. Secrets are redacted alike.
    """

    def __init__(self) -> None:
        self._handler: logging.StreamHandler[Any] | None = None
        self._enabled = False
        self._self_flushing: Any = None

    def bind(self, handler: logging.StreamHandler[Any] | None, enabled: bool) -> None:
        """Write through ``handler`` (its stream and lock) when ``enabled``."""
        self._handler = handler
        self._enabled = enabled and handler is not None
        stream = handler.stream if handler is not None else None
        # A stream that has each line out of its buffers once written needs no flush of ours
        # (while the handler keeps that stream).
        self._self_flushing = stream if _writes_lines_out(stream) else None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def write_request(
        self,
        request_id: str,
        method: str,
        path: str,
        status: int | None,
        duration_ms: float,
        ticket_id: int | None = None,
        delivery_id: str | None = None,
    ) -> None:
        """Write one access line with the request log's fields (runs per request).

        Args:
            request_id: the request's id.
            method, path: from the ASGI scope.
            status: the response status, or ``None`` when no response was started.
            duration_ms: milliseconds from the request's start to the end of its response.
            ticket_id, delivery_id: added to the line only when not ``None``.
        """
        if not self._enabled:
            return
        entry = {
            "ts": _timestamp(time.time()),
            "level": "info",
            "logger": "app.access",
            "msg": "request",
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        }
        if ticket_id is not None:
            entry["ticket_id"] = ticket_id
        if delivery_id is not None:
            entry["delivery_id"] = delivery_id
        self._emit(entry)

    def _emit(self, entry: dict[str, Any]) -> None:
        handler = self._handler
        if handler is None:
            return
        line = REDACTOR(orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE).decode())
        lock = handler.lock  # the handler's own lock, without its acquire()/release() frames
        if lock is not None:
            lock.acquire()
        try:
            stream = handler.stream
            stream.write(line)
            if stream is not self._self_flushing and hasattr(stream, "flush"):
                stream.flush()  # as StreamHandler.flush, without taking the lock twice
        finally:
            if lock is not None:
                lock.release()


ACCESS_LOG = AccessLog()
"""The process-wide access log; bound by :func:`configure_logging`."""


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Send all logging to ``stream`` (default stderr) as redacted JSON lines.

    Python warnings go there too, from the ``py.warnings`` logger at WARNING, each distinct
    warning once — those buffered since :func:`~app.observability.warning_capture.capture_early`
    first (see :mod:`app.observability.warning_capture`).

    Args:
        level: root log level name.
        secrets: values to redact everywhere (see :meth:`app.config.Settings.secrets`).
        stream: a text stream; defaults to ``sys.stderr``.
    """
    REDACTOR.update(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, JsonFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    ACCESS_LOG.bind(handler, logging.getLogger("app.access").isEnabledFor(logging.INFO))
    # Our JSON lines carry no caller: skip the stack walk that finds it (the logging HOWTO's
    # "Optimization" section). Thread and process ids stay: other formatters use them.
    logging._srcfile = None
    # fpdf2 and fontTools are chatty at INFO; pyHanko logs at WARNING what matters.
    for noisy in ("fpdf", "fontTools", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    route_to_logging()
