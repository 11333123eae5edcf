"""The states of an alert, of a delivery and of a task, and which action is allowed from which alert state."""

from __future__ import annotations

from enum import StrEnum


class AlertState(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    snoozed = "snoozed"
    resolved = "resolved"


class DeliveryState(StrEnum):
    pending = "pending"
    sending = "sending"  # committed before the send: found after a crash it becomes uncertain
    sent = "sent"
    failed = "failed"
    uncertain = "uncertain"
    cancelled = "cancelled"


class TaskState(StrEnum):
    """A playbook step of an alert: open until a person marks it done or skipped."""

    open = "open"
    done = "done"
    skipped = "skipped"


class AlertAction(StrEnum):
    ack = "ack"
    snooze = "snooze"
    resolve = "resolve"

    @property
    def done(self) -> str:
        """The action in the past tense, for messages ('acknowledged', 'snoozed', 'resolved')."""
        return {"ack": "acknowledged", "snooze": "snoozed", "resolve": "resolved"}[self.value]


ACTIVE_STATES = (AlertState.open, AlertState.acknowledged, AlertState.snoozed)
ALLOWED: dict[AlertAction, set[AlertState]] = {
    AlertAction.ack: {AlertState.open, AlertState.snoozed},
    AlertAction.snooze: {AlertState.open, AlertState.acknowledged, AlertState.snoozed},
    AlertAction.resolve: {AlertState.open, AlertState.acknowledged, AlertState.snoozed},
}
