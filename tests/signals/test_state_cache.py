"""The signals worker keeps its accounts' state in memory (services/signals/statecache.py). Its
scores must equal scores read from the tables, whoever else wrote the state: another replica
that took the partition for a while, `signals rebuild`, or a batch that rolled back. Both DBs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.signals import handler as handler_module
from services.signals import repository
from services.signals.app import model_holder
from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.handler import SignalsProcessor
from shared.clock import ManualClock
from shared.db import transaction
from tests.helpers import NOW
from tests.signals.streams import full_story
from tests.signals.test_outcomes import _records

ACCOUNT = "acct-cached"


def _batches(events: list[Any], size: int) -> list[list[Any]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def _stored_features(db: sessionmaker[Session], settings: SignalsSettings, now: Any) -> dict[str, float]:
    """The account's features computed from the tables alone (no copy involved)."""
    engine = RiskEngine(settings, model_holder(settings))
    with transaction(db) as session:
        accounts = repository.accounts_by_id(session, [ACCOUNT])
        return engine.features_of(session, [ACCOUNT], accounts, now)[ACCOUNT][0]


def _scored_features(db: sessionmaker[Session]) -> dict[str, float]:
    with transaction(db) as session:
        return repository.risk_features(session, ACCOUNT)


def _new_processor(
    settings: SignalsSettings, db: sessionmaker[Session], clock: ManualClock
) -> SignalsProcessor:
    return SignalsProcessor(settings, db, clock, model_holder(settings))


def _assert_read_again(
    processor: SignalsProcessor, db: sessionmaker[Session], settings: SignalsSettings, events: list[Any]
) -> None:
    """The next batch finds the copy stale (one miss) and scores what the tables say."""
    misses = processor.cache.misses
    processor.handle(_records(*events))
    assert processor.cache.misses == misses + 1
    assert _scored_features(db) == _stored_features(db, settings, NOW)


def test_the_copy_gives_the_scores_the_tables_give_and_is_used(
    processor: SignalsProcessor, db: sessionmaker[Session], signals_settings: SignalsSettings
) -> None:
    events = full_story(ACCOUNT, NOW)
    for batch in _batches(events, 7):
        processor.published(processor.handle(_records(*batch)))
        assert _scored_features(db) == _stored_features(db, signals_settings, NOW)
    assert processor.cache.hits > 0  # later batches did not read the account's state again
    assert processor.cache.misses == 1


def test_a_write_by_another_replica_makes_the_copy_be_read_again(
    processor: SignalsProcessor,
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    clock: ManualClock,
) -> None:
    events = full_story(ACCOUNT, NOW)
    first, middle, last = events[:20], events[20:40], events[40:]
    processor.handle(_records(*first))
    # A rebalance: another replica owns the partition for a while and folds more events.
    other = _new_processor(signals_settings, db, clock)
    other.handle(_records(*middle))
    # The partition comes back: the first worker's copy predates the other's writes.
    _assert_read_again(processor, db, signals_settings, last)


def test_a_rebuild_makes_the_copy_be_read_again(
    processor: SignalsProcessor,
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    clock: ManualClock,
) -> None:
    from services.signals.rebuild import rebuild

    events = full_story(ACCOUNT, NOW)
    processor.handle(_records(*events[:30]))
    rebuild(db, RiskEngine(signals_settings, model_holder(signals_settings)), clock.now(), progress=False)
    _assert_read_again(processor, db, signals_settings, events[30:])


def test_a_batch_that_rolled_back_leaves_no_copy_behind(
    processor: SignalsProcessor,
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = full_story(ACCOUNT, NOW)
    processor.handle(_records(*events[:20]))

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database went away before commit")

    with monkeypatch.context() as patch:
        patch.setattr(handler_module, "risk_messages", fail)
        with pytest.raises(RuntimeError):
            processor.handle(_records(*events[20:40]))
    # The consumer redelivers the failed batch; the copy must not already hold its events.
    processor.handle(_records(*events[20:40]))
    processor.handle(_records(*events[40:]))
    assert _scored_features(db) == _stored_features(db, signals_settings, NOW)


def test_the_sweep_scores_from_the_copy_as_time_passes(
    processor: SignalsProcessor,
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    clock: ManualClock,
) -> None:
    processor.handle(_records(*full_story(ACCOUNT, NOW)))
    for days in (1, 20, 90):  # silence: windows move, old buckets leave the copy
        later = NOW + timedelta(days=days)
        clock.set(later)
        with transaction(db) as session:
            processor.engine.rescore(session, [ACCOUNT], later, "sweep", processor.cache)
        processor.cache.install()
        assert _scored_features(db) == _stored_features(db, signals_settings, later)


def test_the_copies_stay_within_their_row_budget_least_recently_used_first_out() -> None:
    from datetime import UTC, date, datetime

    from services.signals.statecache import CachedState, StateCache

    def copy(days: int) -> CachedState:
        buckets = {date(2026, 1, 1 + d): {"events": 1} for d in range(days)}
        return CachedState("t", date(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC), buckets, {})

    cache = StateCache(max_rows=10)
    for account in ("a", "b", "c"):  # 4 rows each
        cache.stage(account, copy(4))
        cache.install()
    assert cache.rows <= 10 and len(cache) == 2
    as_of = datetime(2026, 7, 1, tzinfo=UTC)  # its windows start on 1 January: the copies cover it
    assert cache.get("a", "t", as_of) is None and cache.get("c", "t", as_of) is not None
    cache.stage("b", None)  # a churned account: forgotten
    cache.install()
    assert (len(cache), cache.rows) == (1, 4)
