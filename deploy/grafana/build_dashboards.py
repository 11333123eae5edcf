"""Writes the provisioned Grafana dashboards (deploy/grafana/dashboards/*.json) from one place.

Run `python deploy/grafana/build_dashboards.py` after editing; tests/deploy/test_grafana.py fails
when the committed JSON differs from what this script writes. Every panel query is checked against
a real Prometheus scraping the services (tests/observability/test_dashboards.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "kamwatch-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"
RATE = "$__rate_interval"
TIME_TO_ACK = "sum by (le) (increase(kamwatch_alert_time_to_ack_seconds_bucket[7d]))"


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    width: int = 12,
) -> dict[str, Any]:
    """One panel; `targets` are (PromQL, legend) pairs. Positions are filled in by `layout`."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                **({"format": "table", "instant": True} if kind == "table" else {}),
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    x = y = 0
    for number, item in enumerate(panels, start=1):
        width = item["gridPos"]["w"]
        if x + width > 24:
            x, y = 0, y + 8
        item["id"] = number
        item["gridPos"] = {"h": 8, "w": width, "x": x, "y": y}
        x += width
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kamwatch"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"title": "kamwatch", "type": "dashboards", "tags": ["kamwatch"], "asDropdown": False}],
        "panels": layout(panels),
    }


def quantile(q: float, metric: str, selector: str = "", by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))"


def pipeline_health() -> dict[str, Any]:
    panels = [
        panel(
            "Services up",
            [('up{job=~"kamwatch-.*"}', "{{service}}")],
            kind="stat",
            width=6,
            description="1 = Prometheus scrapes the service's /metrics.",
        ),
        panel(
            "Parked events",
            [("sum(kamwatch_ingest_parked_events)", "parked")],
            kind="stat",
            width=6,
            description="Events waiting for their account to be registered.",
        ),
        panel(
            "Failed batch retries (database or broker away)",
            [
                (
                    f"sum by (group, cause) (rate(kamwatch_consumer_retries_total[{RATE}]))",
                    "{{group}} {{cause}}",
                )
            ],
            unit="ops",
        ),
        panel(
            "Events stored per second, by type",
            [(f'sum by (type) (rate(kamwatch_ingest_events_total{{outcome="stored"}}[{RATE}]))', "{{type}}")],
            unit="ops",
        ),
        panel(
            "Ingest outcomes (stored, duplicate, parked, dead_lettered, replayed)",
            [(f"sum by (outcome) (rate(kamwatch_ingest_events_total[{RATE}]))", "{{outcome}}")],
            unit="ops",
        ),
        panel(
            "Records consumed per second, by group and topic",
            [
                (
                    f"sum by (group, topic) (rate(kamwatch_consumer_records_total[{RATE}]))",
                    "{{group}} {{topic}}",
                )
            ],
            unit="ops",
        ),
        panel(
            "Consumer lag (high watermark - committed)",
            [("sum by (group, topic) (kamwatch_consumer_lag_messages)", "{{group}} {{topic}}")],
            description="Messages not yet committed by the group, from the fetch high watermark.",
        ),
        panel(
            "Latency p95: event reached kamwatch -> stored, -> scored, -> notified",
            [
                (quantile(0.95, "kamwatch_pipeline_latency_seconds", '{stage="stored"}'), "stored (ingest)"),
                (quantile(0.95, "kamwatch_pipeline_latency_seconds", '{stage="scored"}'), "scored (signals)"),
                (
                    quantile(0.95, "kamwatch_pipeline_latency_seconds", '{stage="notified"}'),
                    "notified (alerts)",
                ),
            ],
            unit="s",
        ),
        panel(
            "Batch duration p95, by group",
            [(quantile(0.95, "kamwatch_consumer_batch_seconds", by="group"), "{{group}}")],
            unit="s",
        ),
        panel(
            "Dead letters per second",
            [
                (
                    f'sum by (type) (rate(kamwatch_ingest_events_total{{outcome="dead_lettered"}}[{RATE}]))',
                    "ingest {{type}}",
                ),
                (
                    f'sum(rate(kamwatch_signals_events_total{{outcome="dead_lettered"}}[{RATE}]))',
                    "signals",
                ),
                (f"sum by (topic) (rate(kamwatch_alerts_invalid_records_total[{RATE}]))", "alerts {{topic}}"),
            ],
            unit="ops",
        ),
        panel(
            "Webhook requests, by source and outcome",
            [
                (
                    f"sum by (source, outcome) (rate(kamwatch_ingest_webhook_requests_total[{RATE}]))",
                    "{{source}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            "Webhook signature failures (last hour)",
            [("sum by (source) (increase(kamwatch_ingest_signature_failures_total[1h]))", "{{source}}")],
        ),
        panel(
            "HTTP requests, by service and status",
            [
                (
                    f"sum by (service, status) (rate(kamwatch_http_requests_total[{RATE}]))",
                    "{{service}} {{status}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            "Messages produced, by topic",
            [(f"sum by (topic) (rate(kamwatch_produced_messages_total[{RATE}]))", "{{topic}}")],
            unit="ops",
        ),
    ]
    return dashboard(
        "kamwatch-pipeline",
        "kamwatch / Pipeline health",
        "Throughput, consumer lag, latency, dead letters and parked events of ingest, signals and alerts.",
        panels,
    )


def portfolio_risk() -> dict[str, Any]:
    panels = [
        panel(
            "Accounts by band",
            [("max by (band) (kamwatch_signals_accounts_by_band)", "{{band}}")],
            kind="bargauge",
            width=8,
        ),
        panel(
            "ARR at risk by band (ARR x churn probability)",
            [("max by (band, currency) (kamwatch_signals_arr_at_risk)", "{{band}} {{currency}}")],
            kind="bargauge",
            width=8,
        ),
        panel(
            "Model in use",
            [("max by (version) (kamwatch_signals_model_info)", "{{version}}")],
            kind="table",
            width=8,
            description="The scorecard or trained model version scoring now.",
        ),
        panel(
            "Movers: accounts entering a band (last hour)",
            [("sum by (band) (increase(kamwatch_signals_risk_changes_total[1h]))", "into {{band}}")],
            description="risk.changed messages decided, by the band the account moved to.",
        ),
        panel(
            "Accounts in each band over time",
            [("max by (band) (kamwatch_signals_accounts_by_band)", "{{band}}")],
        ),
        panel(
            "Revenue retention, trailing 90 days (NRR, GRR)",
            [("max by (ratio, currency) (kamwatch_revenue_retention_ratio)", "{{ratio}} {{currency}}")],
            unit="percentunit",
            description="Net and gross revenue retention of the accounts that had ARR 90 days ago "
            "(docs/metrics.md); GET /v1/metrics/revenue gives any period and slice.",
        ),
        panel(
            "Revenue movement, trailing 90 days",
            [("max by (component, currency) (kamwatch_revenue_arr)", "{{component}} {{currency}}")],
            kind="bargauge",
            description="Starting ARR, expansion by component, contraction, churn and ending ARR.",
        ),
        panel(
            "Accounts scored per second, by trigger",
            [(f"sum by (trigger) (rate(kamwatch_signals_scores_total[{RATE}]))", "{{trigger}}")],
            unit="ops",
        ),
        panel(
            "Events applied by signals, by type",
            [
                (
                    f"sum by (type, outcome) (rate(kamwatch_signals_events_total[{RATE}]))",
                    "{{type}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
    ]
    return dashboard(
        "kamwatch-portfolio",
        "kamwatch / Portfolio risk",
        "Accounts and revenue at risk by band, movers between bands, the model in use.",
        panels,
    )


def alerting() -> dict[str, Any]:
    panels = [
        panel(
            "Open alerts by level",
            [("max by (level) (kamwatch_alerts_open)", "level {{level}}")],
            kind="bargauge",
            width=8,
            description="Level 0 = opened, not yet sent.",
        ),
        panel(
            "Outbox depth", [("sum(kamwatch_alert_outbox_depth)", "pending + sending")], kind="stat", width=8
        ),
        panel(
            "Permanently failed deliveries",
            [("sum(kamwatch_alert_deliveries_failed)", "failed")],
            kind="stat",
            width=8,
            description="GET /v1/alerts/{id} shows each error.",
        ),
        panel(
            "Alerts opened, by trigger and severity (last hour)",
            [
                (
                    "sum by (trigger, severity) (increase(kamwatch_alerts_opened_total[1h]))",
                    "{{trigger}} {{severity}}",
                )
            ],
        ),
        panel(
            "Escalations and acknowledgements, by level (last hour)",
            [
                ("sum by (level) (increase(kamwatch_alerts_escalated_total[1h]))", "escalated to {{level}}"),
                (
                    "sum by (level) (increase(kamwatch_alerts_acknowledged_total[1h]))",
                    "acknowledged at {{level}}",
                ),
            ],
        ),
        panel(
            "Time to acknowledge (median, p90; last 7 days)",
            [
                (
                    f"histogram_quantile(0.5, {TIME_TO_ACK})",
                    "median",
                ),
                (
                    f"histogram_quantile(0.9, {TIME_TO_ACK})",
                    "p90",
                ),
            ],
            unit="s",
        ),
        panel(
            "Deliveries, by channel and outcome",
            [
                (
                    f"sum by (channel, outcome) (rate(kamwatch_alert_deliveries_total[{RATE}]))",
                    "{{channel}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
        panel(
            "Delivery failures and retries, by channel (last hour)",
            [
                (
                    "sum by (channel, outcome) "
                    '(increase(kamwatch_alert_deliveries_total{outcome=~"failed|retry"}[1h]))',
                    "{{channel}} {{outcome}}",
                )
            ],
        ),
    ]
    return dashboard(
        "kamwatch-alerting",
        "kamwatch / Alerting",
        "Open alerts by level, escalations, time to acknowledge, delivery failures.",
        panels,
    )


DASHBOARDS = {
    "pipeline-health.json": pipeline_health,
    "portfolio-risk.json": portfolio_risk,
    "alerting.json": alerting,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
