"""Churn post-mortems from what signals stores: the churn reason, when kamwatch first flagged the
account (amber, red) and the lead times, the top drivers 90 and 30 days before, the churns it
missed, and roll-ups (docs/metrics.md#post-mortems). Alerts, acknowledgements and playbook steps
live in the alerts service: `kamwatch postmortem` adds them from its HTTP API (`with_alerts`), as
services never read each other's tables."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from services.signals import repository
from services.signals.models import Account, RiskHistory, SignalEvent
from services.signals.revenue import CENT
from shared.contracts import CHURNED

DRIVER_DAYS = (90, 30)
LEAD_BUCKETS = ((0, 30, "0-29"), (30, 60, "30-59"), (60, 90, "60-89"), (90, 10**6, "90+"))
UNSPECIFIED = "unspecified"


def _flags(rows: list[RiskHistory]) -> tuple[RiskHistory | None, RiskHistory | None]:
    """The first amber-or-red score of the last flagged stretch before the churn (a green score
    ends a stretch) and the first red score within it."""
    first_flag: RiskHistory | None = None
    first_red: RiskHistory | None = None
    for row in rows:
        if row.band in ("amber", "red"):
            first_flag = first_flag or row
            if row.band == "red":
                first_red = first_red or row
        else:
            first_flag = first_red = None
    return first_flag, first_red


def _score_at(rows: list[RiskHistory], when: datetime) -> dict[str, Any] | None:
    """The score in effect at `when` (the latest change at or before it) with its top drivers."""
    found = None
    for row in rows:
        if row.as_of > when:
            break
        found = row
    if found is None:
        return None
    return {
        "as_of": found.as_of.isoformat(),
        "band": found.band,
        "score": found.score,
        "drivers": [d["text"] for d in found.drivers[:3]],
    }


def _lead(churned_at: datetime, row: RiskHistory | None) -> int | None:
    return (churned_at - row.as_of).days if row is not None else None


def account_postmortem(
    event: SignalEvent, account: Account | None, rows: list[RiskHistory]
) -> dict[str, Any]:
    churned_at = event.event_time
    data = json.loads(event.payload).get("data", {})
    before = [r for r in rows if r.as_of < churned_at and r.band != CHURNED]
    first_flag, first_red = _flags(before)
    record = json.loads(account.record) if account is not None else {}
    arr = data.get("arr") if data.get("arr") is not None else record.get("arr", "0")
    return {
        "account_id": event.account_id,
        "name": record.get("name", event.account_id),
        "tier": record.get("tier"),
        "segment": record.get("segment"),
        "owner": account.owner_name or account.owner_email if account is not None else None,
        "churned_at": churned_at.isoformat(),
        "reason_category": data.get("reason_category") or UNSPECIFIED,
        "reason": data.get("reason"),
        "arr_lost": str(Decimal(str(arr)).quantize(CENT)),
        "currency": data.get("currency") or record.get("currency"),
        "first_amber_at": first_flag.as_of.isoformat() if first_flag else None,
        "first_red_at": first_red.as_of.isoformat() if first_red else None,
        "lead_days_amber": _lead(churned_at, first_flag),
        "lead_days_red": _lead(churned_at, first_red),
        "missed": first_flag is None,
        **{f"before_{d}d": _score_at(before, churned_at - timedelta(days=d)) for d in DRIVER_DAYS},
    }


def _bucket(days: int) -> str:
    return next(name for low, high, name in LEAD_BUCKETS if low <= days < high)


def report(session: Session, since: datetime | None) -> dict[str, Any]:
    """Every account whose latest churn (since `since`) is stored, oldest churn first, with roll-ups."""
    latest: dict[str, SignalEvent] = {}
    for event in repository.churn_events(session, since):
        latest[event.account_id] = event  # oldest first: the last one wins
    ids = sorted(latest)
    accounts = repository.accounts_by_id(session, ids)
    history = repository.history_of(session, ids)
    items = sorted(
        (account_postmortem(latest[i], accounts.get(i), history.get(i, [])) for i in ids),
        key=lambda item: (item["churned_at"], item["account_id"]),
    )
    return {"since": since.isoformat() if since else None, "items": items, "rollups": rollups(items)}


def rollups(items: list[dict[str, Any]]) -> dict[str, Any]:
    amber = sorted(i["lead_days_amber"] for i in items if i["lead_days_amber"] is not None)
    red = sorted(i["lead_days_red"] for i in items if i["lead_days_red"] is not None)
    reasons: Counter[tuple[str, str, str]] = Counter(
        (i["segment"] or "(none)", i["tier"] or "(none)", i["reason_category"]) for i in items
    )
    lost: dict[str, Decimal] = defaultdict(Decimal)
    for item in items:
        lost[item["currency"] or "(none)"] += Decimal(item["arr_lost"])
    return {
        "churned": len(items),
        "flagged": len(amber),
        "missed": [i["account_id"] for i in items if i["missed"]],
        "lead_days_amber": {
            "median": statistics.median(amber) if amber else None,
            "distribution": {name: sum(_bucket(d) == name for d in amber) for _, _, name in LEAD_BUCKETS},
        },
        "lead_days_red": {"median": statistics.median(red) if red else None},
        "reasons": [
            {"segment": s, "tier": t, "reason_category": c, "accounts": n}
            for (s, t, c), n in sorted(reasons.items())
        ],
        "revenue_lost": [{"currency": c, "arr": str(v.quantize(CENT))} for c, v in sorted(lost.items())],
    }


# --- alerts and acknowledgements (from the alerts service's API; `kamwatch postmortem`) ------------
AlertsOf = Callable[[str], list[dict[str, Any]]]


def _minutes(start: str, end: str | None) -> int | None:
    if end is None:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60)


def alert_view(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert of a churned account as the post-mortem shows it (from GET /v1/alerts/{id})."""
    steps = alert.get("tasks") or []
    return {
        "id": alert["id"],
        "opened_at": alert["opened_at"],
        "severity": alert["severity"],
        "triggers": [t["trigger"] for t in alert.get("triggers", [])],
        "level": alert.get("level"),
        "acknowledged_at": alert.get("acknowledged_at"),
        "acknowledged_by": alert.get("acknowledged_by"),
        "minutes_to_ack": _minutes(alert["opened_at"], alert.get("acknowledged_at")),
        "steps_done": [t["title"] for t in steps if t["state"] == "done"],
        "steps_skipped": [t["title"] for t in steps if t["state"] == "skipped"],
        "steps_open": [t["title"] for t in steps if t["state"] == "open"],
    }


def with_alerts(body: dict[str, Any], alerts_of: AlertsOf) -> dict[str, Any]:
    """Each churned account's alerts opened before its churn, with acknowledgement times and the
    playbook steps done; roll-up: the median time to acknowledge."""
    waits: list[int] = []
    for item in body["items"]:
        churned = datetime.fromisoformat(item["churned_at"])
        found = [a for a in alerts_of(item["account_id"]) if datetime.fromisoformat(a["opened_at"]) < churned]
        item["alerts"] = [alert_view(a) for a in sorted(found, key=lambda a: (a["opened_at"], a["id"]))]
        waits += [a["minutes_to_ack"] for a in item["alerts"] if a["minutes_to_ack"] is not None]
    alerts = sum(len(i["alerts"]) for i in body["items"])
    body["rollups"]["alerts"] = {
        "alerts": alerts,
        "acknowledged": len(waits),
        "median_minutes_to_ack": statistics.median(waits) if waits else None,
    }
    return body


def _alerts_lines(body: dict[str, Any]) -> list[str]:
    if body.get("alerts_error"):
        return ["## Alerts", "", f"Alerts not included: {body['alerts_error']}", ""]
    if "alerts" not in body["rollups"]:
        return []
    roll = body["rollups"]["alerts"]
    lines = [
        "## Alerts before the churn",
        "",
        f"{roll['alerts']} alerts, {roll['acknowledged']} acknowledged; median time to acknowledge: "
        f"{roll['median_minutes_to_ack']} minutes.",
        "",
        "| account | alert | opened | triggers | acknowledged (after) | steps done / skipped / open |",
        "|---|---|---|---|---|---|",
    ]
    for item in body["items"]:
        for a in item.get("alerts", []):
            when = (a["acknowledged_at"] or "")[:16].replace("T", " ")
            ack = f"{when} by {a['acknowledged_by']} ({a['minutes_to_ack']} min)" if when else "never"
            ack = ack.replace("|", "/")
            steps = f"{len(a['steps_done'])} / {len(a['steps_skipped'])} / {len(a['steps_open'])}"
            done = "; ".join(a["steps_done"]).replace("|", "/")
            lines.append(
                f"| {item['account_id']} | #{a['id']} {a['severity']} | {a['opened_at'][:10]} "
                f"| {', '.join(a['triggers'])} | {ack} | {steps}{(': ' + done) if done else ''} |"
            )
    return [*lines, ""]


# --- the offline report (kamwatch postmortem) ------------------------------------------------------
def markdown(body: dict[str, Any], chart: str | None) -> str:
    roll = body["rollups"]
    lines = [
        "# Churn post-mortems",
        "",
        f"Churns since {body['since'] or 'the beginning'}: {roll['churned']}; flagged before the churn: "
        f"{roll['flagged']}; missed: {len(roll['missed'])}.",
        f"Median lead time: amber {roll['lead_days_amber']['median']} days, "
        f"red {roll['lead_days_red']['median']} days.",
        "Revenue lost: "
        + (", ".join(f"{r['arr']} {r['currency']}" for r in roll["revenue_lost"]) or "none")
        + ".",
        "",
    ]
    if chart:
        lines += [f"![lead times]({chart})", ""]
    lines += [
        "## Accounts",
        "",
        "| account | churned | reason | ARR lost | first amber (lead) | first red (lead) |",
    ]
    lines += ["|---|---|---|---|---|---|"]
    for i in body["items"]:
        amber = f"{i['first_amber_at'][:10]} ({i['lead_days_amber']} d)" if i["first_amber_at"] else "missed"
        red = f"{i['first_red_at'][:10]} ({i['lead_days_red']} d)" if i["first_red_at"] else "-"
        reason = (i["reason_category"] + (f": {i['reason']}" if i["reason"] else "")).replace("|", "/")
        lines.append(
            f"| {i['account_id']} | {i['churned_at'][:10]} | {reason} "
            f"| {i['arr_lost']} {i['currency'] or ''} | {amber} | {red} |"
        )
    lines += ["", "## Drivers before the churn", ""]
    for i in body["items"]:
        for days in DRIVER_DAYS:
            seen = i[f"before_{days}d"]
            text = (
                f"{seen['band']} {seen['score']:.2f}: " + "; ".join(seen["drivers"])
                if seen
                else "not scored yet"
            )
            lines.append(f"- {i['account_id']}, {days} days before: {text}")
    lines += ["", "## Missed churns (never amber or red before the churn)", ""]
    lines += [f"- {a}" for a in roll["missed"]] or ["- none"]
    lines += [
        "",
        "## Reasons by segment and tier",
        "",
        "| segment | tier | reason | accounts |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['segment']} | {r['tier']} | {r['reason_category']} | {r['accounts']} |"
        for r in roll["reasons"]
    ]
    lines += ["", *_alerts_lines(body)]
    return "\n".join(lines)


def chart(body: dict[str, Any], path: Path) -> bool:
    """A PNG of the lead times per account (bars: amber and red lead days; missed shown at 0).
    False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    items = body["items"]
    names = [i["account_id"] for i in items]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.5 * len(items) + 2), 4))
    positions = range(len(items))
    axes.bar(
        [p - 0.2 for p in positions],
        [i["lead_days_amber"] or 0 for i in items],
        0.4,
        label="amber",
        color="#e0a800",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [i["lead_days_red"] or 0 for i in items],
        0.4,
        label="red",
        color="#c62828",
    )
    axes.set_xticks(list(positions), names, rotation=45, ha="right")
    axes.set_ylabel("days of warning before the churn")
    axes.set_title("Lead time of each churn (0 = missed)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
