"""Builds the signals process: settings -> engine -> model -> consumer loop -> FastAPI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.signals.api import router
from services.signals.config import SignalsSettings
from services.signals.consumer import build_loop
from services.signals.modelstore import ModelHolder, ModelStore
from services.signals.scoring import load_scorecard
from shared.clock import Clock, clock_from_env
from shared.db import make_engine, make_sessionmaker, ping
from shared.kafka import Publisher, make_producer
from shared.runtime import ConsumerThread, lifespan_with
from shared.web import BodyLimit, broker_reachable, install_error_handlers, install_ops_routes


def model_holder(settings: SignalsSettings) -> ModelHolder:
    holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard(settings.scorecard_path))
    holder.refresh()
    return holder


def api_publisher(settings: SignalsSettings) -> Publisher:
    """Short timeouts: a PUT must answer even when the broker is down (the outbox sends later)."""
    timeout_ms = int(settings.api_publish_timeout_s * 1000)
    return Publisher(
        lambda: make_producer(
            settings.common,
            delivery_timeout_ms=timeout_ms + 100,
            request_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        ),
        timeout_s=settings.api_publish_timeout_s,
    )


def create_app(
    settings: SignalsSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or SignalsSettings()
    clock = clock or clock_from_env(settings.clock_file)
    engine = make_engine(settings.common.database_url)
    sessions = make_sessionmaker(engine)
    publisher = api_publisher(settings)
    holder = model_holder(settings)
    consumer = ConsumerThread(build_loop(settings, sessions, clock, holder)) if with_consumer else None

    def on_stop() -> None:
        publisher.close()
        engine.dispose()

    app = FastAPI(
        title="kamwatch signals",
        version="1.0.0",
        description="The account registry, rolling health features and the explainable churn risk.",
        lifespan=lifespan_with(consumer, on_stop),
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.clock = clock
    app.state.consumer = consumer
    app.state.models = holder
    install_error_handlers(app)
    install_ops_routes(
        app,
        "signals",
        {
            "database": lambda: ping(engine),
            "broker": lambda: broker_reachable(settings.common.kafka_bootstrap),
        },
    )
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=max(settings.max_body_bytes, 10 * 1024 * 1024))
    return app


def load_settings() -> SignalsSettings:
    return SignalsSettings()
