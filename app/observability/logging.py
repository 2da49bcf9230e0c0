"""Structured JSON logs, one object per line, with secrets redacted.

Every record becomes ``{"ts", "level", "logger", "msg", ...extra}``; fields passed as
``logger.info("...", extra={"ticket_id": 4711})`` are merged in. Tracebacks are included as
``exc``. Before a line is written, every configured secret value is replaced by ``***`` —
in the message, the extra fields and the traceback alike — so a secret that slipped into an
exception text still never reaches the log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

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


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, redacted by :data:`REDACTOR`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return REDACTOR(line)


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Send all logging to ``stream`` (default stderr) as redacted JSON lines.

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
    # fpdf2 and fontTools are chatty at INFO; pyHanko logs at WARNING what matters.
    for noisy in ("fpdf", "fontTools", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
