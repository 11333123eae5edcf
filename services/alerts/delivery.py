"""The outbox worker: sends due messages, at most once per (alert, step, channel, recipient).

Order per message: commit `sending` (the attempt is counted) -> send -> commit the outcome.
A row found still `sending` after its lease is the crash-between-send-and-record case: the
message may or may not have left, and neither Slack webhooks nor SMTP can tell us. kamwatch
then marks it `uncertain` and does NOT resend it (at most once, never a duplicate); the
escalation schedule lives on the alert, so the next level still fires. See docs/alerts.md.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.alerts import metrics, repository
from services.alerts.channels import SendResult, SmtpConfig, send_email, send_slack, slack_url_allowed
from services.alerts.config import AlertsSettings
from services.alerts.models import Alert, Delivery
from services.alerts.states import DeliveryState
from shared.clock import Clock
from shared.contracts import RiskChange
from shared.db import transaction
from shared.logging import get_logger
from shared.metrics import PIPELINE_LATENCY
from shared.netguard import send_url_problem

log = get_logger(__name__)
UNCERTAIN = "the service stopped between sending and recording; not resent to avoid a duplicate"


def backoff(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff: base, 2 x base, 4 x base, ... capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


MAX_ROUNDS = 20  # reads of the due rows per run, each without the webhooks made busy before it


class DeliveryWorker:
    def __init__(self, settings: AlertsSettings, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.smtp = SmtpConfig(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_timeout_s,
        )
        self._webhook_free_at: dict[str, float] = {}  # monotonic time of the next allowed post
        self._sends = 0

    def run(self, limit: int = 50) -> int:
        """Recover crashed sends, then send what is due; returns how many were attempted.

        A webhook takes at most one message a second, so the due rows are read without the
        webhooks still waiting for their next slot: a backlog on one Slack channel (hundreds of
        alerts opened by a backfill) must not hold up the e-mails and the other channels queued
        behind it. When a round made a webhook busy and skipped rows for it, the next round reads
        again without it, until nothing more can be sent or the time budget is spent."""
        self.recover()
        tried, started = 0, time.monotonic()
        for _round in range(MAX_ROUNDS):
            with transaction(self.sessions) as session:
                due = repository.due_deliveries(session, self.clock.now(), limit, self._busy_webhooks())
            attempted, skipped = 0, False
            for row in due:
                if time.monotonic() - started > self.settings.delivery_budget_s:
                    return tried  # keep the consumer loop responsive; the next tick continues
                free_at = self._webhook_free_at.get(row.recipient, 0.0)
                if row.channel == "slack" and free_at > time.monotonic():
                    skipped = True  # at most one message per second per webhook: a later slot takes it
                    continue
                tried += self._attempt(row)
                attempted += 1
            if not skipped or not attempted:
                break
        return tried

    def _busy_webhooks(self) -> list[str]:
        now = time.monotonic()
        return [url for url, free_at in self._webhook_free_at.items() if free_at > now]

    def recover(self) -> None:
        lease = timedelta(seconds=self.settings.sending_lease_s)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            for row in repository.left_sending(session):
                if row.updated_at > now - lease:
                    continue
                row.state, row.last_error, row.updated_at = DeliveryState.uncertain, UNCERTAIN, now
                repository.add_attempt(session, row, "uncertain", UNCERTAIN, now)
                metrics.DELIVERIES.labels(row.channel, "uncertain").inc()
                log.warning(
                    "delivery.uncertain", delivery_id=row.id, alert_id=row.alert_id, channel=row.channel
                )

    def _attempt(self, row: Delivery) -> int:
        with transaction(self.sessions) as session:
            if not repository.claim(session, row.id, self.clock.now()):
                return 0
        try:
            result = self._send(row)
        except Exception as exc:  # a malformed stored message fails alone; the others go on
            result = SendResult("failed", f"could not be sent: {type(exc).__name__}: {exc}"[:500])
        if result.outcome == "sent":
            self._maybe_crash()
        self._record(row.id, result)
        return 1

    def _send(self, row: Delivery) -> SendResult:
        if row.channel == "slack":
            self._webhook_free_at[row.recipient] = time.monotonic() + self.settings.slack_min_interval_s
            prod = self.settings.common.profile == "prod"
            if prod and not slack_url_allowed(row.recipient, self.settings.slack_allowed_hosts):
                return SendResult("failed", "Slack host not in KAMWATCH_ALERTS_SLACK_ALLOWED_HOSTS")
            refused = send_url_problem(row.recipient, self.settings.trusted_webhook_hosts)
            if refused:
                return SendResult("failed", f"Slack webhook refused: {refused}")
            result = send_slack(row.recipient, row.payload, self.settings.slack_timeout_s, prod)
            if result.retry_after_s:
                self._webhook_free_at[row.recipient] = time.monotonic() + result.retry_after_s
            return result
        return send_email(self.smtp, row.payload)

    def _maybe_crash(self) -> None:
        """Test hook (refused in prod by the settings): die like kill -9 right after a send."""
        self._sends += 1
        limit = self.settings.crash_after_sends
        if limit is not None and self._sends >= limit and self.settings.common.profile != "prod":
            log.warning("delivery.crash_point", sends=self._sends)
            os.kill(os.getpid(), signal.SIGKILL)

    def _record(self, delivery_id: int, result: SendResult) -> None:
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = session.get(Delivery, delivery_id)
            assert row is not None
            outcome = self._apply(row, result, now)
            repository.add_attempt(session, row, outcome, result.detail, now)
            if outcome == "sent" and row.step == "L1":
                self._observe_latency(session, row)
        metrics.DELIVERIES.labels(row.channel, outcome).inc()
        log.info(
            "delivery.attempt",
            delivery_id=delivery_id,
            channel=row.channel,
            outcome=outcome,
            attempt=row.attempts,
        )

    @staticmethod
    def _observe_latency(session: Session, row: Delivery) -> None:
        """Event reached kamwatch -> its first notification left (wall clock, not the test clock)."""
        alert = session.get(Alert, row.alert_id)
        received = RiskChange.model_validate_json(alert.risk).received_at if alert else None
        if received is not None:
            PIPELINE_LATENCY.labels("notified").observe(max(0.0, time.time() - received.timestamp()))

    def _apply(self, row: Delivery, result: SendResult, now: datetime) -> str:
        row.updated_at = now
        if result.outcome == "sent":
            row.state, row.sent_at, row.last_error = DeliveryState.sent, now, None
            return "sent"
        row.last_error = result.detail
        if result.outcome == "failed" or row.attempts >= self.settings.max_attempts:
            row.state = DeliveryState.failed
            log.error("delivery.failed", delivery_id=row.id, alert_id=row.alert_id, channel=row.channel)
            return "failed"
        wait = backoff(row.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s)
        row.state = DeliveryState.pending
        row.next_attempt_at = now + timedelta(seconds=max(wait, result.retry_after_s or 0.0))
        return "retry"

    def refresh_gauges(self) -> None:
        with transaction(self.sessions) as session:
            metrics.OUTBOX_DEPTH.set(
                repository.count_by_state(session, (DeliveryState.pending, DeliveryState.sending))
            )
            metrics.FAILED_DELIVERIES.set(repository.count_by_state(session, (DeliveryState.failed,)))
            by_level = repository.open_by_level(session)
        for level in range(0, 11):
            metrics.OPEN.labels(str(level)).set(by_level.get(level, 0))
