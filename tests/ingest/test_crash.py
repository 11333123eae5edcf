"""Kill -9 the ingest process mid-stream and restart it: nothing lost, nothing stored twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
from sqlalchemy import func, select

from kamwatch.dev.broker import free_port
from services.ingest.models import IngestAccount, StoredEvent
from shared.config import CommonSettings
from shared.db import transaction
from tests.helpers import account_upserted, encode, make_usage_event, produce, read_topic, wait_for

pytestmark = pytest.mark.slow
TOTAL = 6000


def _start(env: dict[str, str], port: int, log_path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "kamwatch.cli", "ingest", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: _healthy(port) or process.poll() is not None, 30, "ingest /healthz")
    assert process.poll() is None, log_path.read_text()[-2000:]
    return process


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _account_known(db) -> bool:
    with transaction(db) as session:
        return session.get(IngestAccount, "acme") is not None


def _stored(db) -> int:
    with transaction(db) as session:
        return int(session.scalar(select(func.count()).select_from(StoredEvent)) or 0)


def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(
    common_settings: CommonSettings, service_env, db, tmp_path
) -> None:
    topics = common_settings.topics
    produce(common_settings.kafka_bootstrap, topics.accounts, [("acme", account_upserted("acme"))])
    events = [make_usage_event(i, id=f"k-{i}", subject="acme") for i in range(TOTAL)]
    # Small batches, so the kill lands between a DB commit and an offset commit of some batch.
    env = service_env(
        KAMWATCH_INGEST_GROUP_ID=f"{topics.events}-ingest", KAMWATCH_CONSUMER_MAX_POLL_RECORDS="50"
    )
    port = free_port()
    process = _start(env, port, tmp_path / "ingest.log")
    # The account must be known first, or the events are parked and later stored in one go.
    wait_for(lambda: _account_known(db), 60, "account registered in the read copy")
    first = threading.Thread(
        target=produce,
        args=(common_settings.kafka_bootstrap, topics.usage, [("acme", encode(e)) for e in events[:3000]]),
    )
    first.start()  # watch the store while records are still arriving
    wait_for(lambda: _stored(db) >= 300, 60, "first events stored", interval_s=0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _stored(db)
    rest = threading.Thread(
        target=produce,
        args=(common_settings.kafka_bootstrap, topics.usage, [("acme", encode(e)) for e in events[3000:]]),
    )
    rest.start()
    process = _start(env, port, tmp_path / "ingest.log")
    first.join()
    rest.join()
    try:
        wait_for(lambda: _stored(db) == TOTAL, 120, f"{TOTAL} events stored")
        published = read_topic(common_settings.kafka_bootstrap, topics.events, TOTAL, timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    ids = [json.loads(r.value)["id"] for r in published]
    assert set(ids) == {e["id"] for e in events}, "an event never reached kamwatch.events"
    with transaction(db) as session:
        distinct = session.scalar(select(func.count(func.distinct(StoredEvent.event_id))))
    assert distinct == _stored(db) == TOTAL
    print(
        f"killed after {killed_at} stored; {len(ids) - len(set(ids))} redelivered duplicates on "
        f"kamwatch.events (absorbed downstream by the (source, id) dedup)"
    )
