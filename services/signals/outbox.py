"""The signals outbox: messages for kamwatch.accounts and kamwatch.risk, built from stored rows."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.signals import repository
from services.signals.models import Account, RiskHistory
from services.signals.money import revenue_at_risk
from services.signals.scoring import NO_DATA
from shared.contracts import ACCOUNT_UPSERTED, CHURNED, RISK_CHANGED, Driver, RiskChange, contract_event
from shared.events import parse_rfc3339
from shared.kafka import OutMessage

SOURCE = "kamwatch/signals"


def account_event(record_text: str, version: int) -> bytes:
    """account.upserted for one stored registry record (data = AccountRecord JSON)."""
    data = json.loads(record_text)
    return contract_event(
        ACCOUNT_UPSERTED,
        data,
        id=f"{data['id']}@{version}",
        source=SOURCE,
        subject=data["id"],
        time=parse_rfc3339(data["updated_at"]),
    )


def risk_event(change: RiskChange, history_id: int) -> bytes:
    """risk.changed (data = RiskChange, with the full features dict)."""
    return contract_event(
        RISK_CHANGED,
        change.model_dump(mode="json"),
        id=f"{change.account_id}:{history_id}",
        source=SOURCE,
        subject=change.account_id,
        time=change.as_of,
    )


def risk_messages(
    session: Session, topic: str, rows: list[RiskHistory], received: dict[str, datetime] | None = None
) -> list[OutMessage]:
    """risk.changed per row; `received`: per account, when the earliest event behind the change
    reached kamwatch (for the pipeline latency metric downstream)."""
    current = repository.risk_extras(session, [r.account_id for r in rows])
    arrivals = received or {}
    return [
        risk_message(topic, row, current.get(row.account_id), arrivals.get(row.account_id)) for row in rows
    ]


def risk_message(
    topic: str, row: RiskHistory, current: Any = None, received_at: datetime | None = None
) -> OutMessage:
    """risk.changed for one history row, keyed by account id; `extra` carries the account's name,
    tier, ARR and revenue at risk (no personal data)."""
    extra: dict[str, Any] = {}
    if current is not None:
        # JSON numbers as before (float of a two-decimal amount prints its exact digits)
        rar = Decimal(0) if row.band in (CHURNED, NO_DATA) else revenue_at_risk(current.arr, row.score)
        extra = {
            "name": current.name,
            "tier": current.tier,
            "arr": float(current.arr),
            "currency": current.currency,
        }
        extra["revenue_at_risk"] = float(rar)
    change = RiskChange(
        account_id=row.account_id,
        score=row.score,
        band=row.band,  # type: ignore[arg-type]
        # no_data is never published: to alerts, the first real score is a first score
        previous_score=None if row.previous_band == NO_DATA else row.previous_score,
        previous_band=None if row.previous_band == NO_DATA else row.previous_band,  # type: ignore[arg-type]
        drivers=[Driver(**d) for d in row.drivers],
        changes=list(row.changes),
        features=dict(row.features),
        model_version=row.model_version,
        as_of=row.as_of,
        scored_at=row.scored_at,
        received_at=received_at,
        extra=extra,
    )
    return OutMessage(
        topic,
        row.account_id,
        risk_event(change, row.id),
        (("ce_type", b"risk.changed"),),
        ref=("risk", row.id),
    )


def account_message(topic: str, account: Account) -> OutMessage:
    """account.upserted for a registry row, keyed by account id (compacted topic)."""
    return OutMessage(
        topic,
        account.id,
        account_event(account.record, account.version),
        (("ce_type", b"account.upserted"),),
        ref=("account", (account.id, account.version)),
    )
