"""The signals process: canonical events in, risk changes out; the registry and risk API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from services.signals.api import router
from services.signals.config import SignalsSettings
from services.signals.console_api import router as console_router
from services.signals.handler import SignalsProcessor
from services.signals.modelstore import ModelHolder, ModelStore
from services.signals.money import load_rates
from services.signals.scoring import load_scorecard
from shared.cache import TtlMemo
from shared.clock import Clock
from shared.kafka import Publisher, make_producer
from shared.runtime import build_service


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


def routes() -> APIRouter:
    """The registry and risk API, plus what the console reads (plans, timeline, board)."""
    combined = APIRouter()
    combined.include_router(router)
    combined.include_router(console_router)
    return combined


def create_app(
    settings: SignalsSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or SignalsSettings()
    load_rates(settings.rates_path, settings.reporting_currency)  # a broken rates table fails the start
    holder = model_holder(settings)
    return build_service(
        "signals",
        settings,
        description="The account registry, rolling health features and the explainable churn risk.",
        router=routes(),
        topics=[settings.common.topics.events],
        handler=lambda sessions, clock: SignalsProcessor(settings, sessions, clock, holder),
        clock=clock,
        with_consumer=with_consumer,
        publisher=api_publisher(settings),
        parts={"models": holder, "portfolio_memo": TtlMemo(settings.portfolio_cache_s)},
        max_body_bytes=max(settings.max_body_bytes, 10 * 1024 * 1024),  # CSV imports
    )


def load_settings() -> SignalsSettings:
    return SignalsSettings()
