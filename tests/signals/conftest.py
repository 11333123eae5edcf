"""Signals fixtures: the service in-process (API + consumer thread) on the test broker and DB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.signals.app import create_app
from services.signals.config import SignalsSettings
from shared.auth import SCOPES, create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from shared.events import make_event, to_json
from tests.helpers import NOW, produce


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def history_db(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    """An empty SQLite signals store (training reads the store, not the broker)."""
    from tests.conftest import _import_all_models, _truncate

    _import_all_models()
    _truncate(sqlite_url)
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def signals_settings(common_settings: CommonSettings, tmp_path: Path) -> SignalsSettings:
    return SignalsSettings(
        common=common_settings,
        group_id=f"{common_settings.topics.events}-signals",
        model_dir=str(tmp_path / "models"),
        relay_after_s=0,
        tick_interval_s=0.3,
    )


@pytest.fixture
def signals(signals_settings: SignalsSettings, clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(signals_settings, clock=clock)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def api(signals_settings: SignalsSettings, clock: ManualClock) -> Iterator[TestClient]:
    """The API alone (no consumer thread): faster for registry and query tests."""
    with TestClient(create_app(signals_settings, clock=clock, with_consumer=False)) as client:
        yield client


@pytest.fixture
def processor(signals_settings: SignalsSettings, db: sessionmaker[Session], clock: ManualClock) -> Any:
    """The consumer's handler, driven by hand (tick = sweep + outbox relay)."""
    from services.signals.app import model_holder
    from services.signals.handler import SignalsProcessor

    return SignalsProcessor(signals_settings, db, clock, model_holder(signals_settings))


@pytest.fixture
def db(common_settings: CommonSettings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(common_settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def auth(db: sessionmaker[Session]) -> dict[str, str]:
    with transaction(db) as session:
        key = create_key(session, "test", list(SCOPES))
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def send(common_settings: CommonSettings) -> Callable[[list[Any]], int]:
    """Produce canonical events (CloudEvent objects) on this test's events topic, key = account."""

    def produce_events(events: list[Any]) -> int:
        messages = [(e.subject, to_json(e).encode()) for e in events]
        return produce(common_settings.kafka_bootstrap, common_settings.topics.events, messages)

    return produce_events


def canonical(
    event_type: str, account: str, time: Any, data: dict[str, Any], id: str, source: str = "test"
) -> Any:
    return make_event(event_type, data, id=id, source=source, time=time, subject=account)
