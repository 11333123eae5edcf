"""Drivers in words a KAM can act on, and what changed since the previous score."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.signals.features import split_metric_feature
from shared.contracts import Driver

Phrase = Callable[[float, Mapping[str, float], Mapping[str, Any]], str]
MAX_DRIVERS = 5
MIN_CONTRIBUTION = 0.01
PEERS_WEIGHTED = "peers_weighted"  # in details: usage_vs_peers weighs metrics by the churned accounts


def _pct(value: float) -> int:
    return round(abs(1 - value) * 100)


def _vs_baseline(what: str) -> Phrase:
    def phrase(v: float, _f: Mapping[str, float], _d: Mapping[str, Any]) -> str:
        direction = "below" if v < 1 else "above"
        return f"{what} {_pct(v)}% {direction} its 90-day baseline"

    return phrase


def _days(template: str) -> Phrase:
    return lambda v, _f, _d: template.format(n=round(v), s="" if round(v) == 1 else "s")


def _count(template: str) -> Phrase:
    return lambda v, _f, _d: template.format(n=round(v), s="" if round(v) == 1 else "s")


def _key_contact(_v: float, features: Mapping[str, float], details: Mapping[str, Any]) -> str:
    role = str(details.get("key_contact_role") or "champion").replace("_", " ")
    days = round(features.get("days_since_key_contact_departed", 0))
    when = "today" if days == 0 else f"{days} day{'s' if days != 1 else ''} ago"
    return f"{role} left {when}"


PHRASES: dict[str, Phrase] = {
    "usage_ratio_28d_vs_90d": _vs_baseline("usage"),
    "usage_ratio_7d_vs_90d": _vs_baseline("usage in the last 7 days"),
    "active_users_ratio_28d_vs_90d": _vs_baseline("active users"),
    "usage_slope_28d": lambda v, _f, _d: (
        f"usage trending {'down' if v < 0 else 'up'} {abs(v) * 100:.1f}% of baseline per day over 28 days"
    ),
    "days_since_last_activity": _days("no product activity for {n} day{s}"),
    "urgent_tickets_opened_14d": _count("{n} urgent ticket{s} opened in the last 14 days"),
    "urgent_tickets_opened_30d": _count("{n} urgent ticket{s} opened in the last 30 days"),
    "tickets_opened_14d": _count("{n} ticket{s} opened in the last 14 days"),
    "ticket_volume_ratio_30d_vs_90d": lambda v, _f, _d: f"ticket volume {v:.1f}x its usual rate",
    "open_urgent_tickets": _count("{n} urgent ticket{s} still open"),
    "mean_days_to_resolve_90d": _days("tickets take {n} day{s} to resolve on average"),
    "tickets_reopened_90d": _count("{n} ticket{s} reopened in the last 90 days"),
    "csat_avg_90d": lambda v, _f, _d: f"support satisfaction {v:.1f} of 5 over 90 days",
    "max_days_overdue": _days("invoice {n} day{s} overdue"),
    "amount_overdue_to_arr": lambda v, _f, _d: f"{v * 100:.0f}% of ARR overdue",
    "failed_payments_90d": _count("{n} failed payment{s} in the last 90 days"),
    "subscription_cancelling": lambda _v, _f, _d: "subscription set to cancel",
    "subscription_downgrades_90d": _count("{n} subscription downgrade{s} in the last 90 days"),
    "key_contact_departed_90d": _key_contact,
    "days_since_key_contact_departed": _key_contact,
    "new_executive_arrived_90d": lambda _v, _f, _d: "a new executive arrived in the last 90 days",
    "single_threaded": lambda _v, _f, _d: "single-threaded: only one engaged contact left",
    "engaged_contacts": _count("{n} engaged contact{s}"),
    "role_coverage": lambda v, _f, _d: f"only {v * 100:.0f}% of key roles covered",
    "qbr_declined_or_missed_180d": _count("{n} QBR{s} declined or missed in the last 180 days"),
    "days_since_last_meeting": _days("no meeting for {n} day{s}"),
    "last_nps": lambda v, _f, _d: f"last NPS answer {v:.0f}",
    "nps_detractor": lambda _v, f, _d: f"detractor NPS ({f.get('last_nps', 0):.0f})",
    "days_to_renewal": _days("renewal in {n} day{s}"),
    "usage_7d_avg": lambda v, _f, _d: f"usage at {v:,.1f} a day over the last 7 days",
    "usage_28d_avg": lambda v, _f, _d: f"usage at {v:,.1f} a day over the last 28 days",
    "usage_baseline_90d_avg": lambda v, _f, _d: f"usual usage {v:,.1f} a day (90-day baseline)",
    "tickets_opened_30d": _count("{n} ticket{s} opened in the last 30 days"),
    "high_tickets_opened_30d": _count("{n} high-priority ticket{s} opened in the last 30 days"),
    "open_tickets": _count("{n} ticket{s} still open"),
    "csat_responses_90d": _count("{n} support satisfaction answer{s} in 90 days"),
    "overdue_invoices": _count("{n} invoice{s} overdue"),
    "amount_overdue": lambda v, _f, _d: f"{v:,.0f} overdue",
    "qbrs_held_180d": _count("{n} QBR{s} held in the last 180 days"),
    "meetings_held_90d": _count("{n} meeting{s} held in the last 90 days"),
    "payment_lateness_90d": _days("invoices paid {n} day{s} late on average over 90 days"),
    "payment_lateness_vs_usual": lambda v, _f, _d: (
        f"paying {abs(v):.0f} day{'s' if round(abs(v)) != 1 else ''} "
        f"{'later' if v > 0 else 'earlier'} than this account usually does"
    ),
    "overdue_vs_usual_days": _days("invoice overdue {n} day{s} beyond this account's usual lateness"),
    "usage_breadth_28d": _count("{n} product area{s} used in the last 28 days"),
    "usage_breadth_change": lambda v, _f, _d: (
        f"{abs(v):.0f} fewer product area{'s' if round(abs(v)) != 1 else ''} used than in the 8 weeks before"
        if v < 0
        else f"{v:.0f} more product area{'s' if round(v) != 1 else ''} used than in the 8 weeks before"
    ),
    "usage_active_days_28d": lambda v, _f, _d: f"active on {round(v * 28)} of the last 28 days",
    "usage_vs_peers": lambda v, _f, d: (
        f"uses the product {'less' if v < 0 else 'more'} than most accounts in the portfolio "
        f"({abs(v):.1f} spreads {'below' if v < 0 else 'above'} the median over 12 weeks"
        + (", each metric weighted by how the accounts that left used it)" if d.get(PEERS_WEIGHTED) else ")")
    ),
    "usage_trend_8w": lambda v, _f, _d: (
        f"usage trending {'down' if v < 0 else 'up'} {abs(v) * 100:.0f}% of a usual week, week after week"
    ),
    "tenure_days": lambda v, _f, _d: (
        f"customer for {v / 30.4:.0f} month{'s' if round(v / 30.4) != 1 else ''}"
    ),
    "mrr": lambda v, _f, _d: f"recurring revenue {v:,.0f} a month",
    "mrr_change_90d": lambda v, _f, _d: (
        f"recurring revenue {'down' if v < 0 else 'up'} {abs(v) * 100:.0f}% in 90 days"
    ),
    "mrr_contraction_90d": lambda v, _f, _d: f"contracted by {v * 100:.0f}% of recurring revenue in 90 days",
}


def _metric_phrase(metric: str, kind: str, value: float) -> str:
    """Per-metric usage in words (usage.<metric>.<kind>)."""
    name = metric.replace("_", " ")
    if kind == "change_28d":
        direction = "below" if value < 1 else "above"
        return f"{name} {_pct(value)}% {direction} its own baseline (last 28 days against the 8 weeks before)"
    if kind == "trend_8w":
        return (
            f"{name} trending {'down' if value < 0 else 'up'} {abs(value) * 100:.0f}% of a usual week, weekly"
        )
    if kind == "active_days_28d":
        return f"{name} used on {round(value * 28)} of the last 28 days"
    if kind == "per_user_28d":
        return f"{name} at {value:,.1f} a day per active user over 28 days"
    window = {"level_7d": "7", "level_84d": "84", "level_180d": "180"}.get(kind, "28")
    return f"{name} at {value:,.1f} a day over the last {window} days"


def phrase(feature: str, value: float, features: Mapping[str, float], details: Mapping[str, Any]) -> str:
    maker = PHRASES.get(feature)
    parts = split_metric_feature(feature)
    if maker is None and parts is not None:
        return _metric_phrase(parts[0], parts[1], value)
    if maker is None:
        return f"{feature.replace('_', ' ')} is {value:g}"
    return maker(value, features, details)


def top_drivers(
    contributions: Mapping[str, float], features: Mapping[str, float], details: Mapping[str, Any]
) -> list[Driver]:
    """The features that raised the score most, largest first, each with its sentence."""
    ranked = sorted(
        ((c, name) for name, c in contributions.items() if c >= MIN_CONTRIBUTION), key=lambda x: (-x[0], x[1])
    )
    drivers, seen = [], set()
    for contribution, name in ranked:
        text = phrase(name, features.get(name, 0.0), features, details)
        if text in seen:  # two features can tell the same story (key contact left)
            continue
        seen.add(text)
        drivers.append(
            Driver(
                feature=name, value=features.get(name, 0.0), contribution=round(contribution, 6), text=text
            )
        )
        if len(drivers) == MAX_DRIVERS:
            break
    return drivers


def describe_changes(
    previous: Mapping[str, Any] | None,
    score: float,
    band: str,
    drivers: list[Driver],
    contributions: Mapping[str, float] | None = None,
) -> list[str]:
    """What changed since the previous score, in words: only real changes. A driver that merely
    dropped out of the top drivers while it still raises the score is not "no longer" a cause."""
    if previous is None:
        return [f"first score: {score * 100:.0f}% ({band})"]
    changes = []
    before, before_band = float(previous["score"]), str(previous["band"])
    if band != before_band:
        changes.append(f"band {before_band} -> {band}")
    if round(score * 100) != round(before * 100):
        verb = "rose" if score > before else "fell"
        changes.append(f"risk {verb} from {before * 100:.0f}% to {score * 100:.0f}%")
    old = {d["feature"]: d["text"] for d in previous.get("drivers", [])}
    new = {d.feature: d.text for d in drivers}
    changes += [f"new: {text}" for name, text in new.items() if name not in old]
    still = {n for n, c in (contributions or {}).items() if c >= MIN_CONTRIBUTION}
    changes += [f"no longer: {text}" for name, text in old.items() if name not in new and name not in still]
    return changes
