"""Alerts API bodies (pydantic in/out)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from services.alerts.models import Alert, AlertAccount, AlertTransition, Delivery, DeliveryAttempt
from services.alerts.policy import parse_duration
from services.alerts.states import AlertState, DeliveryState, TaskState

Actor = Annotated[str, Field(min_length=1, max_length=200)]
MAX_SNOOZE = timedelta(days=366)


def snooze_length(value: Any) -> Any:
    """A duration for snooze: overflow or out of (0, 366 days] is a 422, never a 500."""
    try:
        duration = parse_duration(value)
    except OverflowError:
        raise ValueError("duration is out of range; write e.g. 30m, 4h or 2d") from None
    if isinstance(duration, timedelta) and not timedelta(0) < duration <= MAX_SNOOZE:
        raise ValueError("duration must be more than 0 and at most 366 days")
    return duration


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Actor | None = Field(default=None, description="who acts (stored on the transition)")
    reason: Annotated[str, Field(max_length=500)] | None = None


class SnoozeIn(ActionIn):
    until: AwareDatetime | None = Field(default=None, description="snooze until this time")
    duration: Annotated[timedelta, BeforeValidator(snooze_length)] | None = Field(
        default=None, description="or for this long: 30m, 4h, 2d"
    )


class TransitionOut(BaseModel):
    at: datetime
    actor: str
    from_state: AlertState | None
    to_state: AlertState
    level: int
    reason: str


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    outcome: str
    detail: str


class DeliveryOut(BaseModel):
    id: int
    step: str
    level: int
    kind: str
    channel: str
    recipient: str
    recipient_name: str
    role: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    message_id: str | None
    history: list[AttemptOut] = Field(default_factory=list)


class AlertOut(BaseModel):
    id: int
    account_id: str
    state: AlertState
    severity: str
    triggers: list[dict[str, str]]
    level: int
    escalation: str
    score: float
    band: str
    drivers: list[str]
    owner_email: str | None
    owner_name: str | None
    opened_at: datetime
    updated_at: datetime
    next_escalation_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    snoozed_until: datetime | None
    resolved_at: datetime | None
    inhibited_by: int | None
    tasks_open: int = Field(default=0, description="playbook steps not done or skipped yet")
    account_name: str | None = Field(default=None, description="from the registry (read copy)")
    arr: Decimal | None = Field(default=None, description="the account's ARR, in `currency`")
    currency: str | None = None
    renewal_date: date | None = None
    age_hours: float = Field(default=0.0, description="hours since the alert opened")


class TaskOut(BaseModel):
    """One playbook step of the alert's rescue plan."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    trigger: str
    position: int
    title: str
    role: str
    due_at: datetime
    link: str | None
    state: TaskState
    note: str | None
    done_by: str | None
    done_at: datetime | None
    escalated_at: datetime | None = Field(description="when it escalated the alert for being overdue")


class TaskList(BaseModel):
    tasks: list[TaskOut]


class TaskIn(BaseModel):
    """Marking a step done or skipped."""

    model_config = ConfigDict(extra="forbid")

    by: Actor | None = Field(default=None, description="who did it (default: api)")
    note: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, description="what was done, or why it was skipped"
    )


class AlertDetail(AlertOut):
    transitions: list[TransitionOut]
    deliveries: list[DeliveryOut]
    tasks: list[TaskOut] = Field(default_factory=list, description="the playbook steps, soonest due first")


class AlertList(BaseModel):
    alerts: list[AlertOut]
    next_before: int | None = Field(description="pass as ?before= for the next page")


def alert_out(
    alert: Alert, account: AlertAccount | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """An alert as the inbox shows it: with its account's name, ARR and renewal date when known."""
    risk = json.loads(alert.risk)
    end = alert.resolved_at or now or alert.updated_at
    return {
        **{name: getattr(alert, name) for name in AlertOut.model_fields if hasattr(alert, name)},
        "triggers": json.loads(alert.triggers),
        "drivers": [d.get("text", "") for d in risk.get("drivers", [])],
        "account_name": account.name if account is not None else None,
        "arr": account.arr if account is not None else None,
        "currency": account.currency if account is not None else None,
        "renewal_date": account.renewal_date if account is not None else None,
        "age_hours": round(max(0.0, (end - alert.opened_at).total_seconds()) / 3600, 1),
    }


def delivery_out(delivery: Delivery, attempts: list[DeliveryAttempt]) -> DeliveryOut:
    history = [AttemptOut(attempt=a.attempt, at=a.at, outcome=a.outcome, detail=a.detail) for a in attempts]
    fields = {name: getattr(delivery, name) for name in DeliveryOut.model_fields if name != "history"}
    if delivery.channel == "slack":
        fields["recipient"] = mask_webhook(delivery.recipient)
    return DeliveryOut(**fields, history=history)


def mask_webhook(url: str) -> str:
    """A Slack webhook URL is a credential: show where it points, not its token."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}/{path[:12]}..." if len(path) > 12 else url


def transition_out(row: AlertTransition) -> TransitionOut:
    return TransitionOut(
        at=row.at,
        actor=row.actor,
        from_state=row.from_state,
        to_state=row.to_state,
        level=row.level,
        reason=row.reason,
    )
