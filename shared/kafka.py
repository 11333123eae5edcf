"""Kafka plumbing on kafka-python: client factories, topic set-up, publishing, the batch loop.

Checkpoint order everywhere (at-least-once in, idempotent writes, so effectively-once state):
poll a batch -> one DB transaction -> commit it -> produce downstream and flush -> commit offsets.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RetriableError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata
from sqlalchemy.orm import Session, sessionmaker

from shared.clock import Clock
from shared.config import CommonSettings
from shared.db import is_transient
from shared.errors import EventInvalid, TransientError
from shared.logging import get_logger
from shared.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_LAG,
    CONSUMER_RECORDS,
    CONSUMER_RETRIES,
    POISON_MESSAGES,
    PRODUCED,
)
from shared.settings import ServiceSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class OutMessage:
    """A record to produce once the DB transaction that decided it has committed."""

    topic: str
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    ref: Any = field(default=None, compare=False)  # e.g. the row id to mark as published
    position: tuple[int, int] | None = field(default=None, compare=False)  # (partition, offset) once acked


def dead_letter_message(
    topic: str, record: Any, error: EventInvalid, *, service: str, ref: Any = None
) -> OutMessage:
    """The one dead-letter writer: `record` (a consumer record, or a stored row with the same
    topic/partition/offset/key/value attributes) to `topic`, its original bytes untouched, with
    why and where in headers (kw_error, kw_problems, kw_topic, kw_partition, kw_offset), logged
    as `<service>.dead_letter` with where it came from."""
    headers = (
        ("kw_error", str(error).encode()[:1000]),
        ("kw_problems", json.dumps([p.as_dict() for p in error.problems]).encode()[:4000]),
        ("kw_topic", record.topic.encode()),
        ("kw_partition", str(record.partition).encode()),
        ("kw_offset", str(record.offset).encode()),
    )
    log.warning(
        f"{service}.dead_letter",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=str(error)[:300],
    )
    text_key = record.key.decode("utf-8", "replace") if record.key else None
    return OutMessage(topic, text_key, record.value or b"", headers, ref=ref)


def make_producer(settings: CommonSettings, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 65536,
        "compression_type": "lz4",
        "delivery_timeout_ms": settings.producer_delivery_timeout_ms,
        # kafka-python refuses delivery_timeout_ms <= linger_ms + request_timeout_ms (every send
        # would fail): keep the request timeout below the delivery timeout.
        "request_timeout_ms": max(100, min(10000, settings.producer_delivery_timeout_ms - 100)),
        "max_request_size": 4 * 1024 * 1024,
        # Fail fast when no broker answers: callers retry (loop) or answer 503 (HTTP).
        "max_block_ms": min(5000, settings.producer_delivery_timeout_ms),
        "bootstrap_timeout_ms": min(5000, settings.producer_delivery_timeout_ms),
        "client_id": "kamwatch",
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    settings: CommonSettings, group_id: str | None, topics: Sequence[str] = (), **overrides: Any
) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
        "max_poll_interval_ms": 300000,
        "max_poll_records": settings.consumer_max_poll_records,
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "bootstrap_timeout_ms": 10000,
        "client_id": f"kamwatch-{group_id or 'reader'}",
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    if topics:
        consumer.subscribe(list(topics))
    return consumer


def ensure_topics(
    settings: CommonSettings,
    partitions: int | None = None,
    compacted: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the kamwatch topics that do not exist yet; return the ones created."""
    partitions = partitions or settings.topic_partitions
    wanted = settings.topics.all()
    compacted = list(compacted) or [settings.topics.accounts]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap,
                client_id="kamwatch-admin",
                request_timeout_ms=10000,
            )
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise TransientError(f"no Kafka broker answers at {settings.kafka_bootstrap}") from None
            time.sleep(0.5)
    epoch = f"{settings.topics.events}.epoch"  # shared/epoch.py: one record, kept forever
    try:
        existing = set(admin.list_topics())
        created = []
        for name in [*wanted, epoch]:
            if name in existing:
                continue
            spec: dict[str, Any] = {"num_partitions": partitions, "replication_factor": 1}
            if name in compacted:
                spec["configs"] = {"cleanup.policy": "compact"}
            if name == epoch:
                spec = {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "-1"}}
            try:
                admin.create_topics({name: spec})
                if name != epoch:
                    created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


class Publisher:
    """Produces a list of messages and waits until the broker acknowledged every one.

    Recreates the producer after a failure: an idempotent kafka-python producer stays broken
    after a broker restart (see ../shared/KAFKA.md section 5), on Apache Kafka this is harmless.
    """

    def __init__(
        self,
        factory: Callable[[], KafkaProducer],
        timeout_s: float = 30.0,
        max_message_bytes: int = 1024 * 1024 - 4096,
    ) -> None:
        self._factory = factory
        # Apache Kafka refuses records over message.max.bytes (1 MB by default): such a record
        # would fail every publish that carries it, and so stall everything queued behind it.
        self._max_message_bytes = max_message_bytes
        self._producer: KafkaProducer | None = None
        self._timeout_s = timeout_s
        self._lock = threading.Lock()

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = self._factory()
            except KafkaError as exc:
                raise TransientError(f"broker unavailable: {exc}") from exc
        return self._producer

    def publish(self, messages: Sequence[OutMessage]) -> list[OutMessage]:
        """Send all and block until each is acknowledged (acks=all) or raise TransientError;
        returns the messages with the (partition, offset) the broker gave each."""
        messages = self._without_poison(messages)
        if not messages:
            return []
        with self._lock:
            producer = self._get()
            try:
                futures = [
                    producer.send(
                        m.topic,
                        value=m.value,
                        key=m.key.encode() if m.key is not None else None,
                        headers=list(m.headers),
                    )
                    for m in messages
                ]
                producer.flush(timeout=self._timeout_s)
                acked = [future.get(timeout=self._timeout_s) for future in futures]
            except (KafkaError, KafkaTimeoutError) as exc:
                self._reset()
                raise TransientError(f"broker did not acknowledge: {exc}") from exc
        for m in messages:
            PRODUCED.labels(m.topic).inc()
        return [replace(m, position=(md.partition, md.offset)) for m, md in zip(messages, acked, strict=True)]

    def _without_poison(self, messages: Sequence[OutMessage]) -> list[OutMessage]:
        """Messages no broker will take are skipped and reported (their rows stay unpublished,
        visible in the log and kamwatch_poison_messages_total), never retried as a batch."""
        kept = []
        for m in messages:
            size = len(m.value) + len(m.key or "") + sum(len(k) + len(v) for k, v in m.headers)
            if size <= self._max_message_bytes:
                kept.append(m)
                continue
            POISON_MESSAGES.labels(m.topic).inc()
            log.error("publish.poison_skipped", topic=m.topic, key=m.key, bytes=size, ref=str(m.ref)[:100])
        return kept

    def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception:
                log.warning("producer.close_failed")

    def close(self) -> None:
        with self._lock:
            self._reset()


class BatchHandler(Protocol):
    def handle(self, records: list[Any]) -> list[OutMessage]:
        """Process a batch in one committed DB transaction; return what to produce."""

    def published(self, messages: list[OutMessage]) -> None:
        """Called after the broker acknowledged `messages` (mark outbox rows as sent)."""

    def tick(self) -> list[OutMessage]:
        """Periodic time-driven work; return what to produce."""


S = TypeVar("S", bound=ServiceSettings)


def partition_of(key: str, partitions: int) -> int:
    """The partition a keyed record lands on: kafka-python's default partitioner (murmur2, the
    same as the Java client's), which every kamwatch producer uses with key = account id."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Ownership:
    """The partitions of a service's keyed input topic this replica owns in its consumer group.
    Time-driven work (the signals sweep, alert escalations) runs only for the accounts on them,
    so two replicas never sweep or escalate the same account. `partitions=None`: standalone
    (no group assignment known, e.g. a handler driven by hand): everything is owned."""

    partitions: frozenset[int] | None = None
    total: int = 0

    def owns(self, key: str) -> bool:
        if self.partitions is None:
            return True
        if not self.partitions or self.total <= 0:
            return False
        return partition_of(key, self.total) in self.partitions

    @property
    def predicate(self) -> Callable[[str], bool] | None:
        """`owns` for a query that must skip the others' accounts; None standalone (all)."""
        return None if self.partitions is None else self.owns

    @property
    def share(self) -> float:
        """The owned fraction of the partitions (1.0 standalone)."""
        if self.partitions is None:
            return 1.0
        return len(self.partitions) / self.total if self.total > 0 else 0.0


class Processor(Generic[S]):
    """Base of a service's BatchHandler: its settings, topic names, session factory and clock.
    `owner_topic`: the input topic keyed by account whose assignment decides `ownership`."""

    owner_topic: str | None = None

    def __init__(self, settings: S, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.settings = settings
        self.topics = settings.common.topics
        self.sessions = sessions
        self.clock = clock
        self.ownership = Ownership()

    def owned(self, account_ids: Sequence[str]) -> list[str]:
        return [a for a in account_ids if self.ownership.owns(a)]


class BatchLoop:
    """The consumer loop every service runs: poll, handle, publish, commit offsets, tick."""

    def __init__(
        self,
        *,
        name: str,
        consumer_factory: Callable[[], KafkaConsumer],
        publisher: Publisher,
        handler: BatchHandler,
        tick_interval_s: float = 5.0,
        poll_timeout_ms: int = 200,
        max_backoff_s: float = 10.0,
        catchup_timeout_s: float = 60.0,
        stall_after_s: float = 120.0,
    ) -> None:
        self.name = name
        self._consumer_factory = consumer_factory
        self._publisher = publisher
        self._handler = handler
        self._tick_interval_s = tick_interval_s
        self._poll_timeout_ms = poll_timeout_ms
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._consumer: KafkaConsumer | None = None
        self._next_tick = 0.0
        self._failures = 0
        self.last_error: str | None = None
        self.batches = 0
        self._catchup_timeout_s = catchup_timeout_s
        self._caught_up = False
        self._start_marks: dict[TopicPartition, int] = {}
        self._started = time.monotonic()
        self.stall_after_s = stall_after_s
        self._assigned_at: float | None = None  # monotonic time since when partitions are assigned
        self._unassigned_since = time.monotonic()
        self._progress_at = time.monotonic()  # last batch handled, or last time there was no lag
        self._lag = 0
        CONSUMER_BATCH_SECONDS.labels(name)  # exported at zero from start-up, so rates see the first batch
        self._lag_partitions: set[TopicPartition] = set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Run until stop(); finishes the current batch, commits and closes on the way out."""
        log.info("consumer.started", group=self.name)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self._close()
            log.info("consumer.stopped", group=self.name)

    def _step(self) -> None:
        try:
            if self._consumer is None:
                self._consumer = self._consumer_factory()
            polled = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
            records = [r for batch in polled.values() for r in batch]
            self._track_assignment()
            if records:
                self._process(records)
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + self._tick_interval_s
                if self._ready_to_tick():
                    self._emit(self._handler.tick())
                self._update_lag()  # observed while catching up too
            self._failures = 0
            self.last_error = None
        except TransientError as exc:
            self._retry_later("dependency", exc)
        except (RetriableError, KafkaConnectionError) as exc:
            self._retry_later("broker", exc)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._retry_later("database", exc)

    def _ready_to_tick(self) -> bool:
        """On start, apply what waits on the input topics before the first tick: a tick that ran
        first (e.g. delivering from a stale registry copy) once turned one bad record into a crash
        loop that no corrected record could stop. "Waiting" = up to the high watermarks seen at
        the first fetch (a busy topic never runs dry). Bounded by catchup_timeout_s."""
        if self._caught_up:
            return True
        consumer = self._consumer
        if consumer is not None and self._reached_start_marks(consumer):
            self._caught_up = True
            waited = round(time.monotonic() - self._started, 2)
            log.info("consumer.caught_up", group=self.name, after_s=waited)
        elif time.monotonic() - self._started > self._catchup_timeout_s:
            self._caught_up = True
            log.warning("consumer.catchup_timeout", group=self.name, timeout_s=self._catchup_timeout_s)
        return self._caught_up

    def _reached_start_marks(self, consumer: KafkaConsumer) -> bool:
        """Every assigned partition read up to the high watermark it had when first fetched
        (the Fetch high watermark: correct on the local broker too, KAFKA.md section 4)."""
        assigned = consumer.assignment()
        if not assigned:
            return False
        for tp in assigned - set(consumer.paused()):  # paused by the handler: not waiting input
            if tp not in self._start_marks:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    return False
                self._start_marks[tp] = highwater
            position = consumer.position(tp, timeout_ms=0)
            if position is None or position < self._start_marks[tp]:
                return False
        return True

    def _track_assignment(self) -> None:
        consumer = self._consumer
        assigned = bool(consumer.assignment()) if consumer is not None else False
        self._track_ownership(consumer)
        now = time.monotonic()
        if assigned and self._assigned_at is None:
            self._assigned_at = now
        elif not assigned and self._assigned_at is not None:
            self._assigned_at, self._unassigned_since = None, now

    def _track_ownership(self, consumer: KafkaConsumer | None) -> None:
        """Tell the handler which partitions of its account-keyed topic this member owns now."""
        topic = getattr(self._handler, "owner_topic", None)
        if topic is None or consumer is None:
            return
        owned = frozenset(tp.partition for tp in consumer.assignment() if tp.topic == topic)
        current = getattr(self._handler, "ownership", None)
        if current is not None and current.partitions == owned and current.total > 0:
            return  # unchanged: no metadata lookup on every poll
        total = len(consumer.partitions_for_topic(topic) or ())
        if current is None or current.partitions != owned or current.total != total:
            self._handler.ownership = Ownership(owned, total)  # type: ignore[attr-defined]
            log.info(
                "consumer.owned_partitions", group=self.name, topic=topic, partitions=sorted(owned), of=total
            )

    def stall(self) -> str | None:
        """Why this consumer looks stuck (for /readyz), or None: no partition assigned for
        stall_after_s, or lag present without a batch handled for stall_after_s. With no
        assignment there is no lag series either, so the lag alert cannot see this case."""
        now = time.monotonic()
        if self._stop.is_set():
            return None
        if self._lag > 0 and now - self._progress_at > self.stall_after_s:
            return (
                f"consumer {self.name} has lag {self._lag} and handled no batch for "
                f"{now - self._progress_at:.0f} s"
            )
        if self._assigned_at is None and now - self._unassigned_since > self.stall_after_s:
            return (
                f"consumer {self.name} has had no partition assigned for {now - self._unassigned_since:.0f} s"
            )
        return None

    def _process(self, records: list[Any]) -> None:
        started = time.perf_counter()
        try:
            out = self._handler.handle(records)
            self._emit(out)
        except BaseException:
            self._rewind(records)
            raise
        self._commit(records)
        self.batches += 1
        self._progress_at = time.monotonic()
        CONSUMER_BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        for record in records:
            CONSUMER_RECORDS.labels(self.name, record.topic).inc()

    def _emit(self, out: list[OutMessage]) -> None:
        if out:
            self._handler.published(self._publisher.publish(out))

    def _rewind(self, records: list[Any]) -> None:
        """Seek back to the first record of each partition so a retry reprocesses the batch."""
        if self._consumer is None:
            return
        firsts: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            firsts[tp] = min(firsts.get(tp, record.offset), record.offset)
        for tp, offset in firsts.items():
            # A partition revoked meanwhile is skipped: its new owner starts from the committed offset.
            with contextlib.suppress(KafkaError, AssertionError, ValueError):
                self._consumer.seek(tp, offset)

    def _commit(self, records: list[Any]) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        try:
            self._consumer.commit(offsets)
        except CommitFailedError:
            # Rebalanced while processing: the new owner redelivers; our writes are idempotent.
            log.warning("consumer.commit_failed_rebalance", group=self.name)

    def _update_lag(self) -> None:
        """Lag = fetch high watermark - committed offset (what a restart would re-read).

        This loop commits every batch before its tick and seeks back to the committed offset
        when a batch fails, so at tick time the consumer's position *is* the committed offset.
        The position is local state; asking the coordinator (`committed()`) is a network call
        that, made every tick while the group rebalanced after a member was SIGKILLed, kept a
        restarted member from ever finishing its join (tests/reliability kill storm).

        The high watermark comes from Fetch responses (`highwater`), never ListOffsets/end_offsets,
        which the local broker answers wrongly (../shared/KAFKA.md section 4); this is correct on
        Apache Kafka too. Gauges of partitions no longer assigned are removed, so a scaled-out group
        sums to its true lag.
        """
        consumer = self._consumer
        if consumer is None:
            return
        assigned = set(consumer.assignment())
        for tp in self._lag_partitions - assigned:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.name, tp.topic, str(tp.partition))
        self._lag_partitions &= assigned
        try:
            lag = sum(self._set_lag(consumer, tp) for tp in assigned)
            if lag == 0:
                self._progress_at = time.monotonic()
            self._lag = lag
        except KafkaError as exc:  # a metric never stops the loop; the next tick tries again
            log.warning("consumer.lag_unavailable", group=self.name, error=str(exc)[:200])

    def _set_lag(self, consumer: KafkaConsumer, tp: TopicPartition) -> int:
        highwater = consumer.highwater(tp)
        if highwater is None:  # not fetched yet, so the position may not be known locally either
            return 0
        committed = consumer.position(tp, timeout_ms=0)
        if committed is None:
            return 0
        lag = max(0, highwater - committed)
        CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(lag)
        self._lag_partitions.add(tp)
        return lag

    def _retry_later(self, cause: str, exc: BaseException) -> None:
        self._failures += 1
        self.last_error = str(exc)[:300]
        with contextlib.suppress(Exception):  # lag without progress is what readiness watches
            self._update_lag()
        CONSUMER_RETRIES.labels(self.name, cause).inc()
        delay = min(self._max_backoff_s, 0.2 * 2 ** min(self._failures, 8))
        log.warning(
            "consumer.retry",
            group=self.name,
            cause=cause,
            error=self.last_error,
            attempt=self._failures,
            delay_s=round(delay, 2),
        )
        if self._failures >= 3 and self._consumer is not None and cause != "database":
            # After repeated broker failures start over with a fresh client (broker restarts).
            # Not for database outages: the Kafka side is healthy, the batch was rewound, and a
            # recreated kafka-python consumer was seen to hang for minutes rejoining the group.
            self._close()
        self._stop.wait(delay)

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:
                log.warning("consumer.close_failed", group=self.name)
