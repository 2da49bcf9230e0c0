"""The Grafana dashboard and the Prometheus alert rules in ``deploy/`` query what ``/metrics`` exposes.

``deploy/grafana/zammad-pdf-archiver.json`` and ``deploy/prometheus/alerts.yml`` are checked for
their shape (Grafana's dashboard JSON, Prometheus' rule files, runbook links that resolve), every
PromQL expression is parsed far enough to name the metrics it selects, and those names are looked
up in a live scrape of the service on a real Hypercorn. ``promtool check rules`` runs too where
Debian's ``prometheus`` package is installed (``scripts/dev/install-system-deps.sh`` installs it).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.webhook import zammad_webhook
from tests.conftest import HMAC_SECRET, REPO

DASHBOARD = REPO / "deploy" / "grafana" / "zammad-pdf-archiver.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
RUNBOOK = REPO / "docs" / "06-runbook.md"
PREFIX = "zammad_pdf_archiver_"

# PromQL's functions and aggregation operators (https://prometheus.io/docs/prometheus/latest/querying/).
_FUNCTION_NAMES = """
abs absent absent_over_time acos acosh asin asinh atan atanh avg avg_over_time bottomk ceil changes
clamp clamp_max clamp_min count count_over_time count_values cos cosh day_of_month day_of_week
day_of_year days_in_month deg delta deriv exp floor group histogram_count histogram_fraction
histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase
irate label_join label_replace last_over_time limitk ln log10 log2 mad_over_time max max_over_time
min min_over_time minute month pi predict_linear present_over_time quantile quantile_over_time rad
rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev
stddev_over_time stdvar stdvar_over_time sum sum_over_time tan tanh time timestamp topk vector year
"""
FUNCTIONS = frozenset(_FUNCTION_NAMES.split())
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<range>\[[^\[\]]*\])
    | (?P<matchers>\{[^{}]*\})
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[smhdwy]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>(),])""",
    re.VERBOSE,
)
_MATCHERS = re.compile(r'\{\s*(?:[A-Za-z_]\w*\s*(?:=~|!~|!=|=)\s*""\s*(?:,\s*)?)*\}')


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (``rate(x_total{a="b"}[5m])`` → ``{"x_total"}``).

    Grafana's variables (``$instance``, ``${datasource}``, ``$__rate_interval``) are read as
    placeholders. Not a full parser: enough to find every selector and to refuse what is not
    PromQL.

    Raises:
        ValueError: unbalanced parentheses, an unknown function, a malformed label matcher or
            range, or a character PromQL does not have.
    """
    text = _STRING.sub('""', _GRAFANA_VARIABLE.sub("1m", expr))
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unexpected {text[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    names: set[str] = set()
    depth = 0
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "matchers" and not _MATCHERS.fullmatch(value):
            raise ValueError(f"malformed label matchers {value} in {expr!r}")
        if kind == "range" and not re.fullmatch(
            r"\[\s*\d+[smhdwy]+(?:\s*:\s*(?:\d+[smhdwy]+)?)?\s*\]", value
        ):
            raise ValueError(f"malformed range {value} in {expr!r}")
        if kind == "ident":
            if value in LABEL_LISTS:
                if following == "(":  # a list of label names, not selectors: skip to its ")"
                    end = next((j for j in range(i + 2, len(tokens)) if tokens[j][1] == ")"), None)
                    labels = tokens[i + 2 : end] if end is not None else [("op", "(")]
                    if not all(t[0] == "ident" if k % 2 == 0 else t[1] == "," for k, t in enumerate(labels)):
                        raise ValueError(f"malformed label list after {value} in {expr!r}")
                    i = end + 1
                    continue
            elif following == "(" or following in ("by", "without") and value in FUNCTIONS:
                if value not in FUNCTIONS:
                    raise ValueError(f"unknown function {value}() in {expr!r}")
            elif value not in KEYWORDS:
                names.add(value)
        elif value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {expr!r}")
        i += 1
    if depth:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return names


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _dashboard_queries() -> dict[str, str]:
    """Every PromQL expression of the dashboard, by where it is (panel title / refId, variable)."""
    dashboard = _dashboard()
    queries = {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert found, f"variable {variable['name']}: {query!r} is not label_values(selector, label)"
            queries[f"variable {variable['name']}"] = found.group(1)
    return queries


def _alert_queries() -> dict[str, str]:
    return {f"alert {rule['alert']}": rule["expr"] for rule in _alert_rules()}


def _names_by_query(queries: dict[str, str]) -> dict[str, set[str]]:
    return {where: metric_names(expr) for where, expr in queries.items()}


def _runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings (lower case, punctuation dropped, spaces → ``-``)."""
    anchors = set()
    in_code = False
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


# -- the parser -------------------------------------------------------------------------------------


def test_metric_names_finds_selectors_and_skips_functions_labels_and_variables() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, step) (rate(a_bucket{instance=~"$instance", x="}"}'
        "[$__rate_interval]))) / on (instance) group_left b_total > bool 1e3 and c offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names("time() - (max(d_seconds) > 0)") == {"d_seconds"}
    assert metric_names("sum(increase(e_total[1h:5m])) >= 2") == {"e_total"}


@pytest.mark.parametrize(
    "expr",
    ["rate(x[5m]", "sum(x))", "rat(x[5m])", "x{a=b}", "x[5]", "x ; y", "sum by (le x) (y)"],
)
def test_metric_names_refuses_what_is_not_promql(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_and_an_instance_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query" and variables["instance"]["includeAll"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert graphs
    for panel in graphs:
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} {target['refId']} has no expr"
            assert '{instance=~"$instance"' in target["expr"], f"panel {panel['title']!r} ignores $instance"


def test_dashboard_shows_each_topic() -> None:
    shown = set().union(*_names_by_query(_dashboard_queries()).values())
    topics = {
        "webhooks by status": "ingest_responses_total",
        "runs by outcome": "jobs_processed_total",
        "jobs by state": "jobs_ended_total",
        "retries": "job_retries_total",
        "step latencies": "step_duration_seconds_bucket",
        "queue depth": "queue_depth",
        "in flight": "jobs_in_flight",
        "signing certificate expiry": "signing_certificate_expiry_seconds",
        "job store": "job_store_available",
        "reclaims after a lease ran out": "jobs_reclaimed_total",
        "reconciliation sweep": "reconcile_runs_total",
        "audit": "audit_last_run_problems",
    }
    missing = {topic for topic, name in topics.items() if PREFIX + name not in shown}
    assert not missing, f"the dashboard shows nothing of: {sorted(missing)}"


# -- the alert rules ----------------------------------------------------------------------------


def test_alert_rules_have_a_duration_severity_annotations_and_a_runbook_section() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    anchors = _runbook_anchors()
    for rule in rules:
        where = rule["alert"]
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, where
        assert re.fullmatch(r"\d+[smh]", rule["for"]), where
        assert rule["labels"]["severity"] in {"warning", "critical"}, where
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), where
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/06-runbook.md" and anchor in anchors, f"{where}: no runbook section {anchor!r}"
        metric_names(rule["expr"])  # parses
    done = subprocess.run(  # promtool: Debian's prometheus package, installed by make test
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_audit_alerts_fire_on_a_broken_manifest_and_a_stale_audit_but_not_after_a_start() -> None:
    """``deploy/prometheus/alerts.test.yml``: the rules evaluated by promtool on made-up series."""
    done = subprocess.run(
        ["promtool", "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_cover_each_failure() -> None:
    alerted = set().union(*_names_by_query(_alert_queries()).values())
    failures = {
        "dead jobs": "jobs_ended_total",
        "error rate": "jobs_processed_total",
        "queue growing": "queue_depth",
        "certificate expiring": "signing_certificate_expiry_seconds",
        "job store unavailable": "job_store_available",
        "reconciliation failing": "reconcile_runs_total",
        "audit problems": "audit_last_run_problems",
        "manifest chain broken": "audit_manifest_intact",
        "audit stale": "audit_last_run_timestamp_seconds",
    }
    missing = {failure for failure, name in failures.items() if PREFIX + name not in alerted}
    assert not missing, f"no alert on: {sorted(missing)}"
    certificate = next(
        rule for rule in _alert_rules() if PREFIX + "signing_certificate_expiry_seconds" in rule["expr"]
    )
    assert "30 * 86400" in certificate["expr"], "the certificate alert fires 30 days ahead"


# -- against a live /metrics --------------------------------------------------------------------


async def test_every_metric_queried_is_exposed_by_a_live_service(archiver) -> None:
    service = await archiver(OBSERVABILITY_METRICS_ENABLED="true", AUDIT_INTERVAL_HOURS="24")
    body, headers = zammad_webhook({"ticket_id": 4711}, HMAC_SECRET)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.url}/ingest", data=body, headers=headers) as resp:
            assert resp.status == 202
        await service.wait_idle()
        async with session.get(f"{service.url}/metrics") as resp:
            assert resp.status == 200
            exposition = await resp.text()
    samples = {
        sample.name: sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    queried = _names_by_query({**_dashboard_queries(), **_alert_queries()})
    unknown = {
        where: sorted(names - samples.keys()) for where, names in queried.items() if names - samples.keys()
    }
    assert not unknown, f"metrics not in /metrics: {unknown}"
    assert all(names for names in queried.values()), "every query selects a metric"
    # The series the new gauges and counters are fed from: the store answers, the job ended done.
    assert samples[PREFIX + "job_store_available"].value == 1
    ended = {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == PREFIX + "jobs_ended_total"
    }
    assert ended == {"done": 1, "failed": 0, "dead": 0}
    assert samples[PREFIX + "job_retries_total"].value == 0
    reclaimed = {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == PREFIX + "jobs_reclaimed_total"
    }
    assert reclaimed == {"run": 0, "report": 0}  # both series from the start; nothing reclaimed
