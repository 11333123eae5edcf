"""Prometheus objects of the signals service (labels stay low-cardinality: never an account id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import PIPELINE_LATENCY

EVENTS = Counter(
    "kamwatch_signals_events_total",
    "Canonical events consumed by signals, by type and outcome (applied, duplicate, invalid)",
    ["type", "outcome"],
)
SCORES = Counter(
    "kamwatch_signals_scores_total", "Accounts scored, by what triggered it (event, sweep)", ["trigger"]
)
STATE_CACHE_ACCOUNTS = Gauge(
    "kamwatch_signals_state_cache_accounts", "Accounts whose state the worker holds in memory"
)
STATE_CACHE_ROWS = Gauge(
    "kamwatch_signals_state_cache_rows", "Bucket and entity rows the worker holds in memory (bounded)"
)
STATE_CACHE_LOOKUPS = Counter(
    "kamwatch_signals_state_cache_lookups_total",
    "Account state taken from the worker's memory (hit) or read from the tables (miss)",
    ["result"],
)
RISK_CHANGES = Counter(
    "kamwatch_signals_risk_changes_total", "risk.changed messages decided, by new band", ["band"]
)
ACCOUNTS_BY_BAND = Gauge(
    "kamwatch_signals_accounts_by_band",
    "Scored accounts per risk band (churned: accounts that left)",
    ["band"],
)
ARR_AT_RISK = Gauge(
    "kamwatch_signals_arr_at_risk",
    "Revenue at risk (sum of ARR x churn probability) per band and currency",
    ["band", "currency"],
)
MODEL_INFO = Gauge("kamwatch_signals_model_info", "The risk model in use (value 1)", ["version"])
RENEWALS = Counter(
    "kamwatch_signals_renewals_total",
    "account.renewed events that moved a registry renewal date forward by the term",
)
ACCOUNTS_PUBLISHED = Counter(
    "kamwatch_signals_accounts_published_total", "account.upserted messages acknowledged by the broker"
)

# Exported from start-up at zero, so the first observation already shows as an increase.
PIPELINE_LATENCY.labels("scored")
REVENUE_ARR = Gauge(
    "kamwatch_revenue_arr",
    "Revenue movement of the trailing 90 days (docs/metrics.md), by component and currency: "
    "starting_arr, expansion_<kind>, contraction, churn, ending_arr",
    ["component", "currency"],
)
REVENUE_RETENTION = Gauge(
    "kamwatch_revenue_retention_ratio",
    "Net (nrr) and gross (grr) revenue retention of the trailing 90 days, per currency",
    ["ratio", "currency"],
)

MODEL_DECISIONS = Counter(
    "kamwatch_signals_model_decisions_total",
    "Background retraining outcomes: promoted, rejected (did not beat the model in use and the "
    "scorecard on the latest honest period) or skipped (not enough usable outcomes yet)",
    ["decision"],
)
for _decision in ("promoted", "rejected", "skipped"):
    MODEL_DECISIONS.labels(_decision)
