"""Python warnings from libraries go through our JSON logging, each distinct warning once.

Libraries warn while they are imported — pyHanko importing cryptography's DSA class gives a
``CryptographyDeprecationWarning`` — long before :func:`~app.observability.logging.configure_logging`
runs (the log level is a setting, and the settings are read after the imports). Python's own
display prints such a warning raw on stderr as two lines (``file:line: Category: message`` and
the source line): plain text among the JSON log lines, and three lines where ``python -m app
serve`` promises one for a bad setting.

So ``python -m app`` calls :func:`capture_early` first: from then on a shown warning is kept
in a buffer instead of printed. :func:`route_to_logging` (called by ``configure_logging``)
writes the buffered warnings, and every later one, to the ``py.warnings`` logger at WARNING::

    {"level": "warning", "logger": "py.warnings",
     "msg": "CryptographyDeprecationWarning: DSA is deprecated ...",
     "category": "cryptography.utils.CryptographyDeprecationWarning",
     "source": "pyhanko/sign/signers/pdf_cms.py:20"}

When the start fails on a bad setting, logging is never configured and the buffer is never
written: the operator sees the one ``configuration error:`` line.

Which warnings are shown at all is still decided by Python's filters (``-W``,
``PYTHONWARNINGS``, :func:`warnings.filterwarnings`); this module only changes where a shown
warning goes — and adds one filter, :func:`ignore_known_library_warnings`, for a library
warning that is known and asks nothing of an operator. A harness that records warnings
itself — pytest, ``warnings.catch_warnings(record=True)`` — or a program that installed its
own :func:`warnings.showwarning` keeps them: :func:`route_to_logging` then leaves the display
alone (an ASGI server importing :func:`app.main.create_app` inside such a harness changes
nothing in it).
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

LOGGER_NAME = "py.warnings"
"""The logger warnings are written to (the name :func:`logging.captureWarnings` uses too)."""

MAX_DISTINCT = 256
"""Distinct warnings remembered (and buffered) at most; later new ones are dropped, with one
line saying so, rather than letting a warning whose text varies grow memory without bound."""

ShowWarning = Callable[..., None]


@dataclass(frozen=True, slots=True)
class CapturedWarning:
    """One shown warning: what :func:`warnings.showwarning` receives, less the stream."""

    category: type[Warning]
    message: str
    filename: str
    lineno: int

    @property
    def key(self) -> tuple[type[Warning], str, str, int]:
        """What makes two warnings the same one: category, text and where it was raised."""
        return (self.category, self.message, self.filename, self.lineno)

    def category_name(self) -> str:
        """The category's qualified name, e.g. ``cryptography.utils.CryptographyDeprecationWarning``."""
        module = self.category.__module__
        name = self.category.__qualname__
        return name if module == "builtins" else f"{module}.{name}"

    def source(self) -> str:
        """``file:line`` with the file relative to its ``sys.path`` entry (site-packages, the
        repository) where one contains it, so the line names the library, not the venv."""
        path = self.filename
        best = ""
        for entry in sys.path:
            if entry and len(entry) > len(best) and path.startswith(entry.rstrip("/") + "/"):
                best = entry.rstrip("/") + "/"
        return f"{path[len(best) :]}:{self.lineno}"


def _python_shows_warnings() -> bool:
    """Whether Python's own display is in place: nobody installed a ``showwarning`` or records
    warnings (``catch_warnings(record=True)`` swaps ``warnings._showwarnmsg_impl``, which has no
    public name; where it is missing, Python's display is assumed)."""
    original = getattr(warnings, "_showwarning_orig", None)
    if original is not None and warnings.showwarning is not original:
        return False
    implementation = getattr(warnings, "_showwarnmsg_impl", None)
    return implementation is None or getattr(implementation, "__module__", None) in {
        "warnings",
        "_py_warnings",
    }


class WarningRouter:
    """Replaces :func:`warnings.showwarning`: buffers shown warnings until :meth:`route_to_logging`,
    then writes them (and later ones) to a logger, each distinct warning once.

    Args:
        logger_name: the logger to write to.
        limit: distinct warnings remembered at most (see :data:`MAX_DISTINCT`).
    """

    def __init__(self, logger_name: str = LOGGER_NAME, limit: int = MAX_DISTINCT) -> None:
        self._logger = logging.getLogger(logger_name)
        self._limit = limit
        self._lock = threading.RLock()
        self._buffer: list[CapturedWarning] = []
        self._seen: set[tuple[type[Warning], str, str, int]] = set()
        self._routing = False
        self._dropped = 0
        self._dropped_noted = False
        self._previous: ShowWarning | None = None
        self._emitting = False

    @property
    def installed(self) -> bool:
        """Whether this router is the current :func:`warnings.showwarning`."""
        return warnings.showwarning == self._show  # bound methods compare equal, never identical

    @property
    def routing(self) -> bool:
        """Whether warnings go to the logger (else they are buffered)."""
        return self._routing

    def pending(self) -> tuple[CapturedWarning, ...]:
        """The warnings buffered so far and not yet written."""
        with self._lock:
            return tuple(self._buffer)

    def capture(self) -> None:
        """Start buffering shown warnings (idempotent). Installs the router whatever display was
        in place: call it first thing in a program, before the imports that warn."""
        with self._lock:
            if not self.installed:
                self._previous = warnings.showwarning
                warnings.showwarning = self._show

    def route_to_logging(self) -> bool:
        """Write the buffered warnings to the logger, and every later one as it is shown.

        Installs the router when it is not in place yet — unless something else shows or
        records warnings (see the module's docstring).

        Returns:
            ``True`` when warnings now go to the logger; ``False`` when another display was
            left in place.
        """
        with self._lock:
            if not self.installed:
                if not _python_shows_warnings():
                    return False
                self._previous = warnings.showwarning
                warnings.showwarning = self._show
            self._routing = True
            buffered, self._buffer = self._buffer, []
            for captured in buffered:
                self._log(captured)
            self._note_dropped()
            return True

    def discard(self) -> int:
        """Forget the buffered warnings without writing them; returns how many there were."""
        with self._lock:
            count = len(self._buffer)
            self._buffer.clear()
            return count

    def uninstall(self) -> None:
        """Put back the display that was in place before :meth:`capture` or
        :meth:`route_to_logging`, and forget everything buffered and seen."""
        with self._lock:
            if self.installed and self._previous is not None:
                warnings.showwarning = self._previous
            self._previous = None
            self._routing = False
            self._buffer.clear()
            self._seen.clear()
            self._dropped = 0
            self._dropped_noted = False

    def _show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        """The :func:`warnings.showwarning` replacement."""
        if file is not None and self._previous is not None:  # an explicit stream: the caller's choice
            self._previous(message, category, filename, lineno, file, line)
            return
        captured = CapturedWarning(category, str(message), filename, lineno)
        with self._lock:
            if self._emitting:  # a warning raised while logging one: do not recurse
                return
            if captured.key in self._seen:
                return
            if len(self._seen) >= self._limit:
                self._dropped += 1
                self._note_dropped()
                return
            self._seen.add(captured.key)
            if self._routing:
                self._log(captured)
            else:
                self._buffer.append(captured)

    def _note_dropped(self) -> None:
        """Say once, when routing, that new distinct warnings were dropped at the limit."""
        if self._dropped and self._routing and not self._dropped_noted:
            self._dropped_noted = True
            self._write(
                logging.WARNING,
                f"more than {self._limit} distinct Python warnings: further new ones are not logged",
                {},
            )

    def _log(self, captured: CapturedWarning) -> None:
        self._write(
            logging.WARNING,
            f"{captured.category.__name__}: {captured.message}",
            {"category": captured.category_name(), "source": captured.source()},
        )

    def _write(self, level: int, text: str, extra: dict[str, Any]) -> None:
        self._emitting = True
        try:
            self._logger.log(level, "%s", text, extra=extra)
        finally:
            self._emitting = False


def ignore_known_library_warnings() -> None:
    """Hide the library warnings known to need no action, each by category, text and the
    module it names (idempotent; later ``warnings.filterwarnings`` calls still win):

    - cryptography's ``CryptographyDeprecationWarning`` "DSA is deprecated …", raised when
      pyHanko's ``pyhanko.sign.signers.pdf_cms`` imports ``DSAPrivateKey`` (seen with
      pyHanko 0.38 and cryptography 51): raised by the import alone, whether a DSA key is
      ever used or not, on every start of the service, the tools and ``make demo``.

    The same category from any other module, or another text, is still shown.
    """
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings(
        "ignore",
        message=r"DSA is deprecated",
        category=CryptographyDeprecationWarning,
        module=r"pyhanko\.sign\.signers\.pdf_cms$",
    )


ROUTER = WarningRouter()
"""The process-wide router used by :func:`capture_early` and :func:`route_to_logging`."""


def capture_early() -> None:
    """Buffer Python warnings from now on, until logging is configured (see :data:`ROUTER`)."""
    ROUTER.capture()


def route_to_logging() -> bool:
    """Write buffered and later Python warnings to the ``py.warnings`` logger (see
    :meth:`WarningRouter.route_to_logging`); returns whether they now go there."""
    return ROUTER.route_to_logging()
