"""Sinks on the real broker: raw topics, the registry topic, and ingest's webhooks and events API."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from kamwatch.dev.simulator.emit import KafkaSink, WebhookSink, topic_for
from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.payloads import channel
from kamwatch.dev.simulator.registry import register_kafka
from kamwatch.dev.simulator.runner import run
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from shared.auth import create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.contracts import AccountRecord
from shared.db import make_engine, make_sessionmaker, transaction
from shared.events import validate_event
from tests.helpers import read_topic

START = datetime(2026, 6, 1, tzinfo=UTC)


def small(days: int = 30, accounts: int = 4) -> Simulation:
    end = START + timedelta(days=days)
    return Simulation(SimConfig(accounts=accounts, seed=21, start=START, live_start=end, end=end))


def read_raw(common: CommonSettings, expect: Counter[str]) -> dict[str, list]:
    return {topic: read_topic(common.kafka_bootstrap, topic, count) for topic, count in expect.items()}


def test_portfolio_reaches_the_raw_topics_valid_and_keyed_by_subject(common_settings: CommonSettings) -> None:
    simulation = small()
    sink = KafkaSink(common_settings)
    stats = run(simulation, sink, speedup=0)
    sink.close()
    sent = list(simulation.events())
    expect = Counter(topic_for(e.type, common_settings.topics) for e in sent)
    assert stats.history_events == len(sent) and set(expect) == set(common_settings.topics.raw)

    received = read_raw(common_settings, expect)
    for topic, records in received.items():
        assert len(records) == expect[topic]
        for record in records:
            event = validate_event(json.loads(record.value), now=START + timedelta(days=60))
            assert record.key.decode() == event.subject
            assert topic_for(event.type, common_settings.topics) == topic
    ids = {json.loads(r.value)["id"] for records in received.values() for r in records}
    assert ids == {e.id for e in sent}


def test_accounts_registered_on_kafka_are_valid_account_records(common_settings: CommonSettings) -> None:
    simulation = small(accounts=5)
    register_kafka(common_settings, simulation.accounts, "sim-test", datetime.now(UTC))
    records = read_topic(common_settings.kafka_bootstrap, common_settings.topics.accounts, 5)
    assert len(records) == 5
    for record in records:
        envelope = json.loads(record.value)
        assert envelope["type"] == "account.upserted" and envelope["subject"] == record.key.decode()
        account = AccountRecord.model_validate(envelope["data"])
        assert account.id == record.key.decode() and account.external_ids["stripe"].startswith("cus_")


def test_webhooks_are_signed_and_accepted_by_ingest(common_settings: CommonSettings) -> None:
    settings = IngestSettings(
        common=common_settings, stripe_webhook_secrets=["whsec_sim"], zendesk_webhook_secrets=["zd_sim"]
    )
    engine = make_engine(common_settings.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        key = create_key(session, "simulator test", ["events:write"])
    engine.dispose()
    simulation = small(days=20, accounts=3)
    app = create_app(settings, clock=ManualClock(START + timedelta(days=21)), with_consumer=False)
    with TestClient(app) as client:
        sink = WebhookSink(client, key, "whsec_sim", "zd_sim")
        run(simulation, sink, speedup=0)

    sent = list(simulation.events())
    doors = Counter(channel(e) for e in sent)
    assert doors["stripe"] > 0 and doors["zendesk"] > 0 and doors["api"] > 0
    expect = Counter(topic_for(e.type, common_settings.topics) for e in sent)
    received = [json.loads(r.value) for rs in read_raw(common_settings, expect).values() for r in rs]
    by_source = Counter(e["source"] for e in received)
    assert by_source == {
        "stripe": doors["stripe"],
        "zendesk": doors["zendesk"],
        "kamwatch/simulator": doors["api"],
    }
    assert sorted(e["type"] for e in received) == sorted(e.type for e in sent)
