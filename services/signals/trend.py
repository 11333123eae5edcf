"""The weekly risk trend of one account: the score, band and top drivers as of each week, computed
by the live scoring code (the same fold, features and scorer as the engine) over the stored events
(docs/metrics.md#risk-trend). Nothing is stored: a late event changes the trend at the next call."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.signals import repository
from services.signals.engine import RiskEngine, account_info
from services.signals.events import signal_from_payload
from services.signals.features import compute_features, relevant_state
from services.signals.state import AccountState
from shared.contracts import CHURNED

WEEK = timedelta(days=7)


def weekly_trend(
    session: Session, engine: RiskEngine, account_id: str, now: datetime, weeks: int
) -> list[dict[str, Any]]:
    """Points at now - k weeks (k = weeks-1 .. 0), oldest first; none before the first event.
    From the account's latest churn on (unless renewed after it), the band is `churned`."""
    info = account_info(repository.get_account(session, account_id))
    signals = [
        signal_from_payload(row.payload) for row in repository.account_events(session, account_id, now)
    ]
    if not signals:
        return []
    points: list[dict[str, Any]] = []
    state, index, churned_at = AccountState(), 0, None
    for k in range(weeks - 1, -1, -1):
        t = now - k * WEEK
        if t < signals[0].time:
            continue
        while index < len(signals) and signals[index].time <= t:
            signal = signals[index]
            state.apply(signal.type, signal.data, signal.time, signal.key)
            if signal.type == "account.churned":
                churned_at = signal.time
            elif signal.type == "account.renewed":
                churned_at = None
            index += 1
        if churned_at is not None:
            points.append({"as_of": t.isoformat(), "score": 1.0, "band": CHURNED, "drivers": []})
            continue
        buckets, entities = relevant_state(state.buckets, state.entities.values(), t)
        assessment = engine.assess(*compute_features(buckets, entities, info, t))
        points.append(
            {
                "as_of": t.isoformat(),
                "score": assessment.score,
                "band": assessment.band,
                "drivers": [d.text for d in assessment.drivers[:3]],
            }
        )
    return points
