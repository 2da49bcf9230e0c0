"""Prometheus metrics of the service (exposition through prometheus-client).

One :class:`Metrics` object per application, on its own ``CollectorRegistry`` (so two apps
in one process, as in tests, do not share counters). Names follow Prometheus conventions:
counters end in ``_total``, durations are ``_seconds`` histograms. No ``*_created`` series:
prometheus-client's default of one per counter and histogram child is turned off
(``disable_created_metrics``, process-wide), which halves the series to scrape and store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

from app.jobs.records import RECLAIM_KINDS, TERMINAL_STATES, OutcomeStatus
from app.reconcile.decisions import ReconcileReason
from app.workflow.steps import FETCH_STEPS, METRIC_STEPS, Step

PREFIX = "zammad_pdf_archiver"
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STEPS = METRIC_STEPS


class StatusCounter:
    """A counter with one label, kept as plain integers and exposed at scrape time.

    For counts taken on the event loop once per request, where prometheus-client's labelled
    ``Counter`` takes two locks (kept for ``make bench`` ingest_cpu: "ours instead of
    prometheus-client's Counter for ingest statuses: instructions saved per webhook / full stack's").
    Increments must all come from one thread (the event loop); scrapes may come from anywhere
    (a dict copy under the GIL). The exposition is the same as a ``Counter``'s with created
    series off: ``<name>_total{label="…"}``.

    Args:
        name: the metric name, with or without ``_total``.
        documentation: the help text.
        label: the label's name.
    """

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts: dict[object, int] = {}

    def inc(self, value: object) -> None:
        """Add one to the count of label value ``value`` (exposed as ``str(value)``; pass one
        type per label value, e.g. always the ``int`` status)."""
        counts = self.counts
        if value in counts:
            counts[value] += 1
        else:
            counts[value] = 1

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in dict(self.counts).items():
            family.add_metric([str(value)], count)
        yield family


class Metrics:
    """The service's metrics.

    Attributes (all prefixed ``zammad_pdf_archiver_``):
        jobs_processed_total{status}: finished jobs by status (``archived``, ``skipped``, ``failed``).
        jobs_failed_total{classification}: failed jobs by ``Transient``/``Permanent``.
        jobs_ended_total{state}: jobs that ended after a run, by ``done``, ``failed`` (Permanent) and
            ``dead`` (Transient, ``WORKFLOW_MAX_ATTEMPTS`` used up).
        job_retries_total: runs that ended Transient with attempts left (the job runs again).
        jobs_reclaimed_total{kind}: with the PostgreSQL job store, what this replica took over
            after its lease ran out (its replica stopped renewing: killed, frozen, cut off from
            the database): ``run`` (a running job, run again here) and ``report`` (an
            undelivered report, delivered here). Given back at a shutdown is not counted;
            always 0 with SQLite.
        job_duration_seconds: wall time of a whole job.
        step_duration_seconds{step}: wall time of ``fetch``, ``render``, ``sign``, ``store``.
        queue_depth, jobs_in_flight: gauges read from the worker pool at scrape time.
        job_store_available: 1 while the job store answers, 0 while it is unavailable (PostgreSQL
            unreachable, SQLite's WAL sync stuck; also 0 before the store is open), read at scrape time.
        zammad_credentials_refused: 1 while Zammad's last answer to the service refused its API
            token (401, or 403 ``API token access disabled!`` or ``Authentication required``:
            :func:`app.zammad.client.refuses_credentials`; jobs fail Transient
            ``zammad_unauthorized`` and are retried), 0 since an answer accepted it (or before
            any answer), read at scrape time.
        ingest_responses_total{status}: answers of ``/ingest`` and ``/ingest/batch`` by HTTP status.
        dedupe_hits_total: webhooks answered ``duplicate`` by delivery id.
        rate_limited_total: requests answered 429.
        signing_certificate_expiry_seconds: seconds until the signing certificate's notAfter
            (negative once expired; 0 while no certificate is loaded).
        signing_certificate_expiring: 1 while the certificate expires within
            ``SIGNING_EXPIRY_WARN_DAYS``, else 0.
        reconcile_runs_total{status}: reconciliation turns of this replica: ``completed``,
            ``failed`` (Zammad's search or the job store failed), ``skipped`` (another
            replica's turn).
        reconcile_tickets_total{reason}: tickets a sweep gave a new job, by ``trigger_tag``
            and ``stale_processing`` (a request merged into a pending job is not counted).
        reconcile_last_run_timestamp_seconds: Unix time this replica last completed a sweep (0: none yet).
        missing_glyphs_total{script}: characters drawn as ``[U+XXXX]`` placeholders because no
            font had them, by script (``CJK``, ``Emoji``, … as
            :func:`app.render.glyphs.script_name` names them); counted in the render
            processes, added here from each render's result.
    """

    def __init__(self) -> None:
        # A global switch in prometheus-client, read at scrape time; the audit's counters
        # (app/audit/schedule.py) follow it too.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_processed_total = Counter(
            f"{PREFIX}_jobs_processed_total", "Finished archive jobs by status", ["status"], registry=r
        )
        self.jobs_failed_total = Counter(
            f"{PREFIX}_jobs_failed_total",
            "Failed archive jobs by classification",
            ["classification"],
            registry=r,
        )
        self.jobs_ended_total = Counter(
            f"{PREFIX}_jobs_ended_total",
            "Archive jobs that ended by state (done, failed, dead)",
            ["state"],
            registry=r,
        )
        self.job_retries_total = Counter(
            f"{PREFIX}_job_retries_total",
            "Runs that ended with a Transient failure and attempts left (the job runs again)",
            registry=r,
        )
        self.jobs_reclaimed_total = Counter(
            f"{PREFIX}_jobs_reclaimed_total",
            "Jobs (run) and reports (report) this replica took over after their lease ran out",
            ["kind"],
            registry=r,
        )
        self.job_duration_seconds = Histogram(
            f"{PREFIX}_job_duration_seconds", "Wall time of one archive job", buckets=_JOB_BUCKETS, registry=r
        )
        self.step_duration_seconds = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Wall time of one job step (fetch, render, sign, store)",
            ["step"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Jobs waiting in the queue", registry=r)
        self.jobs_in_flight = Gauge(f"{PREFIX}_jobs_in_flight", "Jobs running now", registry=r)
        self.job_store_available = Gauge(
            f"{PREFIX}_job_store_available",
            "1 while the job store answers, 0 while it is unavailable",
            registry=r,
        )
        self.zammad_credentials_refused = Gauge(
            f"{PREFIX}_zammad_credentials_refused",
            "1 while Zammad's last answer refused the API token (a 401 or its 403s), else 0",
            registry=r,
        )
        self.ingest_responses_total = StatusCounter(
            f"{PREFIX}_ingest_responses_total",
            "Answers of /ingest and /ingest/batch by HTTP status",
            "status",
        )
        r.register(self.ingest_responses_total)
        self.dedupe_hits_total = Counter(
            f"{PREFIX}_dedupe_hits_total",
            "Webhooks answered as duplicates of an accepted delivery id",
            registry=r,
        )
        self.rate_limited_total = Counter(f"{PREFIX}_rate_limited_total", "Requests answered 429", registry=r)
        self.signing_certificate_expiry_seconds = Gauge(
            f"{PREFIX}_signing_certificate_expiry_seconds",
            "Seconds until the signing certificate expires (negative once expired)",
            registry=r,
        )
        self.signing_certificate_expiring = Gauge(
            f"{PREFIX}_signing_certificate_expiring",
            "1 while the signing certificate expires within SIGNING_EXPIRY_WARN_DAYS, else 0",
            registry=r,
        )
        self.reconcile_runs_total = Counter(
            f"{PREFIX}_reconcile_runs_total",
            "Reconciliation sweeps of this replica by status (completed, failed, skipped)",
            ["status"],
            registry=r,
        )
        self.reconcile_tickets_total = Counter(
            f"{PREFIX}_reconcile_tickets_total",
            "Tickets the reconciliation sweep gave a new job, by reason",
            ["reason"],
            registry=r,
        )
        self.reconcile_last_run_timestamp_seconds = Gauge(
            f"{PREFIX}_reconcile_last_run_timestamp_seconds",
            "Unix time this replica last completed a reconciliation sweep (0: none yet)",
            registry=r,
        )
        self.missing_glyphs_total = Counter(
            f"{PREFIX}_missing_glyphs_total",
            "Characters drawn as placeholders because no font had them, by script",
            ["script"],
            registry=r,
        )
        for status in ("completed", "failed", "skipped"):
            self.reconcile_runs_total.labels(status)
        for reason in ReconcileReason:
            self.reconcile_tickets_total.labels(str(reason))
        for status in OutcomeStatus:
            self.jobs_processed_total.labels(status)
        for state in TERMINAL_STATES:
            self.jobs_ended_total.labels(state)
        for kind in RECLAIM_KINDS:
            self.jobs_reclaimed_total.labels(kind)
        for kind in ("Transient", "Permanent"):
            self.jobs_failed_total.labels(kind)
        for step in STEPS:
            self.step_duration_seconds.labels(step)

    def watch_pool(self, depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the queue depth and in-flight count from these callables at scrape time."""
        self.queue_depth.set_function(depth)
        self.jobs_in_flight.set_function(in_flight)

    def watch_job_store(self, unavailable: Callable[[], str | None]) -> None:
        """Read the job store's availability at scrape time: ``unavailable()`` returns why the
        store cannot be used (exposed as 0), or ``None`` (exposed as 1)."""
        self.job_store_available.set_function(lambda: 0.0 if unavailable() else 1.0)

    def watch_zammad(self, refused: Callable[[], str | None]) -> None:
        """Read at scrape time whether Zammad refuses the API token: ``refused()`` returns the
        last refusal's message (exposed as 1) or ``None`` (exposed as 0); e.g.
        :attr:`app.zammad.client.ZammadClient.credentials_refused`."""
        self.zammad_credentials_refused.set_function(lambda: 0.0 if refused() is None else 1.0)

    def watch_signing_certificate(
        self, seconds_left: Callable[[], float], expiring: Callable[[], bool]
    ) -> None:
        """Read the signing certificate's remaining validity and warning state at scrape time."""
        self.signing_certificate_expiry_seconds.set_function(seconds_left)
        self.signing_certificate_expiring.set_function(lambda: float(expiring()))

    def record_job(
        self, status: str, classification: str | None, seconds: float, step_seconds: dict[str, float] | None
    ) -> None:
        """Count one finished job and its step durations (the fetch steps are summed as ``fetch``)."""
        self.jobs_processed_total.labels(status).inc()
        if status == OutcomeStatus.FAILED and classification:
            self.jobs_failed_total.labels(classification).inc()
        self.job_duration_seconds.observe(seconds)
        if step_seconds:
            fetch = sum(v for k, v in step_seconds.items() if k in FETCH_STEPS)
            if fetch:
                self.step_duration_seconds.labels(Step.FETCH).observe(fetch)
            for step in (Step.RENDER, Step.SIGN, Step.STORE):
                if step in step_seconds:
                    self.step_duration_seconds.labels(step).observe(step_seconds[step])

    def record_job_end(self, state: str | None) -> None:
        """Count how a job went on after a run: ended in ``state`` (``done``, ``failed``,
        ``dead``), or ``None``: it runs again (a retry)."""
        if state is None:
            self.job_retries_total.inc()
        else:
            self.jobs_ended_total.labels(state).inc()

    def count_reclaimed(self, kind: str, count: int) -> None:
        """Add ``count`` jobs or reports this replica took over after their lease ran out,
        ``kind`` ``run`` or ``report`` (:attr:`app.jobs.store.JobStore.on_reclaimed`)."""
        self.jobs_reclaimed_total.labels(kind).inc(count)

    def record_reconcile(self, status: str, queued: Mapping[str, int], finished_at: float | None) -> None:
        """Count one reconciliation turn (``completed``, ``failed``, ``skipped``), the tickets it
        queued by reason, and, for a completed one, its end (Unix seconds)."""
        self.reconcile_runs_total.labels(status).inc()
        for reason, count in queued.items():
            if count:
                self.reconcile_tickets_total.labels(reason).inc(count)
        if finished_at is not None:
            self.reconcile_last_run_timestamp_seconds.set(finished_at)

    def count_missing_glyphs(self, by_script: tuple[tuple[str, int], ...]) -> None:
        """Add one render's characters drawn without a font, ``(script, count)`` pairs."""
        for script, count in by_script:
            if count > 0:
                self.missing_glyphs_total.labels(script).inc(count)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
