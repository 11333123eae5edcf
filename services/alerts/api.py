"""Alerts HTTP routes (thin): list/read alerts, act on them, and the signed action links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from services.alerts import metrics, repository, tasks
from services.alerts.lifecycle import Lifecycle
from services.alerts.links import LinkInvalid, verify
from services.alerts.models import Alert, AlertAccount
from services.alerts.schemas import (
    ActionIn,
    AlertDetail,
    AlertList,
    AlertOut,
    SnoozeIn,
    TaskIn,
    TaskList,
    TaskOut,
    alert_out,
    delivery_out,
    transition_out,
)
from services.alerts.states import AlertState, TaskState
from services.alerts.templates import render
from shared.errors import AppError, NotFound, ValidationFailed
from shared.web import ClockDep, Principal, SessionDep, app_part, require_scope

router = APIRouter(prefix="/v1")
MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number is a 422, not a database error (500)
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
ReadAuth = Annotated[Principal, Depends(require_scope("risk:read"))]
WriteAuth = Annotated[Principal, Depends(require_scope("alerts:write"))]
LifecycleDep = Annotated[Lifecycle, Depends(app_part("lifecycle"))]
Action = Callable[[Lifecycle, Session, Alert, datetime], None]


def _load(session: Session, alert_id: int) -> Alert:
    alert = repository.lock_alert(session, alert_id)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert


def _detail(session: Session, alert: Alert, now: datetime | None = None) -> AlertDetail:
    deliveries = repository.deliveries(session, alert.id)
    attempts = repository.attempts(session, [d.id for d in deliveries])
    steps = tasks.of_alert(session, alert.id)
    return AlertDetail(
        **alert_out(alert, session.get(AlertAccount, alert.account_id), now),
        tasks_open=sum(1 for t in steps if t.state == TaskState.open),
        transitions=[transition_out(t) for t in repository.transitions(session, alert.id)],
        deliveries=[delivery_out(d, [a for a in attempts if a.delivery_id == d.id]) for d in deliveries],
        tasks=[TaskOut.model_validate(t) for t in steps],
    )


@router.get("/alerts", response_model=AlertList)
def list_alerts(
    _auth: ReadAuth,
    session: SessionDep,
    clock: ClockDep,
    state: AlertState | None = Query(default=None, description="open, acknowledged, snoozed or resolved"),
    owner: str | None = Query(default=None, description="owner e-mail or name"),
    account: str | None = Query(default=None, description="account id"),
    limit: int = Query(default=100, ge=1, le=1000),
    before: int | None = Query(default=None, ge=1, le=MAX_ID, description="page: alerts with a smaller id"),
) -> AlertList:
    rows = repository.list_alerts(session, state, owner, account, limit, before)
    open_tasks = tasks.open_counts(session, [a.id for a in rows])
    accounts = repository.accounts_of(session, {a.account_id for a in rows})
    now = clock.now()
    alerts = [
        AlertOut(**alert_out(a, accounts.get(a.account_id), now), tasks_open=open_tasks[a.id]) for a in rows
    ]
    return AlertList(alerts=alerts, next_before=alerts[-1].id if len(alerts) == limit else None)


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(_auth: ReadAuth, session: SessionDep, clock: ClockDep, alert_id: AlertId) -> AlertDetail:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return _detail(session, alert, clock.now())


@dataclass(frozen=True)
class Acting:
    """What a lifecycle action needs: the request's session, the lifecycle and the time."""

    session: Session
    lifecycle: Lifecycle
    now: datetime

    def on(self, alert_id: int, action: Action) -> AlertDetail:
        """Lock the alert, act on it, and answer with its detail."""
        alert = _load(self.session, alert_id)
        action(self.lifecycle, self.session, alert, self.now)
        self.session.flush()
        return _detail(self.session, alert, self.now)


def _acting(_auth: WriteAuth, session: SessionDep, lifecycle: LifecycleDep, clock: ClockDep) -> Acting:
    return Acting(session, lifecycle, clock.now())


ActingDep = Annotated[Acting, Depends(_acting)]


@router.post("/alerts/{alert_id}/ack", response_model=AlertDetail)
def acknowledge(acting: ActingDep, alert_id: AlertId, body: ActionIn | None = None) -> AlertDetail:
    body = body or ActionIn()
    why, by = body.reason or "acknowledged over the API", body.by or "api"
    return acting.on(alert_id, lambda lc, s, a, now: lc.acknowledge(s, a, by, now, why))


@router.post("/alerts/{alert_id}/snooze", response_model=AlertDetail)
def snooze(acting: ActingDep, alert_id: AlertId, body: SnoozeIn) -> AlertDetail:
    if (body.until is None) == (body.duration is None):
        raise ValidationFailed("give either 'until' (a time) or 'duration' (e.g. '4h')")
    why = body.reason or "snoozed over the API"

    def action(lc: Lifecycle, s: Session, a: Alert, now: datetime) -> None:
        until = body.until or now + (body.duration or lc.policy.snooze_for)
        lc.snooze(s, a, until, body.by or "api", now, why)

    return acting.on(alert_id, action)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertDetail)
def resolve(acting: ActingDep, alert_id: AlertId, body: ActionIn | None = None) -> AlertDetail:
    body = body or ActionIn()
    why, by = body.reason or "resolved over the API", body.by or "api"
    return acting.on(alert_id, lambda lc, s, a, now: lc.resolve(s, a, by, now, why))


@router.get("/alerts/{alert_id}/tasks", response_model=TaskList)
def list_tasks(_auth: ReadAuth, session: SessionDep, alert_id: AlertId) -> TaskList:
    """The alert's rescue plan: its playbook steps with due dates, soonest first."""
    if session.get(Alert, alert_id) is None:
        raise NotFound(f"no alert with id {alert_id}")
    return TaskList(tasks=[TaskOut.model_validate(t) for t in tasks.of_alert(session, alert_id)])


def _finish(acting: Acting, alert_id: int, task_id: int, state: TaskState, body: TaskIn | None) -> TaskOut:
    body = body or TaskIn()
    _load(acting.session, alert_id)
    task = tasks.finish(acting.session, alert_id, task_id, state, body.by or "api", body.note, acting.now)
    metrics.TASKS_FINISHED.labels(str(state)).inc()
    acting.session.flush()
    return TaskOut.model_validate(task)


@router.post("/alerts/{alert_id}/tasks/{task_id}/done", response_model=TaskOut)
def task_done(acting: ActingDep, alert_id: AlertId, task_id: TaskId, body: TaskIn | None = None) -> TaskOut:
    """Mark a step done, with a note (what was done). A step already done or skipped is a 409."""
    return _finish(acting, alert_id, task_id, TaskState.done, body)


@router.post("/alerts/{alert_id}/tasks/{task_id}/skip", response_model=TaskOut)
def task_skip(acting: ActingDep, alert_id: AlertId, task_id: TaskId, body: TaskIn | None = None) -> TaskOut:
    """Skip a step, with a note (why). A step already done or skipped is a 409."""
    return _finish(acting, alert_id, task_id, TaskState.skipped, body)


# --- signed links: no API key; GET only shows a button so link scanners cannot act -------------
def _page(title: str, text: str, status: int = 200, form: bool = False) -> HTMLResponse:
    return HTMLResponse(render("link.html", title=title, text=text, form=form), status_code=status)


@router.get("/alert-links/{token}", response_class=HTMLResponse, include_in_schema=False)
def link_page(lifecycle: LifecycleDep, clock: ClockDep, token: str) -> HTMLResponse:
    try:
        claim = verify(lifecycle.settings.link_secret, token, clock.now())
    except LinkInvalid as exc:
        return _page("Link not valid", str(exc), 400)
    verb = "Acknowledge" if claim.action == "ack" else "Snooze"
    return _page(f"{verb} alert #{claim.alert_id}?", f"Acting as {claim.actor}.", form=True)


@router.post("/alert-links/{token}", response_class=HTMLResponse, summary="Act through a signed link")
def link_action(session: SessionDep, lifecycle: LifecycleDep, clock: ClockDep, token: str) -> HTMLResponse:
    now = clock.now()
    try:
        claim = verify(lifecycle.settings.link_secret, token, now)
    except LinkInvalid as exc:
        return _page("Link not valid", str(exc), 400)

    def action(lc: Lifecycle, s: Session, a: Alert, now: datetime) -> None:
        if claim.action == "ack":
            lc.acknowledge(s, a, claim.actor, now, "acknowledged from the message link")
        else:
            lc.snooze(
                s, a, now + lifecycle.policy.snooze_for, claim.actor, now, "snoozed from the message link"
            )

    try:
        detail = Acting(session, lifecycle, now).on(claim.alert_id, action)
    except AppError as exc:
        session.rollback()
        return _page("Nothing done", exc.message, exc.status_code)
    return _page(f"Alert #{detail.id} is {detail.state}", f"Recorded for {claim.actor}. Thank you.")
