"""The three services in-process without their consumers, for route-level security tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.alerts.app import create_app as alerts_app
from services.alerts.config import AlertsSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.config import IngestSettings
from services.signals.app import create_app as signals_app
from services.signals.config import SignalsSettings
from shared.auth import create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW

SERVICES = ("ingest", "signals", "alerts")
STRIPE_SECRETS = ["whsec_old_rotating_out", "whsec_new_rotating_in"]
ZENDESK_SECRETS = ["zd_secret_old", "zd_secret_new"]
CLOUDEVENTS_SECRETS = ["ce_secret_one"]
LINK_SECRET = "link-secret-for-tests-0123456789"


def build_app(service: str, common: CommonSettings, tmp_path: Path) -> FastAPI:
    clock = ManualClock(NOW)
    if service == "ingest":
        return ingest_app(
            IngestSettings(
                common=common,
                stripe_webhook_secrets=STRIPE_SECRETS,
                zendesk_webhook_secrets=ZENDESK_SECRETS,
                cloudevents_webhook_secrets=CLOUDEVENTS_SECRETS,
                max_body_bytes=64 * 1024,
            ),
            clock=clock,
            with_consumer=False,
        )
    if service == "signals":
        settings = SignalsSettings(common=common, model_dir=str(tmp_path / "models"), api_publish_timeout_s=1)
        return signals_app(settings, clock=clock, with_consumer=False)
    return alerts_app(
        AlertsSettings(common=common, link_secret=LINK_SECRET, public_url="http://testserver"),
        clock=clock,
        with_consumer=False,
    )


@contextmanager
def running(service: str, common: CommonSettings, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(build_app(service, common, tmp_path), raise_server_exceptions=False) as client:
        yield client


def make_key(database_url: str, scopes: list[str], name: str = "test") -> str:
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return create_key(session, name, scopes)
    finally:
        engine.dispose()
