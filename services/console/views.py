"""What the pages show, computed from API answers (pure functions over plain data)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

ROLES = (
    ("executive_sponsor", "Executive sponsor"),
    ("champion", "Champion"),
    ("decision_maker", "Decision maker"),
    ("technical_evaluator", "Technical evaluator"),
    ("influencer", "Influencers"),
    ("user", "Users"),
)
# Roles a key account should always have covered; an empty one is a gap to fill.
KEY_ROLES = ("executive_sponsor", "champion", "technical_evaluator")
RECENT = timedelta(days=90)
BANDS = ("red", "amber", "green", "no_data", "churned")
SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def relationship_map(
    contacts: list[dict[str, Any]], notes: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """Contacts by role with who left or arrived recently, role-coverage gaps, single-threading."""
    by_note = {n["contact_id"]: n for n in notes}
    roles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for contact in contacts:
        since = parse_time(contact.get("since"))
        recent = since is not None and now - since <= RECENT
        note = by_note.get(contact["contact_id"], {})
        roles[str(contact.get("role"))].append(
            {
                **contact,
                "name": note.get("name") or contact["contact_id"],
                "influence": note.get("influence"),
                "relationship": note.get("relationship"),
                "departed": not contact["active"],
                "recent": recent,
                "days": (now - since).days if since else None,
            }
        )
    active = [c for cs in roles.values() for c in cs if not c["departed"]]
    return {
        "roles": [
            {
                "role": role,
                "label": label,
                "contacts": sorted(roles.get(role, []), key=lambda c: c["departed"]),
                "gap": role in KEY_ROLES and not _covered(roles.get(role, [])),
            }
            for role, label in ROLES
        ],
        "gaps": [label for role, label in ROLES if role in KEY_ROLES and not _covered(roles.get(role, []))],
        "single_threaded": len(active) <= 1,
        "active": len(active),
        "departed_recently": [c for cs in roles.values() for c in cs if c["departed"] and c["recent"]],
        "arrived_recently": [
            c
            for cs in roles.values()
            for c in cs
            if not c["departed"] and c["recent"] and c["last_change"] == "joined"
        ],
    }


def _covered(contacts: list[dict[str, Any]]) -> bool:
    return any(not c["departed"] for c in contacts)


def band_totals(totals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per band (red first; no_data and churned only when there are any): accounts, and ARR /
    revenue at risk per currency."""
    rows = []
    for band in BANDS:
        mine = [t for t in totals if t["band"] == band]
        if band in ("no_data", "churned") and not mine:
            continue
        rows.append(
            {
                "band": band,
                "accounts": sum(t["accounts"] for t in mine),
                "money": [(t["currency"], t["arr"], t["revenue_at_risk"]) for t in mine],
            }
        )
    return rows


def open_alert_counts(alerts: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for alert in alerts:
        counts[alert["account_id"]] += 1
    return counts


def group_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts by account, the account with the most severe and escalated alert first."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        groups[alert["account_id"]].append(alert)

    def rank(alert: dict[str, Any]) -> tuple[int, int, str]:
        return (
            SEVERITY_ORDER.get(alert.get("severity", ""), 9),
            -int(alert.get("level", 0)),
            alert["opened_at"],
        )

    ordered = sorted(groups.items(), key=lambda item: min(rank(a) for a in item[1]))
    return [{"account_id": account, "alerts": sorted(items, key=rank)} for account, items in ordered]


def age(since: str | None, now: datetime) -> str:
    """'3 h', '2 d', '5 min' or '<1 min'."""
    at = parse_time(since)
    if at is None:
        return ""
    seconds = max(0, int((now - at).total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds >= 60 else "<1 min"


def days_until(day: str | None, today: date) -> int | None:
    return (date.fromisoformat(day) - today).days if day else None


def money(value: Any, currency: str | None = None) -> str:
    """12,500 EUR (no decimals: the console shows orders of magnitude)."""
    try:
        amount = f"{float(value):,.0f}"
    except (TypeError, ValueError):
        return ""
    return f"{amount} {currency}" if currency else amount


def history_points(items: list[dict[str, Any]]) -> list[tuple[datetime, float, str]]:
    """History answers are newest first; the chart wants oldest first."""
    ordered = sorted(items, key=lambda i: (i["as_of"], i["id"]))
    return [(datetime.fromisoformat(i["as_of"]), float(i["score"]), str(i["band"])) for i in ordered]
