"""All SQL of the signals service."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Float,
    Numeric,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, aliased

from services.signals.models import (
    OUTCOME_FILTER,
    Account,
    RiskHistory,
    RiskScore,
    SignalBucket,
    SignalEntity,
    SignalEvent,
)
from services.signals.money import UNRANKED, Rates
from services.signals.state import Counts, EntityRow
from shared.cache import TtlMemo
from shared.contracts import CHURNED, AccountRecord
from shared.db import Money, ReadPlan, insert_ignore, insert_ignore_json, insert_rows, upsert
from shared.db import chunks as _chunks

STATE_TABLES = (SignalBucket, SignalEntity)


# --- registry ----------------------------------------------------------------------------------
def get_account(session: Session, account_id: str) -> Account | None:
    return session.get(Account, account_id)


def accounts_by_id(session: Session, account_ids: Iterable[str], lock: bool = False) -> dict[str, Account]:
    """Registry rows; `lock` holds them (PostgreSQL) so two workers never score one account at once."""
    found: dict[str, Account] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(Account).where(Account.id.in_(chunk)).order_by(Account.id)
        if lock:
            query = query.with_for_update()
        found.update({a.id: a for a in session.scalars(query)})
    return found


def _content(record_text: str) -> dict[str, Any]:
    data = json.loads(record_text)
    data.pop("updated_at", None)
    return dict(data)


def save_account(session: Session, record: AccountRecord, record_text: str) -> tuple[Account, bool]:
    """Insert or replace a registry record; a PUT of identical content changes nothing.

    An upsert: insert-if-absent first, then lock the row. Read-then-insert let two concurrent
    PUTs of a new account both insert, and one got a 500 (issue 11 Medium #5)."""
    assert record.updated_at is not None
    placeholder = {
        "id": record.id,
        "name": record.name,
        "arr": record.arr,
        "currency": record.currency,
        "tier": record.tier,
        "deleted": record.deleted,
        "record": "{}",
        "version": 0,
        "updated_at": record.updated_at,
    }
    insert_ignore(session, Account.__table__, [placeholder], ["id"])  # type: ignore[arg-type]
    row = session.get(Account, record.id, with_for_update=True, populate_existing=True)
    assert row is not None
    if row.version > 0 and _content(row.record) == _content(record_text):
        return row, False
    owner = record.owner
    row.name, row.arr, row.currency, row.tier = record.name, record.arr, record.currency, record.tier
    row.segment, row.renewal_date, row.deleted = record.segment, record.renewal_date, record.deleted
    row.term_months = record.term_months
    row.owner_email = owner.email if owner else None
    row.owner_name = owner.name if owner else None
    manager = record.manager
    row.manager_email = manager.email if manager else None
    row.manager_name = manager.name if manager else None
    row.record = record_text
    row.version += 1
    row.updated_at, row.published_at = record.updated_at, None
    session.flush()
    return row, True


def forget_published_accounts(session: Session) -> None:
    """The broker lost kamwatch.accounts: every registry record is published again."""
    session.execute(update(Account).values(published_at=None))


def unpublished_accounts(session: Session, before: datetime, limit: int) -> list[Account]:
    query = (
        select(Account)
        .where(Account.published_at.is_(None), Account.updated_at <= before)
        .order_by(Account.updated_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_accounts_published(session: Session, versions: Sequence[tuple[str, int]], now: datetime) -> None:
    # Rows are locked in account id order here and in the import, so the two never deadlock.
    for account_id, version in sorted(versions):
        session.execute(
            update(Account)
            .where(Account.id == account_id, Account.version == version)
            .values(published_at=now)
        )


# --- processed events ----------------------------------------------------------------------------
def insert_new_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the (source, id) keys that are new. Rows are
    inserted in the order given, so ids follow the order the batch applies them (rebuild replays
    by id)."""
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return _insert_events_json(session, rows)
    statement = (
        sqlite.insert(SignalEvent)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(SignalEvent.source, SignalEvent.event_id)
    )
    inserted: set[tuple[str, str]] = set()
    for chunk in _chunks(rows, 200):
        inserted.update((s, e) for s, e in session.execute(statement, list(chunk)))
    return inserted


_EVENT_COLUMNS = {
    "source": "text",
    "event_id": "text",
    "type": "text",
    "account_id": "text",
    "event_time": "timestamptz",
    "payload": "text",
    "received_at": "timestamptz",
}


def _insert_events_json(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """PostgreSQL: the batch as one JSON parameter (shared.db.insert_ignore_json); ids follow the
    batch's order. A multi-row VALUES insert was a quarter of the consumer's time in the
    throughput benchmark, spent re-parsing its SQL in the driver."""
    inserted = insert_ignore_json(
        session, "signal_events", _EVENT_COLUMNS, rows, ("source", "event_id"), ("source", "event_id")
    )
    return {(source, event_id) for source, event_id in inserted}


def iter_events(session: Session, batch: int = 2000) -> Iterator[list[SignalEvent]]:
    """All processed events in chunks, by id (training)."""
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(SignalEvent).where(SignalEvent.id > last).order_by(SignalEvent.id).limit(batch)
            )
        )
        if not rows:
            return
        yield rows
        last = rows[-1].id


def iter_range_events(
    session: Session, first: str, last: str, batch: int = 2000
) -> Iterator[list[SignalEvent]]:
    """The events of the accounts `first`..`last`, each account's in id order (the order the live
    path applied them), streamed in chunks from one query (rebuild)."""
    query = (
        select(SignalEvent)
        .where(SignalEvent.account_id.between(first, last))
        .order_by(SignalEvent.account_id, SignalEvent.id)
        .execution_options(yield_per=batch)
    )
    for chunk in session.scalars(query).partitions():
        yield list(chunk)


def account_ranges(session: Session, size: int) -> Iterator[tuple[str, str]]:
    """The accounts that have events, as consecutive (first, last) ranges of `size` accounts in
    the database's order (so BETWEEN selects exactly them)."""
    after: str | None = None
    while True:
        query = select(SignalEvent.account_id).distinct().order_by(SignalEvent.account_id).limit(size)
        if after is not None:
            query = query.where(SignalEvent.account_id > after)
        ids = list(session.scalars(query))
        if not ids:
            return
        yield ids[0], ids[-1]
        after = ids[-1]


def last_event_time(session: Session) -> datetime | None:
    return session.scalar(select(func.max(SignalEvent.event_time)))


def event_account_ids(session: Session) -> list[str]:
    """Every account with stored events, sorted (training and backtest walk them in chunks)."""
    return list(session.scalars(select(SignalEvent.account_id).distinct().order_by(SignalEvent.account_id)))


def events_of_accounts(session: Session, account_ids: Sequence[str]) -> dict[str, list[SignalEvent]]:
    found: dict[str, list[SignalEvent]] = {}
    for chunk in _chunks(account_ids):
        statement = (
            select(SignalEvent)
            .where(SignalEvent.account_id.in_(chunk))
            .order_by(SignalEvent.account_id, SignalEvent.event_time, SignalEvent.id)
        )
        for row in session.scalars(statement):
            found.setdefault(row.account_id, []).append(row)
    return found


def churn_outcomes(session: Session) -> int:
    """How many `account.churned` events are stored (the learning loop retrains on new ones)."""
    statement = select(func.count()).select_from(SignalEvent).where(SignalEvent.type == "account.churned")
    return int(session.scalar(statement) or 0)


def latest_outcomes(session: Session, account_ids: Iterable[str]) -> dict[str, SignalEvent]:
    """Per account, its latest `account.churned` / `account.renewed` event by (event time, source,
    id): the account is churned while the latest one is a churn (order-independent, so a late or
    redelivered event cannot flip it)."""
    found: dict[str, SignalEvent] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(SignalEvent).where(SignalEvent.account_id.in_(chunk), text(OUTCOME_FILTER))
        for row in session.scalars(query):
            best = found.get(row.account_id)
            if best is None or (row.event_time, row.source, row.event_id) > (
                best.event_time,
                best.source,
                best.event_id,
            ):
                found[row.account_id] = row
    return found


def accounts_with_events(session: Session, account_ids: Iterable[str]) -> set[str]:
    """Which of these accounts have at least one stored event (the others are band no_data)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(SignalEvent.account_id).where(SignalEvent.account_id.in_(chunk)).distinct()
        found.update(session.scalars(query))
    return found


def count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SignalEvent)) or 0)


# --- state -----------------------------------------------------------------------------------------
def buckets_for_keys(session: Session, keys: Iterable[tuple[str, date]]) -> dict[tuple[str, date], Counts]:
    """The stored counters of these (account, day) keys (plain values: no ORM objects)."""
    found: dict[tuple[str, date], Counts] = {}
    columns = (SignalBucket.account_id, SignalBucket.day, SignalBucket.counts)
    for chunk in _chunks(sorted(set(keys))):
        query = select(*columns).where(tuple_(SignalBucket.account_id, SignalBucket.day).in_(chunk))
        found.update({(a, d): dict(c) for a, d, c in session.execute(query)})
    return found


def entities_for_keys(
    session: Session, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], EntityRow]:
    found: dict[tuple[str, str, str], EntityRow] = {}
    columns = tuple_(SignalEntity.account_id, SignalEntity.kind, SignalEntity.entity_id)
    for chunk in _chunks(sorted(set(keys))):
        for row in session.execute(select(*ENTITY_COLUMNS).where(columns.in_(chunk))):
            found[(row.account_id, row.kind, row.entity_id)] = _entity_row(row)
    return found


def entity_values(account_id: str, entity: EntityRow) -> dict[str, Any]:
    """A signal_entities row of one account's entity (inserts and upserts)."""
    return {
        "account_id": account_id,
        "kind": entity.kind,
        "entity_id": entity.entity_id,
        "event_time": entity.event_time,
        "event_key": entity.event_key,
        "state": dict(entity.state),
        "active": entity.active,
    }


def write_state(
    session: Session,
    buckets: Sequence[tuple[str, date, Counts]],
    entities: Sequence[tuple[str, EntityRow]],
) -> None:
    """Upsert final bucket and entity rows (one statement each, whatever was there before)."""
    upsert(
        session,
        SignalBucket.__table__,  # type: ignore[arg-type]
        [{"account_id": a, "day": d, "counts": c} for a, d, c in sorted(buckets, key=lambda r: (r[0], r[1]))],
        ("account_id", "day"),
        ("counts",),
    )
    upsert(
        session,
        SignalEntity.__table__,  # type: ignore[arg-type]
        [entity_values(a, e) for a, e in sorted(entities, key=lambda r: (r[0], r[1].kind, r[1].entity_id))],
        ("account_id", "kind", "entity_id"),
        ("event_time", "event_key", "state", "active"),
    )


def buckets_of(session: Session, account_ids: Sequence[str], since: date) -> dict[str, dict[date, Counts]]:
    """Daily counters since `since` of many accounts (one query per chunk)."""
    found: dict[str, dict[date, Counts]] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(SignalBucket.account_id, SignalBucket.day, SignalBucket.counts).where(
            SignalBucket.account_id.in_(chunk), SignalBucket.day >= since
        )
        for account_id, day, counts in session.execute(query):
            found.setdefault(account_id, {})[day] = dict(counts)
    return found


ENTITY_COLUMNS = (
    SignalEntity.account_id,
    SignalEntity.kind,
    SignalEntity.entity_id,
    SignalEntity.event_time,
    SignalEntity.event_key,
    SignalEntity.state,
    SignalEntity.active,
)


def entities_of(session: Session, account_ids: Sequence[str], since: datetime) -> dict[str, list[EntityRow]]:
    """Open things (tickets, unpaid invoices, active contacts) and anything that changed recently."""
    found: dict[str, list[EntityRow]] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(*ENTITY_COLUMNS).where(
            SignalEntity.account_id.in_(chunk),
            or_(SignalEntity.active.is_(True), SignalEntity.event_time >= since),
        )
        for row in session.execute(query):
            found.setdefault(row.account_id, []).append(_entity_row(row))
    return found


def _entity_row(row: Any) -> EntityRow:
    return EntityRow(row.kind, row.entity_id, row.event_time, row.event_key, dict(row.state), row.active)


def to_entity(row: SignalEntity) -> EntityRow:
    return EntityRow(row.kind, row.entity_id, row.event_time, row.event_key, dict(row.state), row.active)


def clear_state(session: Session) -> None:
    for model in STATE_TABLES:
        session.execute(delete(model))


def state_snapshot(
    session: Session, accounts: tuple[str, str] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every state row (of the accounts `first`..`last`) as plain tuples, sorted (rebuild's
    comparison)."""
    buckets = select(SignalBucket.account_id, SignalBucket.day, SignalBucket.counts)
    entities = select(*ENTITY_COLUMNS)
    if accounts is not None:
        buckets = buckets.where(SignalBucket.account_id.between(*accounts))
        entities = entities.where(SignalEntity.account_id.between(*accounts))
    return {
        "signal_buckets": sorted(map(tuple, session.execute(buckets))),
        "signal_entities": sorted(map(tuple, session.execute(entities))),
    }


def state_counts(session: Session) -> dict[str, int]:
    """Rows per state table."""
    return {
        "signal_buckets": int(session.scalar(select(func.count()).select_from(SignalBucket)) or 0),
        "signal_entities": int(session.scalar(select(func.count()).select_from(SignalEntity)) or 0),
    }


# --- risk --------------------------------------------------------------------------------------------
# A risk_scores row as the engine reads and writes it: plain values by column name. The features
# are left out of the locked read (parsing them was most of its cost); only a churn copies them.
RiskRow = dict[str, Any]
_RISK_ROW_COLUMNS = tuple(c for c in RiskScore.__table__.c if c.name != "features")
_RISK_WRITE_KEY = ("account_id",)
_RISK_UPDATE = tuple(c.name for c in RiskScore.__table__.c if c.name not in _RISK_WRITE_KEY)


def locked_risks(session: Session, account_ids: Iterable[str]) -> dict[str, RiskRow]:
    """The risk rows of these accounts without their features, locked (FOR UPDATE, in id order:
    the order every writer takes them in)."""
    found: dict[str, RiskRow] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(*_RISK_ROW_COLUMNS).where(RiskScore.account_id.in_(chunk))
        query = query.order_by(RiskScore.account_id).with_for_update()
        found.update({row.account_id: row._asdict() for row in session.execute(query)})
    return found


def risk_features(session: Session, account_id: str) -> dict[str, float]:
    found = session.scalar(select(RiskScore.features).where(RiskScore.account_id == account_id))
    return dict(found or {})


def write_risk(
    session: Session, scores: Sequence[RiskRow], history: Sequence[dict[str, Any]]
) -> dict[str, int]:
    """The engine's writes of one transaction: every scored account's whole row (an upsert) and
    the new history rows (at most one per account), in order. One statement each on PostgreSQL.
    Returns each new history row's id by account."""
    rows = sorted(scores, key=lambda r: r["account_id"])
    upsert(session, RiskScore.__table__, rows, _RISK_WRITE_KEY, _RISK_UPDATE)  # type: ignore[arg-type]
    table = RiskHistory.__table__
    inserted = insert_rows(session, table, history, ("id", "account_id"))  # type: ignore[arg-type]
    return {account_id: int(row_id) for row_id, account_id in inserted}


def unpublished_ids(session: Session, account_ids: Sequence[str]) -> list[int]:
    """The ids of these accounts' history rows still waiting to be published (the outbox)."""
    found: list[int] = []
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(RiskHistory.id).where(
            RiskHistory.publish.is_(True),
            RiskHistory.published_at.is_(None),
            RiskHistory.account_id.in_(chunk),
        )
        found += session.scalars(query)
    return sorted(found)


def risk_extras(session: Session, account_ids: Iterable[str]) -> dict[str, Row[Any]]:
    """What a risk.changed message copies from the current row (name, tier, ARR, currency)."""
    columns = (RiskScore.account_id, RiskScore.name, RiskScore.tier, RiskScore.arr, RiskScore.currency)
    found: dict[str, Row[Any]] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        found.update(
            {
                row.account_id: row
                for row in session.execute(select(*columns).where(RiskScore.account_id.in_(chunk)))
            }
        )
    return found


def get_risk(session: Session, account_id: str) -> RiskScore | None:
    return session.get(RiskScore, account_id)


# The columns both hot answers show, before and after what differs.
_ANSWER_HEAD = (RiskScore.account_id, RiskScore.name, RiskScore.score, RiskScore.band)
_ANSWER_TAIL = (
    RiskScore.model_version,
    RiskScore.as_of,
    RiskScore.scored_at,
    RiskScore.arr,
    RiskScore.currency,
    RiskScore.tier,
    RiskScore.revenue_at_risk,
)
# What a risk answer shows (GET /v1/accounts/{id}/risk): no features, read as plain columns.
RISK_COLUMNS = (*_ANSWER_HEAD, RiskScore.drivers, RiskScore.changes, *_ANSWER_TAIL)
# The texts of an account's first three drivers, read out of the JSON by the database: a page
# then decodes no driver list. NULL where the account has fewer drivers.
TOP_DRIVER_COLUMNS = tuple(
    RiskScore.drivers[(i, "text")].as_string().label(f"top_driver_{i}") for i in range(3)
)
# What a portfolio item shows (GET /v1/portfolio); api._portfolio_item reads a row by position.
PORTFOLIO_COLUMNS = (
    *_ANSWER_HEAD,
    *_ANSWER_TAIL,
    RiskScore.owner_name,
    RiskScore.owner_email,
    *TOP_DRIVER_COLUMNS,
)


# Built once: building the statement cost a quarter of the lookup's Python time.
_RISK_ANSWER = select(*RISK_COLUMNS).where(RiskScore.account_id == bindparam("account_id"))


def risk_answer(account_id: str) -> ReadPlan[Row[Any] | None]:
    """The columns of one account's risk answer (RISK_COLUMNS), or None: one indexed lookup that
    builds no ORM object and leaves the features unread (a read plan: shared.web.Reader.plan)."""
    rows = yield _RISK_ANSWER, {"account_id": account_id}
    return rows[0] if rows else None


def unpublished_history(
    session: Session, *, account_ids: Sequence[str] = (), before: datetime | None = None, limit: int = 1000
) -> list[RiskHistory]:
    """History rows waiting to be published, in id order: of these accounts (every one of them),
    or scored before `before`; at most `limit`."""
    query = select(RiskHistory).where(RiskHistory.publish.is_(True), RiskHistory.published_at.is_(None))
    if before is not None:
        query = query.where(RiskHistory.scored_at <= before)
    if not account_ids:
        return list(session.scalars(query.order_by(RiskHistory.id).limit(limit)))
    found: list[RiskHistory] = []
    for chunk in _chunks(sorted(set(account_ids))):
        found += session.scalars(query.where(RiskHistory.account_id.in_(chunk)).order_by(RiskHistory.id))
    return sorted(found, key=lambda row: row.id)[:limit]


def mark_history_published(session: Session, ids: Sequence[int], now: datetime) -> None:
    for chunk in _chunks(sorted(set(ids))):
        session.execute(update(RiskHistory).where(RiskHistory.id.in_(chunk)).values(published_at=now))


def account_history(
    session: Session, account_id: str, limit: int, before_id: int | None
) -> list[RiskHistory]:
    query = select(RiskHistory).where(RiskHistory.account_id == account_id)
    if before_id is not None:
        query = query.where(RiskHistory.id < before_id)
    return list(session.scalars(query.order_by(RiskHistory.id.desc()).limit(limit)))


def due_for_sweep(
    session: Session,
    day_start: datetime,
    model_version: str,
    limit: int,
    owns: Callable[[str], bool] | None = None,
) -> list[str]:
    """Accounts whose windows moved (scored before today), scored by another model, whose
    registry record changed, or registered but never scored. A churned account is never re-scored:
    only a registry change brings it here (to refresh the copied name, ARR and owner)."""
    stale = (
        select(RiskScore.account_id)
        .outerjoin(Account, Account.id == RiskScore.account_id)
        .where(
            or_(
                and_(
                    RiskScore.band != CHURNED,
                    or_(RiskScore.as_of < day_start, RiskScore.model_version != model_version),
                ),
                and_(Account.id.is_not(None), Account.version != RiskScore.account_version),
            )
        )
    )
    unscored = (
        select(Account.id)
        .outerjoin(RiskScore, RiskScore.account_id == Account.id)
        .where(RiskScore.account_id.is_(None), Account.deleted.is_(False))
    )
    if owns is not None:  # read without locks, then lock only this replica's accounts
        scored = [
            a for a in session.scalars(stale.order_by(RiskScore.account_id).limit(limit * 8)) if owns(a)
        ]
        scored = scored[:limit]
        new: list[str] = []
        if len(scored) < limit:
            more = session.scalars(unscored.order_by(Account.id).limit((limit - len(scored)) * 8))
            new = [a for a in more if owns(a)][: limit - len(scored)]
        return _lock_for_sweep(session, scored, new)
    # SKIP LOCKED (PostgreSQL): several workers sweep at once without scoring an account twice.
    stale = stale.order_by(RiskScore.account_id).limit(limit).with_for_update(of=RiskScore, skip_locked=True)
    ids = list(session.scalars(stale))
    if len(ids) < limit:
        unscored = unscored.order_by(Account.id).limit(limit - len(ids))
        ids += list(session.scalars(unscored.with_for_update(of=Account, skip_locked=True)))
    return ids


def _lock_for_sweep(session: Session, scored: list[str], new: list[str]) -> list[str]:
    """Of these accounts, those whose risk row (`scored`) or registry row (`new`, never scored)
    no other transaction holds: SKIP LOCKED, as the unfiltered sweep."""
    locked: set[str] = set()
    if scored:
        query = select(RiskScore.account_id).where(RiskScore.account_id.in_(scored))
        locked |= set(session.scalars(query.with_for_update(skip_locked=True)))
    if new:
        query = select(Account.id).where(Account.id.in_(new))
        locked |= set(session.scalars(query.with_for_update(skip_locked=True)))
    return [a for a in scored + new if a in locked]


@dataclass(frozen=True)
class AccountFilters:
    """Registry and portfolio filters; text matches ignore case, `renewal` is a [first, last] day
    window (renewal within N days)."""

    owner: str | None = None
    manager: str | None = None
    tier: str | None = None
    segment: str | None = None
    renewal: tuple[date, date] | None = None


def _either(first: Any, second: Any, value: str) -> Any:
    wanted = value.strip().lower()
    return or_(func.lower(first) == wanted, func.lower(second) == wanted)


def filtered(query: Select[Any], filters: AccountFilters, people: Any = Account) -> Select[Any]:
    """`query` (over accounts, or risk_scores joined to accounts) narrowed by the filters; the
    owner's columns come from `people` (RiskScore in the portfolio: unregistered accounts too)."""
    if filters.owner:
        query = query.where(_either(people.owner_email, people.owner_name, filters.owner))
    if filters.manager:
        query = query.where(_either(Account.manager_email, Account.manager_name, filters.manager))
    if filters.tier:
        query = query.where(func.lower(people.tier) == filters.tier.strip().lower())
    if filters.segment:
        query = query.where(func.lower(Account.segment) == filters.segment.strip().lower())
    if filters.renewal:
        first, last = filters.renewal
        query = query.where(Account.renewal_date >= first, Account.renewal_date <= last)
    return query


def not_deleted() -> Any:
    """WHERE: the score's account was not deleted from the registry (an anti-join on the partial
    index of deleted accounts; an aliased registry, so a query may join its own)."""
    gone = aliased(Account)
    return ~select(gone.id).where(gone.id == RiskScore.account_id, gone.deleted).exists()


def ranking_key(session: Session, rates: Rates, current: bool | None = None) -> tuple[bool, Any, Any, Any]:
    """How to rank scores by revenue at risk in the reporting currency: (stored, key, key type,
    descending order). Stored (every score's ranking amount converted with `rates`): the indexed
    column. Otherwise the key as the database computes it: a double on SQLite (cents x rate,
    rounded to the cent), read and compared as one, so a cursor lands exactly between equal
    amounts; NUMERIC on PostgreSQL; rounded as stored amounts are, so both ways rank alike.
    `current`: the answer of `ranking_current` if the caller has it."""
    stored = current if current is not None else ranking_current(session, rates)
    return _ranking_key(session.get_bind().dialect.name, rates, stored)


def _ranking_key(dialect: str, rates: Rates, stored: bool) -> tuple[bool, Any, Any, Any]:
    if stored:
        return True, RiskScore.ranking, Money(), RiskScore.ranking.desc()
    sqlite = dialect == "sqlite"
    key_type = Float() if sqlite else Numeric()
    places = 0 if sqlite else 2
    converted = type_coerce(rates.converted(RiskScore.revenue_at_risk, RiskScore.currency, places), key_type)
    return False, converted, key_type, converted.desc().nulls_last()


def portfolio_query(filters: AccountFilters, band: str | None, include_churned: bool = False) -> Select[Any]:
    """Live accounts: not deleted from the registry; churned ones only with `include_churned` or
    when asked for by band. The registry is joined only for filters on its own columns; deleted
    accounts are an anti-join on their partial index, so a page can stop at the first rows of
    the ranking index."""
    query = select(RiskScore).where(not_deleted())
    if filters.manager or filters.segment or filters.renewal:
        query = query.outerjoin(Account, Account.id == RiskScore.account_id)
    if not include_churned and band != CHURNED:
        query = query.where(RiskScore.band != CHURNED)
    if band:
        query = query.where(RiskScore.band == band)
    return filtered(query, filters, people=RiskScore)


@functools.lru_cache(maxsize=256)
def _portfolio_query(filters: AccountFilters, band: str | None, include_churned: bool) -> Select[Any]:
    """portfolio_query, built once per filter set: building the statement (columns coerced, the
    anti-join aliased) cost a page more Python time than PostgreSQL took to answer it."""
    return portfolio_query(filters, band, include_churned)


@functools.lru_cache(maxsize=256)
def _stored_page(
    filters: AccountFilters, band: str | None, include_churned: bool, limit: int, offset: int
) -> Select[Any]:
    """A page's statement over the stored ranking (one more row than asked: is there a next
    page?). Kept, so SQLAlchemy finds its compiled form without walking it again."""
    query = _portfolio_query(filters, band, include_churned)
    ordered = query.with_only_columns(*PORTFOLIO_COLUMNS, RiskScore.ranking).order_by(
        RiskScore.ranking.desc(), RiskScore.account_id
    )
    return ordered.limit(limit + 1).offset(offset)


PortfolioKey = tuple[Decimal | float | None, str]  # (revenue at risk in the reporting currency, id)


def _other_rates(digest: str) -> Any:
    # `<>` cannot use an index; the two ranges can.
    return or_(RiskScore.ranking_rates < digest, RiskScore.ranking_rates > digest)


def ranking_current(session: Session, rates: Rates) -> bool:
    """Whether every stored ranking amount was converted with `rates`: then the portfolio pages
    through the ranking index; else it converts in the query (same order, every row read).
    The smallest and largest digest are the two ends of their index, whatever the planner's
    statistics say (a `WHERE digest <> ... LIMIT 1` became a scan of the whole table on a table
    not yet analysed)."""
    return _ranking_is(session.execute(_RANKING_DIGESTS).one(), rates)


_RANKING_DIGESTS = select(func.min(RiskScore.ranking_rates), func.max(RiskScore.ranking_rates))


def _ranking_is(digests: Any, rates: Rates) -> bool:
    low, high = digests
    return low is None or low == high == rates.digest


def refresh_ranking(session: Session, rates: Rates, limit: int = 2000) -> int:
    """Convert up to `limit` stored ranking amounts made with another rates table (the table
    changed, or rows predate the column); rows another transaction holds are left for the next
    call (PostgreSQL: SKIP LOCKED, so a refresh never waits on a scoring batch). Returns how
    many were converted."""
    query = (
        select(RiskScore.account_id, RiskScore.revenue_at_risk, RiskScore.currency)
        .where(_other_rates(rates.digest))
        .order_by(RiskScore.account_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(query).all()
    if rows:
        values = [
            {"account_id": a, "ranking": rates.ranking(amount, currency), "ranking_rates": rates.digest}
            for a, amount, currency in rows
        ]
        session.execute(update(RiskScore), values)
    return len(rows)


@dataclass(frozen=True)
class PortfolioPage:
    """One page of the portfolio: its rows, how many rows the filters match, whether a next
    page exists, and the sort key of the last row (the next keyset cursor)."""

    rows: list[Row[Any]]  # PORTFOLIO_COLUMNS
    total: int
    more: bool
    last: PortfolioKey | None


def _remembered(
    memo: TtlMemo[Any] | None, key: Any, statement: Any, value_of: Callable[[list[Any]], Any]
) -> ReadPlan[Any]:
    """The value `memo` keeps for `key`, else `value_of` the statement's rows (then kept)."""
    hit = memo.peek(key) if memo is not None else None
    if hit is not None:
        return hit[0]
    value = value_of((yield statement))
    if memo is not None:
        memo.put(key, value)
    return value


def portfolio(
    dialect: str,
    filters: AccountFilters,
    band: str | None,
    page: tuple[int, int],
    rates: Rates,
    include_churned: bool = False,
    after: PortfolioKey | None = None,
    memo: TtlMemo[Any] | None = None,
) -> ReadPlan[PortfolioPage]:
    """One page of the portfolio, largest revenue at risk in the reporting currency first (no
    rate for its currency: after the others), as a read plan (shared.web.Reader.plan runs it
    on the event loop on PostgreSQL). `after`: keyset pagination, the rows that sort after that
    key (no OFFSET: a deep page costs what the first does); else `page` = (limit, offset).
    Whether more rows follow is read with the page (one row more), never from the total.

    When every score's stored ranking amount was converted with `rates` (the usual case) the
    page is one statement over the ranking index and the total is counted apart, not at all on
    a last page. Otherwise (the rates table changed and the worker has not yet converted every
    row) the query converts each row itself and counts in the same scan. `memo` (a short-lived
    memo: `SignalsSettings.portfolio_cache_s`) keeps the answer of the ranking check and each
    filter set's count for a few seconds instead of asking the database on every request."""
    limit, offset = page
    query = matching = _portfolio_query(filters, band, include_churned)
    current = yield from _remembered(
        memo, ("ranking", rates.digest), _RANKING_DIGESTS, lambda rows: _ranking_is(rows[0], rates)
    )
    stored, converted, key_type, order = _ranking_key(dialect, rates, current)
    sqlite = dialect == "sqlite"
    none = converted == UNRANKED if stored else converted.is_(None)
    total: int | None = None
    if after is not None:
        value, account_id = after
        if value is None:
            query = query.where(none, RiskScore.account_id > account_id)
        else:
            bound = literal(float(value) if sqlite and not stored else value, key_type)
            query = query.where(
                or_(
                    converted < bound,
                    and_(converted == bound, RiskScore.account_id > account_id),
                    none,
                )
            )
        offset = 0
    if stored:  # the page's rows straight from the ranking index, as plain columns
        if after is None:
            found = yield _stored_page(filters, band, include_churned, limit, offset)
        else:
            ordered = query.with_only_columns(*PORTFOLIO_COLUMNS, RiskScore.ranking).order_by(
                order, RiskScore.account_id
            )
            found = yield ordered.limit(limit + 1).offset(offset)
        more, rows = len(found) > limit, found[:limit]
        keys = [(r.account_id, r.ranking) for r in rows]
    else:
        # Sort the narrow keys only, then load the page's rows by primary key: sorting whole rows
        # (drivers, features) cost PostgreSQL most of the request.
        columns = [RiskScore.account_id, converted, func.count().over()]  # total from the same scan
        ordered = query.with_only_columns(*columns).order_by(order, RiskScore.account_id)
        narrow = yield ordered.limit(limit + 1).offset(offset)
        more, narrow = len(narrow) > limit, narrow[:limit]
        if narrow and after is None:
            total = int(narrow[0][2])
        keys = [(k[0], k[1]) for k in narrow]
        wanted = [k[0] for k in keys]
        loaded: dict[str, Row[Any]] = {}
        if wanted:
            by_id = select(*PORTFOLIO_COLUMNS).where(RiskScore.account_id.in_(wanted))
            loaded = {r.account_id: r for r in (yield by_id)}
        rows = [loaded[a] for a in wanted if a in loaded]
    if total is None:
        if not more and after is None and (keys or not offset):
            total = offset + len(keys)  # the last page: nothing beyond it to count
        else:  # every row the filters match (with a cursor: not only those after it)
            narrow_ids = matching.with_only_columns(RiskScore.account_id).subquery()
            total = yield from _remembered(
                memo,
                ("total", filters, band, include_churned),
                select(func.count()).select_from(narrow_ids),
                lambda rows: int(rows[0][0] or 0),
            )
    if not keys:
        return PortfolioPage([], total, False, None)
    last = keys[-1][1]
    if stored and last == UNRANKED:
        last = None
    return PortfolioPage(rows, total, more, (last, keys[-1][0]))


def registry(
    session: Session, filters: AccountFilters, limit: int, offset: int, include_deleted: bool = False
) -> tuple[list[Account], int]:
    """One page of registry rows by id."""
    query = filtered(select(Account), filters)
    if not include_deleted:
        query = query.where(Account.deleted.is_(False))
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    return list(session.scalars(query.order_by(Account.id).limit(limit).offset(offset))), total


def band_totals(session: Session) -> list[tuple[str, str, int, float]]:
    """(band, currency, accounts, ARR at risk) for the gauges."""
    query = select(
        RiskScore.band,
        RiskScore.currency,
        func.count(),
        func.coalesce(func.sum(RiskScore.revenue_at_risk), 0.0),
    ).group_by(RiskScore.band, RiskScore.currency)
    return [(b, c, int(n), float(s)) for b, c, n, s in session.execute(query)]


UNRANKED_BANDS = ("churned", "no_data")


def live_scores(session: Session, model_version: str) -> list[tuple[str, float, str]]:
    """(account id, score, band) of every live account scored by this scorer (budget bands)."""
    query = select(RiskScore.account_id, RiskScore.score, RiskScore.band).where(
        RiskScore.model_version == model_version, RiskScore.band.not_in(UNRANKED_BANDS)
    )
    return [(a, float(s), str(b)) for a, s, b in session.execute(query.order_by(RiskScore.account_id))]


def live_count(session: Session) -> int:
    """Live accounts with a score (not churned, with data)."""
    query = select(func.count()).select_from(RiskScore).where(RiskScore.band.not_in(UNRANKED_BANDS))
    return int(session.scalar(query) or 0)


def live_features(session: Session) -> Iterator[dict[str, float]]:
    """The stored features of every live account, streamed (the peer reference, 100k accounts)."""
    query = select(RiskScore.features).where(RiskScore.band.not_in(UNRANKED_BANDS))
    query = query.order_by(RiskScore.account_id)
    for (features,) in session.execute(query.execution_options(yield_per=1000)):
        yield dict(features or {})


def churned_features(session: Session) -> Iterator[dict[str, float]]:
    """The last stored features of every churned account (kept when it moved to band churned),
    streamed: what the peer reference learns its weights from."""
    query = select(RiskScore.features).where(RiskScore.band == CHURNED).order_by(RiskScore.account_id)
    for (features,) in session.execute(query.execution_options(yield_per=1000)):
        yield dict(features or {})


def churned_count(session: Session) -> int:
    """Accounts in band churned."""
    return int(
        session.scalar(select(func.count()).select_from(RiskScore).where(RiskScore.band == CHURNED)) or 0
    )


def risk_snapshot(session: Session) -> list[tuple[Any, ...]]:
    """Current scores as comparable tuples (rebuild check)."""
    query = select(RiskScore.account_id, RiskScore.score, RiskScore.band, RiskScore.features, RiskScore.as_of)
    return sorted(map(tuple, session.execute(query)))


# --- KAM numbers (revenue, renewals, post-mortems) ------------------------------------------------
def live_accounts(session: Session, account: str | None = None) -> list[Account]:
    """Registry rows not deleted (only `account`'s, when given), by id."""
    query = select(Account).where(Account.deleted.is_(False))
    if account is not None:
        query = query.where(Account.id == account)
    return list(session.scalars(query.order_by(Account.id)))


def events_for_revenue(
    session: Session, start: datetime, end: datetime, account: str | None = None
) -> Iterator[SignalEvent]:
    """Subscription changes and outcomes before `end` (the state at the start needs the earlier
    ones); NPS answers and business reviews within [start, end); only `account`'s when given."""
    query = select(SignalEvent).where(
        or_(
            and_(
                SignalEvent.type.in_(("subscription.changed", "account.churned", "account.renewed")),
                SignalEvent.event_time < end,
            ),
            and_(
                SignalEvent.type.in_(("survey.responded", "engagement.recorded")),
                SignalEvent.event_time >= start,
                SignalEvent.event_time < end,
            ),
        )
    )
    if account is not None:
        query = query.where(SignalEvent.account_id == account)
    yield from session.scalars(query.order_by(SignalEvent.id).execution_options(yield_per=2000))


def renewing(session: Session, first: date, last: date) -> list[tuple[Account, RiskScore | None]]:
    """Live registry accounts whose renewal date is in [first, last], with their score (if any)."""
    query = (
        select(Account, RiskScore)
        .outerjoin(RiskScore, RiskScore.account_id == Account.id)
        .where(
            Account.deleted.is_(False),
            Account.renewal_date >= first,
            Account.renewal_date <= last,
            or_(RiskScore.band.is_(None), RiskScore.band != CHURNED),
        )
        .order_by(Account.id)
    )
    return [(a, r) for a, r in session.execute(query)]


def events_of(
    session: Session, account_ids: Sequence[str], types: Sequence[str], end: datetime
) -> list[SignalEvent]:
    """The accounts' events of these types before `end`, in event-time order."""
    rows: list[SignalEvent] = []
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(SignalEvent).where(
            SignalEvent.account_id.in_(chunk), SignalEvent.type.in_(types), SignalEvent.event_time < end
        )
        rows += session.scalars(query)
    return sorted(rows, key=lambda r: (r.event_time, r.source, r.event_id))


def churn_events(session: Session, since: datetime | None) -> list[SignalEvent]:
    """`account.churned` events (since a time), oldest first."""
    query = select(SignalEvent).where(SignalEvent.type == "account.churned")
    if since is not None:
        query = query.where(SignalEvent.event_time >= since)
    return list(
        session.scalars(query.order_by(SignalEvent.event_time, SignalEvent.source, SignalEvent.event_id))
    )


def history_of(session: Session, account_ids: Sequence[str]) -> dict[str, list[RiskHistory]]:
    """Every stored score change of these accounts, oldest first (by as-of, then id)."""
    found: dict[str, list[RiskHistory]] = {}
    for chunk in _chunks(sorted(set(account_ids))):
        query = select(RiskHistory).where(RiskHistory.account_id.in_(chunk))
        for row in session.scalars(query.order_by(RiskHistory.as_of, RiskHistory.id)):
            found.setdefault(row.account_id, []).append(row)
    return found


def account_events(session: Session, account_id: str, end: datetime) -> list[SignalEvent]:
    """One account's events up to and including `end`, in (event time, source, id) order."""
    query = select(SignalEvent).where(SignalEvent.account_id == account_id, SignalEvent.event_time <= end)
    return list(
        session.scalars(query.order_by(SignalEvent.event_time, SignalEvent.source, SignalEvent.event_id))
    )
