"""Drives a simulation into a sink: the history as fast as the sink takes it, then the live phase
paced so that `speedup` simulated seconds pass per real second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from kamwatch.dev.simulator.emit import Sink, batches
from kamwatch.dev.simulator.generator import Simulation
from shared.events import CloudEvent

HISTORY_BATCH = 2000


@dataclass
class RunStats:
    history_events: int = 0
    live_events: int = 0
    days: int = 0
    stopped: bool = False
    by_type: dict[str, int] = field(default_factory=dict)

    def count(self, events: list[CloudEvent], live: bool) -> None:
        for event in events:
            self.by_type[event.type] = self.by_type.get(event.type, 0) + 1
        if live:
            self.live_events += len(events)
        else:
            self.history_events += len(events)


class Pacer:
    """Maps simulated time after `live_start` to real time; waits are interruptible by `stop`."""

    def __init__(
        self,
        live_start: datetime,
        speedup: float,
        stop: threading.Event,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live_start = live_start
        self.speedup = speedup
        self.stop = stop
        self.monotonic = monotonic
        self.origin: float | None = None

    def delay(self, when: datetime) -> float:
        """Seconds to wait before `when` is due (0 without pacing)."""
        if self.speedup <= 0:
            return 0.0
        if self.origin is None:
            self.origin = self.monotonic()
        due = self.origin + (when - self.live_start).total_seconds() / self.speedup
        return max(0.0, due - self.monotonic())

    def wait(self, seconds: float) -> bool:
        """Sleep; False when asked to stop meanwhile."""
        return not self.stop.wait(seconds) if seconds > 0 else not self.stop.is_set()


def run(
    simulation: Simulation,
    sink: Sink,
    speedup: float,
    stop: threading.Event | None = None,
    on_day: Callable[[datetime, RunStats], None] | None = None,
    on_live: Callable[[list[CloudEvent]], None] | None = None,
    recent_first: bool = False,
) -> RunStats:
    """Send every event of the simulation to `sink`; return what was sent.

    `recent_first` sends the history's first day (the opening roster), then the other days
    newest first: a consumer that scores as of the present while a backfill streams in then
    never sees an account that looks silent for months (the demo uses it).
    """
    stop = stop or threading.Event()
    pacer = Pacer(simulation.config.live_start, speedup, stop)
    stats = RunStats()
    days = simulation.days()
    if recent_first:
        days = _recent_first(days, pacer.live_start, sink, stats)
    for day, events in days:
        history = [e for e in events if e.time < pacer.live_start]
        _send_history(history, sink, stats)
        live = events[len(history) :]
        if live and not _stream(live, sink, pacer, stats, on_live):
            stats.stopped = True
            return stats
        stats.days += 1
        if on_day:
            on_day(day, stats)
        if stop.is_set():
            stats.stopped = True
            return stats
    return stats


def _send_history(history: list[CloudEvent], sink: Sink, stats: RunStats) -> None:
    for batch in batches(history, HISTORY_BATCH):
        sink.send(batch)
        stats.count(batch, live=False)


def _recent_first(
    days: Iterator[tuple[datetime, list[CloudEvent]]], live_start: datetime, sink: Sink, stats: RunStats
) -> Iterator[tuple[datetime, list[CloudEvent]]]:
    """Send the whole history (first day, then newest first); yield the days with live events."""
    history: list[list[CloudEvent]] = []
    for day, events in days:
        if events and events[-1].time >= live_start:
            _send_history([e for d in [history[:1], history[:0:-1]] for es in d for e in es], sink, stats)
            history = []
            yield day, events
            yield from days
            return
        history.append(events)
        yield day, []
    _send_history([e for d in [history[:1], history[:0:-1]] for es in d for e in es], sink, stats)


def _stream(
    events: list[CloudEvent],
    sink: Sink,
    pacer: Pacer,
    stats: RunStats,
    on_live: Callable[[list[CloudEvent]], None] | None,
) -> bool:
    """Send live events when they are due; False when stopped."""
    pending: list[CloudEvent] = []
    for event in events:
        delay = pacer.delay(event.time)
        if delay > 0.05:
            _flush(pending, sink, stats, on_live)
            if not pacer.wait(delay):
                return False
        pending.append(event)
    _flush(pending, sink, stats, on_live)
    return True


def _flush(
    pending: list[CloudEvent], sink: Sink, stats: RunStats, on_live: Callable[[list[CloudEvent]], None] | None
) -> None:
    if not pending:
        return
    sink.send(pending)
    stats.count(pending, live=True)
    if on_live:
        on_live(list(pending))
    pending.clear()
