"""The benchmark's environment: a local broker, a fresh PostgreSQL schema, service subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from kamwatch.dev.broker import LocalBroker, free_port
from shared.config import CommonSettings, TopicNames
from shared.db import make_engine, make_sessionmaker, transaction
from shared.kafka import ensure_topics
from shared.migrate import upgrade

PG_BASE_URL = os.environ.get("KAMWATCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORK_DIR = Path("var/bench")
PARTITIONS = 6


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    """Poll `check` until it holds; raise with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def consumer_lag(service: Service) -> int | None:
    """The service's consumer lag (kamwatch_consumer_lag_messages summed), None before it has any."""
    body = httpx.get(f"{service.url}/metrics", timeout=5).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("kamwatch_consumer_lag_messages{")
    ]
    return int(sum(values)) if values else None


def wait_drained(services: list[Service], timeout_s: float, what: str, tick_s: float = 5.0) -> None:
    """Wait until every service's consumer lag is 0 and stays 0 for more than one tick (the gauge
    is set once a tick, so one zero reading can predate the last burst)."""
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    while True:
        now = time.monotonic()
        if all(consumer_lag(s) == 0 for s in services):
            zero_since = now if zero_since is None else zero_since
            if now - zero_since > tick_s + 1:
                return
        else:
            zero_since = None
        if now > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


class Schema:
    """A fresh schema in the `test` database, migrated; dropped on close."""

    def __init__(self) -> None:
        self.name = f"kwbench_{uuid.uuid4().hex[:10]}"
        self.admin = make_engine(PG_BASE_URL)
        with self.admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.url = f"{PG_BASE_URL}?options=-csearch_path%3D{self.name}"
        upgrade(self.url)
        self.engine: Engine = make_engine(self.url)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.admin.dispose()


def topic_settings(broker: LocalBroker, database_url: str) -> CommonSettings:
    """This run's own topic names on the bench broker (created here)."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}.{name}" for name in TopicNames.model_fields}
    common = CommonSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        topic_partitions=PARTITIONS,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
        log_format="json",
        topics=TopicNames(**names),
    )
    ensure_topics(common, partitions=PARTITIONS)
    return common


def service_env(common: CommonSettings, **extra: str) -> dict[str, str]:
    """Environment for a `python -m kamwatch.cli <svc>` subprocess."""
    return {**common.subprocess_env(dict(os.environ)), **extra}


@dataclass
class Service:
    """One service subprocess with its HTTP port."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        return status_kb(self.process.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        return status_kb(self.process.pid, "VmHWM") * 1024

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def start_service(name: str, common: CommonSettings, logs: Path, **extra: str) -> Service:
    """Start `python -m kamwatch.cli <name>` and wait for /healthz."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}-{port}.log"
    handle = log_path.open("ab")
    env = service_env(common, **{f"KAMWATCH_{name.upper()}_PORT": str(port), **extra})
    process = subprocess.Popen(
        [sys.executable, "-m", "kamwatch.cli", name, "--port", str(port)],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    service = Service(name, port, process, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start (code {process.returncode}); see {log_path}")
        try:
            return httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 60, f"{name} /healthz")
    return service


class RssSampler:
    """Samples a process's resident memory every `every_s` in a thread."""

    def __init__(self, service: Service, every_s: float = 0.5) -> None:
        self.service = service
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            rss = self.service.rss_bytes()
            if rss:
                self.samples.append((round(time.monotonic() - start, 2), rss))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def create_api_key(database_url: str, scopes: list[str]) -> str:
    from shared.auth import create_key

    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return create_key(session, "bench", scopes)
    finally:
        engine.dispose()
