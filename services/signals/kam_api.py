"""HTTP routes of the KAM numbers (thin): revenue retention, the renewals desk, churn post-mortems.
Definitions of every figure: docs/metrics.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.signals import postmortem, qualification, renewals, repository, revenue, trend
from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.modelstore import ModelHolder
from shared.errors import NotFound, ValidationFailed
from shared.web import ClockDep, Principal, SessionDep, app_part, require_scope

router = APIRouter()
ReadAuth = Annotated[Principal, Depends(require_scope("risk:read"))]
SettingsDep = Annotated[SignalsSettings, Depends(app_part("settings"))]
HolderDep = Annotated[ModelHolder, Depends(app_part("models"))]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@router.get("/metrics/revenue", tags=["kam"])
def get_revenue(
    _auth: ReadAuth,
    session: SessionDep,
    start: Annotated[date, Query(alias="from", description="first day of the period (UTC), included")],
    end: Annotated[date, Query(alias="to", description="day after the period (UTC), excluded")],
    by: Annotated[
        Literal["owner", "tier", "segment", "account"] | None,
        Query(description="also slice by owner, tier, segment or account"),
    ] = None,
    account: Annotated[
        str | None, Query(min_length=1, max_length=64, description="only this account (its brief)")
    ] = None,
) -> dict[str, Any]:
    """Starting ARR, expansion by component, contraction, churn, NRR, GRR, NPS and QBR attendance
    of the accounts that had ARR at the start of the period (per currency; docs/metrics.md)."""
    if end <= start:
        raise ValidationFailed(f"'to' ({end}) must be after 'from' ({start}); the period is [from, to)")
    return revenue.compute(session, _midnight(start), _midnight(end), by, account)


@router.get("/renewals", tags=["kam"])
def get_renewals(
    _auth: ReadAuth,
    session: SessionDep,
    clock: ClockDep,
    within: Annotated[int, Query(ge=0, le=730, description="days from today (UTC), both ends included")] = 90,
) -> dict[str, Any]:
    """Accounts renewing within the window, red first then amber then green (unscored last), the
    largest ARR first within a band; a forecast (renew, expand, contract, churn) per account from
    its risk band and MRR trend; totals of ARR up for renewal per band and currency."""
    return renewals.desk(session, clock.now(), within)


@router.get("/outcomes", tags=["kam"])
def get_outcomes(
    _auth: ReadAuth,
    session: SessionDep,
    type: Annotated[Literal["churned"], Query(description="churned: the churn post-mortems")] = "churned",
    since: Annotated[date | None, Query(description="only churns on or after this day (UTC)")] = None,
) -> dict[str, Any]:
    """Churn post-mortems: per churned account the reason, first amber and red (lead times), the
    top drivers 90 and 30 days before; roll-ups: lead-time distribution, missed churns, reasons by
    segment and tier, revenue lost (docs/metrics.md#post-mortems)."""
    return postmortem.report(session, _midnight(since) if since else None)


@router.get("/accounts/{account_id}/risk/trend", tags=["risk"])
def get_risk_trend(
    _auth: ReadAuth,
    account_id: str,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    holder: HolderDep,
    weeks: Annotated[int, Query(ge=1, le=104, description="weekly points, the last one now")] = 16,
) -> dict[str, Any]:
    """The score, band and top drivers as of each of the last `weeks` weeks, computed by the live
    scoring code over the stored events (no point before the account's first event)."""
    if (
        repository.get_account(session, account_id) is None
        and repository.get_risk(session, account_id) is None
    ):
        raise NotFound(f"account {account_id!r} is unknown: not registered and no events received")
    engine = RiskEngine(settings, holder)
    points = trend.weekly_trend(session, engine, account_id, clock.now(), weeks)
    return {"account_id": account_id, "model_version": engine.model_version, "weeks": weeks, "points": points}


@router.get("/qualification", tags=["kam"])
def get_qualification(
    _auth: ReadAuth,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    suggestion: Annotated[
        Literal["promote", "keep", "review", "demote"] | None, Query(description="only this suggestion")
    ] = None,
) -> dict[str, Any]:
    """Every live account ranked by its qualification score (current value, growth potential,
    strategic value) with a suggested tier change; weights and thresholds from the config file."""
    config = qualification.load_config(settings.qualification_path)
    items = qualification.from_registry(session, clock.now(), config)
    if suggestion:
        items = [i for i in items if i["suggestion"] == suggestion]
    return {"weights": config.weights.model_dump(mode="json"), "items": items}
