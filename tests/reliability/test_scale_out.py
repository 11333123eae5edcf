"""Scale-out (issue 13): two signals and two alerts processes in their consumer groups share the
partitions of kamwatch.events and kamwatch.risk. Mid-stream one member of each group is
SIGKILLed, and later a new member of each joins; afterwards every event is stored once, signals
equals a clean replay, and every notification arrived exactly once (PostgreSQL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from services.signals.models import SignalEvent
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from tests.alerts.conftest import Sinks
from tests.helpers import wait_for
from tests.reliability.stack import (
    ServiceProcess,
    count,
    fresh_database,
    policy_without_quiet_hours,
    service_envs,
)
from tests.reliability.storm import (
    StormReport,
    check_alerts,
    check_ingest,
    check_signals,
    portfolio,
    register,
    stream,
    wait_settled,
)
from tests.reliability.test_consumer_group import _consumed
from tests.security.apps import make_key

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "postgres")


def _owned(service: ServiceProcess, topic: str) -> list[list[int]]:
    """The partitions of `topic` the process said it owned, each time its assignment changed."""
    seen = []
    for line in service.log_path.read_text(errors="replace").splitlines():
        if '"consumer.owned_partitions"' in line:
            entry = json.loads(line)
            if entry.get("topic") == topic:
                seen.append(entry["partitions"])
    return seen


def test_two_replicas_of_signals_and_alerts_survive_a_kill_and_a_join(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, sinks: Sinks, tmp_path: Path
) -> None:
    report = StormReport()
    report.add("scale-out: 2 signals + 2 alerts members; one of each SIGKILLed mid-stream, one of each joins")
    topics = common_settings.topics
    envs = service_envs(
        service_env,
        common_settings,
        tmp_path,
        sinks,
        KAMWATCH_ALERTS_POLICY_FILE=policy_without_quiet_hours(tmp_path),
    )

    def process(name: str, kind: str) -> ServiceProcess:
        return ServiceProcess(kind, envs[kind], tmp_path / f"{name}.log")

    services = {
        "ingest": process("ingest", "ingest"),
        "signals": process("signals-a", "signals"),
        "signals-b": process("signals-b", "signals"),
        "alerts": process("alerts-a", "alerts"),
        "alerts-b": process("alerts-b", "alerts"),
    }
    joiners = {"signals-c": process("signals-c", "signals"), "alerts-c": process("alerts-c", "alerts")}
    engine = make_engine(common_settings.database_url)
    sessions = make_sessionmaker(engine)
    world = portfolio(sinks, 3000)
    try:
        for service in services.values():
            service.start(wait=False)
        for service in services.values():
            service.wait_healthy()
        register(services, make_key(common_settings.database_url, ["admin"]), world, sessions)
        items = world.valid + world.invalid
        producer = threading.Thread(
            target=stream, args=(common_settings, items, max(50, len(items) // 60), 0.4), daemon=True
        )
        producer.start()
        # Both members of each group take part: each has consumed records of its keyed topic.
        members = [("signals", topics.events), ("signals-b", topics.events)]
        members += [("alerts", topics.risk), ("alerts-b", topics.risk)]
        wait_for(
            lambda: all(_consumed(services[name], topic) > 0 for name, topic in members),
            120,
            "every member of both groups handled records of its topic",
        )
        stored = count(sessions, SignalEvent)
        services["signals-b"].kill()
        services["alerts-b"].kill()
        report.add(f"  SIGKILL signals-b and alerts-b after {stored} of {len(world.valid)} events")
        wait_for(
            lambda: count(sessions, SignalEvent) >= stored + (len(world.valid) - stored) // 3,
            180,
            "the survivors go on with the killed members' partitions",
        )
        joined_at = count(sessions, SignalEvent)
        for joiner in joiners.values():
            joiner.start()
        report.add(f"  signals-c and alerts-c join after {joined_at} events")
        producer.join(600)
        assert not producer.is_alive()
        wait_settled(sessions, sinks, len(world.valid), len(world.invalid), timeout_s=240)
        for name, topic in (("signals-c", topics.events), ("alerts-c", topics.risk)):
            owned = _owned(joiners[name], topic)
            assert owned and owned[-1], f"{name} joined but was given no partition of {topic}: {owned}"
            report.add(f"  {name} owned partitions {owned[-1]} of {topic}")
    finally:
        for service in [*services.values(), *joiners.values()]:
            service.stop()
    check_ingest(sessions, world, report)
    check_signals(common_settings.database_url, sessions, tmp_path, str(tmp_path / "models"), report)
    check_alerts(sessions, sinks, report)
    engine.dispose()
    report.add("  verdict: every valid event stored once, state = clean replay, notifications exactly once")
