"""The signals worker's in-memory copy of its accounts' state (daily buckets and entities).

Without it, every batch re-read half a year of buckets and every open ticket, contact and invoice
of each touched account (issue 13: that read grew with history). With it, a batch reads only
what it writes (apply_signals' point lookups) and folds the written rows into the copy.

Correctness does not depend on this process being the only writer. Every state write sets a new
`risk_scores.state_token` in the same transaction (RiskEngine.rescore), and a copy is used only
while its token equals the stored one, read under the row lock the re-score takes anyway. A write
by another replica (after a rebalance), by `signals rebuild`, or a transaction that rolled back
(its copies are staged and never installed) makes the copy be read from the tables again.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from services.signals.features import relevant_state, state_bounds
from services.signals.state import Counts, EntityRow

EntityKey = tuple[str, str]
Written = dict[str, tuple[dict[date, Counts], dict[EntityKey, EntityRow]]]  # account -> final rows


def new_token() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class CachedState:
    """One account's buckets from `since_day` on and its entities that were active or changed
    from `since` on, as of the state version `token`."""

    token: str
    since_day: date
    since: datetime
    buckets: Mapping[date, Counts]
    entities: Mapping[EntityKey, EntityRow]

    def covers(self, as_of: datetime) -> bool:
        """Holds every row features as of `as_of` read."""
        since_day, since = state_bounds(as_of)
        return since_day >= self.since_day and since >= self.since

    def with_written(
        self, token: str, written: tuple[dict[date, Counts], dict[EntityKey, EntityRow]] | None
    ) -> CachedState:
        """A new version with the rows this batch wrote (the copy itself is never changed)."""
        if written is None:
            return self if token == self.token else replace(self, token=token)
        buckets, entities = dict(self.buckets), dict(self.entities)
        buckets.update(written[0])
        entities.update(written[1])
        return CachedState(token, self.since_day, self.since, buckets, entities)

    def trimmed(self, as_of: datetime) -> CachedState:
        """Only the rows features as of `as_of` read (features.relevant_state, as the tables are
        read): no later score needs the others, and dropping them bounds the memory."""
        buckets, entities = relevant_state(self.buckets, self.entities.values(), as_of)
        since_day, since = state_bounds(as_of)
        return CachedState(
            self.token, since_day, since, buckets, {(e.kind, e.entity_id): e for e in entities}
        )


class StateCache:
    """Least recently used copies holding at most `max_rows` bucket and entity rows in all (a row
    costs about 0.5 KB in memory: a day with nine counters); changes are staged inside a
    transaction and installed only after it committed."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._states: OrderedDict[str, CachedState] = OrderedDict()
        self._staged: dict[str, CachedState | None] = {}
        self.rows = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, account_id: str, token: str | None, as_of: datetime) -> CachedState | None:
        state = self._states.get(account_id) if token is not None else None
        if state is None or state.token != token or not state.covers(as_of):
            self.misses += 1
            return None
        self.hits += 1
        return state

    def stage(self, account_id: str, state: CachedState | None) -> None:
        """`None` forgets the account once the transaction commits."""
        self._staged[account_id] = state

    def install(self) -> None:
        """The transaction committed: its copies become current (then the least recently used
        ones leave until the rows fit)."""
        if self.max_rows <= 0:
            self._staged.clear()
            return
        for account_id, state in self._staged.items():
            old = self._states.pop(account_id, None)
            if old is not None:
                self.rows -= _rows(old)
            if state is not None:
                self._states[account_id] = state
                self.rows += _rows(state)
        self._staged.clear()
        while self.rows > self.max_rows and self._states:
            _, evicted = self._states.popitem(last=False)
            self.rows -= _rows(evicted)

    def discard(self) -> None:
        """The transaction rolled back: nothing it staged happened."""
        self._staged.clear()

    def clear(self) -> None:
        self._states.clear()
        self._staged.clear()
        self.rows = 0


def _rows(state: CachedState) -> int:
    return len(state.buckets) + len(state.entities)
