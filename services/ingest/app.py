"""Builds the ingest process: settings -> engine -> publisher -> consumer loop -> FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.api import router
from services.ingest.config import IngestSettings
from services.ingest.consumer import build_loop
from shared.clock import Clock, clock_from_env
from shared.db import make_engine, make_sessionmaker, ping
from shared.kafka import Publisher, make_producer
from shared.runtime import ConsumerThread, lifespan_with
from shared.web import BodyLimit, broker_reachable, install_error_handlers, install_ops_routes


def create_app(
    settings: IngestSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or IngestSettings()
    clock = clock or clock_from_env(settings.clock_file)
    engine = make_engine(settings.common.database_url)
    sessions = make_sessionmaker(engine)
    publisher = Publisher(
        lambda: make_producer(settings.common), timeout_s=settings.common.producer_delivery_timeout_ms / 1000
    )
    consumer = ConsumerThread(build_loop(settings, sessions, clock)) if with_consumer else None

    def on_stop() -> None:
        publisher.close()
        engine.dispose()

    app = FastAPI(
        title="kamwatch ingest",
        version="1.0.0",
        description="Events and webhooks in; validated, resolved, deduplicated events out.",
        lifespan=lifespan_with(consumer, on_stop),
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.clock = clock
    app.state.consumer = consumer
    install_error_handlers(app)
    install_ops_routes(
        app,
        "ingest",
        {
            "database": lambda: ping(engine),
            "broker": lambda: broker_reachable(settings.common.kafka_bootstrap),
        },
    )
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def load_settings() -> IngestSettings:
    return IngestSettings()
