"""`kamwatch run`: the whole system on one machine (embedded broker, SQLite, all services)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from kamwatch.dev.broker import LocalBroker, port_in_use
from kamwatch.dev.local import SERVICE_PORTS, service_port, until_stopped, var_dir
from kamwatch.dev.simulator.demo import start_demo
from kamwatch.dev.sinks import start_for_stack
from shared.auth import ensure_local_key
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from shared.errors import ConfigError
from shared.kafka import ensure_topics
from shared.logging import configure_logging, get_logger
from shared.migrate import upgrade

log = get_logger("kamwatch.run")


class Supervisor:
    """Starts each service as its own process and restarts one that dies."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = dict.fromkeys(SERVICE_PORTS, 0)
        self.stopping = threading.Event()

    def start(self, name: str) -> None:
        log_file = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "kamwatch.cli", name],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def watch(self) -> None:
        while not self.stopping.wait(1.0):
            for name, child in list(self.children.items()):
                code = child.poll()
                if code is None or self.stopping.is_set():
                    continue
                self.restarts[name] += 1
                delay = min(30, 2 ** min(self.restarts[name], 5))
                print(
                    f"! {name} exited with code {code}; restarting in {delay} s "
                    f"(log: {self.logs / (name + '.log')})",
                    flush=True,
                )
                if self.stopping.wait(delay):
                    return
                self.start(name)

    def stop(self) -> None:
        self.stopping.set()
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_healthy(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def run_stack(demo: bool = False, broker_port: int | None = None, external_broker: bool = False) -> int:
    var = var_dir()
    os.environ.setdefault("KAMWATCH_DATABASE_URL", f"sqlite:///{var / 'kamwatch.db'}")
    broker = None
    if not external_broker:
        port = broker_port or int(os.environ.get("KAMWATCH_BROKER_PORT", "9092"))
        broker = LocalBroker(port, log_path=var / "log" / "broker.log")
        broker.start()
        os.environ["KAMWATCH_KAFKA_BOOTSTRAP"] = broker.bootstrap
    common = CommonSettings()
    configure_logging(common.log_level, common.log_format, "run")
    # The policy groups an account's triggers for 2 minutes; on one machine a new user should see
    # the message within seconds, so the embedded profile groups for 2 s unless told otherwise.
    os.environ.setdefault("KAMWATCH_ALERTS_GROUPING_WINDOW_S", "2")
    for upstream in ("signals", "alerts"):  # the console reads their public APIs
        os.environ.setdefault(
            f"KAMWATCH_CONSOLE_{upstream.upper()}_URL", f"http://127.0.0.1:{service_port(upstream)}"
        )
    # Alert messages link to the account brief in the console.
    os.environ.setdefault("KAMWATCH_ALERTS_CONSOLE_URL", f"http://127.0.0.1:{service_port('console')}")
    # Learn from the outcomes it receives: retrain and promote better models on its own.
    os.environ.setdefault("KAMWATCH_SIGNALS_LEARN", "true")
    # ... and keep amber/red to the alert budget of the live portfolio (9% / 3%).
    os.environ.setdefault("KAMWATCH_SIGNALS_BUDGET_BANDS", "true")
    sinks = start_for_stack(var)  # local mail + Slack sinks; sets the alerts env before the spawn
    supervisor = Supervisor(dict(os.environ), var / "log")
    try:
        return _run(common, var, supervisor, broker, demo)
    finally:
        supervisor.stop()
        if sinks is not None:
            sinks.stop()
        if broker is not None:
            broker.stop()
        print("kamwatch stopped.", flush=True)


def _run(
    common: CommonSettings, var: Path, supervisor: Supervisor, broker: LocalBroker | None, demo: bool
) -> int:
    print(f"broker:   {common.kafka_bootstrap}" + (" (embedded, in memory)" if broker else ""), flush=True)
    upgrade(common.database_url)
    print(f"database: {common.database_url}", flush=True)
    created = ensure_topics(common)
    print(f"topics:   {len(common.topics.all())} ready ({len(created)} created)", flush=True)
    engine = make_engine(common.database_url)
    key = ensure_local_key(make_sessionmaker(engine), var / "api-key")
    engine.dispose()
    for port in (service_port(n) for n in SERVICE_PORTS):
        if port_in_use("127.0.0.1", port):
            raise ConfigError(
                f"port {port} is already in use; stop what listens there or set KAMWATCH_<SERVICE>_PORT"
            )
    for name in SERVICE_PORTS:
        supervisor.start(name)
    for name in SERVICE_PORTS:
        url = f"http://127.0.0.1:{service_port(name)}"
        ok = wait_healthy(url + "/healthz", 60)
        where = "open it in a browser, sign in with the API key" if name == "console" else f"docs: {url}/docs"
        print(
            f"{name:8s}  {url}  {'up' if ok else 'NOT UP, see ' + str(var / 'log' / (name + '.log'))}"
            f"  ({where})",
            flush=True,
        )
    print(f"API key: {key}", flush=True)
    print(f"(also in {var / 'api-key'}; logs in {var / 'log'}) -- Ctrl-C stops everything", flush=True)
    if demo:
        start_demo(supervisor)
    stop = until_stopped()
    threading.Thread(target=supervisor.watch, daemon=True).start()
    stop.wait()
    print("\nstopping...", flush=True)
    return 0


def run_broker_foreground(port: int) -> int:
    broker = LocalBroker(port)
    broker.start()
    print(f"broker listening on {broker.bootstrap} (in memory); Ctrl-C stops it", flush=True)
    until_stopped().wait()
    broker.stop()
    return 0
