"""Playbooks and rescue plans (issue 14): every default trigger's alert gets its playbook's steps as
tasks with due dates; an overdue step of an acknowledged alert escalates to the manager, once;
done and skip are recorded with their notes and summed up on resolution; a broken playbook fails
check-policy naming the line and the field. Both databases, no broker (the alerts handler's tick
is called by hand)."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository, tasks
from services.alerts.app import create_app
from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertsProcessor
from services.alerts.lifecycle import Lifecycle, account_values
from services.alerts.models import Alert, Delivery
from services.alerts.policy import load_policy, parse_policy
from shared.auth import create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.contracts import AccountRecord, RiskChange
from shared.db import make_engine, make_sessionmaker, transaction
from shared.errors import ConfigError

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)  # a Monday
# One risk change per default trigger that fires exactly that trigger.
FIRES: dict[str, dict[str, Any]] = {
    "band_red": {"band": "red", "score": 0.8, "previous_band": "green", "previous_score": 0.7},
    "band_amber": {"band": "amber", "score": 0.4, "previous_band": "green", "previous_score": 0.3},
    # (the others fire only while the account is amber or red: min_band in the policy)
    "score_rise": {"band": "amber", "score": 0.55, "previous_band": "amber", "previous_score": 0.31},
    "key_contact_left": {"features": {"key_contact_departed_90d": 1, "days_since_key_contact_departed": 3}},
    "invoice_overdue": {"features": {"max_days_overdue": 75}},
    "urgent_ticket_spike": {"features": {"urgent_tickets_opened_14d": 4}},
}


def person(role: str, account: str) -> dict[str, str]:
    return {"name": f"{role.title()} of {account}", "email": f"{role}.{account}@example.com"}


@pytest.fixture
def settings(database_url: str) -> AlertsSettings:
    common = CommonSettings(database_url=database_url)
    return AlertsSettings(common=common, grouping_window_s=120, console_url="http://console.test")


@pytest.fixture
def db(settings: AlertsSettings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.common.database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        for account in ["acme", *(f"acct-{t}" for t in FIRES)]:
            people: dict[str, Any] = {
                r: person(r, account) for r in ("owner", "manager", "executive_sponsor")
            }
            people["owner"] |= {
                "slack_webhook": "https://hooks.slack.com/services/T/B/acme",
                "slack_handle": "U0ACME",
            }
            record = AccountRecord(
                id=account,
                name=account.title(),
                arr=120000,
                currency="EUR",
                tier="strategic",
                renewal_date=date(2027, 1, 15),
                **people,
            )
            repository.upsert_account(session, account_values(record, T0))
    yield factory
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def processor(settings: AlertsSettings, db: sessionmaker[Session], clock: ManualClock) -> AlertsProcessor:
    return AlertsProcessor(settings, db, clock, Lifecycle(settings, load_policy(settings.policy_file)))


def change(account: str, **values: Any) -> RiskChange:
    defaults = {
        "band": "amber",
        "score": 0.4,
        "previous_band": "amber",
        "previous_score": 0.4,
        "features": {},
    }
    return RiskChange(account_id=account, model_version="m1", as_of=T0, **{**defaults, **values})


def feed(processor: AlertsProcessor, risk: RiskChange) -> None:
    with transaction(processor.sessions) as session:
        processor.lifecycle.on_risk(session, risk, processor.clock.now())


def the_alert(db: sessionmaker[Session], account: str) -> Alert:
    with transaction(db) as session:
        return session.scalars(select(Alert).where(Alert.account_id == account)).one()


def messages_to(db: sessionmaker[Session], address: str) -> list[Delivery]:
    with transaction(db) as session:
        query = select(Delivery).where(Delivery.recipient == address).order_by(Delivery.id)
        return list(session.scalars(query))


def plain(delivery: Delivery) -> str:
    message = email.message_from_string(delivery.payload, policy=email.policy.default)
    return str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_every_default_trigger_gets_its_playbook_as_dated_tasks(
    processor: AlertsProcessor, db: sessionmaker[Session]
) -> None:
    policy = processor.lifecycle.policy
    assert set(policy.playbooks) == set(policy.trigger_names()) == set(FIRES)
    # A healthy account's blip opens nothing (min_band amber): only entering a band works in green.
    feed(processor, change("acme", band="green", previous_band="green", **FIRES["invoice_overdue"]))
    with transaction(db) as session:
        assert session.scalars(select(Alert)).all() == []
    for trigger, values in FIRES.items():
        feed(processor, change(f"acct-{trigger}", **values))
        alert = the_alert(db, f"acct-{trigger}")
        assert [t["trigger"] for t in json.loads(alert.triggers)] == [trigger]
        with transaction(db) as session:
            steps = tasks.of_alert(session, alert.id)
        wanted = policy.playbooks[trigger]
        assert len(steps) == len(wanted) >= 2
        for task, step in zip(sorted(steps, key=lambda t: t.position), wanted, strict=True):
            assert (task.title, task.role, task.state) == (step.title, step.role, "open")
            assert task.due_at == step.due.at(T0) > T0
    # "within 1 business day" from Monday 09:00 is Tuesday 09:00; from a Friday, the Monday.
    [first] = [s for s in policy.playbooks["band_red"] if s.due.business_days == 1]
    assert first.due.at(T0) == T0 + timedelta(days=1)
    assert first.due.at(T0 + timedelta(days=4)) == T0 + timedelta(days=7)
    # The same change delivered again adds no task.
    feed(processor, change("acct-band_red", **FIRES["band_red"]))
    with transaction(db) as session:
        alert = the_alert(db, "acct-band_red")
        assert len(tasks.of_alert(session, alert.id)) == len(policy.playbooks["band_red"])


def test_messages_list_the_next_steps_and_an_overdue_step_escalates_an_acknowledged_alert_once(
    processor: AlertsProcessor, db: sessionmaker[Session], clock: ManualClock
) -> None:
    feed(processor, change("acme", **FIRES["band_red"]))
    clock.advance(timedelta(minutes=3))  # past the grouping window: the owner is told
    processor.advance_due()
    [first] = [d for d in messages_to(db, "owner.acme@example.com") if d.channel == "email"]
    text = plain(first)
    assert "Next steps:" in text
    assert (
        "1. Call the executive sponsor and agree a rescue plan with dates: Owner of acme (owner), due Tue"
        in text
    )
    assert "due Mon 09 Nov 2026" in text  # the sponsor's step, within 5 business days
    assert "Escalates to Manager of acme (manager) at 2026-11-03 09:03 UTC unless acknowledged" in text
    assert "Renewal: 2027-01-15 (in 74 days)" in text and "Revenue at risk: EUR 96,000" in text
    [slack] = [d for d in messages_to(db, "https://hooks.slack.com/services/T/B/acme")]
    payload = json.loads(slack.payload)
    assert payload["text"].startswith("<@U0ACME> ") and "Next steps" in json.dumps(payload["blocks"])
    assert "Snooze 4 hours" in json.dumps(payload["blocks"])

    # Unacknowledged, an overdue step is only noted: the alert's own schedule climbs.
    alert = the_alert(db, "acme")
    with transaction(db) as session:
        repository.lock_alert(session, alert.id)
        processor.lifecycle.acknowledge(
            session, the_alert_in(session, alert.id), "Olivia", clock.now(), "on it"
        )
    assert messages_to(db, "manager.acme@example.com") == []
    clock.set(T0 + timedelta(days=1, minutes=1))  # the owner's first step (Tue 09:00) is overdue
    processor.advance_due()
    [escalation] = [d for d in messages_to(db, "manager.acme@example.com") if d.channel == "email"]
    assert escalation.step.startswith("T") and escalation.kind == "escalation"
    body = plain(escalation)
    assert "Escalated to you (level 2): the step 'Call the executive sponsor" in body
    assert "was due 2026-11-03 09:00 UTC and is not done" in body
    processor.advance_due()
    clock.advance(timedelta(hours=1))
    processor.advance_due()
    assert len(messages_to(db, "manager.acme@example.com")) == 1  # once
    detail = the_alert(db, "acme")
    assert detail.state == "acknowledged" and detail.level == 2


def the_alert_in(session: Session, alert_id: int) -> Alert:
    found = session.get(Alert, alert_id)
    assert found is not None
    return found


def test_done_and_skip_are_recorded_ack_keeps_them_and_resolution_sums_them_up(
    processor: AlertsProcessor, db: sessionmaker[Session], settings: AlertsSettings, clock: ManualClock
) -> None:
    feed(processor, change("acme", **FIRES["invoice_overdue"]))
    alert_id = the_alert(db, "acme").id
    with transaction(db) as session:
        key = create_key(session, "test", ["alerts:write", "risk:read"])
    auth = {"Authorization": f"Bearer {key}"}
    app = create_app(settings, clock=clock, with_consumer=False)
    with TestClient(app) as client:
        listed = client.get(f"/v1/alerts/{alert_id}/tasks", headers=auth).json()["tasks"]
        assert [t["state"] for t in listed] == ["open"] * 3
        first, second, _third = (t["id"] for t in listed)
        assert (
            client.post(f"/v1/alerts/{alert_id}/ack", json={"by": "Olivia"}, headers=auth).status_code == 200
        )
        url = f"/v1/alerts/{alert_id}/tasks/{first}/done"
        done = client.post(url, json={"by": "Olivia", "note": "finance: no dispute"}, headers=auth)
        assert done.status_code == 200
        assert (done.json()["state"], done.json()["note"], done.json()["done_by"]) == (
            "done",
            "finance: no dispute",
            "Olivia",
        )
        again = client.post(url, json={}, headers=auth)
        assert again.status_code == 409 and "already done" in again.json()["message"]
        skip = client.post(f"/v1/alerts/{alert_id}/tasks/{second}/skip", json={"note": "paid"}, headers=auth)
        assert skip.json()["state"] == "skipped"
        assert client.post(f"/v1/alerts/{alert_id}/tasks/999999/done", headers=auth).status_code == 404
        assert client.get("/v1/alerts/999999/tasks", headers=auth).status_code == 404
        unknown = client.post(f"/v1/alerts/{alert_id}/tasks/{first}/done", json={"nope": 1}, headers=auth)
        assert unknown.status_code == 422
        listing = client.get("/v1/alerts", params={"account": "acme"}, headers=auth).json()["alerts"]
        assert listing[0]["tasks_open"] == 1  # acknowledging closed none of them
        # The list reads like an inbox: account, value, renewal, age, level, steps still open.
        inbox = {k: listing[0][k] for k in ("account_name", "arr", "currency", "renewal_date", "level")}
        assert inbox == {
            "account_name": "Acme",
            "arr": "120000.00",
            "currency": "EUR",
            "renewal_date": "2027-01-15",
            "level": 0,
        }
        assert listing[0]["age_hours"] == 0.0 and listing[0]["band"] == "amber"
        resolved = client.post(f"/v1/alerts/{alert_id}/resolve", json={"reason": "paid"}, headers=auth).json()
    assert resolved["state"] == "resolved"
    assert "playbook: 1 of 3 steps done, 1 skipped, 1 open" in resolved["transitions"][-1]["reason"]
    assert [t["state"] for t in resolved["tasks"]] == ["done", "skipped", "open"]


BROKEN = """\
version: 1
triggers:
  band_entered:
    - band: red
      severity: critical
escalations:
  default:
    levels:
      - role: owner
playbooks:
  band_red:
    - title: Call the sponsor
      role: owner
      due: within 2 business days
      link: "{console_url}/accounts/{acount}"
  band_amber:
    - title: Look
      role: ceo
      due: soonish
"""


def test_a_broken_playbook_fails_check_policy_naming_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_policy(
            BROKEN.replace("  band_amber:\n    - title: Look\n      role: ceo\n      due: soonish\n", "")
        )
    assert "policy.yaml:15: playbooks.band_red.0.link: cannot fill" in str(raised.value)
    file = tmp_path / "policy.yaml"
    file.write_text(BROKEN)
    run = subprocess.run(
        [sys.executable, "-m", "kamwatch.cli", "alerts", "check-policy", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert f"{file}:18: playbooks.band_amber.0.role: Input should be 'owner'" in run.stderr
    assert f"{file}:19: playbooks.band_amber.0.due: 'soonish' is not a due offset" in run.stderr
    unknown = BROKEN.replace("  band_amber:\n    - title: Look\n      role: ceo\n      due: soonish\n", "")
    with pytest.raises(ConfigError) as raised:
        parse_policy(unknown.replace("  band_red:", "  band_purple:").replace("{acount}", "{account_id}"))
    assert "policy.yaml:11: playbooks.band_purple: unknown trigger; choose from band_red" in str(raised.value)


def test_only_a_plain_slack_handle_is_mentioned() -> None:
    from decimal import Decimal

    from services.alerts.messages import MessageContext, slack_payload

    base = {
        "alert_id": 1,
        "kind": "notify",
        "level": 1,
        "account_name": "Acme",
        "arr": Decimal(1000),
        "currency": "EUR",
        "score": 0.8,
        "band": "red",
        "previous_band": "green",
        "triggers": ["band_red"],
        "drivers": [],
        "changes": [],
        "recipient_name": "Olivia",
        "role": "owner",
    }
    assert slack_payload(MessageContext(**base, mention="U0ACME"))["text"].startswith("<@U0ACME> ")
    for hostile in ("<!channel>", "U1>|x", "@here"):
        text = str(slack_payload(MessageContext(**base, mention=hostile)))
        assert "<@" not in text and "<!channel>" not in text
