"""The application factory and its lifespan.

``app.main:create_app`` is an ASGI app factory (``hypercorn --factory`` or any ASGI server).
It reads the settings once and builds the middleware chain (request log → rate limit → body
limit → HMAC → routes). The lifespan logs which requests the settings refuse (no webhook
secret, no admin token), creates the aiohttp sessions (Zammad; TSA and OCSP/CRL),
the Zammad client, the signer (key loaded once), the storage with its manifest, the render
pool, the job store and the worker pool, and starts the font check (which scripts the fonts
cover, logged once), the manifest timestamps, the scheduled audit and the reconciliation
sweep; on shutdown it drains the pool within ``SHUTDOWN_GRACE_SECONDS`` and closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware

from app import SERVICE_NAME, __version__
from app.audit.service import open_manifest, start_archive_checks
from app.config import Settings, load_settings
from app.config_fingerprint import settings_fingerprint
from app.http.body_limit import BodyLimitMiddleware
from app.http.errors import ArchiverApp
from app.http.hmac_auth import HmacSignatureMiddleware
from app.http.names import INGEST_PATHS
from app.http.rate_limit import RateLimitMiddleware
from app.http.request_log import RequestLogMiddleware
from app.http.routes import build_routes
from app.i18n import parse_language_by_group
from app.jobs.outcomes import RetryPolicy, job_end
from app.jobs.pool import WorkerPool
from app.jobs.records import JobRecord, JobStoreUnavailable
from app.jobs.store import SQLITE_FILE, JobStore, create_job_store
from app.observability.logging import REDACTOR, configure_logging
from app.reconcile.sweep import Reconciler
from app.render.font_check import log_font_coverage
from app.render.images import image_references
from app.render.options import RenderOptions
from app.render.pool import ProcessPoolRenderer
from app.runtime import ArchiveRunner, Runtime, open_spool
from app.signing.factory import build_signer, open_pki_session
from app.signing.signer import ArchiveSigner
from app.storage.store import ArchiveStore
from app.workflow.archive import ArchiveOutcome, ArchiveWorkflow
from app.workflow.originals import EmbedPolicy
from app.zammad.client import ZammadClient

log = logging.getLogger("app")


def _ssl_context(verify: bool) -> ssl.SSLContext | bool:
    return ssl.create_default_context() if verify else False


def log_request_auth(settings: Settings) -> None:
    """Log, once at start, the requests the settings make the service refuse (or let through).

    Without ``WEBHOOK_HMAC_SECRET`` the service starts (docs/03-configuration.md) but answers
    every webhook 503 ``webhook_auth_not_configured``: a warning says so, or, with
    ``HARDENING_WEBHOOK_ALLOW_UNSIGNED=true``, that unsigned webhooks are accepted. Without
    ``ADMIN_BEARER_TOKEN``, ``/retry`` and ``/jobs`` take HMAC-signed requests only (info),
    or none at all when the webhook secret is missing too (warning: every one is 403).
    """
    if not settings.webhook_hmac_secret:
        if settings.hardening_webhook_allow_unsigned:
            log.warning(
                "unsigned webhooks are accepted (HARDENING_WEBHOOK_ALLOW_UNSIGNED=true): "
                "for tests only, set WEBHOOK_HMAC_SECRET",
                extra={"paths": sorted(INGEST_PATHS)},
            )
        else:
            log.warning(
                "webhooks are refused until WEBHOOK_HMAC_SECRET is set",
                extra={"paths": sorted(INGEST_PATHS), "status": 503, "error": "webhook_auth_not_configured"},
            )
    if not settings.admin_bearer_token:
        if settings.webhook_hmac_secret:
            log.info(
                "no ADMIN_BEARER_TOKEN: /retry and /jobs take HMAC-signed requests only",
                extra={"paths": ["/retry", "/jobs"]},
            )
        else:
            log.warning(
                "/retry and /jobs are refused until ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET is set",
                extra={"paths": ["/retry", "/jobs"], "status": 403, "error": "forbidden"},
            )


def log_new_job_store(settings: Settings, store: JobStore) -> None:
    """Warn, once at start, when the SQLite job store was created empty
    (:attr:`app.jobs.sqlite.SqliteJobStore.created`: no ``jobs.sqlite3`` was in ``STATE_DIR``).

    On a first start that is expected; after ``STATE_DIR`` was deleted or changed while the
    service was stopped, the jobs it had answered 202 for are gone without a trace. Only the
    reconciliation sweep (``RECONCILE_INTERVAL_SECONDS``, 0 = off) finds their tickets again
    (by the trigger tag or a stale ``pdf:processing``): the warning says whether it runs.
    """
    if not getattr(store, "created", False):
        return
    interval = settings.reconcile_interval_seconds
    sweep = (
        f"the sweep runs every {interval:g} s (RECONCILE_INTERVAL_SECONDS)"
        if interval > 0
        else "RECONCILE_INTERVAL_SECONDS=0: the sweep is off, so nothing finds them"
    )
    log.warning(
        "new empty job store created in STATE_DIR %s (no %s was there: a first start, or STATE_DIR "
        "was deleted or changed while stopped); jobs accepted before were lost unless the "
        "reconcile sweep finds their tickets; %s",
        settings.state_dir,
        SQLITE_FILE,
        sweep,
        extra={"state_dir": str(settings.state_dir), "reconcile_interval_seconds": interval},
    )


def create_app(
    settings: Settings | None = None, *, on_started: Callable[[], None] | None = None
) -> Starlette:
    """Build the ASGI application.

    Args:
        settings: validated settings; read from ``CONFIG_PATH`` and the environment when
            omitted (then :class:`~app.errors.ConfigError` is raised for a bad setting).
        on_started: called once the lifespan has started everything, just before the
            application serves (``python -m app serve`` tunes the garbage collector there).

    Returns:
        A Starlette app whose lifespan starts and stops the workers; its
        :class:`~app.runtime.Runtime` is ``app.state.runtime``.
    """
    if settings is None:
        settings = load_settings()
    configure_logging(settings.log_level, settings.secrets())
    runtime = Runtime(settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_request_auth(settings)
        connector = aiohttp.TCPConnector(ssl=_ssl_context(settings.zammad_verify_tls), limit=32)
        session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
        )
        pki_session = open_pki_session(settings)
        render_options = RenderOptions(
            template=settings.pdf_template,
            timezone=settings.pdf_timezone,
            service_name=SERVICE_NAME,
            max_articles=settings.pdf_max_articles,
            limit_mode=settings.pdf_article_limit_mode,
            font_dirs=settings.pdf_font_directories(),
            pdfa=settings.pdf_pdfa,
            strict_fonts=settings.strict_fonts,
            language=settings.pdf_language,
            language_by_group=parse_language_by_group(settings.pdf_language_by_group),
        )
        spool, spool_is_temporary = open_spool(settings)
        renderer = ProcessPoolRenderer(
            render_options,
            processes=settings.render_processes,
            timeout_seconds=settings.render_timeout_seconds,
            on_missing_glyphs=runtime.metrics.count_missing_glyphs,
        )
        font_check = runtime.font_check = asyncio.create_task(
            log_font_coverage(renderer, settings.pdf_font_directories(), strict=settings.strict_fonts)
        )
        background: list[asyncio.Task[None]] = []
        reconciler: Reconciler | None = None
        started = False
        try:
            assert settings.storage_root is not None and settings.zammad_api_token is not None
            zammad = ZammadClient(
                session,
                settings.zammad_base_url,
                settings.zammad_api_token.reveal(),
                timeout_seconds=settings.zammad_timeout_seconds,
            )
            runtime.metrics.watch_zammad(lambda: zammad.credentials_refused)
            runtime.signer = build_signer(settings, pki_session)
            certificate_sha256 = None  # of a loaded key: in the settings fingerprint below
            if isinstance(runtime.signer, ArchiveSigner):
                signer = runtime.signer
                certificate_sha256 = signer.sha256_fingerprint
                runtime.metrics.watch_signing_certificate(
                    lambda: (signer.not_after - datetime.now(UTC)).total_seconds(), signer.expires_soon
                )
            day_closed = asyncio.Event()
            storage = ArchiveStore(
                settings.storage_root,
                path_template=settings.storage_path_template,
                fsync=settings.storage_fsync,
                manifest=open_manifest(settings, day_closed),
            )
            background.extend(
                start_archive_checks(settings, runtime.metrics.registry, pki_session, day_closed)
            )
            workflow = runtime.workflow = ArchiveWorkflow(
                zammad=zammad,
                renderer=renderer,
                signer=runtime.signer,
                storage=storage,
                trigger_tag=settings.workflow_trigger_tag,
                require_tag=settings.workflow_require_tag,
                redact=REDACTOR,
                image_references=image_references,
                template=settings.pdf_template,
                embed=EmbedPolicy(settings.pdf_embed_max_bytes, settings.pdf_embed_total_max_bytes)
                if settings.pdf_embed_originals
                else None,
                spool_dir=spool,
                language=settings.pdf_language,
                max_articles=settings.pdf_max_articles,
            )
            metrics = runtime.metrics

            def on_outcome(job: JobRecord, outcome: ArchiveOutcome, seconds: float) -> None:
                metrics.record_job(
                    outcome.status,
                    outcome.failure.classification.value if outcome.failure else None,
                    seconds,
                    outcome.step_seconds,
                )
                end = job_end(outcome, attempts=job.attempts, max_attempts=settings.workflow_max_attempts)
                metrics.record_job_end(end.state if end is not None else None)

            # in the store's application_name, compared with the other replicas'
            fingerprint = settings_fingerprint(settings, certificate_sha256=certificate_sha256)
            job_store = runtime.store = create_job_store(settings, settings_fingerprint=fingerprint)
            pool = runtime.pool = WorkerPool(
                runtime.store,
                ArchiveRunner(
                    workflow,
                    max_attempts=settings.workflow_max_attempts,
                    give_up_seconds=settings.workflow_download_give_up_hours * 3600.0,
                    failing_streak=job_store.failing_streak,
                ),
                workers=settings.workers,
                on_outcome=on_outcome,
                retry=RetryPolicy(
                    max_attempts=settings.workflow_max_attempts,
                    base_seconds=settings.workflow_retry_base_seconds,
                    max_seconds=settings.workflow_retry_max_seconds,
                ),
            )
            metrics.watch_pool(lambda: pool.depth, lambda: pool.in_flight)
            metrics.watch_job_store(lambda: job_store.unavailable)
            job_store.on_reclaimed = metrics.count_reclaimed  # PostgreSQL: leases that ran out
            try:
                await pool.start()
            except JobStoreUnavailable as exc:  # e.g. PostgreSQL unreachable beyond the start wait
                runtime.startup_error = str(exc)
                raise
            log_new_job_store(settings, job_store)
            reconciler = Reconciler.from_settings(settings, zammad, runtime.store, pool.submit_many, metrics)
            app.state.reconciler = reconciler  # sweeps every RECONCILE_INTERVAL_SECONDS (0: never)
            reconciler.start()
            if on_started is not None:
                on_started()
            log.info(
                "workers started",
                extra={
                    "version": __version__,
                    "workers": settings.workers,
                    "signing": settings.signing_enabled,
                },
            )
            started = True
            yield
        except Exception as exc:
            if not started:  # Hypercorn and Starlette log nothing of it: the cause, with its traceback
                log.exception("start failed")
                if runtime.startup_error is None:  # serve's one line on the terminal
                    cause = " ".join(f"{type(exc).__name__}: {exc}".split())
                    runtime.startup_error = REDACTOR(cause)[:300]
            raise
        finally:
            font_check.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(font_check, *background, return_exceptions=True)
            if reconciler is not None:
                await reconciler.stop()
            if runtime.pool is not None:
                await runtime.pool.stop(settings.shutdown_grace_seconds)
            if runtime.store is not None:
                await runtime.store.close()
            renderer.close()
            if spool_is_temporary:
                shutil.rmtree(spool, ignore_errors=True)
            await session.close()
            await pki_session.close()
            log.info("service stopped")

    metrics = runtime.metrics
    count_ingest_response = metrics.ingest_responses_total.inc  # per request: one call fewer

    def count_response(path: str, status: int) -> None:
        if path in INGEST_PATHS:
            count_ingest_response(status)

    app = ArchiverApp(
        routes=build_routes(runtime),
        middleware=[
            Middleware(RequestLogMiddleware, on_response=count_response),
            Middleware(
                RateLimitMiddleware,
                rate=settings.hardening_rate_limit_rps,
                burst=settings.hardening_rate_limit_burst,
                trusted_proxies=settings.trusted_proxy_networks(),
                on_limited=metrics.rate_limited_total.inc,
            ),
            Middleware(
                BodyLimitMiddleware,
                max_body_size=settings.hardening_body_max_bytes,
                read_timeout=settings.hardening_body_read_timeout_seconds,
            ),
            Middleware(
                HmacSignatureMiddleware,
                secret=settings.webhook_hmac_secret.reveal().encode()
                if settings.webhook_hmac_secret
                else None,
                allow_unsigned=settings.hardening_webhook_allow_unsigned,
                paths=INGEST_PATHS,
                require_delivery_id=settings.hardening_webhook_require_delivery_id,
            ),
        ],
        lifespan=lifespan,
    )
    # No 307 to "<path>/": its Location would come from the Host header, and it has no JSON body.
    app.router.redirect_slashes = False
    app.state.runtime = runtime
    return app


__all__ = ["create_app", "log_request_auth"]
