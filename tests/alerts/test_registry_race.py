"""An alert whose risk change reached alerts before the account's registry record (two topics,
no order between them) is sent when the record arrives, not a retry interval later."""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import select

from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertsProcessor
from services.alerts.lifecycle import Lifecycle
from services.alerts.models import Alert
from services.alerts.policy import load_policy
from shared.clock import ManualClock
from shared.contracts import RiskChange
from shared.db import make_engine, make_sessionmaker, transaction
from tests.alerts.conftest import Sinks, account_event, risk_changed
from tests.helpers import wait_for


def test_an_alert_opened_before_its_account_record_goes_out_when_the_record_arrives(
    alerts_settings: AlertsSettings, sinks: Sinks, clock: ManualClock
) -> None:
    engine = make_engine(alerts_settings.common.database_url)
    lifecycle = Lifecycle(alerts_settings, load_policy(alerts_settings.policy_file))
    processor = AlertsProcessor(alerts_settings, make_sessionmaker(engine), clock, lifecycle)
    try:
        change = RiskChange.model_validate(json.loads(risk_changed("late", "red", 0.82))["data"])
        with transaction(processor.sessions) as session:
            lifecycle.on_risk(session, change, clock.now())
        processor.tick()  # nobody to tell yet: the account is unknown to alerts
        with transaction(processor.sessions) as session:
            [alert] = session.scalars(select(Alert)).all()
            assert (alert.level, alert.owner_email) == (0, None)
        assert sinks.mails_to("owner.late@example.com") == []
        record = SimpleNamespace(
            topic=processor.topics.accounts, key=b"late", value=account_event(sinks, "late")
        )
        assert processor.handle([record]) == []
        processor.tick()  # the same instant: before the fix the step waited a minute
        wait_for(lambda: sinks.mails_to("owner.late@example.com"), 20, "the owner's alert e-mail")
        assert sinks.slack_to("owner-late")
        with transaction(processor.sessions) as session:
            [alert] = session.scalars(select(Alert)).all()
            assert (alert.level, alert.owner_email) == (1, "owner.late@example.com")
    finally:
        engine.dispose()
