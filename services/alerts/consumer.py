"""The alerts Kafka loop (thin): risk changes + the account registry, one group."""

from __future__ import annotations

from services.alerts.config import AlertsSettings
from services.alerts.service import AlertsProcessor
from shared.kafka import BatchLoop, Publisher, make_consumer, make_producer


def build_loop(settings: AlertsSettings, processor: AlertsProcessor) -> BatchLoop:
    topics = [settings.common.topics.accounts, settings.common.topics.risk]
    return BatchLoop(
        name=settings.group_id,
        consumer_factory=lambda: make_consumer(settings.common, settings.group_id, topics),
        publisher=Publisher(lambda: make_producer(settings.common)),
        handler=processor,
        tick_interval_s=settings.tick_interval_s,
    )
