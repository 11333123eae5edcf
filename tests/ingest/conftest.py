"""Ingest fixtures: the service in-process (API + consumer thread) on the test broker and DB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from tests.helpers import NOW


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def ingest_settings(common_settings: CommonSettings) -> IngestSettings:
    return IngestSettings(
        common=common_settings,
        group_id=f"{common_settings.topics.events}-ingest",
        stripe_webhook_secrets=["whsec_old", "whsec_test"],
        zendesk_webhook_secrets=["zd_test"],
        relay_after_s=0,
        tick_interval_s=0.5,
    )


@pytest.fixture
def ingest(ingest_settings: IngestSettings, clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(ingest_settings, clock=clock)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def db(common_settings: CommonSettings) -> Iterator[object]:
    engine = make_engine(common_settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
