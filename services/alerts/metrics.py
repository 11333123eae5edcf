"""Prometheus objects of the alerts service (no account id in any label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import PIPELINE_LATENCY

OPENED = Counter("kamwatch_alerts_opened_total", "Alerts opened", ["trigger", "severity"])
ESCALATED = Counter("kamwatch_alerts_escalated_total", "Escalations to a higher level", ["level"])
ACKNOWLEDGED = Counter(
    "kamwatch_alerts_acknowledged_total", "Alerts acknowledged, by the level reached", ["level"]
)
DELIVERIES = Counter(
    "kamwatch_alert_deliveries_total",
    "Delivery attempts by outcome (sent, retry, failed, uncertain, cancelled)",
    ["channel", "outcome"],
)
OUTBOX_DEPTH = Gauge("kamwatch_alert_outbox_depth", "Messages waiting in the outbox (pending or sending)")
FAILED_DELIVERIES = Gauge(
    "kamwatch_alert_deliveries_failed", "Messages that failed permanently (see GET /v1/alerts/{id})"
)
TIME_TO_ACK = Histogram(
    "kamwatch_alert_time_to_ack_seconds",
    "Time from opening an alert until someone acknowledged it",
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
)
OPEN = Gauge("kamwatch_alerts_open", "Alerts not resolved, by escalation level (0 = not yet sent)", ["level"])
STEP_FAILURES = Counter(
    "kamwatch_alert_step_failures_total",
    "Escalation steps that failed and will be retried (see the alert history)",
)
TASKS_OVERDUE = Counter(
    "kamwatch_alert_tasks_overdue_total",
    "Playbook steps that passed their due date and escalated their alert",
)
TASKS_FINISHED = Counter(
    "kamwatch_alert_tasks_finished_total", "Playbook steps marked done or skipped", ["state"]
)
INVALID_RECORDS = Counter(
    "kamwatch_alerts_invalid_records_total", "Input records that failed validation (dead-lettered)", ["topic"]
)

# Exported from start-up at zero, so the first observation already shows as an increase.
PIPELINE_LATENCY.labels("notified")

# Every channel/outcome exported at zero from start-up: a failure rate (the alert rule, the
# dashboard) then exists before the first failure and sees it as an increase.
for _channel in ("slack", "email"):
    for _outcome in ("sent", "retry", "failed", "uncertain", "cancelled"):
        DELIVERIES.labels(_channel, _outcome)
