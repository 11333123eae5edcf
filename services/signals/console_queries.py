"""SQL behind the console routes (console_api.py): board, trends, timeline, contacts, plans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.signals.models import Account, AccountPlan, RiskHistory, RiskScore, SignalEntity, SignalEvent
from services.signals.money import Rates
from services.signals.repository import not_deleted, ranking_key
from shared.auth import ApiKey, lookup_scopes
from shared.events import EVENT_TYPES


@dataclass(frozen=True)
class BoardFilters:
    owner: str | None
    band: str | None
    tier: str | None
    segment: str | None
    renewal_window: tuple[date, date] | None


def key_identity(session: Session, key: str) -> tuple[str, str, set[str]] | None:
    scopes = lookup_scopes(session, key) if key else None
    if scopes is None:
        return None
    key_id = key[3:].split("_", 1)[0]
    row = session.get(ApiKey, key_id)
    return key_id, row.name if row is not None else key_id, scopes


def _filtered(query: Any, filters: BoardFilters, with_band: bool) -> Any:
    if filters.owner:
        query = query.where(
            (RiskScore.owner_email == filters.owner) | (RiskScore.owner_name == filters.owner)
        )
    if with_band and filters.band:
        query = query.where(RiskScore.band == filters.band)
    if filters.tier:
        query = query.where(RiskScore.tier == filters.tier)
    if filters.segment:
        query = query.where(Account.segment == filters.segment)
    if filters.renewal_window:
        start, end = filters.renewal_window
        query = query.where(Account.renewal_date >= start, Account.renewal_date <= end)
    return query


def board(
    session: Session, filters: BoardFilters, limit: int, offset: int, rates: Rates
) -> tuple[list[tuple[RiskScore, Account | None]], int]:
    """Accounts not deleted from the registry, largest revenue at risk in the reporting currency
    first, as /v1/portfolio ranks them (the stored ranking amount when current)."""
    base = select(RiskScore, Account).outerjoin(Account, Account.id == RiskScore.account_id)
    query = _filtered(base.where(not_deleted()), filters, with_band=True)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    _stored, _key, _type, order = ranking_key(session, rates)
    page = query.order_by(order, RiskScore.account_id).limit(limit).offset(offset)
    return [(risk, account) for risk, account in session.execute(page)], total


def board_totals(session: Session, filters: BoardFilters) -> list[dict[str, Any]]:
    """Accounts, ARR and revenue at risk by band and currency (never summed across currencies)."""
    query: Any = select(
        RiskScore.band,
        RiskScore.currency,
        func.count(),
        func.coalesce(func.sum(RiskScore.arr), 0.0),
        func.coalesce(func.sum(RiskScore.revenue_at_risk), 0.0),
    ).outerjoin(Account, Account.id == RiskScore.account_id)
    query = _filtered(query.where(not_deleted()), filters, with_band=False)
    query = query.group_by(RiskScore.band, RiskScore.currency)
    return [
        {
            "band": band,
            "currency": currency,
            "accounts": int(n),
            "arr": float(arr),
            "revenue_at_risk": float(rar),
        }
        for band, currency, n, arr, rar in session.execute(query)
    ]


def trends(session: Session, account_ids: list[str], points: int) -> dict[str, list[float]]:
    """The last `points` scores of each account, oldest first (one query, a window function)."""
    if not account_ids:
        return {}
    ranked = (
        select(
            RiskHistory.account_id,
            RiskHistory.id,
            RiskHistory.score,
            func.row_number()
            .over(partition_by=RiskHistory.account_id, order_by=RiskHistory.id.desc())
            .label("rank"),
        )
        .where(RiskHistory.account_id.in_(account_ids))
        .subquery()
    )
    query = select(ranked.c.account_id, ranked.c.score).where(ranked.c.rank <= points).order_by(ranked.c.id)
    out: dict[str, list[float]] = {}
    for account_id, score in session.execute(query):
        out.setdefault(account_id, []).append(float(score))
    return out


def board_item(risk: RiskScore, account: Account | None, trend: list[float], today: date) -> dict[str, Any]:
    renewal = account.renewal_date if account is not None else None
    drivers = risk.drivers
    return {
        "account_id": risk.account_id,
        "name": risk.name,
        "score": risk.score,
        "band": risk.band,
        "arr": risk.arr,
        "currency": risk.currency,
        "tier": risk.tier,
        "segment": account.segment if account is not None else None,
        "owner": risk.owner_name or risk.owner_email,
        "owner_email": risk.owner_email,
        "revenue_at_risk": risk.revenue_at_risk,
        "renewal_date": renewal.isoformat() if renewal else None,
        "days_to_renewal": (renewal - today).days if renewal else None,
        "top_drivers": [d["text"] for d in drivers[:3]],
        "trend": trend,
        "as_of": risk.as_of.isoformat(),
    }


def notable_types() -> list[str]:
    return [t for t in EVENT_TYPES if t != "usage.recorded"]


def account_events(
    session: Session, account_id: str, limit: int, types: list[str] | None
) -> list[SignalEvent]:
    query = select(SignalEvent).where(SignalEvent.account_id == account_id)
    if types is not None:
        query = query.where(SignalEvent.type.in_(types))
    query = query.order_by(SignalEvent.event_time.desc(), SignalEvent.id.desc()).limit(limit)
    return list(session.scalars(query))


def contacts(session: Session, account_id: str) -> list[SignalEntity]:
    query = (
        select(SignalEntity)
        .where(SignalEntity.account_id == account_id, SignalEntity.kind == "contact")
        .order_by(SignalEntity.event_time.desc())
    )
    return list(session.scalars(query))


def get_plan(session: Session, account_id: str) -> AccountPlan | None:
    return session.get(AccountPlan, account_id)
