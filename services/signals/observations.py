"""Point-in-time observations of the stored history, shared by `train`, `backtest` and learning.

An observation (account, t): the features as of t from the events with time <= t only, folded and
computed by the same pure code as the live path (AccountState, relevant_state, compute_features);
label = an `account.churned` event in (t, t + horizon]. As-of dates lie on one weekly grid that
ends at the last day of the history, so every date is a portfolio snapshot. A row is *observed*
when its whole label window lies inside the history (t + horizon <= end), for churners and
non-churners alike: only observed rows are used to fit or to measure accuracy. No row is taken at
or after an account's churn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from services.signals import repository
from services.signals.engine import account_info
from services.signals.events import Signal, signal_from_payload
from services.signals.features import AccountInfo, compute_features, relevant_state
from services.signals.state import AccountState
from shared.db import transaction

WARMUP_DAYS = 28  # no observation before an account has four weeks of history


@dataclass(frozen=True)
class Observation:
    account_id: str
    as_of: datetime
    features: dict[str, float]
    label: int
    observed: bool
    churned_at: datetime | None


@dataclass(frozen=True)
class HistoryBounds:
    """The span of the stored history and the weekly as-of grid on it."""

    end: datetime
    step: timedelta

    def grid_on_or_after(self, moment: datetime) -> datetime:
        """The first grid date at or after `moment` (grid dates are end - k * step)."""
        steps = int((self.end - moment) / self.step)
        candidate = self.end - steps * self.step
        return candidate if candidate >= moment else candidate + self.step


def history_end(sessions: sessionmaker[Session]) -> datetime | None:
    """The end of the history: midnight after the last stored event's day."""
    with transaction(sessions) as session:
        last = repository.last_event_time(session)
    if last is None:
        return None
    return datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)


def iter_histories(
    sessions: sessionmaker[Session], progress: bool, chunk: int = 500
) -> Iterator[tuple[str, list[Signal], AccountInfo]]:
    """Each account's events in time order with its registry info, a chunk of accounts at a time
    (memory stays bounded by the chunk, not the portfolio)."""
    with transaction(sessions) as session:
        account_ids = repository.event_account_ids(session)
    bar = tqdm(total=len(account_ids), desc="history", unit="account", file=sys.stderr, disable=not progress)
    for start in range(0, len(account_ids), chunk):
        ids = account_ids[start : start + chunk]
        with transaction(sessions) as session:
            events = repository.events_of_accounts(session, ids)
            infos = repository.accounts_by_id(session, ids)
            for account_id in ids:
                signals = [signal_from_payload(row.payload) for row in events.get(account_id, [])]
                signals.sort(key=lambda s: (s.time, s.key))
                yield account_id, signals, account_info(infos.get(account_id))
        bar.update(len(ids))
    bar.close()


def observe_account(
    account_id: str,
    signals: list[Signal],
    info: AccountInfo,
    bounds: HistoryBounds,
    horizon: timedelta,
    keep: Callable[[datetime], bool] = lambda _t: True,
) -> Iterator[Observation]:
    """The account's observations on the grid (see the module docstring)."""
    if not signals:
        return
    churn = min((s.time for s in signals if s.type == "account.churned"), default=None)
    t = bounds.grid_on_or_after(signals[0].time + timedelta(days=WARMUP_DAYS))
    state, index = AccountState(), 0
    stop = min(churn, bounds.end) if churn is not None else bounds.end
    while t < stop:
        while index < len(signals) and signals[index].time <= t:
            s = signals[index]
            state.apply(s.type, s.data, s.time, s.key)
            index += 1
        if keep(t):
            buckets, entities = relevant_state(state.buckets, state.entities.values(), t)
            features, _ = compute_features(buckets, entities, info, t)
            label = int(churn is not None and churn <= t + horizon)
            yield Observation(account_id, t, features, label, t + horizon <= bounds.end, churn)
        t += bounds.step


def iter_observations(
    sessions: sessionmaker[Session],
    horizon: timedelta,
    step: timedelta,
    progress: bool = True,
    keep: Callable[[datetime], bool] = lambda _t: True,
) -> Iterator[Observation]:
    """Every account's observations, streamed account by account."""
    end = history_end(sessions)
    if end is None:
        return
    bounds = HistoryBounds(end, step)
    for account_id, signals, info in iter_histories(sessions, progress):
        yield from observe_account(account_id, signals, info, bounds, horizon, keep)


def as_matrix(rows: list[dict[str, float]], names: list[str]) -> Any:
    import numpy as np

    return np.array([[row.get(n, 0.0) for n in names] for row in rows], dtype=float)
