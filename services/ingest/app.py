"""The ingest process: raw topics + the registry in, canonical events out; events API and webhooks."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.api import router
from services.ingest.config import IngestSettings
from services.ingest.handler import IngestProcessor
from shared.clock import Clock
from shared.kafka import Publisher, make_producer
from shared.runtime import build_service


def create_app(
    settings: IngestSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or IngestSettings()
    common = settings.common
    return build_service(
        "ingest",
        settings,
        description="Events and webhooks in; validated, resolved, deduplicated events out.",
        router=router,
        topics=[*common.topics.raw, common.topics.accounts],
        handler=lambda sessions, clock: IngestProcessor(settings, sessions, clock),
        clock=clock,
        with_consumer=with_consumer,
        publisher=Publisher(
            lambda: make_producer(common), timeout_s=common.producer_delivery_timeout_ms / 1000
        ),
    )


def load_settings() -> IngestSettings:
    return IngestSettings()
