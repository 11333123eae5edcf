"""PostgreSQL unreachable mid-stream (a pausable TCP proxy in front of it): the ingest consumer
pauses and retries without committing offsets, and nothing is lost or doubled afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.models import IngestAccount, StoredEvent
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW, account_upserted, encode, make_usage_event, produce, wait_for
from tests.reliability.conftest import report, skip_unless_soak
from tests.reliability.pgproxy import PausableProxy
from tests.reliability.stack import count, fresh_database

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "postgres")


@pytest.fixture
def proxy() -> Iterator[PausableProxy]:
    running = PausableProxy()
    running.start()
    yield running
    running.stop()


def _committed(common: CommonSettings, group: str) -> int:
    """Sum of the group's committed offsets on the usage topic (read without joining the group)."""
    reader = KafkaConsumer(bootstrap_servers=common.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = reader.partitions_for_topic(common.topics.usage) or set()
        offsets = [reader.committed(TopicPartition(common.topics.usage, p)) for p in parts]
        return sum(o or 0 for o in offsets)
    finally:
        reader.close()


def run_outage(total: int, outage_s: float, common: CommonSettings, proxy: PausableProxy) -> None:
    group = f"{common.topics.events}-ingest"
    proxied = common.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = IngestSettings(
        common=common.model_copy(update={"database_url": proxied}),
        group_id=group,
        relay_after_s=0,
        tick_interval_s=0.5,
    )
    direct = make_engine(common.database_url)  # the test reads around the proxy
    db = make_sessionmaker(direct)
    events = [make_usage_event(float(i), id=f"pg-{i}", subject="acme") for i in range(total)]
    messages = [("acme", encode(e)) for e in events]
    produce(common.kafka_bootstrap, common.topics.accounts, [("acme", account_upserted("acme"))])
    with TestClient(create_app(settings, clock=ManualClock(NOW))) as client:
        wait_for(lambda: count(db, IngestAccount) == 1, 60, "the registry copy")
        feeder = threading.Thread(
            target=lambda: [
                produce(common.kafka_bootstrap, common.topics.usage, messages[i : i + 200])
                for i in range(0, total, 200)
            ],
            daemon=True,
        )
        feeder.start()
        wait_for(lambda: count(db, StoredEvent) >= total // 5, 60, "the stream under way", interval_s=0.01)
        retries_before = _retries(group)
        proxy.pause()
        paused_at = time.monotonic()
        checks, first = 0, None
        while time.monotonic() - paused_at < outage_s:
            committed = _committed(common, group)  # first the offsets, then what is stored
            stored = count(db, StoredEvent)
            assert committed <= stored, f"offsets committed past the stored events ({committed} > {stored})"
            if time.monotonic() - paused_at > 1.5:
                first = committed if first is None else first
                assert committed == first, "offsets moved while the database was unreachable"
            checks += 1
            time.sleep(0.5)  # sampling during a fixed-length outage: this is the experiment
        stored_during = count(db, StoredEvent)
        proxy.resume()
        feeder.join(120)
        wait_for(lambda: count(db, StoredEvent) >= total, 180, f"all {total} events stored after the outage")
        consumer = client.app.state.consumer
        assert consumer.alive and not consumer.crashed, "the consumer gave up instead of retrying"
        retried = _retries(group) - retries_before
    with transaction(db) as session:
        stored = session.scalar(select(func.count()).select_from(StoredEvent))
        distinct = session.scalar(select(func.count(func.distinct(StoredEvent.event_id))))
    direct.dispose()
    report(
        f"database outage {outage_s:g} s: events sent {total}, stored {stored} (distinct {distinct}), "
        f"dead-lettered 0, duplicates {stored - distinct}; {stored_during} stored when the outage ended; "
        f"{checks} checks of committed offsets <= stored, none moved; {retried:g} batch retries; "
        f"{proxy.refused} connections refused by the proxy"
    )
    assert stored == distinct == total
    assert retried > 0, "the consumer never noticed the outage"


def _retries(group: str) -> float:
    value = REGISTRY.get_sample_value(
        "kamwatch_consumer_retries_total", {"group": group, "cause": "database"}
    )
    return value or 0.0


def test_postgres_unreachable_5s(common_settings: CommonSettings, proxy: PausableProxy) -> None:
    run_outage(4000, 5, common_settings, proxy)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@skip_unless_soak
def test_postgres_unreachable_30s(common_settings: CommonSettings, proxy: PausableProxy) -> None:
    run_outage(30000, 30, common_settings, proxy)
