"""`kamwatch simulate` registers its accounts through the signals registry API, with progress."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.registry import register_api
from services.signals.app import create_app
from services.signals.config import SignalsSettings
from shared.auth import SCOPES, create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW


def test_every_account_is_registered_and_each_one_ticks_the_progress(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    engine = make_engine(common_settings.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        key = create_key(session, "test", list(SCOPES))
    engine.dispose()
    start = NOW - timedelta(days=30)
    accounts = Simulation(SimConfig(accounts=6, seed=4, start=start, live_start=NOW, end=NOW)).accounts
    settings = SignalsSettings(common=common_settings, model_dir=str(tmp_path / "models"))
    ticks: list[int] = []
    with TestClient(create_app(settings, clock=ManualClock(NOW), with_consumer=False)) as client:
        count = register_api(client, key, accounts, NOW, on_account=lambda: ticks.append(1))
        stored = client.get(f"/v1/accounts/{accounts[3].id}", headers={"Authorization": f"Bearer {key}"})
    assert count == len(ticks) == 6
    assert stored.status_code == 200 and stored.json()["name"] == accounts[3].name
