"""Health features of one account as of a time t, from its daily buckets and entity snapshots.

Pure and deterministic: the same state, account and as-of time give the same dict, bit for bit.
The catalog (name, window, unit, meaning) is documented in docs/features.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import repeat
from typing import Any

from services.signals.state import KEY_ROLES, USAGE_PREFIX, USERS_PREFIX, Counts, EntityRow, parse_iso

HISTORY_DAYS = 181  # the longest window (180 days) plus today
NEVER = 999.0  # "days since" when it never happened within the kept history
BASELINE_DAYS = 90
METRIC_BASELINE_DAYS = 56  # per-metric change: the last 28 days against the 56 before them
COVERED_ROLES = ("executive_sponsor", "champion", "decision_maker")
MAX_METRICS = 12  # per-metric features for the account's busiest metrics (by 28+56-day volume)
METRIC_FEATURES = (
    "level_7d",
    "level_28d",
    "level_84d",
    "level_180d",
    "change_28d",
    "trend_8w",
    "active_days_28d",
    "per_user_28d",
)
DEFAULT_TERM_MONTHS = 12


@dataclass(frozen=True)
class AccountInfo:
    """What the registry says about an account that features need."""

    arr: float = 0.0
    renewal_date: date | None = None
    term_months: int | None = None


def metric_feature(metric: str, kind: str) -> str:
    """The name of one per-metric feature, e.g. usage.api_calls.level_28d."""
    return f"usage.{metric}.{kind}"


def split_metric_feature(name: str) -> tuple[str, str] | None:
    """(metric, kind) of a per-metric feature name, else None."""
    if not name.startswith("usage.") or name.count(".") < 2:
        return None
    metric, _, kind = name[len("usage.") :].rpartition(".")
    return (metric, kind) if kind in METRIC_FEATURES else None


class Window:
    """Daily counters of one account by "days ago" (0 = the as-of day), for fast window sums."""

    def __init__(self, buckets: Mapping[date, Counts], today: date) -> None:
        self.buckets = buckets
        self.today = today
        day = today.toordinal()
        self._by_ago = {
            ago: c for d, c in buckets.items() if 0 <= (ago := day - d.toordinal()) <= HISTORY_DAYS
        }
        self._days: list[Counts] | None = None
        self._names: set[str] | None = None
        self._series: dict[str, list[int | None]] = {}

    def series(self, name: str) -> list[int | None]:
        """Index = days ago; None where the day has no such counter. Built on first use, one
        counter at a time: over a mostly full window at C speed (map over the days), over a
        sparse one from the days that have counters; a counter no day holds costs nothing.
        Building every counter's series in one Python loop over the days was the largest cost
        of a live re-score of an account with months of history."""
        values = self._series.get(name)
        if values is None:
            values = self._series[name] = self._build(name, None)
        return values

    def counts(self, name: str) -> list[int]:
        """Like `series`, with 0 where the day has no such counter."""
        return self._build(name, 0)

    def _build(self, name: str, missing: Any) -> list[Any]:
        if name not in self.names():
            return [missing] * (HISTORY_DAYS + 1)
        if 2 * len(self._by_ago) > HISTORY_DAYS:  # mostly full: one C-speed pass over every day
            return list(map(dict.get, self._day_list(), repeat(name), repeat(missing)))
        values = [missing] * (HISTORY_DAYS + 1)  # sparse: only the days that have counters
        for ago, counts in self._by_ago.items():
            value = counts.get(name)
            if value is not None:
                values[ago] = value
        return values

    def _day_list(self) -> list[Counts]:
        if self._days is None:
            empty: Counts = {}
            self._days = [self._by_ago.get(ago, empty) for ago in range(HISTORY_DAYS + 1)]
        return self._days

    def names(self) -> set[str]:
        """The counters some day of the window holds."""
        if self._names is None:
            self._names = set().union(*self._by_ago.values())
        return self._names

    def total(self, name: str, length: int, start_ago: int = 0) -> int:
        """Sum over `length` days ending `start_ago` days before the as-of day."""
        return sum(filter(None, self.series(name)[start_ago : start_ago + length]))

    def ago(self, day: date) -> int:
        return (self.today - day).days

    def last_day(self, names: Iterable[str]) -> date | None:
        wanted = tuple(names)
        hits = [
            d for d, c in self.buckets.items() if d <= self.today and any(c.get(n, 0) > 0 for n in wanted)
        ]
        return max(hits) if hits else None


def state_bounds(as_of: datetime) -> tuple[date, datetime]:
    """The oldest bucket day, and the oldest change of a closed entity, that features as of
    `as_of` read."""
    return as_of.date() - timedelta(days=HISTORY_DAYS), as_of - timedelta(days=HISTORY_DAYS)


def relevant_state(
    buckets: Mapping[date, Counts], entities: Iterable[EntityRow], as_of: datetime
) -> tuple[dict[date, Counts], list[EntityRow]]:
    """The part of an account's state features read (what the live path loads from the DB)."""
    since_day, since = state_bounds(as_of)
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
    features.update(metric_features(window, by_kind.get("usage", [])))
    features.update(account_features(window, by_kind, account, as_of))
    return {name: round(float(value), 6) for name, value in features.items()}, details


def renewal_on_or_after(renewal: date | None, day: date, term_months: int | None) -> date | None:
    """The next renewal on or after `day`: the registry's renewal date stepped by whole contract
    terms (the registry keeps only the current renewal date; contracts renew every term)."""
    if renewal is None:
        return None
    term = term_months or DEFAULT_TERM_MONTHS
    months = (day.year - renewal.year) * 12 + day.month - renewal.month
    candidate = _add_months(renewal, (months // term - 1) * term)  # a renewal before the day
    while candidate < day:  # at most two steps to the first one on or after it
        candidate = _add_months(candidate, term)
    return candidate


def _add_months(value: date, months: int) -> date:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for day in (value.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise ValueError(f"no valid day for {value} + {months} months")


def account_features(
    window: Window, by_kind: Mapping[str, list[EntityRow]], account: AccountInfo, as_of: datetime
) -> dict[str, float]:
    """Tenure, recurring revenue and its changes, and the contract renewal."""
    first = by_kind.get("tenure", [])
    first_seen = date.fromisoformat(first[0].state["first_seen"]) if first else None
    subscriptions = [s for s in by_kind.get("subscription", []) if s.active]
    mrr = sum(float(s.state.get("mrr") or 0) for s in subscriptions)
    expansion = window.total("mrr_expansion_cents", 90) / 100
    contraction = window.total("mrr_contraction_cents", 90) / 100
    mrr_before = mrr - expansion + contraction
    renewal = renewal_on_or_after(account.renewal_date, as_of.date(), account.term_months)
    return {
        "tenure_days": float(max(0, (as_of.date() - first_seen).days)) if first_seen else 0.0,
        "mrr": mrr,
        "mrr_change_90d": (mrr - mrr_before) / mrr_before if mrr_before > 0 else 0.0,
        "mrr_contraction_90d": contraction / mrr_before if mrr_before > 0 else 0.0,
        "days_to_renewal": float((renewal - as_of.date()).days) if renewal else NEVER,
    }


# --- usage per metric -----------------------------------------------------------------------
def metrics_in(window: Window) -> list[str]:
    """The account's busiest metrics over the last 84 days (volume, then name: deterministic)."""
    volume: dict[str, int] = {}
    cut = len(USAGE_PREFIX)
    for name in window.names():
        if name.startswith(USAGE_PREFIX):
            recent = window.series(name)[: 28 + METRIC_BASELINE_DAYS]
            if any(v is not None for v in recent):
                volume[name[cut:]] = sum(filter(None, recent))
    ranked = sorted(volume.items(), key=lambda item: (-item[1], item[0]))
    return [metric for metric, _ in ranked[:MAX_METRICS]]


def metric_features(window: Window, spans: list[EntityRow]) -> dict[str, float]:
    """Per metric: level (7, 28, 84 and 180 days), change against its own baseline, 8-week trend,
    active-day share and rate per active user; plus breadth (metrics used now versus before)."""
    span = spans[0].state if spans else {}
    first = date.fromisoformat(span["first_seen"]) if span.get("first_seen") else None
    known = window.ago(first) + 1 if first is not None else 0
    features: dict[str, float] = {}
    used_now = used_before = 0
    for metric in metrics_in(window):
        # Milli-units as stored (integers: sums are exact and fast); levels divide by 1000 once.
        series = window.counts(USAGE_PREFIX + metric)
        level28 = _mean_known(series, 0, 28, known)
        baseline = _mean_known(series, 28, METRIC_BASELINE_DAYS, known)
        used_now += any(series[:28])
        used_before += any(series[28 : 28 + METRIC_BASELINE_DAYS])
        users = [u for u in window.series(USERS_PREFIX + metric)[:28] if u]
        values = {
            "level_7d": _mean_known(series, 0, 7, known) or 0.0,
            "level_28d": level28 or 0.0,
            "level_84d": _mean_known(series, 0, 84, known) or 0.0,
            "level_180d": _mean_known(series, 0, 180, known) or 0.0,
            "change_28d": _change(level28, baseline),
            "trend_8w": _weekly_trend(series, known),
            "active_days_28d": _active_share(series, known),
            "per_user_28d": (level28 or 0.0) / (sum(users) / len(users)) if users else 0.0,
        }
        features.update({metric_feature(metric, kind): value for kind, value in values.items()})
    all_usage = window.counts("usage_milli")
    features["usage_breadth_28d"] = float(used_now)
    features["usage_breadth_change"] = float(used_now - used_before) if known > 28 else 0.0
    features["usage_active_days_28d"] = _active_share(all_usage, known)
    features["usage_trend_8w"] = _weekly_trend(all_usage, known)
    return features


def _mean_known(milli: list[int], start_ago: int, length: int, known: int) -> float | None:
    """Mean units per day over [start_ago, start_ago + length), counting only days since first
    usage (`milli`: the daily milli-units)."""
    days = min(start_ago + length, known) - start_ago
    return sum(milli[start_ago : start_ago + days]) / 1000 / days if days > 0 else None


def _change(now: float | None, baseline: float | None) -> float:
    """now / baseline, 1.0 when unknown; a metric picked up from nothing counts as doubled."""
    if now is None or baseline is None:
        return 1.0
    if baseline <= 0:
        return 1.0 if now <= 0 else 2.0
    return min(now / baseline, 10.0)


def _active_share(series: list[int], known: int) -> float:
    days = min(28, known)
    return sum(1 for v in series[:days] if v > 0) / days if days > 0 else 0.0


def _weekly_trend(series: list[int], known: int) -> float:
    """Least-squares slope of weekly totals over up to 8 full weeks, as a fraction of the mean
    week, per week (-0.1 = falling by a tenth of a usual week every week); clipped to [-1, 1]."""
    weeks = min(8, known // 7)
    if weeks < 3:
        return 0.0
    totals = [sum(series[w * 7 : w * 7 + 7]) for w in range(weeks - 1, -1, -1)]  # oldest first
    mean = sum(totals) / weeks
    if mean <= 0:
        return 0.0
    xs = range(weeks)
    mean_x = (weeks - 1) / 2
    slope = sum((x - mean_x) * (y - mean) for x, y in zip(xs, totals, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return max(-1.0, min(1.0, slope / mean))


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
    late_recent = _mean_late(window, 0, 90)
    late_usual = _mean_late(window, 90, HISTORY_DAYS - 90)
    max_overdue = float(max(overdue_days, default=0))
    return {
        "payment_lateness_90d": late_recent or 0.0,
        "payment_lateness_vs_usual": (late_recent - late_usual)
        if late_recent is not None and late_usual is not None
        else 0.0,
        "overdue_vs_usual_days": max(0.0, max_overdue - (late_usual or late_recent or 0.0))
        if max_overdue
        else 0.0,
        "max_days_overdue": max_overdue,
        "overdue_invoices": float(len(overdue_days)),
        "amount_overdue": float(overdue_amount),
        "amount_overdue_to_arr": float(overdue_amount) / account.arr if account.arr > 0 else 0.0,
        "failed_payments_90d": float(window.total("payments_failed", 90)),
        "subscription_cancelling": float(any(s.state.get("cancelling") for s in subscriptions)),
        "subscription_downgrades_90d": float(window.total("subscription_downgrades", 90)),
    }


def _mean_late(window: Window, start_ago: int, length: int) -> float | None:
    """Mean days late of the invoices paid in the window, or None when none was paid."""
    paid = window.total("invoices_paid", length, start_ago)
    return window.total("invoices_paid_late_days", length, start_ago) / paid if paid else None


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
    "payment_lateness_90d",
    "payment_lateness_vs_usual",
    "overdue_vs_usual_days",
    "usage_breadth_28d",
    "usage_breadth_change",
    "usage_active_days_28d",
    "usage_trend_8w",
    "tenure_days",
    "mrr",
    "mrr_change_90d",
    "mrr_contraction_90d",
)
# ARR-derived features are excluded from training: the registry keeps only the current ARR, so
# past values are unknown (recurring revenue enters through `mrr`, from subscription events).
# days_to_renewal is kept: the current renewal date is stepped back by whole contract terms to
# the renewal ahead of each observation date (renewal_on_or_after).
MODEL_FEATURES = tuple(n for n in FEATURE_NAMES if n not in ("amount_overdue_to_arr", "amount_overdue"))
# Features that are not names in FEATURE_NAMES but follow the per-metric pattern are valid too.
HEAVY_TAILED = {
    "usage_7d_avg",
    "usage_28d_avg",
    "usage_baseline_90d_avg",
    "days_since_last_activity",
    "tickets_opened_14d",
    "tickets_opened_30d",
    "open_tickets",
    "mean_days_to_resolve_90d",
    "csat_responses_90d",
    "max_days_overdue",
    "days_since_key_contact_departed",
    "days_since_last_meeting",
    "days_to_renewal",
    "tenure_days",
    "mrr",
    "payment_lateness_90d",
    "overdue_vs_usual_days",
    "engaged_contacts",
}


def is_heavy_tailed(name: str) -> bool:
    """Counts, levels, amounts and day spans: log-transformed on the model path."""
    parts = split_metric_feature(name)
    if parts is not None:
        return parts[1] in ("level_7d", "level_28d", "level_84d", "level_180d", "per_user_28d")
    return name in HEAVY_TAILED


# Features a scorer derives from an account's features and the portfolio (not folded state):
# usage_vs_peers (services/signals/peers.py), only while the day-one scorecard is in use.
DERIVED_FEATURES = ("usage_vs_peers",)


def is_known_feature(name: str) -> bool:
    return name in FEATURE_NAMES or name in DERIVED_FEATURES or split_metric_feature(name) is not None
