"""Database plumbing (issue 11 Medium #5): errors never carry statement parameters."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc, text

from shared.db import make_engine

SECRET = "dana.secret@example.com"


def test_a_failing_statement_does_not_repeat_its_parameters(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(exc.DBAPIError) as raised, engine.begin() as connection:
            connection.execute(text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": SECRET})
    finally:
        engine.dispose()
    assert SECRET not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)


def test_json_batch_insert_keeps_order_text_and_skips_known_keys(postgres_url: str) -> None:
    """insert_ignore_json (signals' and ingest's event inserts on PostgreSQL): the rows go in in
    the order given (rebuild replays by id), any text comes back byte for byte, a key already
    stored or repeated in the batch is skipped, and a naive timestamp is refused."""
    from datetime import UTC, datetime, timedelta

    from shared.db import insert_ignore_json, make_sessionmaker, transaction

    engine = make_engine(postgres_url)
    columns = {"source": "text", "event_id": "text", "payload": "text", "at": "timestamptz", "n": "bigint"}
    hostile = ['{"a": "b\\\\"}', "quote ' and \" and \\ and \n", "ünïcödé ✓ \u2028", "{1,2}", "NULL", ""]
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    rows = [
        {
            "source": "s",
            "event_id": f"e{i:02d}",
            "payload": p,
            "at": at + timedelta(seconds=i),
            "n": 2**40 + i,
        }
        for i, p in enumerate(hostile)
    ]
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS json_batch"))
            connection.execute(
                text(
                    "CREATE TABLE json_batch (id bigserial PRIMARY KEY, source text, event_id text, "
                    "payload text, at timestamptz, n bigint, UNIQUE (source, event_id))"
                )
            )
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as session:
            first = insert_ignore_json(
                session, "json_batch", columns, rows[:2], ("source", "event_id"), ("id",)
            )
        with transaction(sessions) as session:
            batch = list(reversed(rows)) + [rows[3]]  # two known keys, one repeated in the batch
            again = insert_ignore_json(
                session, "json_batch", columns, batch, ("source", "event_id"), ("event_id",)
            )
        assert len(first) == 2
        assert [r[0] for r in again] == [r["event_id"] for r in reversed(rows[2:])]
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT event_id, payload, at, n FROM json_batch ORDER BY id")
            ).all()
        assert [s[0] for s in stored] == ["e00", "e01", "e05", "e04", "e03", "e02"]
        by_id = {s[0]: s for s in stored}
        for row in rows:
            assert by_id[row["event_id"]][1:] == (row["payload"], row["at"], row["n"])
        with pytest.raises(ValueError, match="at: naive datetime"), transaction(sessions) as session:
            naive = [{**rows[0], "event_id": "naive", "at": at.replace(tzinfo=None)}]
            insert_ignore_json(session, "json_batch", columns, naive, ("source", "event_id"), ("id",))
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS json_batch"))
        engine.dispose()


def test_a_pooled_connection_is_pinged_only_after_idling_and_replaced_when_dead(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping on a busy connection (a round trip per request); one that idled is checked before
    use, and a dead one is replaced instead of failing the caller's statement."""
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0, ping_after_idle_s=3600)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(connection: Any) -> bool:
        pings.append(connection)
        return bool(real_ping(connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    try:
        for _ in range(3):
            with engine.connect() as connection:
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert pings == []  # used again at once: never pinged
        killer = make_engine(postgres_url)  # the server drops the pooled connection
        with killer.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        killer.dispose()
        for record in engine.pool._pool.queue:  # type: ignore[attr-defined]
            record.info["kamwatch_idle_since"] -= 7200  # as if it had idled for two hours
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_the_async_read_engine_runs_each_statement_in_autocommit(postgres_url: str) -> None:
    """Reader.plan's statements on PostgreSQL: no transaction around them (a BEGIN and a
    ROLLBACK would double the round trips of a one-lookup route)."""
    import asyncio

    from shared.db import make_async_engine

    async def autocommit() -> object:
        engine = make_async_engine(postgres_url)
        assert engine is not None
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                raw = await connection.get_raw_connection()
                return raw.driver_connection.autocommit  # type: ignore[union-attr]
        finally:
            await engine.dispose()

    assert asyncio.run(autocommit()) is True
    assert make_async_engine("sqlite:///unused.db") is None


def test_bulk_upsert_and_insert_store_what_a_row_by_row_write_would(database_url: str) -> None:
    """shared.db.upsert, insert_rows and update_rows (signals' and ingest's writes): on
    PostgreSQL the rows travel as one JSON document, so every value must come back as the
    column's own bind processing stores it: money rounded to cents, timezone-aware timestamps,
    exact floats, dates, booleans, NULLs, and JSON as the canonical text the engine writes; an
    upsert replaces the listed columns only; serial ids follow the order given; a naive timestamp
    is refused."""
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Column,
        Date,
        Float,
        Integer,
        MetaData,
        String,
        Table,
        select,
    )

    from shared.db import (
        Money,
        UTCDateTime,
        _json_text,
        insert_rows,
        make_sessionmaker,
        transaction,
        update_rows,
        upsert,
    )

    metadata = MetaData()
    kept = Table(
        "bulk_kept",
        metadata,
        Column("key", String(20), primary_key=True),
        Column("amount", Money()),
        Column("at", UTCDateTime()),
        Column("day", Date()),
        Column("doc", JSON()),
        Column("flag", Boolean()),
        Column("ratio", Float()),
        Column("note", String(50), nullable=True),
    )
    log = Table(
        "bulk_log",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("key", String(20)),
    )
    engine = make_engine(database_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    doc = {"z": [1, 2.5, None], "a": "ünïcödé \" ' \\ \n", "m": {"y": True, "b": 1e-07}}
    first = {
        "key": "k1",
        "amount": Decimal("1.005"),
        "at": at,
        "day": date(2026, 2, 28),
        "doc": doc,
        "flag": True,
        "ratio": 0.1 + 0.2,
        "note": None,
    }
    second = {**first, "key": "k2", "amount": Decimal("-3.333"), "flag": False, "note": "x", "ratio": 1 / 3}
    try:
        with transaction(sessions) as session:
            upsert(session, kept, [first, second], ("key",), ("amount", "doc", "flag", "ratio", "note"))
            insert_rows(session, log, [{"key": k} for k in ("c", "a", "b")])
        changed = {**first, "amount": Decimal("7"), "doc": {"new": 1}, "day": date(2000, 1, 1), "note": "n"}
        with transaction(sessions) as session:
            upsert(session, kept, [changed], ("key",), ("amount", "doc", "note"))
            insert_rows(session, log, [{"key": "d"}])
        with engine.connect() as connection:
            rows = {r.key: r._asdict() for r in connection.execute(select(kept))}
            order = [r.key for r in connection.execute(select(log).order_by(log.c.id))]
            texts = list(
                connection.execute(text("SELECT key, CAST(doc AS text) FROM bulk_kept ORDER BY key"))
            )
        assert rows["k1"] == {**first, "amount": Decimal("7.00"), "doc": {"new": 1}, "note": "n"}
        assert rows["k2"] == {**second, "amount": Decimal("-3.33")}
        assert rows["k1"]["at"].tzinfo is not None and rows["k1"]["ratio"] == 0.1 + 0.2
        assert texts == [("k1", _json_text({"new": 1})), ("k2", _json_text(doc))]
        assert order == ["c", "a", "b", "d"]
        with transaction(sessions) as session:  # update_rows: rows by their key, its own values
            update_rows(session, kept, [{"key": "k2", "note": "u", "amount": Decimal("2.495")}], "key")
            update_rows(session, kept, [{"key": "k1", "note": None, "amount": Decimal(0)}], "key")
        with engine.connect() as connection:
            rows = {r.key: r._asdict() for r in connection.execute(select(kept))}
        assert rows["k2"] == {**second, "amount": Decimal("2.50"), "note": "u"}
        assert rows["k1"]["note"] is None and rows["k1"]["amount"] == Decimal("0.00")
        with pytest.raises((ValueError, exc.StatementError)), transaction(sessions) as session:
            upsert(session, kept, [{**first, "at": at.replace(tzinfo=None)}], ("key",), ("at",))
    finally:
        metadata.drop_all(engine)
        engine.dispose()
