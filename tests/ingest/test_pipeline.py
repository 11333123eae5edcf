"""Ingest end to end on the real broker and both databases."""

from __future__ import annotations

import json
import random

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.ingest.models import DeadLetter, ParkedEvent, StoredEvent
from shared.config import CommonSettings
from shared.db import transaction
from tests.helpers import (
    account_upserted,
    encode,
    make_contact_event,
    make_invoice_event,
    make_ticket_event,
    make_usage_event,
    produce,
    read_topic,
    wait_for,
)


def _count(db, model) -> int:
    with transaction(db) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_event_posted_over_http_is_stored_and_published(
    ingest: TestClient, api_key: str, common_settings: CommonSettings, db
) -> None:
    topics = common_settings.topics
    produce(common_settings.kafka_bootstrap, topics.accounts, [("acme", account_upserted("acme"))])
    event = make_usage_event(1200, id="u-1")
    wait_for(lambda: _registered(db, "acme"), what="account read copy")

    response = ingest.post("/v1/events", json=event, headers={"Authorization": f"Bearer {api_key}"})

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "ids": ["u-1"]}
    wait_for(lambda: _count(db, StoredEvent) == 1, what="stored event")
    published = read_topic(common_settings.kafka_bootstrap, topics.events, 1)
    assert len(published) == 1
    assert published[0].key == b"acme"
    body = json.loads(published[0].value)
    assert body["subject"] == "acme" and body["type"] == "usage.recorded"
    assert body["dataschema"].endswith("UsageRecorded.json")


def _registered(db, account_id: str) -> bool:
    from services.ingest.models import IngestAccount

    with transaction(db) as session:
        return session.get(IngestAccount, account_id) is not None


def test_mixed_stream_stores_each_valid_event_once_and_dead_letters_the_rest(
    ingest: TestClient, common_settings: CommonSettings, db
) -> None:
    """10,000 events, 5% invalid and 5% duplicates: nothing lost, nothing stored twice."""
    topics = common_settings.topics
    produce(
        common_settings.kafka_bootstrap,
        topics.accounts,
        [(f"acct-{i}", account_upserted(f"acct-{i}")) for i in range(20)],
    )
    rng = random.Random(7)
    factories = [make_usage_event, make_ticket_event, make_invoice_event, make_contact_event]
    valid, invalid, messages = [], [], []
    for i in range(9000):
        event = rng.choice(factories)(id=f"e-{i}", subject=f"acct-{i % 20}")
        valid.append(event)
        messages.append((event["subject"], encode(event)))
    breakers = [
        b"{not json",
        b"\xff\xfe",
        encode({"specversion": "1.0"}),
        encode(make_usage_event(-5)),
        encode(make_ticket_event(priority="p1")),
    ]
    for i in range(500):
        invalid.append(i)
        messages.append((None, breakers[i % len(breakers)]))
    for event in rng.sample(valid, 500):
        messages.append((event["subject"], encode(event)))
    rng.shuffle(messages)
    assert len(messages) == 10000

    produce(common_settings.kafka_bootstrap, topics.usage, messages)

    wait_for(
        lambda: _count(db, StoredEvent) == 9000 and _count(db, DeadLetter) == 500,
        timeout_s=120,
        what="9000 stored and 500 dead letters",
    )
    with transaction(db) as session:
        reasons = set(session.scalars(select(DeadLetter.reason)))
        assert any("not valid JSON" in r for r in reasons)
        assert any("data.priority" in r for r in reasons)
        assert any("data.quantity" in r for r in reasons)
    dead = read_topic(common_settings.kafka_bootstrap, topics.deadletter, 500)
    assert len(dead) == 500
    assert all(dict(r.headers).get("kw_error") for r in dead)
    published = read_topic(common_settings.kafka_bootstrap, topics.events, 9000, timeout_s=60)
    ids = {json.loads(r.value)["id"] for r in published}
    assert ids == {e["id"] for e in valid}
    assert _count(db, ParkedEvent) == 0


def test_unknown_alias_is_parked_then_processed_when_registered(
    ingest: TestClient, common_settings: CommonSettings, db
) -> None:
    topics = common_settings.topics
    event = make_invoice_event(subject="stripe:cus_42", id="in-1")
    produce(common_settings.kafka_bootstrap, topics.payments, [("stripe:cus_42", encode(event))])
    wait_for(lambda: _count(db, ParkedEvent) == 1, what="parked event")
    assert _count(db, StoredEvent) == 0

    produce(
        common_settings.kafka_bootstrap,
        topics.accounts,
        [("globex", account_upserted("globex", {"stripe": "cus_42"}))],
    )

    wait_for(
        lambda: _count(db, StoredEvent) == 1 and _count(db, ParkedEvent) == 0, what="parked event replayed"
    )
    published = read_topic(common_settings.kafka_bootstrap, topics.events, 1)
    body = json.loads(published[0].value)
    assert body["subject"] == "globex" and body["accountref"] == "stripe:cus_42"
