"""`kamwatch run` from an empty var/: the README's first steps work, Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from kamwatch.dev.broker import free_port, port_in_use
from tests.helpers import NOW, make_usage_event, read_topic, wait_for

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, var: Path, demo: bool = False) -> None:
        self.var = var
        self.ports = {
            name: free_port()
            for name in ("broker", "ingest", "signals", "alerts", "console", "smtp", "slack")
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMWATCH_")}
        env.update(
            {
                "KAMWATCH_VAR_DIR": str(var),
                "KAMWATCH_INGEST_PORT": str(self.ports["ingest"]),
                "KAMWATCH_SIGNALS_PORT": str(self.ports["signals"]),
                "KAMWATCH_ALERTS_PORT": str(self.ports["alerts"]),
                "KAMWATCH_CONSOLE_PORT": str(self.ports["console"]),
                "KAMWATCH_ALERTS_SINK_SMTP_PORT": str(self.ports["smtp"]),
                "KAMWATCH_ALERTS_SINK_HTTP_PORT": str(self.ports["slack"]),
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kamwatch.cli", "run", "--broker-port", str(self.ports["broker"])]
            + (["--demo"] if demo else []),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        """What it printed so far; once it has exited, everything (the reader drains the pipe)."""
        if self.process.poll() is not None:
            self.reader.join(timeout=30)
        return "\n".join(self.lines)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture
def stack(tmp_path: Path):
    instance = Stack(tmp_path / "var")
    yield instance
    if instance.process.poll() is None:
        instance.process.kill()
        instance.process.wait()


def test_make_run_serves_the_readme_walkthrough_and_stops_on_ctrl_c(stack: Stack) -> None:
    wait_for(
        lambda: "API key:" in stack.output() or stack.process.poll() is not None, 120, "the API key line"
    )
    assert stack.process.poll() is None, stack.output()
    key = next(line.split("API key:", 1)[1].strip() for line in stack.lines if "API key:" in line)
    assert (stack.var / "api-key").read_text().strip() == key
    for service in ("ingest", "signals", "alerts", "console"):
        assert httpx.get(stack.url(service) + "/healthz").status_code == 200
    # The console answers with its sign-in page, and reaches signals and alerts on their ports.
    assert httpx.get(stack.url("console") + "/").headers["location"].startswith("/signin")
    assert httpx.get(stack.url("console") + "/readyz").status_code == 200
    auth = {"Authorization": f"Bearer {key}"}

    account = {
        "name": "Acme GmbH",
        "arr": "360000",
        "currency": "EUR",
        "tier": "strategic",
        "owner": {"name": "Dana Fischer", "email": "dana@example.com"},
        "external_ids": {"stripe": "cus_Q9x2"},
    }
    assert (
        httpx.put(stack.url("signals") + "/v1/accounts/acme", json=account, headers=auth).status_code == 200
    )
    event = make_usage_event(18250, id="readme-1", subject="acme", time=NOW)
    wait_for(lambda: _registered_in_ingest(stack.var), 30, "the account in ingest's read copy")
    posted = time.monotonic()
    wait_for(lambda: _post(stack.url("ingest"), event, auth) == 202, 30, "event accepted")

    def stored() -> bool:
        with sqlite3.connect(stack.var / "kamwatch.db") as connection:
            return bool(
                connection.execute("SELECT count(*) FROM events WHERE event_id = 'readme-1'").fetchone()[0]
            )

    wait_for(stored, 30, "the event in the store", interval_s=0.01)
    stored_after = time.monotonic() - posted
    published = read_topic(f"127.0.0.1:{stack.ports['broker']}", "kamwatch.events", 1)
    assert [json.loads(r.value)["id"] for r in published] == ["readme-1"]
    print(f"README event: 202 and stored {stored_after:.2f} s after the POST was sent")

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    assert "kamwatch stopped." in stack.output()
    assert not port_in_use("127.0.0.1", stack.ports["broker"])
    assert not port_in_use("127.0.0.1", stack.ports["ingest"])


def _registered_in_ingest(var: Path) -> bool:
    with sqlite3.connect(var / "kamwatch.db") as connection:
        return bool(connection.execute("SELECT count(*) FROM ingest_accounts").fetchone()[0])


def _post(base: str, event: dict, headers: dict) -> int:
    # The account reaches ingest's read copy through Kafka; until then the event would be parked,
    # which is also fine, but the README promises the store, so accept it once and poll the store.
    return httpx.post(base + "/v1/events", json=event, headers=headers).status_code


def test_a_busy_broker_port_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMWATCH_")}
        env["KAMWATCH_VAR_DIR"] = str(tmp_path / "var")
        result = subprocess.run(
            [sys.executable, "-m", "kamwatch.cli", "run", "--broker-port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
