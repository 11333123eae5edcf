"""Two signals replicas in one consumer group: each sweeps and relays only the accounts on the
partitions of kamwatch.events it owns, so no account is swept twice and none is left out. Both
DBs (SQLite has no row locks: the partition split alone keeps the replicas apart)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.app import model_holder
from services.signals.config import SignalsSettings
from services.signals.handler import SignalsProcessor
from services.signals.models import RiskScore
from services.signals.registry import record_json
from shared.clock import ManualClock
from shared.contracts import AccountRecord
from shared.db import transaction
from shared.kafka import Ownership, partition_of
from tests.helpers import NOW

ACCOUNTS = [f"own-{i:02d}" for i in range(40)]
PARTITIONS = 3


def _register(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        for account in ACCOUNTS:
            record = AccountRecord(id=account, name=account, arr=1000, tier="strategic", updated_at=NOW)
            repository.save_account(session, record, record_json(record))


def _scored(db: sessionmaker[Session]) -> dict[str, str]:
    """account -> as of: who is scored and when."""
    with transaction(db) as session:
        return {
            a: as_of.isoformat()
            for a, as_of in session.execute(select(RiskScore.account_id, RiskScore.as_of))
        }


def test_each_replica_sweeps_only_its_own_accounts_and_together_all(
    db: sessionmaker[Session], signals_settings: SignalsSettings, clock: ManualClock
) -> None:
    settings = signals_settings.model_copy(update={"sweep_batch": 1000})
    a = SignalsProcessor(settings, db, clock, model_holder(settings))
    b = SignalsProcessor(settings, db, clock, model_holder(settings))
    a.ownership = Ownership(frozenset({0}), PARTITIONS)
    b.ownership = Ownership(frozenset({1, 2}), PARTITIONS)
    _register(db)
    mine = {p: {x for x in ACCOUNTS if partition_of(x, PARTITIONS) == p} for p in range(PARTITIONS)}
    assert all(mine.values()), "the test accounts must fall on every partition"

    with transaction(db) as session:
        swept_a = a.sweep(session, NOW)
    assert set(_scored(db)) == mine[0] and swept_a == len(mine[0])
    with transaction(db) as session:
        swept_b = b.sweep(session, NOW)
    assert set(_scored(db)) == set(ACCOUNTS) and swept_b == len(mine[1] | mine[2])

    # The next day every window moved: each replica re-scores its own accounts once more, and a
    # replica whose partitions were all revoked sweeps nothing.
    later = NOW + timedelta(days=1)
    b.ownership = Ownership(frozenset(), PARTITIONS)
    with transaction(db) as session:
        assert b.sweep(session, later) == 0
    with transaction(db) as session:
        a.sweep(session, later)
    scored = _scored(db)
    assert {x for x, as_of in scored.items() if as_of.startswith(later.date().isoformat())} == mine[0]


def test_standalone_handler_owns_everything() -> None:
    assert Ownership().owns("anything") and Ownership().share == 1.0
    assert not Ownership(frozenset(), 3).owns("anything")
    owner = Ownership(frozenset({partition_of("acme", 3)}), 3)
    assert owner.owns("acme") and owner.share == 1 / 3
