"""Acceptance 3: the consumer lag kamwatch reports equals the true lag (produced - committed)."""

from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from kamwatch.dev.broker import LocalBroker
from shared.config import CommonSettings
from shared.kafka import BatchLoop, OutMessage, Publisher, make_consumer, make_producer
from tests.helpers import wait_for

PER_PARTITION = 30
PARTITIONS = 3


class PausingHandler:
    """Consumes until every partition delivered once, then pauses them all (a consumer that has
    not got to the rest yet); resumes when told to."""

    def __init__(self) -> None:
        self.consumer: KafkaConsumer | None = None
        self.paused = False
        self.resume = threading.Event()

    def handle(self, records: list[Any]) -> list[OutMessage]:
        consumer = self.consumer
        assert consumer is not None
        assigned = consumer.assignment()
        if not self.paused and assigned and all(consumer.highwater(tp) is not None for tp in assigned):
            consumer.pause(*assigned)
            self.paused = True
        return []

    def published(self, messages: list[OutMessage]) -> None:
        pass

    def tick(self) -> list[OutMessage]:
        if self.paused and self.resume.is_set() and self.consumer is not None:
            self.consumer.resume(*self.consumer.paused())
        return []


def _produce(bootstrap: str, topic: str) -> dict[int, int]:
    """Send PER_PARTITION records to each partition; return the count produced per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [
        producer.send(topic, value=f"m{i}".encode(), partition=p)
        for p in range(PARTITIONS)
        for i in range(PER_PARTITION)
    ]
    producer.flush(30)
    produced: dict[int, int] = {}
    for future in futures:
        meta = future.get(10)
        produced[meta.partition] = max(produced.get(meta.partition, 0), meta.offset + 1)
    producer.close()
    return produced


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets, asked of the broker by a separate client (OffsetFetch)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: reader.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        reader.close(autocommit=False)


def _reported(group: str, topic: str) -> dict[int, float | None]:
    labels = {"group": group, "topic": topic}
    return {
        p: REGISTRY.get_sample_value("kamwatch_consumer_lag_messages", {**labels, "partition": str(p)})
        for p in range(PARTITIONS)
    }


def _lag_matches(bootstrap: str, group: str, topic: str, produced: dict[int, int]) -> dict[int, int] | None:
    committed = _committed(bootstrap, group, topic)
    true_lag = {p: produced[p] - committed[p] for p in range(PARTITIONS)}
    return true_lag if _reported(group, topic) == {p: float(v) for p, v in true_lag.items()} else None


def test_reported_lag_equals_produced_minus_committed(broker: LocalBroker, topic_prefix: str) -> None:
    topic, group = f"{topic_prefix}.lag", f"{topic_prefix}-lag"
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
        consumer_max_poll_records=5,
    )
    produced = _produce_to_new_topic(broker, topic)
    assert produced == dict.fromkeys(range(PARTITIONS), PER_PARTITION)
    handler = PausingHandler()

    def consumer_factory() -> KafkaConsumer:
        handler.consumer = make_consumer(settings, group, [topic])
        return handler.consumer

    loop = BatchLoop(
        name=group,
        consumer_factory=consumer_factory,
        publisher=Publisher(lambda: make_producer(settings)),
        handler=handler,
        tick_interval_s=0.1,
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        partial = wait_for(
            lambda: handler.paused and _lag_matches(broker.bootstrap, group, topic, produced),
            30,
            "reported lag == produced - committed while part is committed",
        )
        assert 0 < sum(partial.values()) < PARTITIONS * PER_PARTITION
        handler.resume.set()
        drained = wait_for(
            lambda: (
                (lag := _lag_matches(broker.bootstrap, group, topic, produced)) is not None
                and sum(lag.values()) == 0
            ),
            30,
            "lag 0 once everything is committed",
        )
        assert drained
    finally:
        loop.stop()
        thread.join(15)


def _produce_to_new_topic(broker: LocalBroker, topic: str) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    admin.close()
    return _produce(broker.bootstrap, topic)
