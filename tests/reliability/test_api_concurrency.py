"""Many concurrent API clients against a service with few worker threads and a cold API-key cache:
every request is answered, none waits out the connection pool. Before the in-flight limit
(shared.web.InFlightLimit), requests held a pooled connection while they waited for a worker
thread, and 50 clients exhausted the pool: every thread then waited 30 s for a connection and the
clients got 500s (the risk benchmark measured 0 answers). PostgreSQL, a real signals process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reliability.stack import ServiceProcess, fresh_database

pytestmark = pytest.mark.slow
CLIENTS = 40


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "postgres")


def test_forty_clients_on_four_threads_are_all_answered(
    service_env: Callable[..., dict[str, str]], api_key: str, tmp_path: Path
) -> None:
    # 4 worker threads: a pool of 6 (+2); the key cache off, so every request looks its key up
    # inside its own transaction, as on a cold cache.
    env = service_env(
        KAMWATCH_API_THREADS="4",
        KAMWATCH_API_KEY_CACHE_S="0",
        KAMWATCH_SIGNALS_MODEL_DIR=str(tmp_path / "models"),
    )
    signals = ServiceProcess("signals", env, tmp_path / "signals.log")
    signals.start()
    try:
        headers = {"Authorization": f"Bearer {api_key}"}

        def ask(n: int) -> int:
            path = "/v1/portfolio" if n % 2 else f"/v1/accounts/acct-{n}/risk"
            with httpx.Client(base_url=signals.url, headers=headers, timeout=120) as client:
                return sum(client.get(path).status_code in (200, 404) for _ in range(5))

        with ThreadPoolExecutor(CLIENTS) as pool:
            answered = list(pool.map(ask, range(CLIENTS)))
    finally:
        signals.stop()
    assert answered == [5] * CLIENTS, Counter(answered)
    assert "QueuePool limit" not in signals.log_path.read_text()
