"""The alerts BatchHandler: registry + risk changes in, escalation steps and deliveries on tick."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.alerts import metrics, repository, tasks
from services.alerts.config import AlertsSettings
from services.alerts.delivery import DeliveryWorker
from services.alerts.lifecycle import Lifecycle, account_values
from shared.clock import Clock
from shared.contracts import ACCOUNT_UPSERTED, RISK_CHANGED, AccountRecord, RiskChange, read_contract_data
from shared.db import is_transient, transaction
from shared.errors import EventInvalid
from shared.kafka import OutMessage, Processor, dead_letter_message
from shared.logging import get_logger

log = get_logger(__name__)


class AlertsProcessor(Processor[AlertsSettings]):
    """Consumes kamwatch.accounts and kamwatch.risk; tick() escalates and delivers."""

    def __init__(
        self, settings: AlertsSettings, sessions: sessionmaker[Session], clock: Clock, lifecycle: Lifecycle
    ) -> None:
        super().__init__(settings, sessions, clock)
        self.lifecycle = lifecycle
        self.worker = DeliveryWorker(settings, sessions, clock)
        self.ticks = 0  # completed ticks (tests wait for one after moving the clock)
        self.owner_topic = self.topics.risk  # escalations cover the accounts on owned partitions

    def handle(self, records: list[Any]) -> list[OutMessage]:
        """One transaction per batch; registry records first so a risk change can be routed."""
        now = self.clock.now()
        ordered = sorted(records, key=lambda r: r.topic != self.topics.accounts)
        dead: list[OutMessage] = []
        changes: list[RiskChange] = []
        with transaction(self.sessions) as session:
            for record in ordered:
                try:
                    if record.topic == self.topics.accounts:
                        self._apply_account(session, record, now)
                    else:
                        changes.append(read_contract_data(record.value, RISK_CHANGED, RiskChange))
                except EventInvalid as error:
                    dead.append(self._dead_letter(record, error))
            # After every registry record of the batch (as before: they sort first), in order.
            self.lifecycle.on_risks(session, changes, now)
        return dead

    def _apply_account(self, session: Session, record: Any, now: Any) -> None:
        if record.value is None:  # tombstone on the compacted topic
            account = repository.get_account(session, (record.key or b"").decode("utf-8", "replace"))
            if account is not None:
                account.deleted = True
            return
        account_record = read_contract_data(record.value, ACCOUNT_UPSERTED, AccountRecord)
        repository.upsert_account(session, account_values(account_record, now))
        if repository.wake_waiting(session, account_record.id, now):
            log.info("alert.account_arrived", account_id=account_record.id)

    def _dead_letter(self, record: Any, error: EventInvalid) -> OutMessage:
        metrics.INVALID_RECORDS.labels(record.topic).inc()
        return dead_letter_message(self.topics.deadletter, record, error, service="alerts")

    def published(self, messages: list[OutMessage]) -> None:
        return None

    def tick(self) -> list[OutMessage]:
        """Take due escalation steps (persisted schedule), then send the outbox."""
        self.advance_due()
        self.worker.run()
        self.worker.refresh_gauges()
        self.ticks += 1
        return []

    def advance_due(self) -> int:
        """Each alert's due step, then each overdue playbook step, in its own savepoint: one that
        fails is marked with the reason and retried later; the others go on (a poison registry
        record once crash-looped the service)."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            owns = self.ownership.predicate
            due = repository.due_alerts(session, now, owns=owns)
            for alert in due:
                try:
                    with session.begin_nested():
                        self.lifecycle.advance(session, alert, now)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    self.lifecycle.step_failed(session, alert, now, exc)
            overdue = tasks.overdue(session, now, owns=owns)
            for task, alert in overdue:
                try:
                    with session.begin_nested():
                        self.lifecycle.task_overdue(session, task, alert, now)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    self.lifecycle.step_failed(session, alert, now, exc)
        return len(due) + len(overdue)
