"""The ingest Kafka loop (thin): raw topics + the account registry, one group."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from services.ingest.config import IngestSettings
from services.ingest.service import IngestProcessor
from shared.clock import Clock
from shared.kafka import BatchLoop, Publisher, make_consumer, make_producer


def build_loop(settings: IngestSettings, sessions: sessionmaker[Session], clock: Clock) -> BatchLoop:
    topics = [*settings.common.topics.raw, settings.common.topics.accounts]
    return BatchLoop(
        name=settings.group_id,
        consumer_factory=lambda: make_consumer(settings.common, settings.group_id, topics),
        publisher=Publisher(
            lambda: make_producer(settings.common),
            timeout_s=settings.common.producer_delivery_timeout_ms / 1000,
        ),
        handler=IngestProcessor(settings, sessions, clock),
        tick_interval_s=settings.tick_interval_s,
    )
