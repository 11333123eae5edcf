"""Prometheus objects of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import PIPELINE_LATENCY

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

# Exported from start-up at zero, so the first observation already shows as an increase.
PIPELINE_LATENCY.labels("stored")
INBOX = Gauge("kamwatch_ingest_inbox_depth", "Events answered 202 and not yet consumed by ingest")
RERELAYED = Counter(
    "kamwatch_ingest_rerelayed_total",
    "Rows published again because the broker came back empty (inbox rows, stored events)",
    ["kind"],
)
