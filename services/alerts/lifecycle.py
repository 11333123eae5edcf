"""Alert lifecycle over one DB session: open/group/inhibit, escalate, acknowledge, snooze, resolve.

Callers own the transaction (a consumer batch, a tick, an HTTP request); this module only flushes.
Every decision that sends something is written in the same transaction as the outbox rows, so a
crash either keeps both or neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.alerts import metrics, repository, tasks
from services.alerts.compose import Composer, triggers_of
from services.alerts.config import AlertsSettings
from services.alerts.escalation import (
    Fired,
    Position,
    Recipient,
    describe_wait,
    due_step,
    evaluate,
    next_escalation_at,
    recipients,
    returned_to_green,
    step_name,
    top_severity,
    unmuted,
)
from services.alerts.messages import trigger_words
from services.alerts.models import Alert, AlertAccount, AlertTask
from services.alerts.policy import SEVERITY_RANK, Policy
from services.alerts.repository import ScoreView
from services.alerts.states import ALLOWED, AlertAction, AlertState
from shared.contracts import CHURNED, AccountRecord, RiskChange
from shared.errors import Conflict, ValidationFailed
from shared.logging import get_logger

log = get_logger(__name__)
SYSTEM = "kamwatch"
UNKNOWN_ACCOUNT_RETRY = timedelta(seconds=60)
STEP_RETRY = timedelta(minutes=5)


def _dump_triggers(triggers: list[Fired]) -> str:
    return json.dumps([{"trigger": f.trigger, "severity": f.severity} for f in triggers])


def _names(triggers: list[Fired]) -> str:
    return ", ".join(f"{f.trigger} ({f.severity})" for f in triggers)


def account_values(record: AccountRecord, now: datetime) -> dict[str, Any]:
    people = {
        role: (getattr(record, role).model_dump() if getattr(record, role) else None)
        for role in ("owner", "manager", "executive_sponsor")
    }
    return {
        "account_id": record.id,
        "name": record.name,
        "arr": record.arr,
        "currency": record.currency,
        "tier": record.tier,
        "segment": record.segment,
        "renewal_date": record.renewal_date,
        "people": people,
        "deleted": record.deleted,
        "updated_at": now,
    }


class Lifecycle:
    def __init__(self, settings: AlertsSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.composer = Composer(settings, policy)
        window = settings.grouping_window_s
        self.grouping_window = timedelta(seconds=window) if window is not None else policy.grouping_window

    # --- state changes --------------------------------------------------------------------
    def _set_state(
        self, session: Session, alert: Alert, to: AlertState, actor: str, now: datetime, why: str
    ) -> None:
        repository.add_transition(
            session, alert, at=now, actor=actor, from_state=alert.state, to_state=to, reason=why
        )
        alert.state = to
        alert.updated_at = now

    def _note(self, session: Session, alert: Alert, actor: str, now: datetime, why: str) -> None:
        """A transition that keeps the state (grouping, escalation, inhibition)."""
        self._set_state(session, alert, alert.state, actor, now, why)

    def _check(self, alert: Alert, action: AlertAction) -> None:
        if alert.state not in ALLOWED[action]:
            raise Conflict(f"alert {alert.id} is {alert.state}; it cannot be {action.done} now")

    def acknowledge(self, session: Session, alert: Alert, actor: str, now: datetime, why: str) -> None:
        if alert.state == AlertState.acknowledged:
            return  # a second click on the link is harmless
        self._check(alert, AlertAction.ack)
        self._set_state(session, alert, AlertState.acknowledged, actor, now, why)
        alert.acknowledged_at, alert.acknowledged_by = now, actor
        alert.next_escalation_at = alert.snoozed_until = None
        repository.cancel_pending(session, alert.id, now)
        metrics.ACKNOWLEDGED.labels(str(alert.level)).inc()
        metrics.TIME_TO_ACK.observe(max(0.0, (now - alert.opened_at).total_seconds()))

    def snooze(
        self, session: Session, alert: Alert, until: datetime, actor: str, now: datetime, why: str
    ) -> None:
        self._check(alert, AlertAction.snooze)
        if until <= now:
            raise ValidationFailed("snooze 'until' must be in the future")
        self._set_state(session, alert, AlertState.snoozed, actor, now, f"{why} (until {until.isoformat()})")
        alert.snoozed_until = alert.next_escalation_at = until
        repository.cancel_pending(session, alert.id, now)

    def resolve(
        self, session: Session, alert: Alert, actor: str, now: datetime, why: str, notify: bool = True
    ) -> None:
        if alert.state == AlertState.resolved:
            return
        self._check(alert, AlertAction.resolve)
        steps = tasks.summary(tasks.of_alert(session, alert.id))
        self._set_state(session, alert, AlertState.resolved, actor, now, f"{why}; playbook: {steps}")
        alert.resolved_at, alert.next_escalation_at, alert.snoozed_until = now, None, None
        repository.cancel_pending(session, alert.id, now)
        if notify:
            self._resolution_notices(session, alert, why, now)
        for muted in repository.inhibited_by(session, alert.id):
            muted.inhibited_by = None
            muted.next_escalation_at = now
            self._note(session, muted, SYSTEM, now, f"unmuted: alert {alert.id} was resolved")

    def _resolution_notices(
        self,
        session: Session,
        alert: Alert,
        why: str,
        now: datetime,
        step: str = "resolved",
        skip: frozenset[tuple[str, str]] = frozenset(),
    ) -> set[tuple[str, str]]:
        """One notice to each (channel, recipient) that was notified about the alert, except those
        in `skip`; returns who was notified."""
        account = repository.get_account(session, alert.account_id)
        notified = repository.notified_recipients(session, alert.id)
        notified = [d for d in notified if (d.channel, d.recipient) not in skip]
        if account is None or not notified:
            return set()
        people = account.people
        found = [
            Recipient(
                d.channel, d.recipient, d.recipient_name, d.role, (people.get(d.role) or {}).get("timezone")
            )
            for d in notified
        ]
        rows = self.composer.rows(
            repository.email_thread(session, alert.id),
            alert,
            account,
            "resolution",
            alert.level,
            step,
            found,
            now,
            why,
        )
        repository.add_deliveries(session, rows)
        return {(d.channel, d.recipient) for d in notified}

    # --- churn ---------------------------------------------------------------------------------
    def on_churn(self, session: Session, change: RiskChange, now: datetime) -> None:
        """The account churned: resolve its active alerts; everyone who received one of them gets
        exactly one final notice saying it churned (on the newest alert they received)."""
        repository.mark_churned(session, change.account_id, change.as_of, now)
        # Muted alerts first, so resolving their source does not unmute (and schedule) them.
        active = sorted(
            repository.active_alerts(session, change.account_id), key=lambda a: a.inhibited_by is None
        )
        said = change.changes[0] if change.changes else "the account churned"
        why = f"{said}; no further alerts for this account"
        told: set[tuple[str, str]] = set()
        for alert in sorted(active, key=lambda a: a.id, reverse=True):
            alert.risk, alert.score, alert.band = change.model_dump_json(), change.score, change.band
            told |= self._resolution_notices(session, alert, why, now, "churned", frozenset(told))
        for alert in active:
            self.resolve(session, alert, SYSTEM, now, why, notify=False)
        log.info("alert.account_churned", account_id=change.account_id, resolved=len(active))

    def _churn_blocks(self, session: Session, change: RiskChange, now: datetime) -> bool:
        """A churned account gets no alert: every later change is ignored, except the one that
        reactivates it (signals moves it out of band churned after a newer `account.renewed`)."""
        churn = repository.churn_of(session, change.account_id)
        if churn is None or churn.reactivated_at is not None:
            return False
        if change.previous_band == CHURNED and change.as_of > churn.as_of:
            churn.reactivated_at = now
            log.info("alert.account_reactivated", account_id=change.account_id, band=change.band)
            return False
        log.info("alert.churned_account_ignored", account_id=change.account_id, band=change.band)
        return True

    # --- risk changes -----------------------------------------------------------------------
    def on_risk(self, session: Session, change: RiskChange, now: datetime) -> None:
        self.on_risks(session, [change], now)

    def on_risks(self, session: Session, changes: Sequence[RiskChange], now: datetime) -> None:
        """A batch's risk changes, in order. What each reads (its earlier scores, whether the
        account churned or has an active alert) is read for the whole batch at once
        (repository.score_view): five statements a change were most of the alerts consumer's
        time at 1,000 events/s. Accounts with an alert or a churn record are still read, and
        locked, change by change."""
        rule = self.policy.triggers.score_rise
        lookback = rule.within if rule is not None else timedelta(0)
        view = repository.score_view(session, [(c.account_id, c.as_of) for c in changes], lookback)
        for change in changes:
            self._on_risk(session, change, now, view)
        view.flush(session)

    def _on_risk(self, session: Session, change: RiskChange, now: datetime, view: ScoreView) -> None:
        account_id = change.account_id
        if view.seen_before(account_id, change.as_of, change.score):
            return  # redelivered: everything it caused is already in the tables
        view.record(account_id, change.as_of, change.score)
        if change.band == CHURNED:
            view.touch(account_id)
            self.on_churn(session, change, now)
            return
        if account_id in view.churned and self._churn_blocks(session, change, now):
            return
        active = repository.active_alerts(session, account_id) if account_id in view.alerted else []
        for alert in active:
            alert.risk, alert.score, alert.band, alert.updated_at = (
                change.model_dump_json(),
                change.score,
                change.band,
                now,
            )
        if returned_to_green(change):
            why = f"risk returned to green ({change.score * 100:.0f}/100)"
            for alert in active:
                self.resolve(session, alert, SYSTEM, now, why)
            return
        present = {f.trigger for a in active for f in triggers_of(a)}
        rule = self.policy.triggers.score_rise
        earlier = view.between(account_id, change.as_of - rule.within, change.as_of) if rule else []
        new = [f for f in evaluate(self.policy, change, earlier) if f.trigger not in present]
        if new:
            view.touch(account_id)
            self._open_or_group(session, change, active, new, now)

    def _open_or_group(
        self, session: Session, change: RiskChange, active: list[Alert], new: list[Fired], now: datetime
    ) -> None:
        """One alert per account episode: join the account's alert that was already sent (an
        update, or an escalation at once when the severity rises), or the one still in its
        grouping window, or open a new one."""
        episode = next(
            (a for a in sorted(active, key=lambda a: -a.id) if a.level > 0 and a.inhibited_by is None), None
        )
        if episode is not None:
            self._join_episode(session, episode, new, now)
            return
        wave = next(
            (a for a in active if a.level == 0 and a.state == AlertState.open and a.inhibited_by is None),
            None,
        )
        others = {
            f.trigger for a in active if a is not wave and a.inhibited_by is None for f in triggers_of(a)
        }
        merged = (triggers_of(wave) if wave else []) + new
        kept, muted = unmuted(self.policy, merged, others)
        if not kept:
            log.info("alert.muted", account_id=change.account_id, triggers=[f.trigger for f in muted])
            return
        if wave is None:
            wave = self._open(session, change, kept, now)
        else:
            wave.triggers, wave.severity = _dump_triggers(kept), top_severity(kept)
            self._note(session, wave, SYSTEM, now, f"grouped into this alert: {_names(new)}")
        tasks.create_for(session, self.policy, wave, kept, now, self.settings.console_url or "")
        if muted:
            self._note(session, wave, SYSTEM, now, f"muted by inhibition: {_names(muted)}")
        self._inhibit_others(session, wave, active, now)

    def _join_episode(self, session: Session, alert: Alert, new: list[Fired], now: datetime) -> None:
        """New triggers of an account whose alert was already sent join that alert. A higher
        severity reopens it and escalates at once; otherwise its recipients get one update (in
        the same e-mail thread) after the grouping window, however many triggers arrive in it."""
        kept, muted = unmuted(self.policy, triggers_of(alert) + new, set())
        added = [f for f in kept if f in new]
        if muted:
            self._note(session, alert, SYSTEM, now, f"muted by inhibition: {_names(muted)}")
        if not added:
            return
        before = alert.severity
        alert.triggers, alert.severity = _dump_triggers(kept), top_severity(kept)
        rose = SEVERITY_RANK[alert.severity] > SEVERITY_RANK[before]
        tasks.create_for(session, self.policy, alert, added, now, self.settings.console_url or "")
        for fired in added:
            metrics.OPENED.labels(fired.trigger, fired.severity).inc()
        if rose:
            if alert.state != AlertState.open:
                self._set_state(
                    session,
                    alert,
                    AlertState.open,
                    SYSTEM,
                    now,
                    f"reopened: severity rose to {alert.severity}",
                )
                alert.snoozed_until = None
            alert.pending, alert.next_escalation_at = "escalate", now
        else:
            due = now + self.grouping_window
            alert.pending = alert.pending or "update"
            # (a snoozed alert keeps its snooze: the update goes out when it ends)
            early = alert.next_escalation_at is None or alert.next_escalation_at > due
            if early and alert.state != AlertState.snoozed:
                alert.next_escalation_at = due
        self._note(
            session,
            alert,
            SYSTEM,
            now,
            f"joined this alert: {_names(added)}" + (f"; severity rose to {alert.severity}" if rose else ""),
        )

    def _open(self, session: Session, change: RiskChange, kept: list[Fired], now: datetime) -> Alert:
        account = repository.get_account(session, change.account_id)
        owner = account.people.get("owner") if account else None
        alert = Alert(
            account_id=change.account_id,
            triggers=_dump_triggers(kept),
            severity=top_severity(kept),
            state=AlertState.open,
            escalation=self.policy.route(
                account.tier if account else None,
                account.segment if account else None,
                (owner or {}).get("email"),
            ),
            level=0,
            repeats=0,
            score=change.score,
            band=change.band,
            risk=change.model_dump_json(),
            owner_email=(owner or {}).get("email"),
            owner_name=(owner or {}).get("name"),
            opened_at=now,
            updated_at=now,
            next_escalation_at=now + self.grouping_window,
        )
        session.add(alert)
        session.flush()
        repository.add_transition(
            session,
            alert,
            at=now,
            actor=SYSTEM,
            from_state=None,
            to_state=AlertState.open,
            reason=f"opened: {_names(kept)}",
        )
        for fired in kept:
            metrics.OPENED.labels(fired.trigger, fired.severity).inc()
        log.info("alert.opened", alert_id=alert.id, account_id=alert.account_id, severity=alert.severity)
        return alert

    def _inhibit_others(self, session: Session, source: Alert, active: list[Alert], now: datetime) -> None:
        """Mute other active alerts whose every trigger is inhibited by the source's triggers."""
        sources = {f.trigger for f in triggers_of(source)}
        for alert in active:
            if alert is source or alert.inhibited_by is not None:
                continue
            if all(self.policy.muted_by(f.trigger) & sources for f in triggers_of(alert)):
                alert.inhibited_by, alert.next_escalation_at = source.id, None
                repository.cancel_pending(session, alert.id, now)
                self._note(
                    session, alert, SYSTEM, now, f"muted by alert {source.id} ({', '.join(sorted(sources))})"
                )

    # --- time: notify, escalate, repeat -------------------------------------------------------
    def advance(self, session: Session, alert: Alert, now: datetime) -> None:
        """Take the step that is due for this alert (its next_escalation_at has passed)."""
        if alert.state == AlertState.snoozed:
            self._set_state(session, alert, AlertState.open, SYSTEM, now, "snooze ended")
            alert.snoozed_until = None
        account = repository.get_account(session, alert.account_id)
        if account is None:
            alert.next_escalation_at = now + UNKNOWN_ACCOUNT_RETRY
            log.warning("alert.account_unknown", alert_id=alert.id, account_id=alert.account_id)
            return
        plan = self.policy.plan(alert.escalation)
        kind, level = due_step(plan, Position(alert.level, alert.level_since, alert.last_notified_at), now)
        people = account.people
        also: list[Recipient] = []
        if alert.pending:
            kind, level, also = self._owed_step(alert, people)
        if alert.owner_email is None and people.get("owner"):  # opened before the registry arrived
            alert.owner_email, alert.owner_name = people["owner"].get("email"), people["owner"].get("name")
        found = recipients(
            people, plan.levels[level - 1].role, plan.channels, self.settings.default_slack_webhook
        )
        while not found and level < len(plan.levels):
            self._note(
                session,
                alert,
                SYSTEM,
                now,
                f"level {level} skipped: no {plan.levels[level - 1].role} to reach",
            )
            kind, level = ("escalation" if alert.level else "notify"), level + 1
            found = recipients(
                people, plan.levels[level - 1].role, plan.channels, self.settings.default_slack_webhook
            )
        if not found:
            alert.next_escalation_at = None
            self._note(session, alert, SYSTEM, now, "nobody to notify: no reachable person in the registry")
            log.error("alert.no_recipient", alert_id=alert.id, account_id=alert.account_id)
            return
        seen = {(r.channel, r.address) for r in found}
        found += [r for r in also if (r.channel, r.address) not in seen]
        self._take_step(session, alert, account, kind, level, found, now)

    def _owed_step(self, alert: Alert, people: dict[str, Any]) -> tuple[str, int, list[Recipient]]:
        """The step an episode owes: an update at its level; after a severity rise, the next level
        at once, with the current level told too (or the current level again at the top)."""
        if alert.pending != "escalate":
            return "update", alert.level, []
        plan, hook = self.policy.plan(alert.escalation), self.settings.default_slack_webhook
        up = min(alert.level + 1, len(plan.levels))
        if up == alert.level or not recipients(people, plan.levels[up - 1].role, plan.channels, hook):
            return "escalation", alert.level, []
        return "escalation", up, recipients(people, plan.levels[alert.level - 1].role, plan.channels, hook)

    def _news(self, session: Session, alert: Alert) -> str:
        """The triggers that joined since the alert's last message, in words."""
        since = alert.last_notified_at
        joined = [
            trigger_words(name)
            for t in repository.transitions(session, alert.id)
            if t.reason.startswith("joined this alert: ") and (since is None or t.at >= since)
            for name in re.findall(r"([a-z][a-z0-9_]*) \(", t.reason.split(";")[0])
        ]
        return "; ".join(dict.fromkeys(joined)) or "new signals"

    def task_overdue(self, session: Session, task: AlertTask, alert: Alert, now: datetime) -> None:
        """An open step past its due date, once. While the alert is unacknowledged its own schedule
        already climbs: the step is only noted. Once acknowledged, an overdue step escalates like an
        unacknowledged alert: to the level above the step's role, unless that level was reached."""
        task.escalated_at = now
        overdue = f"step overdue (due {task.due_at:%Y-%m-%d %H:%M} UTC): {task.title}"
        account = repository.get_account(session, alert.account_id)
        if alert.state != AlertState.acknowledged or account is None:
            self._note(session, alert, SYSTEM, now, overdue)
            return
        plan = self.policy.plan(alert.escalation)
        roles = [level.role for level in plan.levels]
        level = (roles.index(task.role) + 2) if task.role in roles else alert.level + 1
        found: list[Recipient] = []
        while level <= len(plan.levels) and level > alert.level and not found:
            found = recipients(
                account.people, roles[level - 1], plan.channels, self.settings.default_slack_webhook
            )
            level += 0 if found else 1
        if not found:
            self._note(session, alert, SYSTEM, now, f"{overdue}; no higher level left to tell")
            return
        self._take_step(session, alert, account, "escalation", level, found, now, overdue=task)
        metrics.TASKS_OVERDUE.inc()
        log.info("alert.task_overdue", alert_id=alert.id, task_id=task.id, level=level)

    def step_failed(self, session: Session, alert: Alert, now: datetime, error: Exception) -> None:
        """Record why a step failed and try again later (the rest of the tick goes on)."""
        session.refresh(alert)
        reason = f"step failed: {type(error).__name__}: {error}"[:500]
        alert.next_escalation_at = now + STEP_RETRY
        self._note(session, alert, SYSTEM, now, reason)
        metrics.STEP_FAILURES.inc()
        log.error("alert.step_failed", alert_id=alert.id, error_type=type(error).__name__)

    def _take_step(
        self,
        session: Session,
        alert: Alert,
        account: AlertAccount,
        kind: str,
        level: int,
        found: list[Recipient],
        now: datetime,
        overdue: AlertTask | None = None,
    ) -> None:
        plan = self.policy.plan(alert.escalation)
        repeats = alert.repeats + 1 if kind == "repeat" and level == alert.level else 0
        if (overdue or alert.pending) and level == alert.level:
            repeats = alert.repeats  # an update at the same level: the repeat numbering goes on
        step = f"T{overdue.id}" if overdue else step_name(kind, level, repeats)
        waited = describe_wait(plan.levels[level - 1].after) if kind == "escalation" else ""
        if overdue:
            waited = f"the step '{overdue.title}' was due {overdue.due_at:%Y-%m-%d %H:%M} UTC and is not done"
        elif alert.pending:  # a message the episode owes: unique step names, said in words
            step = f"{'E' if alert.pending == 'escalate' else 'U'}{int(now.timestamp())}"
            if alert.pending == "escalate":
                waited = f"the severity rose to {alert.severity}"
            else:
                waited = self._news(session, alert)
            alert.pending = None
        if level != alert.level:
            alert.level_since = now
        alert.level, alert.repeats, alert.last_notified_at, alert.updated_at = level, repeats, now, now
        if alert.state == AlertState.open:  # acknowledged: only overdue steps escalate it further
            alert.next_escalation_at = next_escalation_at(plan, Position(level, alert.level_since, now))
        elif alert.state == AlertState.acknowledged:
            alert.next_escalation_at = None
        rows = self.composer.rows(
            repository.email_thread(session, alert.id),
            alert,
            account,
            kind,
            level,
            step,
            found,
            now,
            waited,
            tasks.of_alert(session, alert.id),
        )
        repository.add_deliveries(session, rows)
        who = ", ".join(sorted({f"{r.name} ({r.role})" for r in found}))
        self._note(
            session, alert, SYSTEM, now, f"{kind} {step}: {who}" + (f"; waited {waited}" if waited else "")
        )
        if kind == "escalation":
            metrics.ESCALATED.labels(str(level)).inc()
        log.info("alert.step", alert_id=alert.id, kind=kind, level=level, step=step)
