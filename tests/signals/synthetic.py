"""A synthetic labelled portfolio for training: churners show support trouble, detractor NPS and a
declined QBR before they leave; healthy accounts have usage dips (seasonality) that a usage-heavy
scorecard mistakes for risk."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from tests.signals.streams import DAY, event


def _account_events(
    account: str, rng: random.Random, start: datetime, days: int, churn_day: int | None
) -> list[Any]:
    base = rng.uniform(500, 2000)
    dip_start = rng.randint(40, days - 40)
    last = churn_day if churn_day is not None else days
    events = []
    for d in range(0, last, 2):
        factor = 0.45 if churn_day is None and dip_start <= d < dip_start + 30 else 1.0
        if churn_day is not None and d > churn_day - 60:
            factor = 0.9
        quantity = 2 * base * factor * rng.uniform(0.9, 1.1)
        events.append(
            event(
                "usage.recorded",
                account,
                start + d * DAY,
                {"metric": "calls", "quantity": round(quantity, 3)},
                id=f"{account}-u{d}",
            )
        )
    trouble = range(last - 75, last, 6) if churn_day is not None else range(rng.randint(0, 40), last, 45)
    for n, d in enumerate(trouble):
        data = {"ticket_id": f"T{n}", "priority": "high" if churn_day else "normal", "status": "open"}
        events.append(event("ticket.opened", account, start + d * DAY, data, id=f"{account}-t{n}"))
    if churn_day is not None:
        events.append(
            event(
                "survey.responded", account, start + (churn_day - 50) * DAY, {"score": 3}, id=f"{account}-nps"
            )
        )
        qbr = {"kind": "qbr", "outcome": "declined"}
        events.append(
            event("engagement.recorded", account, start + (churn_day - 40) * DAY, qbr, id=f"{account}-qbr")
        )
        events.append(
            event(
                "account.churned",
                account,
                start + churn_day * DAY,
                {"reason": "moved to a competitor"},
                id=f"{account}-churn",
            )
        )
    else:
        events.append(
            event(
                "survey.responded",
                account,
                start + rng.randint(30, days - 1) * DAY,
                {"score": 9},
                id=f"{account}-nps",
            )
        )
    return events


def labelled_history(end: datetime, accounts: int = 48, days: int = 400, seed: int = 11) -> list[Any]:
    rng = random.Random(seed)
    start = end - days * DAY
    events: list[Any] = []
    for i in range(accounts):
        churn_day = rng.randint(120, 300) if i % 5 in (0, 2) else None
        events += _account_events(f"h-{i:03d}", rng, start, days, churn_day)
    return events
