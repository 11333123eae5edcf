"""Read and plan routes the KAM console needs: who am I, the portfolio board, an account's
timeline and contacts, and the account plan. Thin: SQL lives in console_queries.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query
from sqlalchemy.orm import Session

from services.signals import console_queries as queries
from services.signals import repository
from services.signals.api import RatesDep
from services.signals.plan import AccountPlanIn, AccountPlanOut, plan_view, save_plan
from services.signals.timeline import NOTABLE_KINDS, describe
from shared.errors import NotFound, Unauthorized, ValidationFailed
from shared.web import ClockDep, Principal, SessionDep, require_scope

router = APIRouter(prefix="/v1")
ReadAuth = Annotated[Principal, Depends(require_scope("risk:read"))]
WriteAuth = Annotated[Principal, Depends(require_scope("accounts:write"))]
MAX_TREND = 30


def _registered(session: Session, account_id: str) -> None:
    if repository.get_account(session, account_id) is None:
        raise NotFound(
            f"account {account_id!r} is not registered; PUT /v1/accounts/{account_id} registers it"
        )


@router.get("/auth/whoami", tags=["auth"])
def whoami(
    session: SessionDep, authorization: Annotated[str, Header(include_in_schema=False)] = ""
) -> dict[str, Any]:
    """The calling API key: id, name and scopes (any valid key may ask)."""
    scheme, _, key = authorization.partition(" ")
    found = queries.key_identity(session, key.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise Unauthorized("API key is missing, unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    key_id, name, scopes = found
    return {"key_id": key_id, "name": name, "scopes": sorted(scopes)}


@router.get("/portfolio/board", tags=["risk"])
def portfolio_board(
    session: SessionDep,
    clock: ClockDep,
    _auth: ReadAuth,
    rates: RatesDep,
    owner: Annotated[str | None, Query(max_length=320, description="owner e-mail or name")] = None,
    band: Annotated[Literal["green", "amber", "red"] | None, Query()] = None,
    tier: Annotated[str | None, Query(max_length=50)] = None,
    segment: Annotated[str | None, Query(max_length=50)] = None,
    renewal_within_days: Annotated[int | None, Query(ge=0, le=3660)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    """Scored accounts (not deleted) by revenue at risk in the reporting currency, as
    /v1/portfolio ranks them, with their recent score trend, renewal and segment, plus totals by
    band and currency over the same filters (without the band filter)."""
    today = clock.now().date()
    window = (today, today + timedelta(days=renewal_within_days)) if renewal_within_days is not None else None
    filters = queries.BoardFilters(owner, band, tier, segment, window)
    rows, total = queries.board(session, filters, limit, offset, rates)
    trends = queries.trends(session, [risk.account_id for risk, _ in rows], MAX_TREND)
    totals = queries.board_totals(session, filters)
    items = [
        queries.board_item(risk, account, trends.get(risk.account_id, []), today) for risk, account in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset, "totals": totals}


@router.get("/accounts/{account_id}/timeline", tags=["accounts"])
def account_timeline(
    account_id: str,
    session: SessionDep,
    _auth: ReadAuth,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    notable: Annotated[bool, Query(description="only relationship, payment, support, engagement")] = False,
) -> dict[str, Any]:
    """The account's events in words, newest first."""
    _registered(session, account_id)
    types = queries.notable_types() if notable else None
    rows = queries.account_events(session, account_id, limit, types)
    items = []
    for row in rows:
        kind, text = describe(row.type, json.loads(row.payload).get("data") or {})
        if notable and kind not in NOTABLE_KINDS:
            continue
        items.append({"time": row.event_time.isoformat(), "type": row.type, "kind": kind, "text": text})
    return {"account_id": account_id, "items": items}


@router.get("/accounts/{account_id}/contacts", tags=["accounts"])
def account_contacts(account_id: str, session: SessionDep, _auth: ReadAuth) -> dict[str, Any]:
    """Contacts at the account by role, with who left (latest event per contact)."""
    _registered(session, account_id)
    rows = queries.contacts(session, account_id)
    items = [
        {
            "contact_id": row.entity_id,
            "role": row.state.get("role"),
            "executive": bool(row.state.get("executive")),
            "active": row.active,
            "last_change": row.state.get("action"),
            "since": row.event_time.isoformat(),
        }
        for row in rows
    ]
    return {"account_id": account_id, "items": items}


@router.get("/accounts/{account_id}/plan", tags=["plans"], response_model=AccountPlanOut)
def get_plan(account_id: str, session: SessionDep, _auth: ReadAuth) -> dict[str, Any]:
    """The account plan (an empty plan with version 0 until one is saved)."""
    _registered(session, account_id)
    return plan_view(account_id, queries.get_plan(session, account_id))


@router.put("/accounts/{account_id}/plan", tags=["plans"], response_model=AccountPlanOut)
def put_plan(
    account_id: str,
    session: SessionDep,
    clock: ClockDep,
    auth: WriteAuth,
    plan: Annotated[AccountPlanIn, Body()],
    if_match: Annotated[str | None, Header(description="the version you loaded; 409 if it moved")] = None,
    x_kamwatch_user: Annotated[str | None, Header(max_length=200, description="who edits")] = None,
) -> dict[str, Any]:
    """Replace the account plan (objectives, opportunities, relationship notes, QBR cadence)."""
    expected = None
    if if_match is not None:
        if not if_match.strip().strip('"').isdigit():
            raise ValidationFailed("If-Match must be the plan version you loaded, e.g. If-Match: 3")
        expected = int(if_match.strip().strip('"'))
    by = x_kamwatch_user or f"key {auth.key_id}"
    _registered(session, account_id)
    row = save_plan(session, account_id, plan, expected, by, clock.now())
    return plan_view(account_id, row)
