"""Message composition: one outbox row per recipient, rendered when the step is decided."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from email.utils import formataddr
from typing import Any
from urllib.parse import quote

from services.alerts.config import AlertsSettings
from services.alerts.escalation import Fired, Recipient, quiet_until
from services.alerts.links import LinkClaim, sign
from services.alerts.messages import (
    Envelope,
    MessageContext,
    email_message,
    message_id,
    money,
    slack_payload,
)
from services.alerts.models import Alert, AlertAccount, AlertTask
from services.alerts.policy import Policy, describe
from services.alerts.states import DeliveryState, TaskState
from shared.contracts import RiskChange
from shared.logging import get_logger

log = get_logger(__name__)


def _renewal(day: date | None, now: datetime) -> str | None:
    if day is None:
        return None
    days = (day - now.date()).days
    return f"{day.isoformat()} (in {days} days)" if days >= 0 else f"{day.isoformat()} ({-days} days ago)"


def next_steps(steps: Sequence[AlertTask], people: dict[str, Any]) -> list[str]:
    """The open playbook steps in words: 'Call the sponsor: Dana Fischer (owner), due Mon 30 Nov'."""
    lines = []
    for task in steps:
        if task.state != TaskState.open:
            continue
        person = (people.get(task.role) or {}).get("name")
        who = f"{person} ({task.role.replace('_', ' ')})" if person else task.role.replace("_", " ")
        lines.append(f"{task.title}: {who}, due {task.due_at:%a %d %b %Y %H:%M} UTC")
    return lines


def triggers_of(alert: Alert) -> list[Fired]:
    return [Fired(t["trigger"], t["severity"]) for t in json.loads(alert.triggers)]


class Composer:
    def __init__(self, settings: AlertsSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def rows(
        self,
        thread: list[str],
        alert: Alert,
        account: AlertAccount,
        kind: str,
        level: int,
        step: str,
        found: list[Recipient],
        now: datetime,
        note: str,
        steps: Sequence[AlertTask] = (),
    ) -> list[dict[str, Any]]:
        change = RiskChange.model_validate_json(alert.risk)
        rows = []
        for person in found:
            state, error, mid, payload = DeliveryState.pending, None, None, ""
            try:
                mid, payload = self.render(
                    thread, alert, account, change, kind, level, step, person, now, note, steps
                )
            except Exception as exc:  # one bad registry value must not stop the other messages
                state, error = (
                    DeliveryState.failed,
                    f"the message could not be composed: {type(exc).__name__}: {exc}"[:500],
                )
                log.error(
                    "delivery.compose_failed",
                    alert_id=alert.id,
                    channel=person.channel,
                    role=person.role,
                    error_type=type(exc).__name__,
                )
            rows.append(
                {
                    "alert_id": alert.id,
                    "step": step,
                    "level": level,
                    "kind": kind,
                    "channel": person.channel,
                    "recipient": person.address,
                    "recipient_name": person.name,
                    "role": person.role,
                    "payload": payload,
                    "message_id": mid,
                    "state": state,
                    "last_error": error,
                    "attempts": 0,
                    "next_attempt_at": quiet_until(
                        now, person.timezone, self.policy.quiet_hours, alert.severity
                    )
                    or now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        return rows

    def render(
        self,
        thread: list[str],
        alert: Alert,
        account: AlertAccount,
        change: RiskChange,
        kind: str,
        level: int,
        step: str,
        person: Recipient,
        now: datetime,
        note: str,
        steps: Sequence[AlertTask] = (),
    ) -> tuple[str | None, str]:
        """(Message-ID, payload) of one message: Slack JSON or an RFC 5322 e-mail."""
        ctx = self.context(alert, account, change, kind, level, person, now, note, steps)
        if person.channel == "slack":
            return None, json.dumps(slack_payload(ctx))
        mid = message_id(alert.id, step, person.address, self.settings.message_id_domain)
        envelope = Envelope(
            self.settings.mail_from, formataddr((person.name, person.address)), mid, now, thread
        )
        return mid, email_message(ctx, envelope).as_string()

    def context(
        self,
        alert: Alert,
        account: AlertAccount,
        change: RiskChange,
        kind: str,
        level: int,
        person: Recipient,
        now: datetime,
        note: str,
        steps: Sequence[AlertTask] = (),
    ) -> MessageContext:
        links = kind != "resolution"
        return MessageContext(
            alert_id=alert.id,
            kind=kind,
            level=level,
            account_name=account.name,
            arr=account.arr,
            currency=account.currency,
            score=change.score,
            band=change.band,
            previous_band=change.previous_band,
            triggers=[f.trigger for f in triggers_of(alert)],
            drivers=[d.text for d in change.drivers],
            changes=list(change.changes),
            recipient_name=person.name,
            role=person.role,
            ack_url=self.link(alert.id, "ack", person, now) if links else None,
            snooze_url=self.link(alert.id, "snooze", person, now) if links else None,
            brief_url=self.brief(account.account_id),
            reason=note if kind in ("resolution", "update") else "",
            waited=note if kind == "escalation" else None,
            next_steps=next_steps(steps, account.people) if links else [],
            escalates=self.escalates(alert, account) if links else None,
            snooze_for=describe(self.policy.snooze_for),
            renewal=_renewal(account.renewal_date, now),
            at_risk=money(account.arr * Decimal(str(change.score)), account.currency),
            mention=person.handle if person.channel == "slack" else None,
        )

    def escalates(self, alert: Alert, account: AlertAccount) -> str | None:
        """'to <name> (manager) at <time> UTC unless acknowledged', when a next level is due."""
        plan = self.policy.plan(alert.escalation)
        if alert.next_escalation_at is None or alert.level >= len(plan.levels):
            return None
        role = plan.levels[alert.level].role
        person = account.people.get(role) or {}
        who = (
            f"{person.get('name')} ({role.replace('_', ' ')})"
            if person.get("name")
            else role.replace("_", " ")
        )
        return f"to {who} at {alert.next_escalation_at:%Y-%m-%d %H:%M} UTC unless acknowledged"

    def brief(self, account_id: str) -> str | None:
        """The account brief in the console, where the alert and its context are (if configured)."""
        if not self.settings.console_url:
            return None
        return f"{self.settings.console_url.rstrip('/')}/accounts/{quote(account_id, safe='')}#alerts"

    def link(self, alert_id: int, action: str, person: Recipient, now: datetime) -> str:
        actor = f"{person.name} <{person.address}>" if person.channel == "email" else f"{person.name} (slack)"
        claim = LinkClaim(alert_id, action, actor, now + self.policy.link_ttl)
        token = sign(self.settings.link_secret, claim)
        return f"{self.settings.public_url.rstrip('/')}/v1/alert-links/{token}"
