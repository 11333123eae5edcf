"""Tables owned by ingest: the event store, dead letters, parked events, the account read copy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")


class StoredEvent(Base):
    """Every valid, resolved event exactly once (unique on source + id)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_events_account_time", "account_id", "event_time"),
        Index("ix_events_unpublished", "published_at", "id"),
        Index("ix_events_unapplied", "applied_at", "kafka_partition", "kafka_offset"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    origin_topic: Mapped[str] = mapped_column(String(255))
    origin_partition: Mapped[int] = mapped_column(Integer)
    origin_offset: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Where it went on kamwatch.events, and when the signals group's committed offset passed it:
    # what a broker that came back empty needs again (services/ingest/relay.py).
    kafka_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class InboxEvent(Base):
    """An event accepted over HTTP (202), stored before the answer and relayed to its raw topic;
    deleted by the ingest consumer in the transaction that stores, parks or dead-letters it."""

    __tablename__ = "ingest_inbox"
    __table_args__ = (Index("ix_ingest_inbox_relayed", "relayed_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str] = mapped_column(String(200))
    value: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    relayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DeadLetter(Base):
    """A message that failed validation, with the reason; also produced to kamwatch.deadletter."""

    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("topic", "partition", "offset"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    value: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    problems: Mapped[str] = mapped_column(Text)  # JSON list of {field, message}
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ParkedEvent(Base):
    """A valid event whose account is not (yet) known; replayed when it is registered."""

    __tablename__ = "parked_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_parked_events_account_ref", "account_ref"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(200))
    account_ref: Mapped[str] = mapped_column(String(200))
    origin_topic: Mapped[str] = mapped_column(String(255))
    origin_partition: Mapped[int] = mapped_column(Integer)
    origin_offset: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IngestAccount(Base):
    """Read copy of the registry (from kamwatch.accounts): which account ids exist."""

    __tablename__ = "ingest_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AccountAlias(Base):
    """External id in a source system (stripe, zendesk, crm...) -> kamwatch account id."""

    __tablename__ = "account_aliases"

    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
