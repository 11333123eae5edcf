"""Issue 11 High #1: one poison registry record must not stop alerting for everybody else.

The read copy is written directly here, as an older kamwatch (before the registry validated its
strings) left it: a CR/LF in the owner's name and a 300-character time zone.
"""

from __future__ import annotations

import json

import pytest

from services.alerts import repository
from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertsProcessor
from services.alerts.lifecycle import Lifecycle, account_values
from services.alerts.models import Alert, Delivery
from services.alerts.policy import load_policy
from shared.clock import ManualClock
from shared.contracts import AccountRecord, Person, RiskChange
from shared.db import make_engine, make_sessionmaker, transaction
from tests.alerts.conftest import Sinks, people, risk_changed
from tests.helpers import wait_for

POISON_PEOPLE = {
    "owner": {
        "name": "Mallory\r\nBcc: everyone@example.com",
        "email": "mallory@example.com",
        "timezone": "A" * 300,
    },
}


def _processor(settings: AlertsSettings, clock: ManualClock) -> tuple[AlertsProcessor, object]:
    lifecycle = Lifecycle(settings, load_policy(settings.policy_file))
    engine = make_engine(settings.common.database_url)
    return AlertsProcessor(settings, make_sessionmaker(engine), clock, lifecycle), engine


def _store_account(processor: AlertsProcessor, account_id: str, persons: dict, now: object) -> None:
    record = AccountRecord.model_construct(
        id=account_id,
        name=f"{account_id.title()} GmbH",
        arr=120000,
        currency="EUR",
        tier="strategic",
        segment=None,
        deleted=False,
        external_ids={},
        **{role: Person.model_construct(**values) for role, values in persons.items()},
    )
    for role in ("owner", "manager", "executive_sponsor"):
        if role not in persons:
            setattr(record, role, None)
    with transaction(processor.sessions) as session:
        repository.upsert_account(session, account_values(record, now))


@pytest.mark.parametrize("poison_first", [True, False])
def test_a_poison_record_fails_its_own_alert_with_a_reason_and_the_others_are_delivered(
    alerts_settings: AlertsSettings, sinks: Sinks, clock: ManualClock, poison_first: bool
) -> None:
    processor, engine = _processor(alerts_settings, clock)
    now = clock.now()
    accounts = ["mallory", "acme"] if poison_first else ["acme", "mallory"]
    for account_id in accounts:
        persons = POISON_PEOPLE if account_id == "mallory" else people(sinks, account_id)
        _store_account(processor, account_id, persons, now)
    with transaction(processor.sessions) as session:
        for account_id in accounts:
            change = RiskChange.model_validate(json.loads(risk_changed(account_id, "red", 0.82))["data"])
            processor.lifecycle.on_risk(session, change, now)

    processor.tick()  # raised (ValueError from the e-mail header) before the fix: a crash loop
    processor.tick()

    wait_for(lambda: sinks.mails_to("owner.acme@example.com"), what="acme's owner mail")
    assert sinks.slack_to("owner-acme")
    with transaction(processor.sessions) as session:
        [poisoned] = session.query(Delivery).join(Alert).filter(Alert.account_id == "mallory").all()
        assert poisoned.state == "failed"
        assert poisoned.last_error and "could not be composed" in poisoned.last_error
        healthy = session.query(Delivery).join(Alert).filter(Alert.account_id == "acme").all()
        assert healthy and {d.state for d in healthy} == {"sent"}
    assert not any("everyone@example.com" in str(m["Bcc"] or "") for m in sinks.mails())
    engine.dispose()  # type: ignore[attr-defined]


def test_a_step_that_raises_marks_its_alert_and_the_tick_goes_on(
    alerts_settings: AlertsSettings, sinks: Sinks, clock: ManualClock
) -> None:
    """Any unexpected error in one alert's step is noted on that alert and retried later."""
    processor, engine = _processor(alerts_settings, clock)
    now = clock.now()
    for account_id in ("broken", "acme"):
        _store_account(processor, account_id, people(sinks, account_id), now)
    with transaction(processor.sessions) as session:
        for account_id in ("broken", "acme"):
            change = RiskChange.model_validate(json.loads(risk_changed(account_id, "red", 0.82))["data"])
            processor.lifecycle.on_risk(session, change, now)
        # A read copy whose people value has the wrong shape (as a hand edit could leave it).
        account = repository.get_account(session, "broken")
        assert account is not None
        account.people = "{not an object"

    processor.tick()

    wait_for(lambda: sinks.mails_to("owner.acme@example.com"), what="acme's owner mail")
    with transaction(processor.sessions) as session:
        broken = session.query(Alert).filter(Alert.account_id == "broken").one()
        assert broken.next_escalation_at is not None and broken.next_escalation_at > now
        reasons = [t.reason for t in repository.transitions(session, broken.id)]
        assert any(r.startswith("step failed: ") for r in reasons), reasons
    engine.dispose()  # type: ignore[attr-defined]
