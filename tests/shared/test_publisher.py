"""Publisher (issue 11 Medium #7): a record no broker takes is skipped and reported; the rest go."""

from __future__ import annotations

import uuid

from kafka.admin import KafkaAdminClient
from prometheus_client import REGISTRY

from kamwatch.dev.broker import LocalBroker
from shared.config import CommonSettings
from shared.kafka import OutMessage, Publisher, make_producer
from tests.helpers import read_topic


def test_an_oversize_record_is_skipped_and_counted_and_the_others_are_published(broker: LocalBroker) -> None:
    topic = f"pub-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.close()
    publisher = Publisher(
        lambda: make_producer(CommonSettings(kafka_bootstrap=broker.bootstrap)), timeout_s=10
    )
    before = REGISTRY.get_sample_value("kamwatch_poison_messages_total", {"topic": topic}) or 0
    messages = [
        OutMessage(topic, "a", b"small-1", ref=1),
        OutMessage(topic, "b", b"x" * (5 * 1024 * 1024), ref=2),  # a 5 MB registry record
        OutMessage(topic, "c", b"small-2", ref=3),
    ]
    try:
        acked = publisher.publish(messages)
    finally:
        publisher.close()
    assert [m.ref for m in acked] == [1, 3] and all(m.position is not None for m in acked)
    assert (REGISTRY.get_sample_value("kamwatch_poison_messages_total", {"topic": topic}) or 0) == before + 1
    assert [r.value for r in read_topic(broker.bootstrap, topic, 2)] == [b"small-1", b"small-2"]
