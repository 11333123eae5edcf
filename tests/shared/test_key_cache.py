"""The API-key cache: a checked key skips the key table for a few seconds, a revoked key stops
working once that time is up, and unknown keys are never remembered."""

from __future__ import annotations

from pathlib import Path

from shared.auth import KeyCache, revoke_key
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.security.apps import make_key, running


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoad:
    def __init__(self, result: set[str] | None) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> set[str] | None:
        self.calls += 1
        return self.result


def test_a_valid_key_is_loaded_once_per_ttl_and_an_unknown_one_every_time() -> None:
    clock = FakeMonotonic()
    cache = KeyCache(ttl_s=5, now=clock)
    valid, unknown = CountingLoad({"risk:read"}), CountingLoad(None)
    for _ in range(3):
        assert cache.scopes("kw_a_x", valid) == {"risk:read"}
        assert cache.scopes("kw_b_x", unknown) is None
    assert (valid.calls, unknown.calls) == (1, 3)
    assert cache.cached("kw_a_x") == {"risk:read"} and cache.cached("kw_b_x") is None  # no load
    clock.now += 5.01
    assert cache.cached("kw_a_x") is None  # stale: the caller must load it
    valid.result = None  # revoked meanwhile
    assert cache.scopes("kw_a_x", valid) is None
    assert valid.calls == 2 and cache.cached("kw_a_x") is None


def test_the_cache_is_bounded_and_zero_ttl_turns_it_off() -> None:
    cache = KeyCache(ttl_s=5, max_entries=2, now=FakeMonotonic())
    loads = {name: CountingLoad({"admin"}) for name in ("a", "b", "c")}
    for name in ("a", "b", "c", "a"):
        cache.scopes(f"kw_{name}_x", loads[name])
    assert loads["a"].calls == 2  # evicted by "c", the least recently used
    off, load = KeyCache(ttl_s=0), CountingLoad({"admin"})
    off.scopes("kw_a_x", load)
    off.scopes("kw_a_x", load)
    assert load.calls == 2


def test_a_revoked_key_is_refused_once_the_cache_time_is_up(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    url = common_settings.database_url
    key = make_key(url, ["risk:read"])
    clock = FakeMonotonic()
    with running("signals", common_settings, tmp_path) as client:
        assert isinstance(client.app.state.key_cache, KeyCache)  # type: ignore[attr-defined]
        client.app.state.key_cache = KeyCache(ttl_s=5, now=clock)  # type: ignore[attr-defined]
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/portfolio", headers=headers).status_code == 200
        engine = make_engine(url)
        with transaction(make_sessionmaker(engine)) as session:
            assert revoke_key(session, key[3:].split("_", 1)[0])
        engine.dispose()
        # Within the cache time the key still works (this is the documented bound) ...
        assert client.get("/v1/portfolio", headers=headers).status_code == 200
        clock.now += 5.01
        # ... and after it, the body-limit middleware and the route both refuse it.
        response = client.get("/v1/portfolio", headers=headers)
        assert response.status_code == 401
        assert "revoked" in response.json()["message"] or "unknown" in response.json()["message"]
