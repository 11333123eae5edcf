"""The runner: history at once (in time order or recent first), the live phase paced."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.runner import Pacer, run
from shared.events import CloudEvent

START = datetime(2026, 2, 2, tzinfo=UTC)


class ListSink:
    def __init__(self) -> None:
        self.calls: list[list[CloudEvent]] = []

    def send(self, events: list[CloudEvent]) -> None:
        self.calls.append(list(events))

    def close(self) -> None:
        return None


def simulation(days: int = 20, live_hours: float = 0) -> Simulation:
    live_start = START + timedelta(days=days)
    end = live_start + timedelta(hours=live_hours)
    return Simulation(SimConfig(accounts=4, seed=3, start=START, live_start=live_start, end=end))


def test_recent_first_sends_the_opening_day_then_the_newest_days_and_loses_nothing() -> None:
    sim = simulation()
    sink = ListSink()
    stats = run(sim, sink, speedup=0, recent_first=True)
    sent = [e for call in sink.calls for e in call]
    assert sorted(e.id for e in sent) == sorted(e.id for e in sim.events())
    assert stats.history_events == len(sent) and stats.days == 20
    days = [e.time.date() for e in sent]
    assert days[0] == START.date()
    later = [d for d in days if d != START.date()]
    assert later == sorted(later, reverse=True)


def test_live_events_follow_the_history_in_time_order() -> None:
    sim = simulation(days=10, live_hours=36)
    sink = ListSink()
    live: list[CloudEvent] = []
    stats = run(sim, sink, speedup=0, on_live=live.extend, recent_first=True)
    assert stats.live_events == len(live) > 0
    assert all(e.time >= sim.config.live_start for e in live)
    assert [e.time for e in live] == sorted(e.time for e in live)


def test_pacer_maps_simulated_time_to_real_time() -> None:
    now = [100.0]
    pacer = Pacer(START, speedup=60, stop=threading.Event(), monotonic=lambda: now[0])
    assert pacer.delay(START) == 0
    assert pacer.delay(START + timedelta(minutes=2)) == 2.0
    now[0] = 101.5
    assert pacer.delay(START + timedelta(minutes=2)) == 0.5


def test_a_stopped_run_says_so() -> None:
    stop = threading.Event()
    stop.set()
    stats = run(simulation(days=2, live_hours=48), ListSink(), speedup=1.0, stop=stop)
    assert stats.stopped
