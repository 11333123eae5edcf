"""Which broker data a service is talking to: the broker epoch.

The embedded broker keeps everything in memory (../shared/KAFKA.md section 5): after a restart
every topic, record and committed offset is gone, and so is whatever a service had published but
its downstream consumer had not applied yet. A service that keeps an outbox in the database can
re-publish that, if it notices. The epoch is the first record of the `<events topic>.epoch`
topic (partition 0): a random id written by whoever finds the topic empty. Every reader takes the
first record, so concurrent writers agree. A different epoch than the one a service stored means
the broker came back empty. This works the same on Apache Kafka, where it simply never changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shared.config import CommonSettings
from shared.db import Base, UTCDateTime, insert_ignore, transaction
from shared.logging import get_logger

log = get_logger(__name__)


def epoch_topic(settings: CommonSettings) -> str:
    return f"{settings.topics.events}.epoch"


class BrokerEpoch:
    """Reads (and if missing, writes) the broker epoch. Not thread-safe: one per consumer loop."""

    def __init__(self, settings: CommonSettings, read_timeout_s: float = 3.0) -> None:
        self.settings = settings
        self.topic = epoch_topic(settings)
        self.read_timeout_s = read_timeout_s
        self._consumer: KafkaConsumer | None = None
        self._retry_at = 0.0

    def current(self) -> str | None:
        """The broker's epoch; None when the broker cannot tell right now (then change nothing)."""
        if time.monotonic() < self._retry_at:
            return None
        try:
            found = self._read()
            if found is None:
                self._write(uuid.uuid4().hex)
                found = self._read()
            return found
        except (KafkaError, OSError, AssertionError) as exc:
            log.warning("epoch.unavailable", error=str(exc)[:200])
            self.close()
            self._retry_at = time.monotonic() + 10  # callers tick often; do not stall each tick
            return None

    def _reader(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
                request_timeout_ms=5000,
                client_id="kamwatch-epoch",
            )
            self._consumer.assign([TopicPartition(self.topic, 0)])
        return self._consumer

    def _read(self) -> str | None:
        consumer = self._reader()
        if consumer.partitions_for_topic(self.topic) is None:
            return None  # not created (yet): the first write creates it where auto-create is on
        tp = TopicPartition(self.topic, 0)
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + self.read_timeout_s
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=200, max_records=1).get(tp, [])
            if records:
                return bytes(records[0].value or b"").decode("ascii", "replace") or None
            if consumer.highwater(tp) == 0:  # fetched: the partition is empty
                return None
        raise KafkaError(f"no answer about {self.topic} within {self.read_timeout_s} s")

    def _write(self, epoch: str) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,  # survives a broker restart (KAFKA.md section 5)
            client_id="kamwatch-epoch",
        )
        try:
            producer.send(self.topic, value=epoch.encode(), partition=0).get(timeout=10)
        finally:
            producer.close(timeout=2)
        log.info("epoch.written", topic=self.topic, epoch=epoch)

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                log.warning("epoch.close_failed")


# --- the epoch each service last saw (one row per owner; each service writes only its own) -----
class SeenEpoch(Base):
    """The broker epoch a service last worked with (see the module docstring)."""

    __tablename__ = "broker_epochs"

    owner: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EpochWatch:
    """Tells a service, once per tick, whether the broker came back empty since it last looked."""

    def __init__(self, settings: CommonSettings, owner: str) -> None:
        self.owner = owner
        self.epoch = BrokerEpoch(settings)
        self.current: str | None = None

    def check(
        self,
        sessions: sessionmaker[Session],
        now: datetime,
        on_change: Callable[[Session], object],
        on_first: Callable[[Session], object] | None = None,
    ) -> bool:
        """True when the broker epoch is known (checked, and re-relayed if it changed). On a change,
        `on_change` runs in the same transaction that stores the new epoch, so a crash cannot
        store the epoch without the re-relay it calls for. A service without a stored epoch yet
        runs `on_first` instead (several instances may start at once: the row is insert-if-absent)."""
        epoch = self.epoch.current()
        if epoch is None:
            return False
        with transaction(sessions) as session:
            row = session.get(SeenEpoch, self.owner)
            if row is not None and row.epoch == epoch:
                self.current = epoch
                return True
            log.warning("epoch.changed", owner=self.owner, was=row.epoch if row else None, now=epoch)
            if row is None:
                table: Any = SeenEpoch.__table__
                values = {"owner": self.owner, "epoch": epoch, "updated_at": now}
                insert_ignore(session, table, [values], ["owner"])
                if on_first is not None:
                    on_first(session)
            else:
                on_change(session)
                row.epoch, row.updated_at = epoch, now
        self.current = epoch
        return True

    def close(self) -> None:
        self.epoch.close()
