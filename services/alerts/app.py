"""Builds the alerts process (thin until its issue lands: it starts, answers /healthz, consumes)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.alerts.config import AlertsSettings
from shared.clock import Clock
from shared.db import make_engine, make_sessionmaker, ping
from shared.kafka import BatchLoop, OutMessage, Publisher, make_consumer, make_producer
from shared.runtime import ConsumerThread, lifespan_with
from shared.web import broker_reachable, install_error_handlers, install_ops_routes


class _Acknowledge:
    def handle(self, records: list[Any]) -> list[OutMessage]:
        return []

    def published(self, messages: list[OutMessage]) -> None:
        return None

    def tick(self) -> list[OutMessage]:
        return []


def load_settings() -> AlertsSettings:
    return AlertsSettings()


def create_app(
    settings: AlertsSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or AlertsSettings()
    engine = make_engine(settings.common.database_url)
    common = settings.common
    loop = BatchLoop(
        name=settings.group_id,
        consumer_factory=lambda: make_consumer(common, settings.group_id, [common.topics.risk]),
        publisher=Publisher(lambda: make_producer(common)),
        handler=_Acknowledge(),
    )
    consumer = ConsumerThread(loop) if with_consumer else None
    app = FastAPI(title="kamwatch alerts", version="1.0.0", lifespan=lifespan_with(consumer, engine.dispose))
    app.state.settings = settings
    app.state.sessions = make_sessionmaker(engine)
    app.state.consumer = consumer
    install_error_handlers(app)
    install_ops_routes(
        app,
        "alerts",
        {"database": lambda: ping(engine), "broker": lambda: broker_reachable(common.kafka_bootstrap)},
    )
    return app
