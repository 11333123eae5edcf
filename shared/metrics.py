"""Prometheus objects common to every service (consumer loop, HTTP)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_LAG = Gauge(
    "kamwatch_consumer_lag_messages",
    "Messages in the partition not yet committed by the group (from the fetch high watermark)",
    ["group", "topic", "partition"],
)
CONSUMER_RECORDS = Counter("kamwatch_consumer_records_total", "Records consumed", ["group", "topic"])
CONSUMER_BATCH_SECONDS = Histogram(
    "kamwatch_consumer_batch_seconds",
    "Time to process one consumed batch (DB transaction, produce, commit)",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_RETRIES = Counter(
    "kamwatch_consumer_retries_total",
    "Batches retried because the database or broker was unavailable",
    ["group", "cause"],
)
PRODUCED = Counter("kamwatch_produced_messages_total", "Messages produced", ["topic"])
HTTP_REQUESTS = Counter("kamwatch_http_requests_total", "HTTP requests", ["service", "route", "status"])
HTTP_SECONDS = Histogram(
    "kamwatch_http_request_seconds",
    "HTTP request duration",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# Header on kamwatch.events (and carried on by later stages): when the event reached kamwatch,
# as the raw record's broker timestamp in ms.
RECEIVED_HEADER = "kw_received_ms"
PIPELINE_LATENCY = Histogram(
    "kamwatch_pipeline_latency_seconds",
    "Time from when an event reached kamwatch (broker timestamp of its raw record) until the stage "
    "(stored, scored, notified) completed",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
POISON_MESSAGES = Counter(
    "kamwatch_poison_messages_total",
    "Outgoing records skipped because no broker would take them (too large); their rows stay unpublished",
    ["topic"],
)


def scraped_sum(text: str, sample: str, **labels: str) -> float:
    """The sum of one sample's values over the series whose labels include `labels`, from a
    /metrics page in the Prometheus text format (0.0 when none has been exported yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )
