"""The broker stops mid-stream and comes back empty (the local broker keeps data in memory).
Events answered 202 just before the stop (not yet consumed) and during the outage are kept in the
inbox and stored once the broker is back; the events stored before the stop are published again
on kamwatch.events (the broker lost them, and no downstream group had applied them); producers
and the consumer recover by themselves. Uses a broker of its own, not the session broker."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kamwatch.dev.broker import LocalBroker, free_port
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.models import IngestAccount, StoredEvent
from services.ingest.webhooks import sign_stripe
from shared.clock import ManualClock
from shared.config import CommonSettings, TopicNames
from shared.db import make_engine, make_sessionmaker, transaction
from shared.kafka import ensure_topics
from tests.helpers import NOW, account_upserted, encode, make_usage_event, produce, read_topic, wait_for
from tests.reliability.conftest import report
from tests.reliability.stack import count, fresh_database
from tests.security.apps import make_key

pytestmark = pytest.mark.slow
STRIPE_SECRET = "whsec_restart"


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "sqlite")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(free_port(), log_path=tmp_path / "broker.log")
    broker.start()
    yield broker
    broker.stop()


def _stripe_body(event_id: str) -> bytes:
    due = int(NOW.timestamp()) - 10 * 86400
    invoice = {
        "id": f"in_{event_id}",
        "customer": "cus_r",
        "currency": "eur",
        "amount_due": 100,
        "due_date": due,
    }
    created = int(NOW.timestamp())
    return json.dumps(
        {"id": event_id, "type": "invoice.overdue", "created": created, "data": {"object": invoice}}
    ).encode()


class Sender:
    """Posts events over the API and Stripe webhooks; remembers what was answered 202."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.key = client, key
        self.accepted: set[str] = set()
        self.statuses: Counter[int] = Counter()
        self.retry_after: set[str] = set()

    def post_events(self, n: int = 5) -> int:
        events = [make_usage_event(1.0, id=f"api-{uuid.uuid4().hex[:10]}", subject="acme") for _ in range(n)]
        response = self.client.post(
            "/v1/events", json=events, headers={"Authorization": f"Bearer {self.key}"}
        )
        return self._record(response, [e["id"] for e in events])

    def post_webhook(self) -> int:
        event_id = f"evt_{uuid.uuid4().hex[:10]}"
        body = _stripe_body(event_id)
        headers = {"Stripe-Signature": sign_stripe(body, STRIPE_SECRET, int(time.time()))}
        return self._record(
            self.client.post("/v1/webhooks/stripe", content=body, headers=headers), [event_id]
        )

    def _record(self, response: Any, ids: list[str]) -> int:
        self.statuses[response.status_code] += 1
        if response.status_code == 202:
            self.accepted.update(ids)
        if response.status_code == 503:
            self.retry_after.add(response.headers.get("retry-after", ""))
        return int(response.status_code)


def _stored_ids(db: Any) -> list[str]:
    with transaction(db) as session:
        return [i for (i,) in session.execute(select(StoredEvent.event_id))]


def test_events_answered_202_before_and_during_an_outage_are_all_stored_after_it(
    own_broker: LocalBroker, database_url: str, topic_prefix: str
) -> None:
    topics = TopicNames(**{f: f"{topic_prefix}.{f}" for f in TopicNames.model_fields})
    common = CommonSettings(
        database_url=database_url,
        kafka_bootstrap=own_broker.bootstrap,
        topic_partitions=3,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
        producer_delivery_timeout_ms=3000,
        topics=topics,
    )
    ensure_topics(common, partitions=3)
    settings = IngestSettings(
        common=common,
        group_id=f"{topic_prefix}-ingest",
        stripe_webhook_secrets=[STRIPE_SECRET],
        relay_after_s=0,
        tick_interval_s=0.5,
    )
    engine = make_engine(database_url)
    db = make_sessionmaker(engine)
    key = make_key(database_url, ["events:write"])
    raw_ids: set[str] = set()

    def produce_raw(n: int) -> None:
        events = [make_usage_event(2.0, id=f"raw-{uuid.uuid4().hex[:10]}", subject="acme") for _ in range(n)]
        produce(common.kafka_bootstrap, topics.usage, [("acme", encode(e)) for e in events])
        raw_ids.update(e["id"] for e in events)

    def register() -> None:
        record = account_upserted("acme", external_ids={"stripe": "cus_r"})
        produce(common.kafka_bootstrap, topics.accounts, [("acme", record)])

    with TestClient(create_app(settings, clock=ManualClock(NOW))) as client:
        sender = Sender(client, key)
        register()
        wait_for(lambda: count(db, IngestAccount) == 1, 60, "the registry copy")
        # Raw events from an upstream producer are the upstream's to keep until the broker has
        # them (acks=all); on memory storage they are stored here before the stop.
        produce_raw(200)
        wait_for(lambda: raw_ids <= set(_stored_ids(db)), 60, "the raw events stored")
        for _ in range(20):
            assert sender.post_events() == 202 and sender.post_webhook() == 202
        in_flight = sender.accepted - set(_stored_ids(db))

        own_broker.stop()  # at once: some 202s are not consumed yet; every topic and offset is gone
        during = [sender.post_events(), sender.post_webhook(), sender.post_events(), sender.post_webhook()]
        assert set(during) == {202}, f"answers during the outage: {during}"
        assert client.get("/readyz").status_code == 503
        outage_ids = sender.accepted - set(_stored_ids(db))

        own_broker.start()
        ensure_topics(common, partitions=3)  # what `kamwatch topics` / `kamwatch run` does on start
        register()  # the registry topic came back empty; signals republishes it the same way
        for _ in range(10):
            assert sender.post_events() == 202 and sender.post_webhook() == 202
        expected = sender.accepted | raw_ids
        wait_for(
            lambda: set(_stored_ids(db)) >= expected, 120, "every accepted event stored after the restart"
        )
        consumer = client.app.state.consumer
        assert consumer.alive and not consumer.crashed
        stored = _stored_ids(db)
        published = read_topic(common.kafka_bootstrap, topics.events, len(expected), timeout_s=60)
    engine.dispose()
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) == expected, "stored events differ from the events answered 202 or produced"
    after = {json.loads(r.value)["id"] for r in published}
    assert after >= expected, "events stored before the broker lost them were not published again"
    report(
        f"broker restart: sent {sum(sender.statuses.values())} requests + {len(raw_ids)} raw events; "
        f"answers {dict(sender.statuses)}; {len(in_flight)} answered 202 but not yet stored at the stop, "
        f"{len(outage_ids)} answered 202 during the outage (kept in the inbox); stored {len(stored)} "
        f"(= every 202 + every raw event), duplicates 0; "
        f"all {len(after)} on kamwatch.events after the restart"
    )
