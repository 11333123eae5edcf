"""Kill storm: all three services as processes, SIGKILLed at random moments and restarted while a
portfolio streams through; afterwards nothing is lost, nothing is doubled, signals equals a clean
replay, and every notification arrived exactly once (PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from tests.alerts.conftest import Sinks
from tests.reliability.conftest import skip_unless_soak
from tests.reliability.stack import (
    SERVICE_NAMES,
    ServiceProcess,
    fresh_database,
    policy_without_quiet_hours,
    service_envs,
)
from tests.reliability.storm import (
    StormReport,
    check_alerts,
    check_ingest,
    check_signals,
    kill_storm,
    portfolio,
    register,
    stream,
    wait_settled,
)
from tests.security.apps import make_key

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """SQLite too: it is the embedded default (`make run`)."""
    return fresh_database(request, request.param)


def run_storm(
    events: int,
    kills: int,
    service_env: Callable[..., dict[str, str]],
    common: CommonSettings,
    sinks: Sinks,
    tmp_path: Path,
) -> None:
    report = StormReport()
    report.add(f"kill storm: {events} events, {kills} SIGKILLs of random services at random moments")
    models = str(tmp_path / "models")
    envs = service_envs(
        service_env, common, tmp_path, sinks, KAMWATCH_ALERTS_POLICY_FILE=policy_without_quiet_hours(tmp_path)
    )
    services = {n: ServiceProcess(n, envs[n], tmp_path / f"{n}.log") for n in SERVICE_NAMES}
    engine = make_engine(common.database_url)
    sessions = make_sessionmaker(engine)
    world = portfolio(sinks, events)
    try:
        for service in services.values():
            service.start(wait=False)
        for service in services.values():
            service.wait_healthy()
        register(services, make_key(common.database_url, ["admin"]), world, sessions)
        items = world.valid + world.invalid
        chunk = max(50, len(items) // 40)
        producer = threading.Thread(target=stream, args=(common, items, chunk, 0.25), daemon=True)
        producer.start()
        killed = kill_storm(services, kills, seed=events, report=report, producer=producer)
        producer.join(600)
        assert not producer.is_alive()
        report.add(f"  killed: {dict(killed)}; restarts all healthy")
        wait_settled(sessions, sinks, len(world.valid), len(world.invalid), timeout_s=180 + events / 50)
    finally:
        for service in services.values():
            service.stop()
    check_ingest(sessions, world, report)
    check_signals(common.database_url, sessions, tmp_path, models, report)
    check_alerts(sessions, sinks, report)
    engine.dispose()
    report.add("  verdict: every valid event stored once, state = clean replay, notifications exactly once")


def test_kill_storm_small(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, sinks: Sinks, tmp_path: Path
) -> None:
    run_storm(3000, 4, service_env, common_settings, sinks, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@skip_unless_soak
def test_kill_storm_full(
    service_env: Callable[..., dict[str, str]], common_settings: CommonSettings, sinks: Sinks, tmp_path: Path
) -> None:
    run_storm(50_000, 12, service_env, common_settings, sinks, tmp_path)
