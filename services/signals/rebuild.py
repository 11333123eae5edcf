"""`kamwatch signals rebuild`: replay signal_events into fresh state tables, then re-score.

The replay folds every stored event in memory with the same pure functions the live path uses
(services/signals/state.py), so its result equals the live tables exactly. Run it with the
signals workers stopped (it replaces the tables in one transaction); `--check` only compares.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
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


def fold_all(sessions: sessionmaker[Session], progress: bool = True) -> tuple[dict[str, AccountState], int]:
    """Every stored event folded into per-account state, with a progress bar on stderr."""
    states: dict[str, AccountState] = defaultdict(AccountState)
    with transaction(sessions) as session:
        total = repository.count_events(session)
        bar = tqdm(total=total, unit="event", desc="replaying", file=sys.stderr, disable=not progress)
        for chunk in repository.iter_events(session):
            for row in chunk:
                signal = signal_from_payload(row.payload)
                states[row.account_id].apply(signal.type, signal.data, signal.time, signal.key)
            bar.update(len(chunk))
        bar.close()
    return dict(states), total


def state_rows(states: dict[str, AccountState]) -> dict[str, list[dict[str, Any]]]:
    buckets = [
        {"account_id": a, "day": d, "counts": dict(c)}
        for a, s in states.items()
        for d, c in s.buckets.items()
    ]
    entities = [
        {
            "account_id": a,
            "kind": e.kind,
            "entity_id": e.entity_id,
            "event_time": e.event_time,
            "event_key": e.event_key,
            "state": dict(e.state),
            "active": e.active,
        }
        for a, s in states.items()
        for e in s.entities.values()
    ]
    return {"signal_buckets": buckets, "signal_entities": entities}


def compare(session: Session, rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Differences between the replayed rows and the live tables (empty = identical)."""
    live = repository.state_snapshot(session)
    differences = []
    for table, wanted in rows.items():
        replayed = sorted(_comparable(tuple(r.values())) for r in wanted)
        stored = sorted(_comparable(row) for row in live[table])
        if replayed != stored:
            missing = len(set(replayed) - set(stored))
            extra = len(set(stored) - set(replayed))
            differences.append(
                f"{table}: {missing} row(s) differ from the replay, {extra} live row(s) not replayed"
            )
    return differences


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
) -> RebuildResult:
    states, total = fold_all(sessions, progress)
    rows = state_rows(states)
    with transaction(sessions) as session:
        if check:
            return RebuildResult(total, len(states), compare(session, rows))
        repository.clear_state(session)
        for model, table in ((SignalBucket, "signal_buckets"), (SignalEntity, "signal_entities")):
            for start in range(0, len(rows[table]), 1000):
                session.execute(insert(model), rows[table][start : start + 1000])
        session.flush()
        scored = sorted(set(states) | set(repository.risk_for(session, states)))
        engine.rescore(session, scored, now, "rebuild")
    return RebuildResult(total, len(states))
