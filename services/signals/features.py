"""Health features of one account as of a time t, from its daily buckets and entity snapshots.

Pure and deterministic: the same state, account and as-of time give the same dict, bit for bit.
The catalog (name, window, unit, meaning) is documented in docs/features.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.signals.state import KEY_ROLES, Counts, EntityRow, parse_iso

HISTORY_DAYS = 181  # the longest window (180 days) plus today
NEVER = 999.0  # "days since" when it never happened within the kept history
BASELINE_DAYS = 90
COVERED_ROLES = ("executive_sponsor", "champion", "decision_maker")


@dataclass(frozen=True)
class AccountInfo:
    """What the registry says about an account that features need."""

    arr: float = 0.0
    renewal_date: date | None = None


class Window:
    """Daily counters of one account by "days ago" (0 = the as-of day), for fast window sums."""

    def __init__(self, buckets: Mapping[date, Counts], today: date) -> None:
        self.buckets = buckets
        self.today = today
        self._by_ago = {
            (today - d).days: c for d, c in buckets.items() if 0 <= (today - d).days <= HISTORY_DAYS
        }
        self._series: dict[str, list[int | None]] = {}

    def series(self, name: str) -> list[int | None]:
        """Index = days ago; None where the day has no such counter."""
        values = self._series.get(name)
        if values is None:
            values = [None] * (HISTORY_DAYS + 1)
            for ago, counts in self._by_ago.items():
                values[ago] = counts.get(name)
            self._series[name] = values
        return values

    def total(self, name: str, length: int, start_ago: int = 0) -> int:
        """Sum over `length` days ending `start_ago` days before the as-of day."""
        return sum(v for v in self.series(name)[start_ago : start_ago + length] if v)

    def ago(self, day: date) -> int:
        return (self.today - day).days

    def last_day(self, names: Iterable[str]) -> date | None:
        wanted = tuple(names)
        hits = [
            d for d, c in self.buckets.items() if d <= self.today and any(c.get(n, 0) > 0 for n in wanted)
        ]
        return max(hits) if hits else None


def relevant_state(
    buckets: Mapping[date, Counts], entities: Iterable[EntityRow], as_of: datetime
) -> tuple[dict[date, Counts], list[EntityRow]]:
    """The part of an account's state features read (what the live path loads from the DB)."""
    since_day = as_of.date() - timedelta(days=HISTORY_DAYS)
    since = as_of - timedelta(days=HISTORY_DAYS)
    kept = {d: c for d, c in buckets.items() if d >= since_day}
    return kept, [e for e in entities if e.active or e.event_time >= since]


def compute_features(
    buckets: Mapping[date, Counts], entities: Iterable[EntityRow], account: AccountInfo, as_of: datetime
) -> tuple[dict[str, float], dict[str, Any]]:
    """All features as of `as_of`, plus details the driver sentences use (e.g. which role left)."""
    window = Window(buckets, as_of.date())
    by_kind: dict[str, list[EntityRow]] = {}
    for row in sorted(entities, key=lambda r: (r.kind, r.entity_id)):
        by_kind.setdefault(row.kind, []).append(row)
    features: dict[str, float] = {}
    details: dict[str, Any] = {}
    features.update(usage_features(window, by_kind.get("usage", [])))
    features.update(ticket_features(window, by_kind.get("ticket", []), as_of))
    features.update(
        payment_features(window, by_kind.get("invoice", []), by_kind.get("subscription", []), account, as_of)
    )
    features.update(relationship_features(window, by_kind.get("contact", []), as_of, details))
    features.update(engagement_features(window, by_kind.get("nps", [])))
    features["days_to_renewal"] = (
        float((account.renewal_date - as_of.date()).days) if account.renewal_date else NEVER
    )
    return {name: round(float(value), 6) for name, value in features.items()}, details


# --- usage -----------------------------------------------------------------------------------
def _daily_mean(window: Window, name: str, length: int, start_ago: int, first: date | None) -> float | None:
    """Mean per day over the window, counting only days since the first ever usage (new accounts)."""
    if first is None:
        return None
    days = min(start_ago + length, window.ago(first) + 1) - start_ago
    if days <= 0:
        return None
    return window.total(name, days, start_ago) / days / 1000


def _ratio(value: float | None, baseline: float | None) -> float:
    if value is None or not baseline:
        return 1.0
    return value / baseline


def usage_features(window: Window, spans: list[EntityRow]) -> dict[str, float]:
    span = spans[0].state if spans else {}
    first = date.fromisoformat(span["first_seen"]) if span.get("first_seen") else None
    last = date.fromisoformat(span["last_active"]) if span.get("last_active") else None
    baseline = _daily_mean(window, "usage_milli", BASELINE_DAYS, 28, first)
    mean28 = _daily_mean(window, "usage_milli", 28, 0, first)
    mean7 = _daily_mean(window, "usage_milli", 7, 0, first)
    return {
        "usage_7d_avg": mean7 or 0.0,
        "usage_28d_avg": mean28 or 0.0,
        "usage_baseline_90d_avg": baseline or 0.0,
        "usage_ratio_7d_vs_90d": _ratio(mean7, baseline),
        "usage_ratio_28d_vs_90d": _ratio(mean28, baseline),
        "usage_slope_28d": _slope(window, first, baseline),
        "days_since_last_activity": float(max(0, (window.today - last).days)) if last else 0.0,
        "active_users_ratio_28d_vs_90d": _active_users_ratio(window),
    }


def _slope(window: Window, first: date | None, baseline: float | None) -> float:
    """Least-squares slope of daily usage over 28 days, as a fraction of the baseline per day."""
    days = min(28, window.ago(first) + 1) if first is not None else 0
    if days < 2 or not baseline:
        return 0.0
    series = window.series("usage_milli")
    ys = [(series[ago] or 0) / 1000 for ago in range(days - 1, -1, -1)]  # oldest first
    xs = list(range(len(ys)))
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    var = sum((x - mean_x) ** 2 for x in xs)
    return cov / var / baseline


def _active_users_ratio(window: Window) -> float:
    series = window.series("max_active_users")

    def mean(length: int, start_ago: int) -> float | None:
        values = [v for v in series[start_ago : start_ago + length] if v is not None]
        return sum(values) / len(values) if values else None

    return _ratio(mean(28, 0), mean(BASELINE_DAYS, 28))


# --- tickets ---------------------------------------------------------------------------------
def ticket_features(window: Window, tickets: list[EntityRow], as_of: datetime) -> dict[str, float]:
    opened = ("tickets_opened_low", "tickets_opened_normal", "tickets_opened_high", "tickets_opened_urgent")
    opened_30 = sum(window.total(n, 30) for n in opened)
    baseline_rate = sum(window.total(n, BASELINE_DAYS, 30) for n in opened) / BASELINE_DAYS
    open_tickets = [t for t in tickets if t.active]
    csat_count = window.total("csat_count", 90)
    return {
        "tickets_opened_14d": float(sum(window.total(n, 14) for n in opened)),
        "tickets_opened_30d": float(opened_30),
        "urgent_tickets_opened_14d": float(window.total("tickets_opened_urgent", 14)),
        "urgent_tickets_opened_30d": float(window.total("tickets_opened_urgent", 30)),
        "high_tickets_opened_30d": float(window.total("tickets_opened_high", 30)),
        "ticket_volume_ratio_30d_vs_90d": (opened_30 + 1) / (baseline_rate * 30 + 1),
        "open_tickets": float(len(open_tickets)),
        "open_urgent_tickets": float(sum(1 for t in open_tickets if t.state.get("priority") == "urgent")),
        "mean_days_to_resolve_90d": _mean_resolve_days(tickets, as_of),
        "tickets_reopened_90d": float(window.total("tickets_reopened", 90)),
        "csat_responses_90d": float(csat_count),
        "csat_avg_90d": window.total("csat_sum", 90) / csat_count if csat_count else 0.0,
    }


def _mean_resolve_days(tickets: list[EntityRow], as_of: datetime) -> float:
    since = as_of - timedelta(days=90)
    spans = []
    for ticket in tickets:
        closed_at = ticket.event_time
        if ticket.active or not ticket.state.get("opened_at") or not since <= closed_at <= as_of:
            continue
        spans.append(max(0.0, (closed_at - parse_iso(ticket.state["opened_at"])).total_seconds() / 86400))
    return sum(spans) / len(spans) if spans else 0.0


# --- payments --------------------------------------------------------------------------------
def payment_features(
    window: Window,
    invoices: list[EntityRow],
    subscriptions: list[EntityRow],
    account: AccountInfo,
    as_of: datetime,
) -> dict[str, float]:
    overdue_days, overdue_amount = [], Decimal(0)
    for invoice in invoices:
        due = date.fromisoformat(invoice.state["due_date"]) if invoice.state.get("due_date") else None
        if not invoice.active or due is None or due >= as_of.date():
            continue
        overdue_days.append((as_of.date() - due).days)
        overdue_amount += Decimal(invoice.state.get("amount") or "0")
    return {
        "max_days_overdue": float(max(overdue_days, default=0)),
        "overdue_invoices": float(len(overdue_days)),
        "amount_overdue": float(overdue_amount),
        "amount_overdue_to_arr": float(overdue_amount) / account.arr if account.arr > 0 else 0.0,
        "failed_payments_90d": float(window.total("payments_failed", 90)),
        "subscription_cancelling": float(any(s.state.get("cancelling") for s in subscriptions)),
        "subscription_downgrades_90d": float(window.total("subscription_downgrades", 90)),
    }


# --- relationships ---------------------------------------------------------------------------
def relationship_features(
    window: Window, contacts: list[EntityRow], as_of: datetime, details: dict[str, Any]
) -> dict[str, float]:
    departed = [
        c for c in contacts if not c.active and c.state.get("role") in KEY_ROLES and c.event_time <= as_of
    ]
    latest = max(departed, key=lambda c: (c.event_time, c.entity_id), default=None)
    since = float((as_of.date() - latest.event_time.date()).days) if latest else NEVER
    if latest is not None:
        details["key_contact_role"] = latest.state.get("role")
    active = [c for c in contacts if c.active]
    roles = {c.state.get("role") for c in active}
    return {
        "key_contact_departed_90d": 1.0 if since <= 90 else 0.0,
        "days_since_key_contact_departed": since,
        "new_executive_arrived_90d": 1.0 if window.total("executives_joined", 90) else 0.0,
        "engaged_contacts": float(len(active)),
        "single_threaded": 1.0 if contacts and len(active) <= 1 else 0.0,
        "role_coverage": sum(1 for r in COVERED_ROLES if r in roles) / len(COVERED_ROLES),
    }


# --- engagement ------------------------------------------------------------------------------
def engagement_features(window: Window, nps: list[EntityRow]) -> dict[str, float]:
    last_meeting = window.last_day(["meeting_held", "qbr_held"])
    last_nps = float(nps[0].state["score"]) if nps else -1.0
    return {
        "qbr_declined_or_missed_180d": float(
            window.total("qbr_declined", 180) + window.total("qbr_no_show", 180)
        ),
        "qbrs_held_180d": float(window.total("qbr_held", 180)),
        "meetings_held_90d": float(window.total("meeting_held", 90) + window.total("qbr_held", 90)),
        "days_since_last_meeting": float((window.today - last_meeting).days) if last_meeting else NEVER,
        "last_nps": last_nps,
        "nps_detractor": 1.0 if 0 <= last_nps <= 6 else 0.0,
    }


FEATURE_NAMES = (
    "usage_7d_avg",
    "usage_28d_avg",
    "usage_baseline_90d_avg",
    "usage_ratio_7d_vs_90d",
    "usage_ratio_28d_vs_90d",
    "usage_slope_28d",
    "days_since_last_activity",
    "active_users_ratio_28d_vs_90d",
    "tickets_opened_14d",
    "tickets_opened_30d",
    "urgent_tickets_opened_14d",
    "urgent_tickets_opened_30d",
    "high_tickets_opened_30d",
    "ticket_volume_ratio_30d_vs_90d",
    "open_tickets",
    "open_urgent_tickets",
    "mean_days_to_resolve_90d",
    "tickets_reopened_90d",
    "csat_responses_90d",
    "csat_avg_90d",
    "max_days_overdue",
    "overdue_invoices",
    "amount_overdue",
    "amount_overdue_to_arr",
    "failed_payments_90d",
    "subscription_cancelling",
    "subscription_downgrades_90d",
    "key_contact_departed_90d",
    "days_since_key_contact_departed",
    "new_executive_arrived_90d",
    "engaged_contacts",
    "single_threaded",
    "role_coverage",
    "qbr_declined_or_missed_180d",
    "qbrs_held_180d",
    "meetings_held_90d",
    "days_since_last_meeting",
    "last_nps",
    "nps_detractor",
    "days_to_renewal",
)
# ARR-derived features are excluded from training: the registry keeps only the current ARR, so
# past values are unknown. days_to_renewal is kept: training projects the current renewal date
# to its yearly anniversary on or after each observation date (see training.renewal_on_or_after).
MODEL_FEATURES = tuple(n for n in FEATURE_NAMES if n not in ("amount_overdue_to_arr", "amount_overdue"))
