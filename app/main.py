"""The application factory and its lifespan.

``app.main:create_app`` is an ASGI app factory (``hypercorn --factory`` or any ASGI server).
It reads the settings once, builds the middleware chain (request log → rate limit → body
limit → HMAC → routes), and
in the lifespan creates the one aiohttp session, the Zammad client, the signer (key loaded
once), the storage, the render pool and the worker pool; on shutdown it drains the pool
within ``SHUTDOWN_GRACE_SECONDS`` and closes everything.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from app import SERVICE_NAME, __version__
from app.config import Settings, load_settings
from app.errors import SigningError
from app.http.body_limit import BodyLimitMiddleware
from app.http.hmac_auth import HmacSignatureMiddleware
from app.http.rate_limit import RateLimitMiddleware
from app.http.request_log import RequestLogMiddleware
from app.http.routes import http_exception, routes
from app.jobs.dedupe import DeliveryIdCache
from app.jobs.pool import Job, WorkerPool
from app.observability.logging import REDACTOR, configure_logging
from app.observability.metrics import Metrics
from app.render.options import RenderOptions
from app.render.pool import ProcessPoolRenderer
from app.signing.signer import ArchiveSigner, SigningOptions, UnsignedPassthrough, build_timestamper
from app.storage.store import ArchiveStore
from app.workflow.archive import ArchiveWorkflow
from app.workflow.ports import SignedPdf, SignerPort
from app.zammad.client import ZammadClient

log = logging.getLogger("app")

INGEST_PATHS = frozenset({"/ingest", "/ingest/batch"})


class UnavailableSigner:
    """Stands in when the signing key could not be loaded: every job fails Permanent with
    the load error, and ``/healthz?deep=true`` reports the signer as not ready."""

    def __init__(self, error: SigningError) -> None:
        self.error = error

    async def sign(self, pdf: bytes) -> SignedPdf:
        """Raise the load error (:class:`~app.errors.SigningError`, Permanent)."""
        raise self.error


@dataclass
class Runtime:
    """What the routes and the lifespan share: settings, metrics and live components."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: WorkerPool | None = None
    dedupe: DeliveryIdCache | None = None
    signer: SignerPort | None = None
    workflow: ArchiveWorkflow | None = None

    def signer_error(self) -> str | None:
        """Why the signer is not usable, or ``None`` when it is (or signing is off)."""
        if self.signer is None:
            return "not loaded yet"
        if isinstance(self.signer, UnavailableSigner):
            return str(self.signer.error)
        return None


def _ssl_context(verify: bool) -> ssl.SSLContext | bool:
    return ssl.create_default_context() if verify else False


def load_signer(settings: Settings, session: aiohttp.ClientSession) -> SignerPort:
    """Build the signer from the settings: the PFX is read and its key parsed once.

    Returns an :class:`UnsignedPassthrough` when signing is off and an
    :class:`UnavailableSigner` (logged) when the key cannot be loaded.
    """
    if not settings.signing_enabled:
        return UnsignedPassthrough()
    options = SigningOptions(reason=settings.signing_reason, location=settings.signing_location,
                             contact=settings.signing_contact)
    try:
        assert settings.signing_pfx_path is not None
        try:
            pfx = settings.signing_pfx_path.read_bytes()
        except OSError as exc:
            raise SigningError(f"cannot read SIGNING_PFX_PATH {str(settings.signing_pfx_path)!r}: {exc.strerror}",
                               transient=False) from None
        password = settings.signing_pfx_password.reveal().encode() if settings.signing_pfx_password else None
        timestamper = None
        if settings.tsa_url:
            timestamper = build_timestamper(
                settings.tsa_url, session, user=settings.tsa_user,
                password=settings.tsa_pass.reveal() if settings.tsa_pass else None,
                timeout=settings.tsa_timeout_seconds)
        return ArchiveSigner.from_pfx(pfx, password, options=options, timestamper=timestamper)
    except SigningError as exc:
        log.error("signing key not loaded; jobs will fail until it is fixed", extra={"cause": str(exc)})
        return UnavailableSigner(exc)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI application.

    Args:
        settings: validated settings; read from ``CONFIG_PATH`` and the environment when
            omitted (then :class:`~app.errors.ConfigError` is raised for a bad setting).

    Returns:
        A Starlette app whose lifespan starts and stops the workers.
    """
    if settings is None:
        settings = load_settings()
    configure_logging(settings.log_level, settings.secrets())
    runtime = Runtime(settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(ssl=_ssl_context(settings.zammad_verify_tls), limit=32)
        session = aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())
        renderer = ProcessPoolRenderer(RenderOptions(template=settings.pdf_template, timezone=settings.pdf_timezone,
                                                     service_name=SERVICE_NAME),
                                       processes=settings.render_processes)
        try:
            assert settings.storage_root is not None and settings.zammad_api_token is not None
            zammad = ZammadClient(session, settings.zammad_base_url, settings.zammad_api_token.reveal(),
                                  timeout_seconds=settings.zammad_timeout_seconds)
            runtime.signer = load_signer(settings, session)
            storage = ArchiveStore(settings.storage_root, path_template=settings.storage_path_template,
                                   fsync=settings.storage_fsync)
            runtime.workflow = ArchiveWorkflow(
                zammad=zammad, renderer=renderer, signer=runtime.signer, storage=storage,
                trigger_tag=settings.workflow_trigger_tag, require_tag=settings.workflow_require_tag,
                redact=REDACTOR)
            workflow = runtime.workflow

            metrics = runtime.metrics

            async def handle(job: Job) -> Any:
                started = time.perf_counter()
                outcome = await workflow.run(job.ticket_id, job_id=job.job_id, delivery_id=job.delivery_id,
                                             force=job.force)
                metrics.record_job(outcome.status,
                                   outcome.failure.classification.value if outcome.failure else None,
                                   time.perf_counter() - started, outcome.step_seconds)
                return outcome

            runtime.dedupe = DeliveryIdCache(settings.workflow_delivery_id_ttl_seconds)
            runtime.pool = WorkerPool(handle, workers=settings.workers, max_queue=settings.workflow_queue_max)
            pool = runtime.pool
            metrics.watch_pool(lambda: pool.depth, lambda: pool.in_flight)
            runtime.pool.start()
            log.info("service started", extra={"version": __version__, "workers": settings.workers,
                                               "signing": settings.signing_enabled})
            yield
        finally:
            if runtime.pool is not None:
                await runtime.pool.stop(settings.shutdown_grace_seconds)
            renderer.close()
            await session.close()
            log.info("service stopped")

    metrics = runtime.metrics

    def count_response(path: str, status: int) -> None:
        if path in INGEST_PATHS:
            metrics.count_ingest_response(status)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLogMiddleware, on_response=count_response),
            Middleware(RateLimitMiddleware, rate=settings.hardening_rate_limit_rps,
                       burst=settings.hardening_rate_limit_burst,
                       trusted_proxies=settings.trusted_proxy_networks(),
                       on_limited=metrics.rate_limited_total.inc),
            Middleware(BodyLimitMiddleware, max_body_size=settings.hardening_body_max_bytes),
            Middleware(HmacSignatureMiddleware,
                       secret=settings.webhook_hmac_secret.reveal().encode() if settings.webhook_hmac_secret else None,
                       allow_unsigned=settings.hardening_webhook_allow_unsigned,
                       paths=INGEST_PATHS,
                       require_delivery_id=settings.hardening_webhook_require_delivery_id),
        ],
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


__all__ = ["Runtime", "UnavailableSigner", "create_app", "load_signer"]
