"""The renewals desk: accounts renewing within a window, with a forecast from risk plus MRR trend
(docs/metrics.md#renewals). Alerts and tasks live in the alerts service and are not joined here."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.signals import repository
from services.signals.revenue import CENT, RATIO, ZERO_MRR_STATUSES

BAND_ORDER = {"red": 0, "amber": 1, "green": 2, "no_data": 3, None: 3}
TREND_DAYS = 90  # MRR now against MRR this many days ago
TREND_STEP = Decimal("0.05")  # a move of 5 % or more either way is a trend


def mrr_at(events: list[Any], when: datetime) -> Decimal | None:
    """The account's MRR at `when`: the sum over subscriptions of the latest MRR then (None: no
    subscription known by then)."""
    mrr: dict[str, Decimal] = {}
    for row in events:
        if row.event_time > when:
            break
        data = json.loads(row.payload).get("data", {})
        amount = Decimal(0) if data.get("status") in ZERO_MRR_STATUSES else Decimal(str(data.get("mrr", "0")))
        mrr[str(data.get("subscription_id"))] = amount
    return sum(mrr.values(), Decimal(0)) if mrr else None


def mrr_trend(events: list[Any], now: datetime) -> Decimal | None:
    """(MRR now - MRR 90 days ago) / MRR 90 days ago; None without MRR 90 days ago."""
    then = mrr_at(events, now - timedelta(days=TREND_DAYS))
    current = mrr_at(events, now)
    if not then or current is None:
        return None
    return (current - then) / then


def forecast(band: str | None, trend: Decimal | None) -> tuple[str, str]:
    """The rule (first match wins): red -> churn; amber, or MRR down 5 % or more -> contract;
    green with MRR up 5 % or more -> expand; otherwise renew."""
    if band == "red":
        return "churn", "risk band red"
    if band == "amber":
        return "contract", "risk band amber"
    if trend is not None and trend <= -TREND_STEP:
        return "contract", f"MRR {_pct(trend)} over {TREND_DAYS} days"
    if trend is not None and trend >= TREND_STEP:
        return "expand", f"MRR {_pct(trend)} over {TREND_DAYS} days"
    return "renew", "low risk, MRR steady" if trend is not None else "low risk, no MRR history"


def _pct(trend: Decimal) -> str:
    return f"{trend * 100:+.1f} %"


def _desk_order(item: dict[str, Any]) -> tuple[int, Decimal, str]:
    return (BAND_ORDER[item["band"]], -Decimal(item["arr"]), item["account_id"])


def desk(session: Session, now: datetime, within: int) -> dict[str, Any]:
    today = now.date()
    rows = repository.renewing(session, today, today + timedelta(days=within))
    events: dict[str, list[Any]] = defaultdict(list)
    for row in repository.events_of(session, [a.id for a, _ in rows], ["subscription.changed"], now):
        events[row.account_id].append(row)
    items = []
    totals: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for account, risk in rows:
        arr = Decimal(str(json.loads(account.record).get("arr", account.arr)))
        band = risk.band if risk is not None else None
        trend = mrr_trend(events[account.id], now)
        state, why = forecast(band, trend)
        assert account.renewal_date is not None  # the query only returns dated accounts
        items.append(
            {
                "account_id": account.id,
                "name": account.name,
                "owner": account.owner_name or account.owner_email,
                "tier": account.tier,
                "arr": str(arr.quantize(CENT)),
                "currency": account.currency,
                "band": band,
                "score": risk.score if risk is not None else None,
                "renewal_date": account.renewal_date.isoformat(),
                "days_to_renewal": (account.renewal_date - today).days,
                "mrr_trend": str(trend.quantize(RATIO)) if trend is not None else None,
                "forecast": state,
                "forecast_reason": why,
            }
        )
        totals[(band or "unscored", account.currency)].append(arr)
    items.sort(key=_desk_order)
    return {
        "as_of": today.isoformat(),
        "within_days": within,
        "items": items,
        "totals": [
            {
                "band": band,
                "currency": currency,
                "accounts": len(v),
                "arr": str(sum(v, Decimal(0)).quantize(CENT)),
            }
            for (band, currency), v in sorted(
                totals.items(), key=lambda kv: (BAND_ORDER.get(kv[0][0], 3), kv[0][1])
            )
        ],
    }
