"""kill -9 between send and record, as a real process: no duplicate message, no lost escalation."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from kamwatch.dev.broker import free_port
from services.alerts.models import Delivery
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.alerts.conftest import Sinks, account_event, registered, risk_changed
from tests.helpers import produce, wait_for

pytestmark = pytest.mark.slow


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kamwatch.cli", "alerts"], env=env, stdout=out, stderr=out
        )


def _killed(process: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: process.poll() is not None


def _deliveries(common: CommonSettings) -> list[Delivery]:
    engine = make_engine(common.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    engine.dispose()
    return rows


def test_kill_9_between_send_and_record_neither_duplicates_nor_loses_an_escalation(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, sinks: Sinks, tmp_path: Path
) -> None:
    clock_file = tmp_path / "clock-offset"
    clock_file.write_text("0")
    base = {
        "KAMWATCH_ALERTS_PORT": str(free_port()),
        "KAMWATCH_ALERTS_GROUP_ID": f"{common_settings.topics.risk}-alerts",
        "KAMWATCH_ALERTS_SMTP_PORT": str(sinks.smtp_port),
        "KAMWATCH_TRUSTED_WEBHOOK_HOSTS": f"127.0.0.1:{sinks.http_port}",  # the local receiver
        "KAMWATCH_ALERTS_GROUPING_WINDOW_S": "0",
        "KAMWATCH_ALERTS_TICK_INTERVAL_S": "0.2",
        "KAMWATCH_ALERTS_SENDING_LEASE_S": "0",
        "KAMWATCH_ALERTS_SLACK_MIN_INTERVAL_S": "0",
        "KAMWATCH_ALERTS_CLOCK_FILE": str(clock_file),
    }
    bootstrap, topics = common_settings.kafka_bootstrap, common_settings.topics
    produce(bootstrap, topics.accounts, [("acme", account_event(sinks, "acme"))])
    first = _start(service_env(**base, KAMWATCH_ALERTS_CRASH_AFTER_SENDS="1"), tmp_path / "alerts.log")
    wait_for(registered(common_settings, "acme"), 30, "the account read copy")
    produce(bootstrap, topics.risk, [("acme", risk_changed("acme", "red", 0.82))])
    wait_for(_killed(first), 30, "the crash after the first send")
    assert first.returncode == -9
    assert len(sinks.mails()) + len(sinks.slack()) == 1  # sent, but never recorded as sent

    # Restart; this one dies right after its second send: the first message of the escalation.
    second = _start(service_env(**base, KAMWATCH_ALERTS_CRASH_AFTER_SENDS="2"), tmp_path / "alerts.log")
    wait_for(lambda: sinks.mails_to("owner.acme@") and sinks.slack_to("owner-acme"), 30, "level 1 complete")
    clock_file.write_text(str(24 * 3600 + 60))
    wait_for(_killed(second), 30, "the crash during the escalation")
    assert second.returncode == -9

    third = _start(service_env(**base), tmp_path / "alerts.log")
    try:
        wait_for(
            lambda: sinks.mails_to("manager.acme@") and sinks.slack_to("manager-acme"), 30, "level 2 complete"
        )
        wait_for(
            lambda: all(d.state in ("sent", "uncertain") for d in _deliveries(common_settings)), 30, "outbox"
        )
    finally:
        third.terminate()
        third.wait(30)

    assert len(sinks.mails_to("owner.acme@")) == 1 and len(sinks.slack_to("owner-acme")) == 1
    assert len(sinks.mails_to("manager.acme@")) == 1 and len(sinks.slack_to("manager-acme")) == 1
    assert len(sinks.mails()) == 2 and len(sinks.slack()) == 2
    rows = _deliveries(common_settings)
    assert sorted((d.step, d.channel) for d in rows) == [
        ("L1", "email"),
        ("L1", "slack"),
        ("L2", "email"),
        ("L2", "slack"),
    ]
    # The two messages in flight at the kills are flagged, not resent.
    assert Counter(d.state for d in rows) == {"sent": 2, "uncertain": 2}
