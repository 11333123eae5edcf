"""Prometheus objects of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "kamwatch_ingest_events_total",
    "Raw events by outcome (stored, duplicate, parked, dead_lettered, replayed)",
    ["type", "outcome"],
)
WEBHOOKS = Counter(
    "kamwatch_ingest_webhook_requests_total",
    "Webhook requests by source and outcome",
    ["source", "outcome"],
)
SIGNATURE_FAILURES = Counter(
    "kamwatch_ingest_signature_failures_total", "Webhook signatures that did not verify", ["source"]
)
PARKED = Gauge("kamwatch_ingest_parked_events", "Events waiting for their account to be registered")
STORE_LATENCY = Histogram(
    "kamwatch_pipeline_latency_seconds",
    "Time from the raw record's broker timestamp until the stage completed",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
