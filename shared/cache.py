"""A small thread-safe memo: values computed in the last few seconds, by key."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlMemo(Generic[V]):
    """`get(key, load)` answers the value `load()` gave for `key` in the last `ttl_s` seconds, or
    calls it (outside the lock: two callers may both load, never wait on each other); `peek` and
    `put` do the same in two steps, for a caller that loads asynchronously. At most
    `max_entries` keys, least recently used out first. `ttl_s=0` turns it off."""

    def __init__(
        self, ttl_s: float, max_entries: int = 256, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._now = now
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        hit = self.peek(key)
        if hit is not None:
            return hit[0]
        value = load()
        self.put(key, value)
        return value

    def peek(self, key: Hashable) -> tuple[V] | None:
        """(value,) if `key` has one from the last `ttl_s` seconds, else None."""
        if self.ttl_s <= 0:
            return None
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > self._now():
                self._entries.move_to_end(key)
                return (hit[1],)
        return None

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (self._now() + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
