"""All SQL of the alerts service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from services.alerts.models import (
    Alert,
    AlertAccount,
    AlertTransition,
    ChurnedAccount,
    Delivery,
    DeliveryAttempt,
    RiskScore,
)
from services.alerts.states import ACTIVE_STATES, AlertState, DeliveryState
from shared.db import chunks, insert_ignore

NOTICE_KINDS = ("notify", "escalation", "repeat", "update")


def upsert_account(session: Session, values: dict[str, Any]) -> None:
    existing = session.get(AlertAccount, values["account_id"])
    if existing is None:
        session.add(AlertAccount(**values))
    else:
        for key, value in values.items():
            setattr(existing, key, value)
    session.flush()


def wake_waiting(session: Session, account_id: str, now: datetime) -> int:
    """Alerts of this account that nobody was told of yet for want of its registry record (opened
    before the record reached alerts: no owner copied) are due now that a record arrived, rather
    than at their next retry a minute later. Returns how many."""
    waiting = update(Alert).where(
        Alert.account_id == account_id,
        Alert.level == 0,
        Alert.owner_email.is_(None),
        Alert.state == AlertState.open,  # not one somebody acknowledged or snoozed meanwhile
        Alert.next_escalation_at > now,
    )
    done: Any = session.execute(waiting.values(next_escalation_at=now))
    return int(done.rowcount or 0)


def get_account(session: Session, account_id: str) -> AlertAccount | None:
    account = session.get(AlertAccount, account_id)
    return None if account is None or account.deleted else account


def accounts_of(session: Session, account_ids: set[str]) -> dict[str, AlertAccount]:
    """The read copies of these accounts (deleted ones too: an old alert still shows its name)."""
    if not account_ids:
        return {}
    query = select(AlertAccount).where(AlertAccount.account_id.in_(sorted(account_ids)))
    return {a.account_id: a for a in session.scalars(query)}


@dataclass
class ScoreView:
    """What a batch of risk changes reads per change, read once for the batch's accounts: their
    scores from the earliest window on (redeliveries and the score-rise baseline), which of them
    have a churn record and which have an active alert. Scores the batch records are added here
    and written in one statement by `flush`. An account whose alerts or churn record this batch
    may change (`touch`) is asked of the database again, under its row locks, as before."""

    scores: dict[str, dict[datetime, float]] = field(default_factory=dict)
    churned: set[str] = field(default_factory=set)
    alerted: set[str] = field(default_factory=set)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def seen_before(self, account_id: str, as_of: datetime, score: float) -> bool:
        """The same score for the same account and as-of time was processed already (a redelivery)."""
        seen = self.scores.get(account_id, {}).get(as_of)
        return seen is not None and abs(seen - score) < 1e-9

    def record(self, account_id: str, as_of: datetime, score: float) -> None:
        """Insert-or-ignore on (account, as-of time), like the table's unique constraint."""
        held = self.scores.setdefault(account_id, {})
        if as_of not in held:
            held[as_of] = score
            self.pending.append({"account_id": account_id, "as_of": as_of, "score": score})

    def between(self, account_id: str, start: datetime, end: datetime) -> list[float]:
        """Scores with start <= as_of < end (the window before a change)."""
        return [v for t, v in self.scores.get(account_id, {}).items() if start <= t < end]

    def touch(self, account_id: str) -> None:
        self.churned.add(account_id)
        self.alerted.add(account_id)

    def flush(self, session: Session) -> None:
        insert_ignore(session, RiskScore.__table__, self.pending, ["account_id", "as_of"])  # type: ignore[arg-type]
        self.pending = []


def score_view(session: Session, changes: Sequence[tuple[str, datetime]], lookback: timedelta) -> ScoreView:
    """The ScoreView of a batch of (account, as-of time) changes: three queries a chunk of
    accounts instead of five a change."""
    view = ScoreView()
    if not changes:
        return view
    accounts = sorted({account for account, _ in changes})
    since = min(as_of for _, as_of in changes) - lookback
    for chunk in chunks(accounts):
        scores = select(RiskScore.account_id, RiskScore.as_of, RiskScore.score).where(
            RiskScore.account_id.in_(chunk), RiskScore.as_of >= since
        )
        for account_id, as_of, score in session.execute(scores):
            view.scores.setdefault(account_id, {})[as_of] = score
        view.churned.update(
            session.scalars(select(ChurnedAccount.account_id).where(ChurnedAccount.account_id.in_(chunk)))
        )
        alerted = select(Alert.account_id).where(Alert.account_id.in_(chunk), Alert.state.in_(ACTIVE_STATES))
        view.alerted.update(session.scalars(alerted.distinct()))
    return view


def churn_of(session: Session, account_id: str) -> ChurnedAccount | None:
    """The account's churn record, locked (PostgreSQL) for the rest of the batch."""
    query = select(ChurnedAccount).where(ChurnedAccount.account_id == account_id).with_for_update()
    return session.scalars(query).one_or_none()


def mark_churned(session: Session, account_id: str, as_of: datetime, now: datetime) -> None:
    row = churn_of(session, account_id)
    if row is None:
        session.add(ChurnedAccount(account_id=account_id, as_of=as_of, churned_at=now))
    elif row.reactivated_at is not None or as_of > row.as_of:  # churned again after a win-back
        row.as_of, row.churned_at, row.reactivated_at = as_of, now, None
    session.flush()


def active_alerts(session: Session, account_id: str) -> list[Alert]:
    query = (
        select(Alert)
        .where(Alert.account_id == account_id, Alert.state.in_(ACTIVE_STATES))
        .order_by(Alert.id)
        .with_for_update()
    )
    return list(session.scalars(query))


def add_transition(session: Session, alert: Alert, **values: Any) -> None:
    session.add(AlertTransition(alert_id=alert.id, level=alert.level, **values))


def due_alerts(
    session: Session, now: datetime, limit: int = 100, owns: Callable[[str], bool] | None = None
) -> list[Alert]:
    """Alerts whose next escalation step is due, locked. `owns`: only the accounts this replica
    owns (its partitions of kamwatch.risk); the others' rows are read without a lock."""
    due = and_(
        Alert.next_escalation_at <= now,
        or_(
            Alert.state.in_((AlertState.open, AlertState.snoozed)),
            and_(Alert.state == AlertState.acknowledged, Alert.pending.is_not(None)),
        ),
        Alert.inhibited_by.is_(None),
    )
    order = (Alert.next_escalation_at, Alert.id)
    if owns is not None:
        candidates = session.execute(
            select(Alert.id, Alert.account_id).where(due).order_by(*order).limit(limit * 8)
        )
        ids = [alert_id for alert_id, account_id in candidates if owns(account_id)][:limit]
        if not ids:
            return []
        due = and_(due, Alert.id.in_(ids))
    return list(session.scalars(select(Alert).where(due).order_by(*order).limit(limit).with_for_update()))


def lock_alert(session: Session, alert_id: int) -> Alert | None:
    return session.scalars(select(Alert).where(Alert.id == alert_id).with_for_update()).one_or_none()


def inhibited_by(session: Session, alert_id: int) -> list[Alert]:
    return list(
        session.scalars(select(Alert).where(Alert.inhibited_by == alert_id, Alert.state.in_(ACTIVE_STATES)))
    )


def list_alerts(
    session: Session,
    state: str | None,
    owner: str | None,
    account: str | None,
    limit: int,
    before: int | None,
) -> list[Alert]:
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if state:
        query = query.where(Alert.state == state)
    if owner:
        query = query.where((func.lower(Alert.owner_email) == owner.lower()) | (Alert.owner_name == owner))
    if account:
        query = query.where(Alert.account_id == account)
    if before:
        query = query.where(Alert.id < before)
    return list(session.scalars(query))


def transitions(session: Session, alert_id: int) -> list[AlertTransition]:
    query = select(AlertTransition).where(AlertTransition.alert_id == alert_id).order_by(AlertTransition.id)
    return list(session.scalars(query))


def add_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Queue messages; the unique (alert, step, channel, recipient) makes this idempotent."""
    insert_ignore(session, Delivery.__table__, rows, ["alert_id", "step", "channel", "recipient"])  # type: ignore[arg-type]


def deliveries(session: Session, alert_id: int) -> list[Delivery]:
    return list(session.scalars(select(Delivery).where(Delivery.alert_id == alert_id).order_by(Delivery.id)))


def attempts(session: Session, delivery_ids: Sequence[int]) -> list[DeliveryAttempt]:
    if not delivery_ids:
        return []
    query = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))
    return list(session.scalars(query.order_by(DeliveryAttempt.id)))


def email_thread(session: Session, alert_id: int) -> list[str]:
    """Message-IDs of the alert's earlier e-mails, oldest first (escalations thread under them)."""
    query = select(Delivery.message_id).where(
        Delivery.alert_id == alert_id,
        Delivery.channel == "email",
        Delivery.state.in_(
            (DeliveryState.pending, DeliveryState.sending, DeliveryState.sent, DeliveryState.uncertain)
        ),
        Delivery.message_id.is_not(None),
    )
    return [m for m in session.scalars(query.order_by(Delivery.id)) if m]


def notified_recipients(session: Session, alert_id: int) -> list[Delivery]:
    """One delivery per (channel, recipient) that reached (or may have reached) someone."""
    query = select(Delivery).where(
        Delivery.alert_id == alert_id,
        Delivery.kind.in_(NOTICE_KINDS),
        Delivery.state.in_((DeliveryState.sent, DeliveryState.uncertain, DeliveryState.sending)),
    )
    seen: dict[tuple[str, str], Delivery] = {}
    for row in session.scalars(query.order_by(Delivery.id)):
        seen.setdefault((row.channel, row.recipient), row)
    return list(seen.values())


def cancel_pending(session: Session, alert_id: int, now: datetime) -> int:
    """Drop queued notices that the ack/resolution made pointless (not the resolution notices)."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.state == DeliveryState.pending,
            Delivery.kind.in_(NOTICE_KINDS),
        )
        .values(state=DeliveryState.cancelled, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def due_deliveries(
    session: Session, now: datetime, limit: int, skip_recipients: Sequence[str] = ()
) -> list[Delivery]:
    """The due pending deliveries, those of critical alerts first and then the oldest, leaving
    out those to `skip_recipients` (webhooks that cannot take a message yet). A Slack webhook takes
    one message a second: when warnings have queued up on it, a critical alert's message takes
    its next slot instead of waiting behind them."""
    query = (
        select(Delivery)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(Delivery.state == DeliveryState.pending, Delivery.next_attempt_at <= now)
    )
    if skip_recipients:
        query = query.where(Delivery.recipient.not_in(list(skip_recipients)))
    urgent = case((Alert.severity == "critical", 0), else_=1)
    return list(session.scalars(query.order_by(urgent, Delivery.next_attempt_at, Delivery.id).limit(limit)))


def claim(session: Session, delivery_id: int, now: datetime) -> bool:
    """pending -> sending, counted as an attempt; False if another worker took it first."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.pending)
        .values(state=DeliveryState.sending, attempts=Delivery.attempts + 1, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


def left_sending(session: Session) -> list[Delivery]:
    return list(
        session.scalars(select(Delivery).where(Delivery.state == DeliveryState.sending).with_for_update())
    )


def add_attempt(session: Session, delivery: Delivery, outcome: str, detail: str, now: datetime) -> None:
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id, attempt=delivery.attempts, at=now, outcome=outcome, detail=detail[:2000]
        )
    )


def count_by_state(session: Session, states: Sequence[str]) -> int:
    query = select(func.count()).select_from(Delivery).where(Delivery.state.in_(states))
    return int(session.scalar(query) or 0)


def open_by_level(session: Session) -> dict[int, int]:
    query = select(Alert.level, func.count()).where(Alert.state.in_(ACTIVE_STATES)).group_by(Alert.level)
    return {int(level): int(n) for level, n in session.execute(query)}
