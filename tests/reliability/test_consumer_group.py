"""Two ingest processes in one consumer group share the partitions; one is SIGKILLed mid-stream:
its partitions move to the survivor and every event is stored exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.ingest.models import IngestAccount, StoredEvent
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from shared.metrics import scraped_sum
from tests.helpers import account_upserted, encode, make_usage_event, produce, read_topic, wait_for
from tests.reliability.conftest import report, skip_unless_soak
from tests.reliability.stack import ServiceProcess, count, fresh_database

pytestmark = pytest.mark.slow
ACCOUNTS = [f"grp-{i:02d}" for i in range(12)]  # keys spread over all 3 partitions


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "postgres")


def _consumed(service: ServiceProcess, topic: str) -> float:
    """kamwatch_consumer_records_total of this process for one topic (0 before its first batch)."""
    return scraped_sum(service.metrics(), "kamwatch_consumer_records_total", topic=topic)


def run_group(
    total: int, service_env: Callable[..., dict[str, str]], common: CommonSettings, tmp_path: Path
) -> None:
    topics = common.topics
    env = service_env(
        KAMWATCH_INGEST_GROUP_ID=f"{topics.events}-ingest",
        KAMWATCH_CONSUMER_MAX_POLL_RECORDS="100",
        KAMWATCH_INGEST_RELAY_AFTER_S="1",
    )
    members = [ServiceProcess("ingest", env, tmp_path / f"ingest-{n}.log") for n in ("a", "b")]
    engine = make_engine(common.database_url)
    db = make_sessionmaker(engine)
    events = [
        make_usage_event(float(i), id=f"grp-{i}", subject=ACCOUNTS[i % len(ACCOUNTS)]) for i in range(total)
    ]
    try:
        for member in members:
            member.start()
        produce(common.kafka_bootstrap, topics.accounts, [(a, account_upserted(a)) for a in ACCOUNTS])
        wait_for(lambda: count(db, IngestAccount) == len(ACCOUNTS), 60, "the registry copy")
        feeder = threading.Thread(
            target=produce,
            args=(common.kafka_bootstrap, topics.usage, [(e["subject"], encode(e)) for e in events]),
        )
        feeder.start()
        wait_for(
            lambda: all(_consumed(m, topics.usage) > 0 for m in members),
            90,
            "both members consuming",
            interval_s=0.2,
        )
        victim, survivor = members
        before = _consumed(survivor, topics.usage)
        victim.kill()
        stored_at_kill = count(db, StoredEvent)
        feeder.join(120)
        wait_for(lambda: count(db, StoredEvent) >= total, 180, f"all {total} events stored by the survivor")
        taken_over = _consumed(survivor, topics.usage) - before
        published = read_topic(common.kafka_bootstrap, topics.events, total, timeout_s=60)
    finally:
        for member in members:
            member.stop()
    with transaction(db) as session:
        stored = session.scalar(select(func.count()).select_from(StoredEvent))
        distinct = session.scalar(select(func.count(func.distinct(StoredEvent.event_id))))
    engine.dispose()
    ids = [r.value for r in published]
    report(
        f"consumer group: events sent {total}, stored {stored} (distinct {distinct}), dead-lettered 0, "
        f"duplicates {stored - distinct}; member a killed at {stored_at_kill} stored; survivor consumed "
        f"{taken_over:g} more records after the kill; {len(ids)} records on kamwatch.events "
        f"({len(ids) - len(set(ids))} redelivered copies, absorbed downstream by the (source, id) dedup)"
    )
    assert stored == distinct == total
    assert taken_over > 0
    assert len({r.value for r in published}) >= total


def test_two_ingest_instances_one_dies(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, tmp_path: Path
) -> None:
    run_group(4000, service_env, common_settings, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@skip_unless_soak
def test_two_ingest_instances_one_dies_full(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, tmp_path: Path
) -> None:
    run_group(40000, service_env, common_settings, tmp_path)
