"""shared.cache.TtlMemo: fresh values from memory, stale ones loaded again, bounded, or off."""

from __future__ import annotations

from shared.cache import TtlMemo


def test_a_value_is_loaded_once_per_ttl_per_key_and_the_oldest_key_leaves_first() -> None:
    clock = [100.0]
    loads: list[str] = []
    memo: TtlMemo[int] = TtlMemo(2.0, max_entries=2, now=lambda: clock[0])

    def load(key: str, value: int) -> int:
        return memo.get(key, lambda: loads.append(key) or value)

    assert load("a", 1) == 1 and load("a", 9) == 1  # fresh: not loaded again
    clock[0] += 2.0
    assert load("a", 2) == 2  # expired at the ttl
    assert load("b", 3) == 3 and load("c", 4) == 4  # "a" is now the least recently used: out
    assert load("a", 5) == 5
    assert loads == ["a", "a", "b", "c", "a"]
    off: TtlMemo[int] = TtlMemo(0)
    assert [off.get("k", lambda n=n: n) for n in (1, 2)] == [1, 2]  # type: ignore[misc]
