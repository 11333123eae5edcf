"""Shared fixtures: a real Kafka-protocol broker and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from kamwatch.dev.broker import LocalBroker, free_port
from shared.config import CommonSettings, TopicNames
from shared.db import Base, make_engine
from shared.kafka import ensure_topics
from shared.migrate import upgrade

PG_BASE_URL = os.environ.get("KAMWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One local Tansu broker for the session; each test uses its own topics and groups."""
    instance = LocalBroker(free_port(), log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'kamwatch.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema in the `test` database, migrated once, dropped at the end."""
    schema = f"kw_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = make_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        existing = set(connection.dialect.get_table_names(connection))
        for name in tables:
            if name in existing:
                connection.execute(text(f'DELETE FROM "{name}"'))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test runs on SQLite and on PostgreSQL, starting from empty tables."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    _import_all_models()
    _truncate(url)
    return url


def _import_all_models() -> None:
    # Registers every table on Base.metadata so _truncate knows them.
    import importlib

    for name in (
        "shared.auth",
        "shared.epoch",
        "services.ingest.models",
        "services.signals.models",
        "services.alerts.models",
    ):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(name)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def common_settings(broker: LocalBroker, database_url: str, topic_prefix: str) -> CommonSettings:
    """Settings pointing at the test broker and database, with this test's own topics."""
    names = {field: f"{topic_prefix}.{field}" for field in TopicNames.model_fields}
    settings = CommonSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        topic_partitions=3,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
        topics=TopicNames(**names),
    )
    ensure_topics(settings, partitions=3)
    return settings


def settings_env(common: CommonSettings) -> dict[str, str]:
    """The same settings as environment variables, for service subprocesses."""
    return common.subprocess_env(dict(os.environ))


@pytest.fixture
def service_env(common_settings: CommonSettings) -> Callable[..., dict[str, str]]:
    def build(**extra: str) -> dict[str, str]:
        return {**settings_env(common_settings), **extra}

    return build


@pytest.fixture
def api_key(common_settings: CommonSettings) -> str:
    """A key with every scope, in this test's database."""
    from shared.auth import SCOPES, create_key
    from shared.db import make_sessionmaker, transaction

    engine = make_engine(common_settings.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        key = create_key(session, "test", list(SCOPES))
    engine.dispose()
    return key


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
