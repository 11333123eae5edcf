"""Alerts HTTP routes (thin): list/read alerts, act on them, and the signed action links."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from services.alerts import repository
from services.alerts.lifecycle import Lifecycle
from services.alerts.links import LinkInvalid, verify
from services.alerts.models import Alert
from services.alerts.schemas import (
    ActionIn,
    AlertDetail,
    AlertList,
    AlertOut,
    SnoozeIn,
    alert_out,
    delivery_out,
    transition_out,
)
from shared.auth import require_scope
from shared.db import transaction
from shared.errors import AppError, NotFound, ValidationFailed

router = APIRouter(prefix="/v1")
STATES = ("open", "acknowledged", "snoozed", "resolved")
MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number is a 422, not a database error (500)
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock.now()
    return now


def _load(session: Session, alert_id: int) -> Alert:
    alert = repository.lock_alert(session, alert_id)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert


def _detail(session: Session, alert: Alert) -> AlertDetail:
    deliveries = repository.deliveries(session, alert.id)
    attempts = repository.attempts(session, [d.id for d in deliveries])
    return AlertDetail(
        **alert_out(alert),
        transitions=[transition_out(t) for t in repository.transitions(session, alert.id)],
        deliveries=[delivery_out(d, [a for a in attempts if a.delivery_id == d.id]) for d in deliveries],
    )


@router.get("/alerts", response_model=AlertList, dependencies=[Depends(require_scope("risk:read"))])
def list_alerts(
    request: Request,
    state: str | None = Query(default=None, description="open, acknowledged, snoozed or resolved"),
    owner: str | None = Query(default=None, description="owner e-mail or name"),
    account: str | None = Query(default=None, description="account id"),
    limit: int = Query(default=100, ge=1, le=1000),
    before: int | None = Query(default=None, ge=1, le=MAX_ID, description="page: alerts with a smaller id"),
) -> AlertList:
    if state is not None and state not in STATES:
        raise ValidationFailed(f"state must be one of {', '.join(STATES)}")
    with transaction(request.app.state.sessions) as session:
        rows = repository.list_alerts(session, state, owner, account, limit, before)
        alerts = [AlertOut(**alert_out(a)) for a in rows]
    return AlertList(alerts=alerts, next_before=alerts[-1].id if len(alerts) == limit else None)


@router.get(
    "/alerts/{alert_id}", response_model=AlertDetail, dependencies=[Depends(require_scope("risk:read"))]
)
def get_alert(request: Request, alert_id: AlertId) -> AlertDetail:
    with transaction(request.app.state.sessions) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"no alert with id {alert_id}")
        return _detail(session, alert)


def _act(
    request: Request, alert_id: int, action: Callable[[Lifecycle, Session, Alert, datetime], None]
) -> AlertDetail:
    lifecycle: Lifecycle = request.app.state.lifecycle
    with transaction(request.app.state.sessions) as session:
        alert = _load(session, alert_id)
        action(lifecycle, session, alert, _now(request))
        session.flush()
        return _detail(session, alert)


WRITE = [Depends(require_scope("alerts:write"))]


@router.post("/alerts/{alert_id}/ack", response_model=AlertDetail, dependencies=WRITE)
def acknowledge(request: Request, alert_id: AlertId, body: ActionIn | None = None) -> AlertDetail:
    body = body or ActionIn()
    why = body.reason or "acknowledged over the API"
    return _act(request, alert_id, lambda lc, s, a, now: lc.acknowledge(s, a, body.by or "api", now, why))


@router.post("/alerts/{alert_id}/snooze", response_model=AlertDetail, dependencies=WRITE)
def snooze(request: Request, alert_id: AlertId, body: SnoozeIn) -> AlertDetail:
    if (body.until is None) == (body.duration is None):
        raise ValidationFailed("give either 'until' (a time) or 'duration' (e.g. '4h')")
    why = body.reason or "snoozed over the API"

    def action(lc: Lifecycle, s: Session, a: Alert, now: datetime) -> None:
        until = body.until or now + (body.duration or lc.policy.snooze_for)
        lc.snooze(s, a, until, body.by or "api", now, why)

    return _act(request, alert_id, action)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertDetail, dependencies=WRITE)
def resolve(request: Request, alert_id: AlertId, body: ActionIn | None = None) -> AlertDetail:
    body = body or ActionIn()
    why = body.reason or "resolved over the API"
    return _act(request, alert_id, lambda lc, s, a, now: lc.resolve(s, a, body.by or "api", now, why))


# --- signed links: no API key; GET only shows a button so link scanners cannot act -------------
def _page(title: str, text: str, status: int = 200, form: bool = False) -> HTMLResponse:
    button = '<form method="post"><button type="submit">Confirm</button></form>' if form else ""
    title, text = html.escape(title), html.escape(text)
    body = f"<!doctype html><title>{title}</title><h2>{title}</h2><p>{text}</p>"
    return HTMLResponse(body + button, status_code=status)


def _claim(request: Request, token: str) -> Any:
    lifecycle: Lifecycle = request.app.state.lifecycle
    return verify(lifecycle.settings.link_secret, token, _now(request))


@router.get("/alert-links/{token}", response_class=HTMLResponse, include_in_schema=False)
def link_page(request: Request, token: str) -> HTMLResponse:
    try:
        claim = _claim(request, token)
    except LinkInvalid as exc:
        return _page("Link not valid", str(exc), 400)
    verb = "Acknowledge" if claim.action == "ack" else "Snooze"
    return _page(f"{verb} alert #{claim.alert_id}?", f"Acting as {claim.actor}.", form=True)


@router.post("/alert-links/{token}", response_class=HTMLResponse, summary="Act through a signed link")
def link_action(request: Request, token: str) -> HTMLResponse:
    try:
        claim = _claim(request, token)
    except LinkInvalid as exc:
        return _page("Link not valid", str(exc), 400)
    lifecycle: Lifecycle = request.app.state.lifecycle

    def action(lc: Lifecycle, s: Session, a: Alert, now: datetime) -> None:
        if claim.action == "ack":
            lc.acknowledge(s, a, claim.actor, now, "acknowledged from the message link")
        else:
            lc.snooze(
                s, a, now + lifecycle.policy.snooze_for, claim.actor, now, "snoozed from the message link"
            )

    try:
        detail = _act(request, claim.alert_id, action)
    except AppError as exc:
        return _page("Nothing done", exc.message, exc.status_code)
    return _page(f"Alert #{detail.id} is {detail.state}", f"Recorded for {claim.actor}. Thank you.")
