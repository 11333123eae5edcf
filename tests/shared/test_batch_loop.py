"""BatchLoop start-up and stall detection on the real broker (issue 11 High #1 and Medium #8)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from kamwatch.dev.broker import LocalBroker
from shared.config import CommonSettings
from shared.errors import TransientError
from shared.kafka import BatchLoop, OutMessage, Publisher, make_consumer, make_producer
from tests.helpers import produce, wait_for


class Recorder:
    """A BatchHandler that writes down what it was asked to do, in order."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail

    def handle(self, records: list[Any]) -> list[OutMessage]:
        if self.fail:
            raise TransientError("the database is down")
        self.calls.append(("handle", len(records)))
        return []

    def published(self, messages: list[OutMessage]) -> None:
        return None

    def tick(self) -> list[OutMessage]:
        self.calls.append(("tick", 0))
        return []


def _topic(broker: LocalBroker, partitions: int = 2) -> str:
    name = f"loop-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
    admin.close()
    return name


def _loop(broker: LocalBroker, topic: str, handler: Recorder, **extra: Any) -> BatchLoop:
    common = CommonSettings(
        kafka_bootstrap=broker.bootstrap, consumer_session_timeout_ms=3000, consumer_heartbeat_interval_ms=500
    )
    group = f"g-{uuid.uuid4().hex[:8]}"
    topics = [topic] if topic else []
    return BatchLoop(
        name=group,
        consumer_factory=lambda: make_consumer(common, group, topics, max_poll_records=10),
        publisher=Publisher(lambda: make_producer(common)),
        handler=handler,
        tick_interval_s=0.05,
        **extra,
    )


@pytest.fixture
def running() -> Iterator[list[BatchLoop]]:
    loops: list[BatchLoop] = []
    yield loops
    for loop in loops:
        loop.stop()


def _start(loop: BatchLoop, running: list[BatchLoop]) -> None:
    running.append(loop)
    threading.Thread(target=loop.run, daemon=True).start()


def test_the_first_tick_comes_after_what_was_waiting_on_the_topic(
    broker: LocalBroker, running: list[BatchLoop]
) -> None:
    topic = _topic(broker)
    produce(broker.bootstrap, topic, [(f"k{i}", b"x") for i in range(60)])
    handler = Recorder()
    _start(_loop(broker, topic, handler), running)

    wait_for(lambda: ("tick", 0) in handler.calls, 30, "the first tick")
    first_tick = handler.calls.index(("tick", 0))
    handled_before = sum(n for kind, n in handler.calls[:first_tick] if kind == "handle")
    assert handled_before == 60, handler.calls[: first_tick + 1]


def test_a_consumer_without_partitions_is_reported_stalled(
    broker: LocalBroker, running: list[BatchLoop]
) -> None:
    loop = _loop(broker, "", Recorder(), stall_after_s=1.0, catchup_timeout_s=0)
    _start(loop, running)
    problem = wait_for(loop.stall, 10, "a stall report")
    assert "no partition assigned" in problem


def test_lag_without_progress_is_reported_stalled_and_progress_clears_it(
    broker: LocalBroker, running: list[BatchLoop]
) -> None:
    topic = _topic(broker, partitions=1)
    produce(broker.bootstrap, topic, [("k", b"x")] * 5)
    handler = Recorder(fail=True)
    loop = _loop(broker, topic, handler, stall_after_s=1.0)
    _start(loop, running)
    problem = wait_for(lambda: "lag" in (loop.stall() or "") and loop.stall(), 20, "a lag stall report")
    assert "has lag 5 and handled no batch" in str(problem)
    handler.fail = False
    wait_for(lambda: loop.stall() is None, 20, "the stall to clear")
