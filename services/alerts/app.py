"""Builds the alerts process: settings -> policy -> engine -> consumer loop (+ tick) -> FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts.api import router
from services.alerts.config import AlertsSettings
from services.alerts.consumer import build_loop
from services.alerts.lifecycle import Lifecycle
from services.alerts.policy import load_policy
from services.alerts.service import AlertsProcessor
from shared.clock import Clock, clock_from_env
from shared.db import make_engine, make_sessionmaker, ping
from shared.runtime import ConsumerThread, lifespan_with
from shared.web import BodyLimit, broker_reachable, install_error_handlers, install_ops_routes


def load_settings() -> AlertsSettings:
    return AlertsSettings()


def create_app(
    settings: AlertsSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or AlertsSettings()
    policy = load_policy(settings.policy_file)  # refuses to start on an invalid policy
    clock = clock or clock_from_env(settings.clock_file)
    engine = make_engine(settings.common.database_url)
    sessions = make_sessionmaker(engine)
    lifecycle = Lifecycle(settings, policy)
    processor = AlertsProcessor(settings, sessions, clock, lifecycle)
    consumer = ConsumerThread(build_loop(settings, processor)) if with_consumer else None
    app = FastAPI(
        title="kamwatch alerts",
        version="1.0.0",
        description="Risk changes in; alerts that reach the right person and climb when nobody acts.",
        lifespan=lifespan_with(consumer, engine.dispose),
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.clock = clock
    app.state.lifecycle = lifecycle
    app.state.processor = processor
    app.state.consumer = consumer
    install_error_handlers(app)
    install_ops_routes(
        app,
        "alerts",
        {
            "database": lambda: ping(engine),
            "broker": lambda: broker_reachable(settings.common.kafka_bootstrap),
        },
    )
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
