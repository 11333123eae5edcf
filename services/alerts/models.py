"""Tables owned by alerts: the account read copy, score history, alerts, transitions, the outbox."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.alerts.states import AlertState, DeliveryState, TaskState
from shared.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")


def _state(enum: type[StrEnum]) -> Enum:
    """A StrEnum stored as its value in VARCHAR(16), as the migration created it (no CHECK)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class AlertAccount(Base):
    """Read copy of the account registry (account.upserted), for routing and message content."""

    __tablename__ = "alert_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    arr: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(String(3))
    tier: Mapped[str] = mapped_column(String(50))
    segment: Mapped[str | None] = mapped_column(String(50), nullable=True)
    renewal_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    people: Mapped[dict[str, Any]] = mapped_column(JSON)  # {owner, manager, executive_sponsor: Person}
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RiskScore(Base):
    """Scores seen per account (for the 'rise within D days' trigger); unique per as-of time."""

    __tablename__ = "alert_risk_scores"
    __table_args__ = (UniqueConstraint("account_id", "as_of"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    score: Mapped[float] = mapped_column(Float)


class Alert(Base):
    """One alert: an account, the triggers of one wave, its lifecycle and escalation schedule."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_account_state", "account_id", "state"),
        Index("ix_alerts_next_escalation_at", "next_escalation_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    triggers: Mapped[str] = mapped_column(Text)  # JSON [{trigger, severity}]
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[AlertState] = mapped_column(_state(AlertState))
    escalation: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer, default=0)  # 0 = not notified yet
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(8))
    risk: Mapped[str] = mapped_column(Text)  # JSON RiskChange, the latest for this alert
    owner_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    level_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    inhibited_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A message the episode owes: "update" (new triggers joined after the first message) or
    # "escalate" (the severity rose: the next level at once); taken by the tick, then cleared.
    pending: Mapped[str | None] = mapped_column(String(16), nullable=True)


class AlertTransition(Base):
    """Every change of an alert: who, when, why (state changes, escalations, inhibition)."""

    __tablename__ = "alert_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(320))
    from_state: Mapped[AlertState | None] = mapped_column(_state(AlertState), nullable=True)
    to_state: Mapped[AlertState] = mapped_column(_state(AlertState))
    level: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """The outbox: one message to one recipient on one channel for one step of one alert.

    Unique on (alert, step, channel, recipient): a step is decided once, so redelivery of the
    triggering record or a restart can never queue the same message twice.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "step", "channel", "recipient"),
        Index("ix_alert_deliveries_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    step: Mapped[str] = mapped_column(String(32))  # L1, L2, L1.r1 (repeat), resolved
    level: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # notify|escalation|repeat|resolution
    channel: Mapped[str] = mapped_column(String(16))  # slack|email
    recipient: Mapped[str] = mapped_column(String(500))  # webhook URL or e-mail address
    recipient_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # rendered at decision time: Slack JSON or RFC 5322
    message_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    state: Mapped[DeliveryState] = mapped_column(_state(DeliveryState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeliveryAttempt(Base):
    """One try of a delivery and its outcome (visible in the API)."""

    __tablename__ = "alert_delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("alert_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # sent|retry|failed|uncertain
    detail: Mapped[str] = mapped_column(Text)


class ChurnedAccount(Base):
    """An account that churned (a risk.changed with band `churned`): its alerts were resolved with
    one churn notice and no alert opens for it again, unless signals reactivates it (a change out of
    band churned, newer than `as_of`; docs/alerts.md, "Churned accounts")."""

    __tablename__ = "alert_churned_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())  # of the churn risk change
    churned_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when alerts processed it
    reactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AlertTask(Base):
    """One step of a playbook for one alert (its rescue plan): created when the trigger fires,
    done or skipped by a person with a note, escalated once when overdue. Unique per (alert,
    trigger, position): a redelivered risk change cannot create it twice."""

    __tablename__ = "alert_tasks"
    __table_args__ = (
        UniqueConstraint("alert_id", "trigger", "position"),
        Index("ix_alert_tasks_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # 1-based order within the trigger's playbook
    title: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    link: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    state: Mapped[TaskState] = mapped_column(_state(TaskState))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
