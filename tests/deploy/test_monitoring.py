"""The alerting rules and the Grafana dashboard: every PromQL expression parses (promql-parser,
the Prometheus parser's Rust port), and names only metrics a running mesh really exports,
read from the /metrics of a gateway and a component after traffic that took every path the
rules watch (primary, fallback, last resort, breaker transitions)."""

from __future__ import annotations

import json
from pathlib import Path

import promql_parser
import pytest
import yaml
from telemetry.support import metrics_address, scrape

from harag.v1 import admin_pb2, gateway_pb2
from harag_cli.localports import free_port

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
PROMETHEUS_RULE = REPO / "deploy" / "k8s" / "monitoring" / "prometheus-rule.yaml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "ha-rag.json"
# The seed's thresholds and the resilience layer's signals (README, Operations).
EXPECTED_ALERTS = {
    "HaragLatencyP50High",
    "HaragLatencyP99High",
    "HaragErrorRateHigh",
    "HaragCacheHitRateLow",
    "HaragBreakerOpenTooLong",
    "HaragLastResortShareHigh",
    "HaragShedShareHigh",
    "HaragRetryBudgetExhausted",
    "HaragOutboxBacklog",
    "HaragOutboxDeadLetters",
    "HaragAnswerRatingLow",
    "HaragRetrievalMrrLow",
}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects (raises on a parse error)."""
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exported(scraped: set[str], name: str) -> bool:
    """`scraped` holds sample names, as PromQL selects them: a histogram's _bucket, _count
    and _sum series, a counter's _total."""
    return name in scraped


def test_every_alert_is_there_with_a_threshold_a_duration_and_words():
    by_name = {r["alert"]: r for r in rules()}
    assert set(by_name) == EXPECTED_ALERTS
    for rule in by_name.values():
        assert rule["for"] and rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "> 0.75" in by_name["HaragLatencyP50High"]["expr"]
    assert "> 3" in by_name["HaragLatencyP99High"]["expr"]
    assert "> 0.005" in by_name["HaragErrorRateHigh"]["expr"]
    assert "< 0.5" in by_name["HaragCacheHitRateLow"]["expr"]
    assert "< 3.5" in by_name["HaragAnswerRatingLow"]["expr"]
    assert ">= 10" in by_name["HaragAnswerRatingLow"]["expr"]
    assert "< 0.7" in by_name["HaragRetrievalMrrLow"]["expr"]


def test_every_expression_parses():
    for rule in rules():
        assert metric_names(rule["expr"]), rule["alert"]
    for title, expr in dashboard_queries():
        assert metric_names(expr), title
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(harag_gateway_requests_total[5m])")


def test_the_prometheus_rule_for_kubernetes_holds_the_same_groups():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_the_dashboard_reads_the_provisioned_prometheus():
    provisioning = MONITORING / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
    provider = yaml.safe_load((provisioning / "dashboards" / "ha-rag.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yaml"]


@pytest.fixture
async def scraped_names(clean_faults, extra_gateway) -> set[str]:
    """Metric names of a gateway and a component after primary, fallback and last-resort
    answers, cache hits and breaker transitions."""
    mesh = clean_faults
    port = free_port()
    prices = '{"gpt-4o-mini": {"prompt_per_1k": 0.00015, "completion_per_1k": 0.0006}}'
    async with extra_gateway(
        HARAG_METRICS_PORT=str(port), HARAG_CACHE_TTL_S="60", HARAG_PRICE_TABLE=prices
    ) as gw:
        admin = gw.admin

        async def query(text: str) -> gateway_pb2.QueryResponse:
            return await gw.stub.Query(gateway_pb2.QueryRequest(query=text), timeout=10)

        first = await query("What is a circuit breaker?")
        await query("What is a circuit breaker?")  # a cache hit
        # A rating (the quality gauges) and an evaluation result (the MRR gauge).
        await gw.stub.SubmitFeedback(
            gateway_pb2.SubmitFeedbackRequest(request_id=first.request_id, rating=4), timeout=10
        )
        await admin.RecordEvaluation(
            admin_pb2.RecordEvaluationRequest(
                k=5, mrr=0.9, recall=1.0, questions=1, question_set="monitoring-test"
            ),
            timeout=5,
        )
        for name in ("embedder-primary", "generator-primary", "generator-fallback"):
            await admin.TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(
                    upstream=name, action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
                ),
                timeout=5,
            )
        reply = await query("How are retries budgeted?")
        assert reply.degraded and reply.stages[-1].served_by.startswith("local:")
        gateway = scrape(f"http://127.0.0.1:{port}/metrics")
    component = scrape(metrics_address(mesh.logs.json_of("retriever-primary")))
    return {name for name, _ in gateway} | {name for name, _ in component}


async def test_alerts_and_panels_name_only_exported_metrics(scraped_names):
    missing = {
        (where, name)
        for where, expr in [(r["alert"], r["expr"]) for r in rules()] + dashboard_queries()
        for name in metric_names(expr)
        if not exported(scraped_names, name)
    }
    assert not missing, sorted(missing)
    # The check can fail: a misspelt name is caught.
    assert not exported(scraped_names, "harag_gateway_request_latency_seconds_bucket")
    assert exported(scraped_names, "harag_gateway_request_duration_seconds_bucket")
    assert not exported(scraped_names, "harag_gateway_request_duration_seconds")
