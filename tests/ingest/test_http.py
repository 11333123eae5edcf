"""Ingest HTTP: webhooks with good, wrong and stale signatures; auth; limits; broker outage."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from kamwatch.dev.broker import free_port
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.models import StoredEvent
from services.ingest.webhooks import sign_stripe, sign_zendesk
from shared.auth import create_key
from shared.config import CommonSettings
from shared.db import make_engine, transaction
from tests.helpers import NOW, account_upserted, make_usage_event, produce, wait_for


def _stripe_body(event_id: str = "evt_1") -> bytes:
    due = int(NOW.timestamp()) - 47 * 86400
    invoice = {
        "id": "in_1",
        "customer": "cus_42",
        "currency": "eur",
        "amount_due": 3000000,
        "amount_remaining": 3000000,
        "due_date": due,
    }
    return json.dumps(
        {
            "id": event_id,
            "type": "invoice.overdue",
            "created": int(NOW.timestamp()),
            "data": {"object": invoice},
        }
    ).encode()


def _zendesk_body() -> bytes:
    return json.dumps(
        {
            "id": "zd-ev-1",
            "type": "zen:event-type:ticket.created",
            "time": NOW.isoformat(),
            "detail": {"id": "1042", "priority": "URGENT", "status": "OPEN", "organization_id": "9001"},
        }
    ).encode()


def _stored_types(db) -> list[tuple[str, str]]:
    with transaction(db) as session:
        return [(r.type, r.account_id) for r in session.scalars(select(StoredEvent))]


def test_webhooks_verify_signatures_and_events_reach_the_store(
    ingest: TestClient, common_settings: CommonSettings, db
) -> None:
    produce(
        common_settings.kafka_bootstrap,
        common_settings.topics.accounts,
        [("acme", account_upserted("acme", {"stripe": "cus_42", "zendesk": "9001"}))],
    )
    failures_before = (
        REGISTRY.get_sample_value("kamwatch_ingest_signature_failures_total", {"source": "stripe"}) or 0
    )
    now = int(time.time())
    body = _stripe_body()
    good = ingest.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_stripe(body, "whsec_test", now)},
    )
    wrong = ingest.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_stripe(body, "whsec_wrong", now)},
    )
    stale = ingest.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_stripe(body, "whsec_test", now - 400)},
    )
    assert [good.status_code, wrong.status_code, stale.status_code] == [202, 401, 401]
    assert "does not match" in wrong.json()["message"] and "tolerance" in stale.json()["message"]

    zbody = _zendesk_body()
    stamp = datetime.now(UTC).isoformat()
    zgood = ingest.post(
        "/v1/webhooks/zendesk",
        content=zbody,
        headers={
            "X-Zendesk-Webhook-Signature": sign_zendesk(zbody, "zd_test", stamp),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        },
    )
    zwrong = ingest.post(
        "/v1/webhooks/zendesk",
        content=zbody,
        headers={
            "X-Zendesk-Webhook-Signature": sign_zendesk(zbody, "nope", stamp),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        },
    )
    old = datetime.fromtimestamp(now - 400, UTC).isoformat()
    zstale = ingest.post(
        "/v1/webhooks/zendesk",
        content=zbody,
        headers={
            "X-Zendesk-Webhook-Signature": sign_zendesk(zbody, "zd_test", old),
            "X-Zendesk-Webhook-Signature-Timestamp": old,
        },
    )
    assert [zgood.status_code, zwrong.status_code, zstale.status_code] == [202, 401, 401]

    # A replayed delivery (same Stripe event id, fresh signature) is accepted, not duplicated.
    replay = ingest.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_stripe(body, "whsec_old", int(time.time()))},
    )
    assert replay.status_code == 202
    wait_for(
        lambda: sorted(_stored_types(db)) == [("invoice.overdue", "acme"), ("ticket.opened", "acme")],
        what="both webhook events stored once",
    )
    assert "kamwatch_ingest_signature_failures_total" in ingest.get("/metrics").text
    failures = REGISTRY.get_sample_value("kamwatch_ingest_signature_failures_total", {"source": "stripe"})
    assert failures == failures_before + 2


def test_events_api_requires_a_key_with_the_right_scope(ingest: TestClient, common_settings, db) -> None:
    event = make_usage_event()
    assert ingest.post("/v1/events", json=event).status_code == 401
    with transaction(db) as session:
        reader = create_key(session, "reader", ["risk:read"])
    forbidden = ingest.post("/v1/events", json=event, headers={"Authorization": f"Bearer {reader}"})
    assert forbidden.status_code == 403 and "events:write" in forbidden.json()["message"]
    bogus = ingest.post("/v1/events", json=event, headers={"Authorization": "Bearer kw_dead_beef"})
    assert bogus.status_code == 401


def test_invalid_batch_is_refused_whole_naming_each_field(ingest: TestClient, api_key: str) -> None:
    good = make_usage_event()
    bad = make_usage_event()
    bad["data"]["quantity"] = -1
    response = ingest.post("/v1/events", json=[good, bad], headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "[1].data.quantity"


@pytest.mark.parametrize("source", ["stripe", "zendesk", " Stripe "])
def test_an_events_key_cannot_use_a_webhook_source(ingest: TestClient, api_key: str, source: str) -> None:
    """A forged `stripe` id on the events API would shadow the genuine signed webhook (dedup on
    source + id): those sources belong to the signed webhook routes (issue 11 Medium #6)."""
    event = make_usage_event(id="evt_forged", source=source)
    response = ingest.post("/v1/events", json=event, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["field"] == "source" and "/v1/webhooks/" in problem["message"]


def test_oversize_body_gets_413(ingest: TestClient, api_key: str) -> None:
    huge = b"[" + b",".join([json.dumps(make_usage_event()).encode()] * 6000) + b"]"
    assert len(huge) > 1024 * 1024
    response = ingest.post("/v1/events", content=huge, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 413


@pytest.fixture
def ingest_without_broker(common_settings: CommonSettings, ingest_settings: IngestSettings):
    dead = common_settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "producer_delivery_timeout_ms": 1500}
    )
    settings = ingest_settings.model_copy(update={"common": dead})
    with TestClient(create_app(settings, with_consumer=False)) as client:
        yield client


def test_broker_down_still_answers_202_because_the_inbox_holds_the_event(
    ingest_without_broker: TestClient, api_key: str, common_settings: CommonSettings
) -> None:
    """The 202 means stored in the database (the inbox), relayed to Kafka when it is back."""
    event = make_usage_event()
    response = ingest_without_broker.post(
        "/v1/events", json=event, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 202
    engine = make_engine(common_settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id, relayed_at FROM ingest_inbox")).all()
    engine.dispose()
    assert [(r[0], r[1]) for r in rows] == [(event["id"], None)]
    assert ingest_without_broker.get("/readyz").status_code == 503
