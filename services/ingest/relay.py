"""Durable 202s: the HTTP inbox, its relay to the raw topics, and re-relay after a broker that
came back empty (docs/architecture.md, "Durable before 2xx").

- HTTP and webhooks store the events in `ingest_inbox` and commit before answering 202, then try
  to produce them at once; the consumer deletes a row in the transaction that stores its event.
- The tick relays rows whose produce failed, and rows relayed long ago but never consumed.
- The tick also reads the broker epoch (shared/epoch.py). When it changed, the broker lost its
  data: every inbox row is relayed again, and every stored event that the signals group had not
  committed past is published again. Downstream dedup on (source, id) absorbs the copies.
- Which events signals applied is learnt from its committed offsets on kamwatch.events, each
  tick, and kept in `events.applied_at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy.orm import Session, sessionmaker

from services.ingest import metrics, repository
from services.ingest.config import IngestSettings
from shared.clock import Clock
from shared.db import transaction
from shared.epoch import EpochWatch
from shared.errors import TransientError
from shared.events import CloudEvent, to_json
from shared.kafka import OutMessage, Publisher
from shared.logging import get_logger

log = get_logger(__name__)
INBOX_HEADER = "kw_inbox"
RELAY_BATCH = 5000  # rows per tick: a broker that came back empty is refilled in a few ticks


def inbox_message(row_id: int, topic: str, key: str | None, value: bytes) -> OutMessage:
    return OutMessage(topic, key, value, ((INBOX_HEADER, str(row_id).encode()),), ref=("inbox", row_id))


def consumed_inbox_rows(records: list[Any]) -> list[tuple[int, bytes]]:
    """(inbox id, bytes) of the raw records that came from this service's own inbox."""
    found = []
    for record in records:
        for name, value in record.headers or ():
            if name == INBOX_HEADER and value and value.isdigit():
                found.append((int(value), bytes(record.value or b"")))
    return found


def accept(
    session: Session, publisher: Publisher, settings: IngestSettings, events: list[CloudEvent], now: datetime
) -> None:
    """Store and commit (now the 202 is durable), then try to produce at once; what fails to
    produce is relayed by the consumer's tick. The route's session commits the relay mark."""
    topics = settings.common.topics
    rows: list[dict[str, Any]] = [
        {
            "topic": topics.raw_for(e.type),
            "key": e.subject,
            "event_id": e.id,
            "value": to_json(e).encode(),
            "received_at": now,
        }
        for e in events
    ]
    ids = repository.add_inbox(session, rows)
    session.commit()
    messages = [inbox_message(i, r["topic"], r["key"], r["value"]) for i, r in zip(ids, rows, strict=True)]
    try:
        publisher.publish(messages)
    except TransientError as exc:
        log.warning("inbox.relay_deferred", count=len(ids), error=str(exc)[:200])
        return
    repository.mark_relayed(session, ids, now)


class Relay:
    def __init__(self, settings: IngestSettings, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.watch = EpochWatch(settings.common, "ingest")
        self._admin: KafkaAdminClient | None = None

    # --- tick ------------------------------------------------------------------------------------
    def check_epoch(self, now: datetime) -> bool:
        """Called before the first batch is published and on every tick. Without a stored epoch
        (a fresh database, or instances starting together) only the inbox is relayed again:
        nothing was published to kamwatch.events before the epoch was first stored."""
        return self.watch.check(self.sessions, now, self._broker_came_back_empty, repository.forget_relayed)

    def tick(self, now: datetime) -> list[OutMessage]:
        if self.check_epoch(now):
            self._learn_applied(now)
        unrelayed = now - timedelta(seconds=self.settings.relay_after_s)
        stale = now - timedelta(seconds=self.settings.inbox_lease_s)
        with transaction(self.sessions) as session:
            rows = repository.inbox_to_relay(session, unrelayed, stale, RELAY_BATCH)
            metrics.INBOX.set(repository.count_inbox(session))
        return [inbox_message(r.id, r.topic, r.key, r.value) for r in rows]

    @staticmethod
    def _broker_came_back_empty(session: Session) -> None:
        inbox = repository.forget_relayed(session)
        events = repository.forget_unapplied(session)
        metrics.RERELAYED.labels("inbox").inc(inbox)
        metrics.RERELAYED.labels("events").inc(events)
        log.warning("relay.broker_came_back_empty", inbox=inbox, events=events)

    def _learn_applied(self, now: datetime) -> None:
        epoch = self.watch.current
        offsets = self._downstream_offsets()
        if not offsets or self.watch.epoch.current() != epoch:
            return  # unknown, or the broker changed while we asked: offsets of another epoch
        with transaction(self.sessions) as session:
            for partition, committed in offsets.items():
                repository.mark_applied(session, partition, committed, now)

    def _downstream_offsets(self) -> dict[int, int]:
        group, topic = self.settings.downstream_group, self.settings.common.topics.events
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.settings.common.kafka_bootstrap,
                    client_id="kamwatch-ingest-relay",
                    request_timeout_ms=5000,
                )
            found = self._admin.list_group_offsets({group: None}).get(group, {})
        except (KafkaError, OSError, ValueError) as exc:
            log.warning("relay.offsets_unavailable", error=str(exc)[:200])
            self._close_admin()
            return {}
        return {
            tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic and meta.offset >= 0
        }

    # --- after publish -----------------------------------------------------------------------------
    def relayed(self, session: Session, messages: list[OutMessage], now: datetime) -> None:
        ids = [m.ref[1] for m in messages if m.ref and m.ref[0] == "inbox"]
        repository.mark_relayed(session, ids, now)

    def close(self) -> None:
        self._close_admin()
        self.watch.close()

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:
                log.warning("relay.admin_close_failed")
