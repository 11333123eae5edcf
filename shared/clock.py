"""Injectable clock: services ask it for `now()`, tests move it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, value: datetime) -> None:
        with self._lock:
            self._now = value


class OffsetClock:
    """Wall-clock time shifted by an offset read from a file, so a test can move the time of a
    running service process (`kamwatch ... ` with KAMWATCH_CLOCK_FILE) without restarting it."""

    def __init__(self, path: str) -> None:
        self._path = path

    def now(self) -> datetime:
        try:
            with open(self._path) as handle:
                offset = float(handle.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            offset = 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)


def clock_from_env(path: str | None) -> Clock:
    return OffsetClock(path) if path else SystemClock()
