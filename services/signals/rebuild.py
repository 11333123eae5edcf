"""`kamwatch signals rebuild`: replay signal_events into fresh state tables, then re-score.

The replay folds the stored events with the same pure functions the live path uses
(services/signals/state.py), so its result equals the live tables exactly. It works one range of
accounts at a time, so its memory does not grow with the portfolio. Run it with the
signals workers stopped (it replaces the tables in one transaction); `--check` only compares.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from services.signals import repository
from services.signals.engine import RiskEngine
from services.signals.events import signal_from_payload
from services.signals.models import SignalBucket, SignalEntity
from services.signals.state import AccountState
from shared.db import transaction


@dataclass
class RebuildResult:
    events: int
    accounts: int
    differences: list[str] = field(default_factory=list)


ACCOUNTS_PER_RANGE = 2000  # accounts folded, compared or re-scored together; bounds the memory


def fold_range(session: Session, first: str, last: str) -> tuple[dict[str, AccountState], int]:
    """The stored events of the accounts `first`..`last` folded into per-account state."""
    states: dict[str, AccountState] = defaultdict(AccountState)
    count = 0
    for chunk in repository.iter_range_events(session, first, last):
        for row in chunk:
            signal = signal_from_payload(row.payload)
            states[row.account_id].apply(signal.type, signal.data, signal.time, signal.key)
        count += len(chunk)
    return dict(states), count


def state_rows(states: dict[str, AccountState]) -> dict[str, list[dict[str, Any]]]:
    buckets = [
        {"account_id": a, "day": d, "counts": dict(c)}
        for a, s in states.items()
        for d, c in s.buckets.items()
    ]
    entities = [repository.entity_values(a, e) for a, s in states.items() for e in s.entities.values()]
    return {"signal_buckets": buckets, "signal_entities": entities}


def compare(
    session: Session, rows: dict[str, list[dict[str, Any]]], accounts: tuple[str, str] | None = None
) -> dict[str, tuple[int, int]]:
    """Per state table: (replayed rows missing from the live table, live rows not replayed), over
    the accounts `first`..`last` (all without `accounts`)."""
    live = repository.state_snapshot(session, accounts)
    found = {}
    for table, wanted in rows.items():
        replayed = {_comparable(tuple(r.values())) for r in wanted}
        stored = {_comparable(row) for row in live[table]}
        found[table] = (len(replayed - stored), len(stored - replayed))
    return found


def _comparable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with its JSON values as canonical text, so rows can be sorted and put in sets."""
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in row)


def rebuild(
    sessions: sessionmaker[Session],
    engine: RiskEngine,
    now: datetime,
    *,
    check: bool = False,
    progress: bool = True,
    accounts_per_range: int = ACCOUNTS_PER_RANGE,
) -> RebuildResult:
    """Fold and compare or write one range of accounts at a time (an account's state depends on
    its own events only), then re-score range by range, so memory is bounded by the largest
    range, not by the portfolio. All in one transaction: a failed rebuild changes nothing."""
    missing: Counter[str] = Counter()
    to_score: list[list[str]] = []
    with transaction(sessions) as session:
        total = repository.count_events(session)
        bar = tqdm(total=total, unit="event", desc="replaying", file=sys.stderr, disable=not progress)
        if not check:
            repository.clear_state(session)
        accounts, replayed = 0, Counter[str]()
        for first, last in repository.account_ranges(session, accounts_per_range):
            states, count = fold_range(session, first, last)
            rows = state_rows(states)
            replayed.update({table: len(table_rows) for table, table_rows in rows.items()})
            if check:
                for table, (absent, extra) in compare(session, rows, (first, last)).items():
                    missing[table] += absent
                    missing[f"{table}:extra"] += extra
            else:
                _write(session, rows)
                to_score.append(sorted(states))
            accounts += len(states)
            bar.update(count)
        bar.close()
        # Scored once all state is written, range by range (the sweep's query pattern).
        for ids in tqdm(to_score, unit="range", desc="re-scoring", file=sys.stderr, disable=not progress):
            engine.rescore(session, ids, now, "rebuild")
            session.flush()
            session.expunge_all()  # the range's ORM objects are written: let them go
        if not check:
            return RebuildResult(total, accounts)
        # live rows of accounts that have no stored event at all: in no range above
        for table, live_rows in repository.state_counts(session).items():
            in_ranges = replayed[table] - missing[table] + missing[f"{table}:extra"]
            missing[f"{table}:extra"] += live_rows - in_ranges
    return RebuildResult(total, accounts, _differences(missing))


def _write(session: Session, rows: dict[str, list[dict[str, Any]]]) -> None:
    for model, table in ((SignalBucket, "signal_buckets"), (SignalEntity, "signal_entities")):
        for start in range(0, len(rows[table]), 1000):
            session.execute(insert(model), rows[table][start : start + 1000])
    session.flush()


def _differences(missing: Counter[str]) -> list[str]:
    differences = []
    for table in ("signal_buckets", "signal_entities"):
        absent, extra = missing[table], missing[f"{table}:extra"]
        if absent or extra:
            differences.append(
                f"{table}: {absent} row(s) differ from the replay, {extra} live row(s) not replayed"
            )
    return differences
