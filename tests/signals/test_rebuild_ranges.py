"""`signals rebuild` works one range of accounts at a time (bounded memory): the result equals the
live state whatever the range size, and `--check` still finds every kind of difference, including
live state of an account that has no stored event (it falls in no range). Both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.app import model_holder
from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.models import SignalBucket
from services.signals.rebuild import rebuild
from shared.clock import ManualClock
from shared.db import transaction
from tests.helpers import NOW
from tests.signals.streams import full_story
from tests.signals.test_outcomes import _records

ACCOUNTS = ["acct-a", "acct-b", "acct-c", "acct-d", "acct-e"]


def _snapshot(db: sessionmaker[Session]) -> tuple[Any, Any]:
    with transaction(db) as session:
        return repository.state_snapshot(session), repository.risk_snapshot(session)


def test_rebuild_by_ranges_equals_the_live_state_and_check_finds_differences(
    processor: Any, db: sessionmaker[Session], signals_settings: SignalsSettings, clock: ManualClock
) -> None:
    for account in ACCOUNTS:
        processor.handle(_records(*full_story(account, NOW)))
    engine = RiskEngine(signals_settings, model_holder(signals_settings))
    live = _snapshot(db)
    for size in (1, 2, 1000):  # 5, 3 and 1 ranges
        check = rebuild(db, engine, clock.now(), check=True, progress=False, accounts_per_range=size)
        assert check.differences == [] and check.accounts == len(ACCOUNTS)
        rebuild(db, engine, clock.now(), progress=False, accounts_per_range=size)
        assert _snapshot(db) == live

    with transaction(db) as session:  # one live bucket drifts from its events
        session.execute(
            update(SignalBucket)
            .where(SignalBucket.account_id == "acct-c")
            .values(counts={"usage.api_calls": 1.0})
        )
        # and an account with state but no stored event at all (between two ranges)
        session.add(SignalBucket(account_id="acct-bb", day=NOW.date(), counts={"usage.api_calls": 2.0}))
    check = rebuild(db, engine, clock.now(), check=True, progress=False, accounts_per_range=2)
    assert len(check.differences) == 1
    assert check.differences[0].startswith("signal_buckets:")
    buckets_of_c = sum(1 for row in live[0]["signal_buckets"] if row[0] == "acct-c")
    assert f"{buckets_of_c} row(s) differ from the replay" in check.differences[0]
    assert f"{buckets_of_c + 1} live row(s) not replayed" in check.differences[0]
