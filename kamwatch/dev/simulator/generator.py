"""The event generator: a portfolio of accounts, each driven by its latent health, day by day.

Pure and deterministic: no wall clock, no uuid4. The same `SimConfig` yields the same events
in the same order (sorted by time, then id), so the JSON-lines file is byte-identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from kamwatch.dev.simulator.account import SOURCE, AccountSim, midnight
from kamwatch.dev.simulator.portfolio import DAY, Timeline, build_portfolio
from shared.events import CloudEvent

__all__ = ["SOURCE", "SimConfig", "Simulation", "midnight"]


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: `start` .. `live_start` is history (backfill), `live_start` .. `end` live."""

    accounts: int
    seed: int
    start: datetime
    live_start: datetime
    end: datetime
    spotlight: int = 0
    aliases: bool = True  # payments as stripe:<customer>, tickets as zendesk:<organization>
    future_renewals: bool = False  # all renewals after `end` (the demo: warnings, no outcomes yet)

    @property
    def timeline(self) -> Timeline:
        return Timeline(self.start, self.live_start, self.end, self.future_renewals)

    def id_prefix(self) -> str:
        """Event ids derive from the arguments: a re-run is deduplicated, a new run is not."""
        text = f"{self.seed}|{self.accounts}|{self.start}|{self.live_start}|{self.end}|{self.spotlight}"
        text += "|future" if self.future_renewals else ""
        return f"sim-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


class Simulation:
    """The whole portfolio, stepped one day at a time."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.accounts = build_portfolio(config.seed, config.accounts, config.timeline, config.spotlight)

    def days(self) -> Iterator[tuple[datetime, list[CloudEvent]]]:
        """Each simulated day with its events, in time order (every call starts afresh)."""
        prefix = self.config.id_prefix()
        sims = [AccountSim(a, self.config, prefix) for a in self.accounts]
        day = midnight(self.config.start)
        while day < self.config.end:
            events = [e for sim in sims for e in sim.step(day)]
            events.sort(key=lambda e: (e.time, e.id))
            yield day, events
            day += DAY

    def events(self) -> Iterator[CloudEvent]:
        for _, events in self.days():
            yield from events

    def day_count(self) -> int:
        return (self.config.end - midnight(self.config.start) + DAY - timedelta(microseconds=1)) // DAY
