"""The service with one of our hand-written pieces swapped back for the library's own.

:data:`VARIANTS` undo one replacement each, on the imported modules, before the application
is built, so a benchmark can measure what the piece buys in the same run as the real service
(:mod:`benchmarks.app_instructions`, counted by ``benchmarks/ingest_cpu.py``).
``python -m benchmarks.library_variants VARIANT`` runs ``python -m app serve`` (same settings,
same environment) with it, to look at by hand:

- ``starlette_errors``: Starlette's own error layers (``ServerErrorMiddleware``,
  ``ExceptionMiddleware``, with handlers that answer in our error shape) instead of
  :class:`app.http.errors.ArchiverApp`'s two ``except`` clauses;
- ``prometheus_counter``: prometheus-client's labelled ``Counter`` for the ingest responses
  by status instead of :class:`app.observability.metrics.StatusCounter`.

The swap is done on the imported modules before the application is built; the service
answers every request as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import Metric
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response


class PrometheusStatusCounter:
    """:class:`~app.observability.metrics.StatusCounter`'s interface over a labelled
    prometheus-client ``Counter``: what the ingest status count costs the library's way."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.counter = Counter(name, documentation, [label], registry=None)

    def inc(self, value: object) -> None:
        self.counter.labels(value).inc()

    def describe(self) -> Iterator[Metric]:
        return iter(self.counter.describe())

    def collect(self) -> Iterator[Metric]:
        return iter(self.counter.collect())


def starlette_app(**kwargs: Any) -> Starlette:
    """A plain Starlette application whose error handlers answer in the service's error shape."""
    from app.http.errors import HTTP_ERROR_CODES
    from app.http.responses import error_response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal_error", "an unexpected error occurred; see the service log")

    return Starlette(exception_handlers={HTTPException: http_error, Exception: server_error}, **kwargs)


def _starlette_errors() -> None:
    import app.main

    assert hasattr(app.main, "ArchiverApp"), "app.main no longer builds its app with ArchiverApp"
    app.main.ArchiverApp = starlette_app  # type: ignore[misc, assignment]  # the library's counter swapped in for this process  # the swap measured


def _prometheus_counter() -> None:
    import app.observability.metrics

    assert hasattr(app.observability.metrics, "StatusCounter"), "StatusCounter is gone"
    app.observability.metrics.StatusCounter = PrometheusStatusCounter  # type: ignore[misc, assignment]


VARIANTS: dict[str, Callable[[], None]] = {
    "starlette_errors": _starlette_errors,
    "prometheus_counter": _prometheus_counter,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in VARIANTS:
        print(f"usage: python -m benchmarks.library_variants {{{','.join(VARIANTS)}}}", file=sys.stderr)
        return 2
    VARIANTS[argv[0]]()
    from app.__main__ import main as app_main

    return app_main(["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
