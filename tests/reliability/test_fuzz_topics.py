"""A fuzz corpus on the raw topics: the ingest consumer never stops, and every bad message lands in
the dead-letter topic and the `dead_letters` table with a reason (both databases)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.models import DeadLetter, StoredEvent
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import (
    NOW,
    account_upserted,
    encode,
    make_invoice_event,
    make_usage_event,
    produce,
    read_topic,
    wait_for,
)
from tests.reliability.conftest import report
from tests.reliability.stack import count


def _valid(i: int) -> bytes:
    return encode(make_usage_event(float(i), id=f"ok-{i}", subject="acme"))


def _usage(**changes: Any) -> bytes:
    event = make_usage_event(10.0, id="bad", subject="acme")
    data = changes.pop("data", None)
    event.update(changes)
    if data is not None:
        event["data"] = data
    return encode(event)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def corpus() -> dict[str, bytes | None]:
    """name -> raw message value; every one must be dead-lettered."""
    valid = _valid(0)
    future = (NOW + timedelta(days=2)).isoformat()
    return {
        "truncated JSON": valid[: len(valid) // 2],
        "empty value": b"",
        "null value (tombstone on a raw topic)": None,
        "JSON null": b"null",
        "JSON array of numbers": b"[1, 2, 3]",
        "JSON string": b'"usage.recorded"',
        "bare number": b"42",
        "NaN literal": b'{"specversion": "1.0", "quantity": NaN}',
        "bad UTF-8": b'{"specversion": "1.0", "id": "\xff\xfe\xfa"}',
        "UTF-16 with BOM": json.dumps({"a": 1}).encode("utf-16"),
        "deep nesting (50k)": _nested(50_000),
        "deep nesting (900)": _nested(900),
        "huge string (300 kB)": _usage(id="x" * 300_000),
        "huge data string": _usage(data={"metric": "m" * 5000, "quantity": 1}),
        "wrong type: quantity as string": _usage(data={"metric": "api_calls", "quantity": "lots"}),
        "wrong type: data as list": _usage(data=[1, 2]),
        "wrong type: time as list": _usage(time=[2026, 11, 1]),
        "wrong type: id as object": _usage(id={"nested": True}),
        "unknown event type": _usage(type="usage.deleted"),
        "wrong specversion": _usage(specversion="0.3"),
        "missing subject": encode({k: v for k, v in make_usage_event(id="nos").items() if k != "subject"}),
        "subject not an account ref": _usage(subject="not an account!"),
        "time without offset": _usage(time="2026-11-01T12:00:00"),
        "future timestamp (+2 days)": _usage(time=future),
        "ancient timestamp (1970)": _usage(time="1970-01-01T00:00:00Z"),
        "year 9999": _usage(time="9999-12-31T23:59:59Z"),
        "negative quantity": _usage(data={"metric": "api_calls", "quantity": -5}),
        "infinite quantity": _usage(data={"metric": "api_calls", "quantity": 1e400}),
        "negative invoice amount": encode(
            {
                **make_invoice_event(subject="acme", id="neg"),
                "data": {**make_invoice_event()["data"], "amount": "-100.00"},
            }
        ),
        "null byte in id": _usage(id="evil\u0000id"),
        "null byte in source": _usage(source="src\u0000"),
        "null byte in data": _usage(data={"metric": "api\u0000calls", "quantity": 1}),
        "null byte in subject": _usage(subject="acme\u0000"),
        "raw NUL bytes": b"\x00" * 64,
        "extra data field": _usage(data={"metric": "api_calls", "quantity": 1, "email": "x@example.com"}),
    }


@pytest.fixture
def ingest(common_settings: CommonSettings) -> Iterator[TestClient]:
    settings = IngestSettings(
        common=common_settings,
        group_id=f"{common_settings.topics.events}-ingest",
        relay_after_s=0,
        tick_interval_s=0.5,
    )
    with TestClient(create_app(settings, clock=ManualClock(NOW))) as client:
        yield client


def test_fuzz_corpus_is_dead_lettered_with_reasons_and_the_consumer_keeps_going(
    ingest: TestClient, common_settings: CommonSettings
) -> None:
    bootstrap, topics = common_settings.kafka_bootstrap, common_settings.topics
    engine = make_engine(common_settings.database_url)
    db = make_sessionmaker(engine)
    produce(bootstrap, topics.accounts, [("acme", account_upserted("acme"))])
    produce(bootstrap, topics.accounts, [("junk", b"{not json"), ("bad", account_upserted("BAD ID!"))])
    items = corpus()
    # Valid events before, between and after the hostile ones: the consumer must keep going.
    messages: list[tuple[str | None, bytes | None]] = [("acme", _valid(i)) for i in range(1, 6)]
    for i, value in enumerate(items.values()):
        messages.append(("acme", value))
        messages.append(("acme", _valid(100 + i)))
    messages += [("acme", _valid(i)) for i in range(1000, 1005)]
    valid_count = len(messages) - len(items)
    wait_for(lambda: count(db, DeadLetter) == 2, 30, "the two bad account records dead-lettered")
    produce(bootstrap, topics.usage, messages)
    # The account was registered before, so nothing is parked: every valid event is stored.
    wait_for(lambda: count(db, StoredEvent) == valid_count, 90, f"{valid_count} valid events stored")
    wait_for(lambda: count(db, DeadLetter) == len(items) + 2, 60, "every hostile message dead-lettered")
    consumer = ingest.app.state.consumer
    assert consumer.alive and not consumer.crashed, "the consumer stopped"
    with transaction(db) as session:
        rows = list(session.scalars(select(DeadLetter).where(DeadLetter.topic == topics.usage)))
    engine.dispose()
    assert len(rows) == len(items)
    assert all(row.reason.strip() and json.loads(row.problems) for row in rows), (
        "a dead letter without a reason"
    )
    by_value = {row.value: row.reason for row in rows}
    for name, value in items.items():
        assert (value or b"") in by_value, f"{name}: not in dead_letters"
    dead = read_topic(bootstrap, topics.deadletter, len(items) + 2, timeout_s=60)
    headers = [dict(r.headers) for r in dead]
    assert len(dead) >= len(items) + 2 and all(h.get("kw_error") for h in headers)
    report(
        f"fuzz corpus: {len(items)} hostile messages + 2 bad account records, {valid_count} valid; "
        f"stored {valid_count}, dead-lettered {len(rows) + 2} (table) / {len(dead)} (topic), "
        f"duplicates 0, consumer alive"
    )
    for name, value in items.items():
        print(f"  {name:40s} -> {by_value[value or b''][:90]}")


def test_nul_characters_in_registry_records_are_refused_not_stored(
    ingest: TestClient, common_settings: CommonSettings, tmp_path: Any
) -> None:
    """PostgreSQL text cannot hold NUL: such a record must be dead-lettered or a 422, never a write
    that fails (a crash loop for a consumer, a 500 for the API)."""
    from tests.security.apps import make_key, running

    bootstrap, topics = common_settings.kafka_bootstrap, common_settings.topics
    engine = make_engine(common_settings.database_url)
    db = make_sessionmaker(engine)
    records = [
        ("nul1", account_upserted("nul1", name="Evil\u0000Corp")),
        ("nul2", account_upserted("nul2", external_ids={"stripe": "cus_\u0000"})),
        ("good", account_upserted("good")),
    ]
    produce(bootstrap, topics.accounts, records)
    produce(bootstrap, topics.usage, [("good", encode(make_usage_event(id="g-1", subject="good")))])
    wait_for(lambda: count(db, StoredEvent) == 1, 60, "the event of the good account stored")
    assert count(db, DeadLetter) == 2
    assert ingest.app.state.consumer.alive
    engine.dispose()
    key = make_key(common_settings.database_url, ["accounts:write"])
    with running("signals", common_settings, tmp_path) as signals:
        body = {"name": "Evil\u0000Corp", "arr": "1000", "currency": "EUR"}
        response = signals.put("/v1/accounts/evil", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
