"""The signals Kafka loop (thin): kamwatch.events, one group."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from services.signals.config import SignalsSettings
from services.signals.modelstore import ModelHolder
from services.signals.service import SignalsProcessor
from shared.clock import Clock
from shared.kafka import BatchLoop, Publisher, make_consumer, make_producer


def build_loop(
    settings: SignalsSettings, sessions: sessionmaker[Session], clock: Clock, holder: ModelHolder
) -> BatchLoop:
    topics = [settings.common.topics.events]
    return BatchLoop(
        name=settings.group_id,
        consumer_factory=lambda: make_consumer(settings.common, settings.group_id, topics),
        publisher=Publisher(lambda: make_producer(settings.common)),
        handler=SignalsProcessor(settings, sessions, clock, holder),
        tick_interval_s=settings.tick_interval_s,
    )
