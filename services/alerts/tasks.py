"""Rescue plans: the steps of a trigger's playbook become the alert's tasks, with due dates.

A task is open until a person marks it done or skipped (with a note); acknowledging the alert does
not close it. An open task past its due date escalates the alert once (lifecycle); the steps done
are kept on the alert for the post-mortem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from services.alerts.escalation import Fired
from services.alerts.models import Alert, AlertTask
from services.alerts.policy import Policy
from services.alerts.states import ACTIVE_STATES, TaskState
from shared.db import insert_ignore
from shared.errors import Conflict, NotFound


def create_for(
    session: Session, policy: Policy, alert: Alert, fired: Sequence[Fired], now: datetime, console_url: str
) -> int:
    """The playbook steps of each fired trigger as tasks of `alert`, due from `now`; a trigger
    whose tasks exist already adds none (redelivery, regrouping). Returns the steps offered."""
    rows: list[dict[str, Any]] = []
    values = {
        "account_id": quote(alert.account_id, safe=""),
        "alert_id": str(alert.id),
        "console_url": console_url.rstrip("/"),
    }
    for trigger in dict.fromkeys(f.trigger for f in fired):
        for position, step in enumerate(policy.playbooks.get(trigger, []), start=1):
            rows.append(
                {
                    "alert_id": alert.id,
                    "trigger": trigger,
                    "position": position,
                    "title": step.title,
                    "role": step.role,
                    "due_at": step.due.at(now),
                    "link": _link(step.link, values),
                    "state": TaskState.open,
                    "created_at": now,
                }
            )
    insert_ignore(session, AlertTask.__table__, rows, ["alert_id", "trigger", "position"])  # type: ignore[arg-type]
    return len(rows)


def _link(template: str | None, values: dict[str, str]) -> str | None:
    """The step's link, or None when it needs the console and none is configured."""
    if template is None or ("{console_url}" in template and not values["console_url"]):
        return None
    return template.format(**values)


def of_alert(session: Session, alert_id: int) -> list[AlertTask]:
    """The alert's tasks, soonest due first (the order of the rescue plan)."""
    query = select(AlertTask).where(AlertTask.alert_id == alert_id)
    return list(session.scalars(query.order_by(AlertTask.due_at, AlertTask.trigger, AlertTask.position)))


def open_counts(session: Session, alert_ids: Sequence[int]) -> Counter[int]:
    """Open tasks per alert (the inbox's `tasks_open`), due or not."""
    if not alert_ids:
        return Counter()
    query = select(AlertTask.alert_id).where(
        AlertTask.alert_id.in_(list(alert_ids)), AlertTask.state == TaskState.open
    )
    return Counter(session.scalars(query))


def overdue(
    session: Session, now: datetime, limit: int = 100, owns: Callable[[str], bool] | None = None
) -> list[tuple[AlertTask, Alert]]:
    """Open tasks past their due date, not escalated yet, of active alerts that are not muted;
    `owns`: only those of the accounts this replica owns (see repository.due_alerts)."""
    late = and_(
        AlertTask.state == TaskState.open,
        AlertTask.escalated_at.is_(None),
        AlertTask.due_at <= now,
        Alert.state.in_(ACTIVE_STATES),
        Alert.inhibited_by.is_(None),
        Alert.level > 0,  # nobody was told yet: the first notice comes first
    )
    order = (AlertTask.due_at, AlertTask.id)
    if owns is not None:
        candidates = session.execute(
            select(AlertTask.id, Alert.account_id)
            .join(Alert, Alert.id == AlertTask.alert_id)
            .where(late)
            .order_by(*order)
            .limit(limit * 8)
        )
        ids = [task_id for task_id, account_id in candidates if owns(account_id)][:limit]
        if not ids:
            return []
        late = and_(late, AlertTask.id.in_(ids))
    query = (
        select(AlertTask, Alert)
        .join(Alert, Alert.id == AlertTask.alert_id)
        .where(late)
        .order_by(*order)
        .limit(limit)
        .with_for_update(of=AlertTask)
    )
    return [(task, alert) for task, alert in session.execute(query)]


def finish(
    session: Session, alert_id: int, task_id: int, state: TaskState, by: str, note: str | None, now: datetime
) -> AlertTask:
    """Mark an open task done or skipped; a task that is not open any more is a 409."""
    task = session.scalars(
        select(AlertTask).where(AlertTask.id == task_id, AlertTask.alert_id == alert_id).with_for_update()
    ).one_or_none()
    if task is None:
        raise NotFound(f"alert {alert_id} has no task {task_id}")
    if task.state != TaskState.open:
        raise Conflict(f"task {task_id} is already {task.state} (by {task.done_by}); reopen is not supported")
    task.state, task.done_by, task.done_at, task.note = state, by, now, note
    return task


def summary(tasks: Sequence[AlertTask]) -> str:
    """'2 of 5 steps done, 1 skipped, 2 open' (the resolution's record, for post-mortems)."""
    counts = Counter(str(t.state) for t in tasks)
    if not tasks:
        return "no playbook steps"
    return f"{counts['done']} of {len(tasks)} steps done, {counts['skipped']} skipped, {counts['open']} open"
