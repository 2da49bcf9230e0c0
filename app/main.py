"""The application factory and its lifespan.

``app.main:create_app`` is an ASGI app factory (``hypercorn --factory`` or any ASGI server).
It reads the settings once and builds the middleware chain (request log → rate limit → body
limit → HMAC → routes). The lifespan creates the aiohttp sessions (Zammad; TSA and OCSP/CRL),
the Zammad client, the signer (key loaded once), the storage with its manifest, the render
pool, the job store and the worker pool, and starts the manifest timestamps and the scheduled
audit; on shutdown it drains the pool within ``SHUTDOWN_GRACE_SECONDS`` and
closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware

from app import SERVICE_NAME, __version__
from app.audit.service import open_manifest, start_archive_checks
from app.config import Settings, load_settings
from app.http.body_limit import BodyLimitMiddleware
from app.http.errors import ArchiverApp
from app.http.hmac_auth import HmacSignatureMiddleware
from app.http.rate_limit import RateLimitMiddleware
from app.http.request_log import RequestLogMiddleware
from app.http.routes import routes
from app.jobs.outcomes import RetryPolicy
from app.jobs.pool import WorkerPool
from app.jobs.records import JobRecord, JobStoreUnavailable
from app.jobs.store import JobStore, create_job_store
from app.observability.logging import REDACTOR, configure_logging
from app.observability.metrics import Metrics
from app.reconcile.sweep import Reconciler
from app.render.images import image_references
from app.render.options import RenderOptions
from app.render.pool import ProcessPoolRenderer
from app.signing.factory import UnavailableSigner, build_signer, open_pki_session
from app.signing.signer import ArchiveSigner
from app.storage.store import ArchiveStore
from app.workflow.archive import ArchiveOutcome, ArchiveWorkflow
from app.workflow.originals import EmbedPolicy
from app.workflow.ports import Guard, SignerPort
from app.workflow.report import Report
from app.zammad.client import ZammadClient

log = logging.getLogger("app")

INGEST_PATHS = frozenset({"/ingest", "/ingest/batch"})

GC_GEN0_THRESHOLD = 10_000
"""The collector's first-generation threshold while the service runs (Python's default: 700).

The collector runs a young-generation pass whenever the tracked objects allocated since the
last pass, less those freed, exceed it. Every request in flight holds a few dozen such objects
(coroutines, closures, futures) while it waits for its group commit, so at the default a pass
ran every ~13 webhooks under load and scanned the ~2,000 objects of the requests in flight each
time — ~100 µs a pass, ~9 µs a webhook on the ingest benchmark (measured with ``gc.callbacks``).
With 10,000 the count stays below it on that load: what a request allocates is freed by reference
counting when it ends, and only cyclic garbage waits longer (at most ~10,000 objects, a few MB).
The older generations keep their defaults; a higher threshold set before the start is kept."""


class ArchiveRunner:
    """Adapts :class:`ArchiveWorkflow` to the worker pool's :class:`~app.jobs.pool.JobRunner`."""

    def __init__(self, workflow: ArchiveWorkflow, *, max_attempts: int) -> None:
        self.workflow = workflow
        self.max_attempts = max_attempts

    async def execute(self, job: JobRecord, *, guard: Guard | None = None) -> ArchiveOutcome:
        """Run the job's archive.

        Every job runs with ``resume=True``: the store lets one job per ticket run at a time
        (with several replicas too: a run needs the job's lease), so a ``pdf:processing`` tag
        found when a job starts was left by an interrupted run (a crash, a replica that died,
        or a shutdown whose tag revert did not reach Zammad) — the job takes it over instead
        of leaving the ticket stuck.

        ``guard``: see :data:`app.workflow.ports.Guard` (the pool's lease check).
        """
        archived_at = datetime.fromisoformat(job.archived_at) if job.archived_at else None
        return await self.workflow.execute(
            job.ticket_id,
            job_id=job.job_id,
            delivery_id=job.delivery_id,
            force=job.force,
            resume=True,
            archived_at=archived_at,
            guard=guard,
        )

    def report(self, job: JobRecord, outcome: ArchiveOutcome, *, gave_up: bool) -> Report | None:
        """The job's final tags and note."""
        return self.workflow.report(
            outcome, job_id=job.job_id, delivery_id=job.delivery_id, attempts=job.attempts, gave_up=gave_up
        )

    async def deliver(
        self, job: JobRecord, report: Report, *, fresh: bool = False, guard: Guard | None = None
    ) -> None:
        """Write the report to the ticket (idempotent; ``fresh``, ``guard``: see :meth:`ArchiveWorkflow.deliver`)."""
        await self.workflow.deliver(job.ticket_id, report, job_id=job.job_id, fresh=fresh, guard=guard)


@dataclass
class Runtime:
    """What the routes and the lifespan share: settings, metrics and live components."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: WorkerPool | None = None
    store: JobStore | None = None
    signer: SignerPort | None = None
    workflow: ArchiveWorkflow | None = None
    startup_error: str | None = None
    """Why the lifespan could not start (``serve`` prints it as its one line), else ``None``."""

    def signer_error(self) -> str | None:
        """Why the signer is not usable, or ``None`` when it is (or signing is off)."""
        if self.signer is None:
            return "not loaded yet"
        if isinstance(self.signer, UnavailableSigner):
            return str(self.signer.error)
        return None


def _ssl_context(verify: bool) -> ssl.SSLContext | bool:
    return ssl.create_default_context() if verify else False


SPOOL_FOLDER = "spool"
"""The folder under ``STATE_DIR`` for per-job working files (snapshot, rendered and signed PDF)."""


def open_spool(settings: Settings) -> tuple[Path, bool]:
    """The folder for per-job working files, emptied: ``STATE_DIR/spool`` with a durable state
    (local disk, see the runbook), else a new temporary folder. Returns it and whether it is
    temporary (remove it at shutdown).

    Leftovers in ``STATE_DIR/spool`` are from jobs a crash interrupted; the job store runs
    those jobs again from the start, so they are removed.

    Raises:
        OSError: the folder cannot be created.
    """
    if settings.state_durable and settings.state_dir is not None:
        spool = settings.state_dir / SPOOL_FOLDER
        shutil.rmtree(spool, ignore_errors=True)
        spool.mkdir(parents=True, exist_ok=True)
        return spool, False
    return Path(tempfile.mkdtemp(prefix="zammad-pdf-archiver-spool-")), True


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
        gc_thresholds = gc.get_threshold()
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
        )
        spool, spool_is_temporary = open_spool(settings)
        renderer = ProcessPoolRenderer(render_options, processes=settings.render_processes)
        background: list[asyncio.Task[None]] = []
        reconciler: Reconciler | None = None
        try:
            assert settings.storage_root is not None and settings.zammad_api_token is not None
            zammad = ZammadClient(
                session,
                settings.zammad_base_url,
                settings.zammad_api_token.reveal(),
                timeout_seconds=settings.zammad_timeout_seconds,
            )
            runtime.signer = build_signer(settings, pki_session)
            if isinstance(runtime.signer, ArchiveSigner):
                signer = runtime.signer
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
            runtime.workflow = ArchiveWorkflow(
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
            )
            workflow = runtime.workflow

            metrics = runtime.metrics

            def on_outcome(job: JobRecord, outcome: ArchiveOutcome, seconds: float) -> None:
                metrics.record_job(
                    outcome.status,
                    outcome.failure.classification.value if outcome.failure else None,
                    seconds,
                    outcome.step_seconds,
                )

            runtime.store = create_job_store(settings)
            runtime.pool = WorkerPool(
                runtime.store,
                ArchiveRunner(workflow, max_attempts=settings.workflow_max_attempts),
                workers=settings.workers,
                on_outcome=on_outcome,
                retry=RetryPolicy(
                    max_attempts=settings.workflow_max_attempts,
                    base_seconds=settings.workflow_retry_base_seconds,
                    max_seconds=settings.workflow_retry_max_seconds,
                ),
            )
            pool = runtime.pool
            metrics.watch_pool(lambda: pool.depth, lambda: pool.in_flight)
            try:
                await runtime.pool.start()
            except JobStoreUnavailable as exc:  # e.g. PostgreSQL unreachable beyond the start wait
                runtime.startup_error = str(exc)
                raise
            reconciler = Reconciler.from_settings(settings, zammad, runtime.store, pool.submit_many, metrics)
            app.state.reconciler = reconciler  # sweeps every RECONCILE_INTERVAL_SECONDS (0: never)
            reconciler.start()
            # Everything imported and built so far lives as long as the process: move it out of
            # the collector's reach, so a full collection does not walk fpdf2's, pyHanko's and
            # fontTools' objects again and again under load (it stalled /ingest for tens of ms).
            gc.collect()
            gc.freeze()
            gc.set_threshold(max(GC_GEN0_THRESHOLD, gc_thresholds[0]), *gc_thresholds[1:])
            log.info(
                "workers started",
                extra={
                    "version": __version__,
                    "workers": settings.workers,
                    "signing": settings.signing_enabled,
                },
            )
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            gc.set_threshold(*gc_thresholds)
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
        routes=routes,
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


__all__ = ["Runtime", "create_app"]
