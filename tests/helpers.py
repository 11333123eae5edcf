"""Test helpers: polling with a deadline, Kafka round trips, event factories."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

T = TypeVar("T")
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def wait_for(
    probe: Callable[[], T], timeout_s: float = 20.0, what: str = "condition", interval_s: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy; fail after the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value: {last!r})")


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str | None, bytes | None]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=65536)
    count = 0
    for key, value in messages:
        producer.send(topic, key=key.encode() if key else None, value=value)
        count += 1
    producer.flush(30)
    producer.close()
    return count


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list[Any]:
    """Read a topic from the start (no group) until `expect` records arrived or the deadline."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 10, f"topic {topic}")
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expect and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    # One more short poll so a test can see records beyond `expect` (duplicates).
    for batch in consumer.poll(timeout_ms=300).values():
        records.extend(batch)
    consumer.close()
    return records


def cloud_event(
    event_type: str,
    data: dict[str, Any],
    *,
    subject: str | None = "acme",
    id: str | None = None,
    source: str = "test",
    time: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": (time or NOW).isoformat(),
        "data": data,
        **extra,
    }
    if subject is not None:
        event["subject"] = subject
    return event


def make_usage_event(quantity: float = 100.0, **overrides: Any) -> dict[str, Any]:
    return cloud_event("usage.recorded", {"metric": "api_calls", "quantity": quantity}, **overrides)


def make_ticket_event(kind: str = "opened", priority: str = "normal", **overrides: Any) -> dict[str, Any]:
    status = "solved" if kind == "closed" else "open"
    return cloud_event(
        f"ticket.{kind}", {"ticket_id": "T-1", "priority": priority, "status": status}, **overrides
    )


def make_invoice_event(kind: str = "overdue", days_overdue: int = 45, **overrides: Any) -> dict[str, Any]:
    return cloud_event(
        f"invoice.{kind}",
        {
            "invoice_id": "INV-1",
            "amount": "12000.00",
            "currency": "EUR",
            "due_date": (NOW - timedelta(days=days_overdue)).date().isoformat(),
            "days_overdue": days_overdue,
        },
        **overrides,
    )


def make_contact_event(kind: str = "left", role: str = "champion", **overrides: Any) -> dict[str, Any]:
    return cloud_event(f"contact.{kind}", {"contact_id": "C-1", "role": role}, **overrides)


def account_upserted(account_id: str, external_ids: dict[str, str] | None = None, **fields: Any) -> bytes:
    data = {
        "id": account_id,
        "name": fields.pop("name", account_id.title()),
        "arr": "120000",
        "currency": "EUR",
        "tier": "strategic",
        "external_ids": external_ids or {},
        **fields,
    }
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "kamwatch/signals",
            "type": "account.upserted",
            "time": NOW.isoformat(),
            "subject": account_id,
            "data": data,
        }
    ).encode()


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()
