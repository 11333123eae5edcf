"""All SQL of the ingest service."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.orm import Session

from services.ingest.models import (
    AccountAlias,
    DeadLetter,
    InboxEvent,
    IngestAccount,
    ParkedEvent,
    StoredEvent,
)
from shared.db import chunks as _chunks
from shared.db import insert_ignore, insert_ignore_json, insert_ignore_returning, update_rows

EventKey = tuple[str, str]  # (source, event id)
Origin = tuple[str, int, int]  # (topic, partition, offset)


def known_accounts(session: Session, account_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(account_ids))
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(
            session.scalars(
                select(IngestAccount.account_id).where(
                    IngestAccount.account_id.in_(chunk), IngestAccount.deleted.is_(False)
                )
            )
        )
    return found


def resolve_aliases(session: Session, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    wanted = sorted(set(pairs))
    resolved: dict[tuple[str, str], str] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(AccountAlias.system, AccountAlias.external_id, AccountAlias.account_id)
            .join(IngestAccount, IngestAccount.account_id == AccountAlias.account_id)
            .where(
                tuple_(AccountAlias.system, AccountAlias.external_id).in_(chunk),
                IngestAccount.deleted.is_(False),
            )
        )
        resolved.update({(system, external): account for system, external, account in rows})
    return resolved


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> dict[EventKey, int]:
    """Insert new events; return the row id of each one really inserted, by (source, id)."""
    if session.get_bind().dialect.name == "postgresql":
        inserted = _insert_events_json(session, rows)
    else:
        table: Any = StoredEvent.__table__
        inserted = insert_ignore_returning(
            session, table, rows, ["source", "event_id"], ["id", "source", "event_id"]
        )
    return {(source, event_id): row_id for row_id, source, event_id in inserted}


_EVENT_COLUMNS = {
    "source": "text",
    "event_id": "text",
    "type": "text",
    "account_id": "text",
    "event_time": "timestamptz",
    "received_at": "timestamptz",
    "origin_topic": "text",
    "origin_partition": "integer",
    "origin_offset": "bigint",
    "payload": "text",
}


def _insert_events_json(session: Session, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """PostgreSQL: the batch as one JSON parameter (shared.db.insert_ignore_json). A multi-row
    VALUES list of a thousand rows costs more in client-side query parsing than the insert
    itself, and text-format arrays (unnest) are escaped item by item in Python."""
    return insert_ignore_json(
        session, "events", _EVENT_COLUMNS, rows, ("source", "event_id"), ("id", "source", "event_id")
    )


def insert_dead_letters(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    insert_ignore(session, DeadLetter.__table__, rows, ["topic", "partition", "offset"])  # type: ignore[arg-type]


def insert_parked(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    insert_ignore(session, ParkedEvent.__table__, rows, ["source", "event_id"])  # type: ignore[arg-type]


def events_by_key(session: Session, keys: Iterable[EventKey]) -> list[StoredEvent]:
    wanted = sorted(set(keys))
    rows: list[StoredEvent] = []
    for chunk in _chunks(wanted):
        rows.extend(
            session.scalars(
                select(StoredEvent).where(tuple_(StoredEvent.source, StoredEvent.event_id).in_(chunk))
            )
        )
    return rows


def unpublished_dead_letters(session: Session, origins: Iterable[Origin]) -> list[DeadLetter]:
    wanted = sorted(set(origins))
    rows: list[DeadLetter] = []
    for chunk in _chunks(wanted):
        rows.extend(
            session.scalars(
                select(DeadLetter).where(
                    tuple_(DeadLetter.topic, DeadLetter.partition, DeadLetter.offset).in_(chunk),
                    DeadLetter.published_at.is_(None),
                )
            )
        )
    return rows


def mark_events_published(session: Session, positions: Sequence[tuple[int, int, int]], now: datetime) -> None:
    """(row id, partition, offset) of events the broker acknowledged on kamwatch.events."""
    if positions:
        rows = [
            {"id": i, "published_at": now, "kafka_partition": p, "kafka_offset": o} for i, p, o in positions
        ]
        # one statement for the batch (an ORM bulk update by key sends one UPDATE per row)
        update_rows(session, StoredEvent.__table__, rows, "id")  # type: ignore[arg-type]


def mark_applied(session: Session, partition: int, below: int, now: datetime) -> int:
    """Events the downstream group committed past (its offset on `partition` is `below`)."""
    result = session.execute(
        update(StoredEvent)
        .where(
            StoredEvent.applied_at.is_(None),
            StoredEvent.kafka_partition == partition,
            StoredEvent.kafka_offset < below,
        )
        .values(applied_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def forget_unapplied(session: Session) -> int:
    """The broker came back empty: publish again every event downstream has not applied."""
    result = session.execute(
        update(StoredEvent)
        .where(StoredEvent.published_at.is_not(None), StoredEvent.applied_at.is_(None))
        .values(published_at=None, kafka_partition=None, kafka_offset=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def add_inbox(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    items = [InboxEvent(**row) for row in rows]
    session.add_all(items)
    session.flush()
    return [item.id for item in items]


def mark_relayed(session: Session, ids: Sequence[int], now: datetime) -> None:
    for chunk in _chunks(sorted(set(ids))):
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(chunk)).values(relayed_at=now))


def delete_inbox(session: Session, consumed: Sequence[tuple[int, bytes]]) -> None:
    """Rows whose raw record was consumed: matched on id and bytes, so a forged header from
    another producer cannot remove somebody else's row."""
    if consumed:
        statement = delete(InboxEvent).where(
            InboxEvent.id == bindparam("i"), InboxEvent.value == bindparam("v")
        )
        session.connection().execute(statement, [{"i": row_id, "v": value} for row_id, value in consumed])


def inbox_to_relay(
    session: Session, unrelayed_before: datetime, relayed_before: datetime, limit: int
) -> list[InboxEvent]:
    """Never relayed (the HTTP path's own produce failed), or relayed long ago and still not consumed."""
    return list(
        session.scalars(
            select(InboxEvent)
            .where(
                ((InboxEvent.relayed_at.is_(None)) & (InboxEvent.received_at <= unrelayed_before))
                | (InboxEvent.relayed_at < relayed_before)
            )
            .order_by(InboxEvent.id)
            .limit(limit)
        )
    )


def forget_relayed(session: Session) -> int:
    result = session.execute(update(InboxEvent).values(relayed_at=None))
    return int(getattr(result, "rowcount", 0) or 0)


def count_inbox(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


def mark_published(
    session: Session, model: type[StoredEvent] | type[DeadLetter], ids: Sequence[int], now: datetime
) -> None:
    for chunk in _chunks(sorted(set(ids))):
        session.execute(update(model).where(model.id.in_(chunk)).values(published_at=now))


def stale_unpublished(
    session: Session, model: type[StoredEvent] | type[DeadLetter], received_before: datetime, limit: int
) -> list[Any]:
    return list(
        session.scalars(
            select(model)
            .where(model.published_at.is_(None), model.received_at <= received_before)
            .order_by(model.id)
            .limit(limit)
        )
    )


def upsert_account(
    session: Session, account_id: str, deleted: bool, external_ids: dict[str, str], now: datetime
) -> None:
    """Replace the read copy of one account and its aliases."""
    existing = session.get(IngestAccount, account_id)
    if existing is None:
        session.add(IngestAccount(account_id=account_id, deleted=deleted, updated_at=now))
    else:
        existing.deleted = deleted
        existing.updated_at = now
    session.execute(delete(AccountAlias).where(AccountAlias.account_id == account_id))
    for system, external_id in external_ids.items():
        # An alias moves if another account claimed it before.
        session.execute(
            delete(AccountAlias).where(AccountAlias.system == system, AccountAlias.external_id == external_id)
        )
        if not deleted:
            session.add(AccountAlias(system=system, external_id=external_id, account_id=account_id))
    session.flush()


def parked_for_refs(session: Session, refs: Iterable[str]) -> list[ParkedEvent]:
    wanted = sorted(set(refs))
    rows: list[ParkedEvent] = []
    for chunk in _chunks(wanted):
        rows.extend(
            session.scalars(
                select(ParkedEvent).where(ParkedEvent.account_ref.in_(chunk)).order_by(ParkedEvent.id)
            )
        )
    return rows


def delete_parked(session: Session, ids: Sequence[int]) -> None:
    for chunk in _chunks(sorted(set(ids))):
        session.execute(delete(ParkedEvent).where(ParkedEvent.id.in_(chunk)))


def parked_refs(session: Session, limit: int) -> list[str]:
    return list(
        session.scalars(
            select(ParkedEvent.account_ref).distinct().order_by(ParkedEvent.account_ref).limit(limit)
        )
    )


def count_parked(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ParkedEvent)) or 0)


def count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(StoredEvent)) or 0)


def count_dead_letters(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(DeadLetter)) or 0)


def recent_dead_letters(session: Session, limit: int) -> list[DeadLetter]:
    return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)))
