"""The account registry: PUT/GET, CSV import with dry-run, account.upserted through the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kamwatch.dev.broker import free_port
from services.signals.app import create_app
from services.signals.config import SignalsSettings
from services.signals.models import Account
from services.signals.registry import CSV_COLUMNS
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import transaction
from shared.kafka import Publisher, make_producer
from tests.helpers import read_topic

ACME = {
    "name": "Acme GmbH",
    "arr": "250000.00",
    "currency": "EUR",
    "tier": "strategic",
    "renewal_date": "2027-03-31",
    "owner": {"name": "Kim", "email": "kim@example.com", "slack_webhook": "https://hooks.slack.test/kim"},
    "manager": {"name": "Lee", "email": "lee@example.com"},
    "executive_sponsor": {"name": "Sam", "email": "sam@example.com"},
    "external_ids": {"stripe": "cus_1", "zendesk": "123"},
}
# The documented columns, in order: id,name,arr,currency,tier,segment,renewal_date,
# owner_{name,email,slack_webhook},manager_{...},sponsor_{...},external_ids,term_months,billing_period
CSV = (
    ",".join(CSV_COLUMNS)
    + """
globex,Globex,90000,USD,key,manufacturing,2027-01-01,Kim,kim@example.com,,Lee,lee@example.com,,,,,stripe=cus_9;zendesk=77
initech,Initech,45000.50,EUR,standard,,,Ann,ann@example.com,https://hooks.slack.test/ann,,,,,,,crm=0042
"""
)
BAD_CSV = """\
id,name,arr,currency,tier,owner_name,owner_email,external_ids
ok-1,Fine,1000,EUR,key,Ann,a@example.com,stripe=cus_a
bad id!,Broken,-5,euro,key,Bo,not-an-email,stripe
"""


def test_put_get_and_publish_account(
    api: TestClient, auth: dict[str, str], common_settings: CommonSettings
) -> None:
    response = api.put("/v1/accounts/acme", json=ACME, headers=auth)

    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["id"] == "acme" and stored["arr"] == "250000.00" and stored["updated_at"]
    assert api.get("/v1/accounts/acme", headers=auth).json() == stored
    records = read_topic(common_settings.kafka_bootstrap, common_settings.topics.accounts, 1)
    assert len(records) == 1 and records[0].key == b"acme"
    event = json.loads(records[0].value)
    assert event["type"] == "account.upserted" and event["source"] == "kamwatch/signals"
    assert event["subject"] == "acme" and event["data"]["external_ids"] == {
        "stripe": "cus_1",
        "zendesk": "123",
    }


def test_put_refuses_mismatched_id_and_bad_fields(api: TestClient, auth: dict[str, str]) -> None:
    mismatch = api.put("/v1/accounts/acme", json={**ACME, "id": "other"}, headers=auth)
    assert mismatch.status_code == 422 and mismatch.json()["problems"][0]["field"] == "id"
    bad = api.put("/v1/accounts/acme", json={**ACME, "arr": "-1", "currency": "euro"}, headers=auth)
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["problems"]} == {"arr", "currency"}
    missing = api.get("/v1/accounts/nobody", headers=auth)
    assert missing.status_code == 404 and "nobody" in missing.json()["message"]
    assert api.put("/v1/accounts/acme", json=ACME).status_code == 401


def test_csv_import_dry_run_lists_problems_and_writes_nothing(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    files = {"file": ("accounts.csv", BAD_CSV, "text/csv")}
    dry = api.post("/v1/accounts:import?dry_run=true", files=files, headers=auth)

    assert dry.status_code == 200, dry.text
    problems = {(p["row"], p["field"]) for p in dry.json()["problems"]}
    assert {(3, "id"), (3, "arr"), (3, "currency"), (3, "owner_email"), (3, "external_ids")} <= problems
    assert all(p["row"] == 3 for p in dry.json()["problems"])
    refused = api.post("/v1/accounts:import", files=files, headers=auth)
    assert refused.status_code == 422 and "row 3" in refused.text
    with transaction(db) as session:
        assert session.query(Account).count() == 0


def test_csv_import_registers_every_row(api: TestClient, auth: dict[str, str]) -> None:
    response = api.post("/v1/accounts:import", content=CSV, headers={**auth, "Content-Type": "text/csv"})

    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 2
    globex = api.get("/v1/accounts/globex", headers=auth).json()
    assert globex["external_ids"] == {"stripe": "cus_9", "zendesk": "77"}
    assert (globex["manager"]["name"], globex["manager"]["email"]) == ("Lee", "lee@example.com")
    assert globex["executive_sponsor"] is None and globex["segment"] == "manufacturing"
    initech = api.get("/v1/accounts/initech", headers=auth).json()
    assert (
        initech["owner"]["slack_webhook"] == "https://hooks.slack.test/ann" and initech["arr"] == "45000.50"
    )


@pytest.fixture
def offline_signals(signals_settings: SignalsSettings, clock: ManualClock) -> Iterator[TestClient]:
    """The API with no broker reachable (a port nobody listens on)."""
    common = signals_settings.common.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    settings = signals_settings.model_copy(update={"common": common, "api_publish_timeout_s": 1.0})
    with TestClient(create_app(settings, clock=clock, with_consumer=False)) as client:
        yield client


def test_registration_survives_a_broker_outage_through_the_outbox(
    offline_signals: TestClient,
    auth: dict[str, str],
    signals_settings: SignalsSettings,
    processor: Any,
    db: sessionmaker[Session],
    common_settings: CommonSettings,
) -> None:
    response = offline_signals.put("/v1/accounts/acme", json=ACME, headers=auth)
    assert response.status_code == 200
    with transaction(db) as session:
        assert session.get(Account, "acme").published_at is None  # type: ignore[union-attr]

    out = [m for m in processor.tick() if m.topic == common_settings.topics.accounts]
    publisher = Publisher(lambda: make_producer(common_settings))
    publisher.publish(out)
    processor.published(out)
    publisher.close()

    records = read_topic(common_settings.kafka_bootstrap, common_settings.topics.accounts, 1)
    assert [r.key for r in records] == [b"acme"]
    with transaction(db) as session:
        assert session.get(Account, "acme").published_at is not None  # type: ignore[union-attr]


def test_concurrent_puts_of_a_new_account_are_all_answered_200(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    """Read-then-insert let two PUTs of a new account both insert; one got a 500 whose log line
    carried the SQL parameters (issue 11 Medium #5). The PUT is an upsert now."""
    import threading

    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def put(account_id: str, n: int) -> None:
        barrier.wait()
        body = {**ACME, "name": f"Racer {n}"}
        statuses.append(api.put(f"/v1/accounts/{account_id}", json=body, headers=auth).status_code)

    for round_ in range(5):
        threads = [threading.Thread(target=put, args=(f"race-{round_}", n)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert statuses == [200] * 20, statuses
    with transaction(db) as session:
        rows = session.query(Account).filter(Account.id.like("race-%")).all()
        assert len(rows) == 5 and all(row.version >= 1 and row.record != "{}" for row in rows)


def test_a_risk_read_key_sees_people_fields_masked(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    """Slack webhook URLs are credentials and e-mail addresses personal data: a risk:read key
    (a dashboard) gets them masked, as the alerts API does (issue 11 Medium #4)."""
    from shared.auth import create_key

    assert api.put("/v1/accounts/acme", json=ACME, headers=auth).status_code == 200
    with transaction(db) as session:
        reader = create_key(session, "dashboard", ["risk:read"])
    seen = api.get("/v1/accounts/acme", headers={"Authorization": f"Bearer {reader}"})
    assert seen.status_code == 200, seen.text
    text = seen.text
    for secret in ("kim@example.com", "hooks.slack.test/kim", "lee@example.com", "sam@example.com"):
        assert secret not in text
    owner = seen.json()["owner"]
    assert owner["email"] == "k***@example.com" and owner["slack_webhook"] == "https://hooks.slack.test/..."
    assert owner["name"] == "Kim" and seen.json()["arr"] == "250000.00"
    full = api.get("/v1/accounts/acme", headers=auth).json()  # accounts:write (every scope)
    assert full["owner"]["email"] == "kim@example.com"
