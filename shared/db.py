"""Database plumbing: one declarative Base, engine factory, UTC timestamps, idempotent inserts."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    Executable,
    MetaData,
    Numeric,
    Table,
    bindparam,
    create_engine,
    event,
    exc,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both PostgreSQL (timestamptz) and SQLite (naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; kamwatch stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CENT = Decimal("0.01")


def cents(value: Decimal | float | int | str) -> Decimal:
    """An amount quantized to cents, half up (how kamwatch rounds money everywhere)."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


class Money(TypeDecorator[Decimal]):
    """An exact amount with two decimals: NUMERIC(18,2) on PostgreSQL; integer minor units
    (cents, BIGINT) on SQLite, which has no exact decimal type (its NUMERIC is a double).
    Python sees `Decimal` on both; ordering and SUM work in SQL on either (one scale per dialect)."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 2, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        amount = cents(value)
        return int(amount * 100) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / 100).quantize(CENT)  # SUM of integers stays an integer
        return cents(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the three services read while one writes; busy_timeout queues writers instead of
    # failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _json_text(value: Any) -> str:
    # JSON columns hold canonical text (sorted keys, no spaces): replays store the same bytes.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _engine_defaults(kwargs: dict[str, Any]) -> float:
    """Fill the defaults every engine shares; return the idle time before a ping."""
    kwargs.setdefault("json_serializer", _json_text)
    # Statement parameters hold e-mail addresses, webhook URLs and payloads: an exception (and
    # the log line carrying it) must not repeat them.
    kwargs.setdefault("hide_parameters", True)
    return float(kwargs.pop("ping_after_idle_s", PING_AFTER_IDLE_S))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine for a sqlite:/// or postgresql+psycopg:// URL."""
    ping_after_s = _engine_defaults(kwargs)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 5)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_after_s)
    return engine


PING_AFTER_IDLE_S = 2.0
T = TypeVar("T")


IN_CHUNK = 400  # keeps IN lists under SQLite's parameter limit


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`, for IN lists and batched statements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# A read written once for both ways of running it (shared.web.Reader.plan): a generator that
# yields each statement (or a statement and its parameters), is sent that statement's rows
# (SQLAlchemy Row objects), and returns the answer.
ReadStep = Executable | tuple[Executable, dict[str, Any]]
ReadPlan = Generator[ReadStep, list[Any], T]


def make_async_engine(url: str, **kwargs: Any) -> AsyncEngine | None:
    """An asyncio engine on the same PostgreSQL database (psycopg's async connections), for read
    routes that run their statements on the event loop; None for SQLite, whose routes keep the
    worker threads. Autocommit: each statement reads the latest committed rows, with no BEGIN
    and no ROLLBACK round trip around it. Same JSON, parameter hiding and idle ping as
    make_engine."""
    if not url.startswith("postgresql"):
        return None
    ping_after_s = _engine_defaults(kwargs)
    kwargs.setdefault("isolation_level", "AUTOCOMMIT")
    kwargs.setdefault("pool_size", 5)
    engine = create_async_engine(url, **kwargs)
    _ping_when_idle(engine.sync_engine, ping_after_s)
    return engine


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection before use only when it sat idle for `idle_s` or more (a server
    restart or a firewall may have closed it meanwhile). `pool_pre_ping` checks on every
    checkout: a round trip per request, as much as the one query of GET /risk. A connection that
    dies between two busy uses fails its statement instead; SQLAlchemy then invalidates the
    pool, and the caller's retry or 503 applies (shared.db.is_transient)."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["kamwatch_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("kamwatch_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure: the pool discards it and connects afresh
            raise exc.DisconnectionError(f"pooled connection failed its ping when idle: {error}") from error


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The edge owns the transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_ignore_json(
    session: Session,
    table: str,
    columns: dict[str, str],
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
    returning: Sequence[str],
) -> list[Any]:
    """PostgreSQL: INSERT ... ON CONFLICT DO NOTHING RETURNING for many rows in one short statement
    whose one parameter is a JSON array of the rows (`columns` gives each one's SQL type as
    {name: SQL type}), inserted in the order given. A multi-row VALUES list is too long for the
    driver's query cache and is parsed again every time, and text-format array parameters
    (unnest) are escaped item by item in Python; json.dumps and PostgreSQL's JSON parser are C.
    `table`, `columns` and the column lists are the caller's constants, never input. Timestamps
    must be timezone-aware (as shared.db.UTCDateTime requires)."""
    if not rows:
        return []
    names = list(columns)
    values = [{f"c{i}": _json_value(row[name], name) for i, name in enumerate(names)} for row in rows]
    statement = _json_insert(table, tuple(columns.items()), tuple(conflict_columns), tuple(returning))
    return list(session.execute(statement, {"rows": json.dumps(values, ensure_ascii=False)}))


def _json_value(value: Any, name: str) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: naive datetime given; kamwatch stores timezone-aware UTC only")
        return value.astimezone(UTC).isoformat()
    return value


@functools.lru_cache(maxsize=32)
def _json_insert(
    table: str, columns: tuple[tuple[str, str], ...], conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    return text(
        f"INSERT INTO {table} ({', '.join(name for name, _ in columns)}) "
        f"{_json_rows([sql_type for _, sql_type in columns])} "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {', '.join(returning)}"
    )


def _json_rows(sql_types: Sequence[str]) -> str:
    """SELECT c0, c1, ... of the rows in the JSON parameter :rows (an array of objects with keys
    c0, c1, ...), in the array's order. json_to_recordset parses the document once (reading
    `doc->>i` per column re-parses each element up to its i-th value: three times slower on wide
    rows), and a json-typed field keeps its value's text byte for byte."""
    names = [f"c{i}" for i in range(len(sql_types))]
    definition = ", ".join(f"{name} {sql_type}" for name, sql_type in zip(names, sql_types, strict=True))
    return (
        f"SELECT {', '.join(names)} FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) "  # noqa: S608
        f"AS ({definition})) WITH ORDINALITY AS batch ORDER BY ordinality"
    )


def insert_ignore(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite."""
    if not rows:
        return
    session.execute(_insert_ignore_statement(session, table, conflict_columns), list(rows))


def insert_ignore_returning(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
    returning: Sequence[str],
) -> list[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the rows that were really inserted."""
    if not rows:
        return []
    statement = _insert_ignore_statement(session, table, conflict_columns)
    columns = [table.c[name] for name in returning]
    return list(session.execute(statement.returning(*columns), list(rows)))


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE SET <update_columns> = the new row's (PostgreSQL and
    SQLite). Each key may appear once in `rows`; every row has the same keys. On PostgreSQL the
    rows travel as one JSON parameter (`write_json`)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        write_json(session, table, rows, conflict_columns, update_columns)
        return
    statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict_columns),
        set_={name: statement.excluded[name] for name in update_columns},
    )
    session.execute(statement, list(rows))


def insert_rows(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], returning: Sequence[str] = ()
) -> list[Any]:
    """A plain INSERT of many rows, in the order given (serial ids follow it); every row has the
    same keys. `returning`: columns of the inserted rows to return (in no promised order).
    PostgreSQL: one JSON parameter (`write_json`)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return write_json(session, table, rows, returning=returning)
    if returning:
        statement = table.insert().returning(*(table.c[name] for name in returning))
        return list(session.execute(statement, list(rows)))
    session.execute(table.insert(), list(rows))
    return []


def write_json(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str] = (),
    update_columns: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[Any]:
    """PostgreSQL: INSERT (ON CONFLICT DO UPDATE when conflict columns are given) of many rows as
    one short statement whose one parameter is a JSON array, in the order given. What an
    executemany costs instead: a multi-row VALUES list is too long for the driver's query cache
    and is parsed again every batch, and a pipelined executemany sends one Bind/Execute per row.
    Values go through the columns' own bind processing (shared.db.UTCDateTime, Money), JSON
    columns keep the canonical text the engine's serializer writes (`_json_text`); None in a JSON
    column is stored as SQL NULL (not JSON null)."""
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    statement = _json_write(
        table, names, tuple(conflict_columns), tuple(update_columns), tuple(returning), dialect
    )
    result = session.execute(statement, {"rows": _json_document(table, names, rows, dialect)})
    return list(result) if returning else []


def update_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]], key: str) -> None:
    """UPDATE many rows found by their `key` column, each with its own values (every row has the
    same keys). PostgreSQL: one statement joining the rows of one JSON parameter; SQLite: an
    executemany."""
    if not rows:
        return
    names = tuple(rows[0])
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        renamed = [{f"b_{name}": value for name, value in row.items()} for row in rows]
        values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in names if name != key}
        statement = table.update().where(table.c[key] == bindparam(f"b_{key}")).values(values)
        session.execute(statement, renamed)
        return
    session.execute(
        _json_update(table, names, key, dialect), {"rows": _json_document(table, names, rows, dialect)}
    )


def _json_document(table: Table, names: tuple[str, ...], rows: Sequence[dict[str, Any]], dialect: Any) -> str:
    """The :rows parameter of `_json_rows`: each row as {c0: ..., c1: ...} in `names` order, its
    values through the columns' own bind processing, nested JSON in canonical form (`_json_text`)."""
    binders = [_binder(table.c[name].type, dialect) for name in names]
    keys = [f"c{i}" for i in range(len(names))]
    values = [
        {key: bind(row[name]) for key, name, bind in zip(keys, names, binders, strict=True)} for row in rows
    ]
    return json.dumps(
        values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


@functools.lru_cache(maxsize=32)
def _json_update(table: Table, names: tuple[str, ...], key: str, dialect: Any) -> Any:
    sql_types = [table.c[name].type.compile(dialect=dialect) for name in names]
    sets = ", ".join(f"{name} = batch.c{i}" for i, name in enumerate(names) if name != key)
    return text(
        f"UPDATE {table.name} SET {sets} FROM ({_json_rows(sql_types)}) AS batch "  # noqa: S608
        f"WHERE {table.name}.{key} = batch.c{names.index(key)}"
    )


def _binder(column_type: Any, dialect: Any) -> Any:
    if isinstance(column_type, TypeDecorator):
        return functools.partial(column_type.process_bind_param, dialect=dialect)
    return lambda value: value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given; kamwatch stores timezone-aware UTC only")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | Decimal):
        return value.isoformat() if isinstance(value, date) else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.lru_cache(maxsize=64)
def _json_write(
    table: Table,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
    returning: tuple[str, ...],
    dialect: Any,
) -> Any:
    sql_types = [table.c[name].type.compile(dialect=dialect) for name in names]
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) {_json_rows(sql_types)}"
    if conflict:
        sets = ", ".join(f"{name} = EXCLUDED.{name}" for name in update)
        sql += f" ON CONFLICT ({', '.join(conflict)}) " + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    return text(sql)


def _insert_ignore_statement(session: Session, table: Table, conflict_columns: Sequence[str]) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


def is_transient(error: BaseException) -> bool:
    """A database error worth retrying (connection lost, server down, lock timeout)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError):
        return True
    return isinstance(error, exc.InterfaceError | exc.TimeoutError)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
