"""Issue 11 High #2: an event answered 202 survives a restart of the whole embedded stack.

`kamwatch run` (what `make run` starts) runs the in-memory broker: a restart loses every topic,
record and committed offset. Several senders stream events over HTTP; mid-stream the whole stack
is stopped (SIGKILL of every process, or Ctrl-C), then started again with the same command.
Every event answered 202 must then be stored by ingest and applied by signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from kamwatch.dev.broker import free_port
from shared.db import make_engine
from tests.helpers import make_usage_event, wait_for
from tests.reliability.conftest import report
from tests.reliability.stack import fresh_database

pytestmark = pytest.mark.slow
ACCOUNTS = ("acme", "globex", "initech")
SENDERS = 4
BATCH = 50  # events per request: enough that signals lags behind ingest when the stop comes


class EmbeddedStack:
    """`python -m kamwatch.cli run` (= `kamwatch run`) with every port and the var dir set."""

    def __init__(self, var: Path, database_url: str | None) -> None:
        self.var = var
        self.ports = {
            name: free_port() for name in ("broker", "ingest", "signals", "alerts", "smtp", "slack")
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMWATCH_")}
        env.update(
            {
                "KAMWATCH_VAR_DIR": str(var),
                "KAMWATCH_INGEST_PORT": str(self.ports["ingest"]),
                "KAMWATCH_SIGNALS_PORT": str(self.ports["signals"]),
                "KAMWATCH_ALERTS_PORT": str(self.ports["alerts"]),
                "KAMWATCH_ALERTS_SINK_SMTP_PORT": str(self.ports["smtp"]),
                "KAMWATCH_ALERTS_SINK_HTTP_PORT": str(self.ports["slack"]),
            }
        )
        if database_url:
            env["KAMWATCH_DATABASE_URL"] = database_url
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self) -> None:
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kamwatch.cli", "run", "--broker-port", str(self.ports["broker"])],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        wait_for(lambda: "API key:" in self.output() or self.process.poll() is not None, 180, "the stack")
        assert self.process.poll() is None, self.output()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def key(self) -> str:
        return (self.var / "api-key").read_text().strip()

    def sigkill_everything(self) -> int:
        """SIGKILL `kamwatch run` and every process it started (they run in sessions of their own)."""
        assert self.process is not None
        victims = [self.process.pid, *_descendants(self.process.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(30)
        return len(victims)

    def ctrl_c(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(120) == 0, self.output()[-3000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.sigkill_everything()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Senders:
    """Threads that post batches of events until stopped; they remember every id answered 202."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.headers = url + "/v1/events", {"Authorization": f"Bearer {key}"}
        self.accepted: set[str] = set()
        self.statuses: Counter[str] = Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _send(self, index: int) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                now = datetime.now(UTC)
                events = [
                    make_usage_event(
                        1.0, id=f"s{index}-{uuid.uuid4().hex[:12]}", subject=ACCOUNTS[n % 3], time=now
                    )
                    for n in range(BATCH)
                ]
                try:
                    response = client.post(self.url, json=events, headers=self.headers)
                except httpx.HTTPError as exc:
                    self._count(type(exc).__name__)
                    continue
                self._count(str(response.status_code))
                if response.status_code == 202:
                    with self._lock:
                        self.accepted.update(e["id"] for e in events)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.statuses[outcome] += 1

    def halt(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def _ids(database_url: str, table: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text(f"SELECT event_id FROM {table}"))}
    finally:
        engine.dispose()


def _register(stack: EmbeddedStack) -> None:
    for account_id in ACCOUNTS:
        body = {"name": account_id.title(), "arr": "100000", "owner": {"name": "Olivia"}}
        response = httpx.put(
            f"{stack.url('signals')}/v1/accounts/{account_id}",
            json=body,
            headers={"Authorization": f"Bearer {stack.key}"},
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def stacks() -> Iterator[list[EmbeddedStack]]:
    started: list[EmbeddedStack] = []
    yield started
    for stack in started:
        stack.stop()


@pytest.mark.parametrize(
    ("how", "backend"), [("SIGKILL", "sqlite"), ("SIGKILL", "postgres"), ("Ctrl-C", "sqlite")]
)
def test_every_202_is_stored_and_applied_after_the_whole_stack_restarts(
    request: pytest.FixtureRequest, tmp_path: Path, stacks: list[EmbeddedStack], how: str, backend: str
) -> None:
    database_url = (
        f"sqlite:///{tmp_path / 'var' / 'kamwatch.db'}"
        if backend == "sqlite"
        else fresh_database(request, backend)
    )
    stack = EmbeddedStack(tmp_path / "var", None if backend == "sqlite" else database_url)
    stacks.append(stack)
    stack.start()
    _register(stack)
    wait_for(lambda: len(_ids_of_accounts(database_url)) == len(ACCOUNTS), 60, "ingest's registry copy")

    senders = Senders(stack.url("ingest"), stack.key)
    senders.start()

    # Mid-stream: some events are stored and applied, some are still on the way (in the inbox,
    # on a raw topic, on kamwatch.events) when the stack goes down.
    def backlog() -> int:
        return len(set(senders.accepted) - _ids(database_url, "signal_events"))

    wait_for(lambda: len(senders.accepted) >= 3000 and backlog() >= 1000, 180, "traffic with a backlog")
    stored_before = _ids(database_url, "events")
    applied_before = _ids(database_url, "signal_events")
    accepted_before = set(senders.accepted)
    if how == "SIGKILL":
        killed = stack.sigkill_everything()
    else:
        killed = 0
        stack.ctrl_c()
    senders.halt()
    accepted = set(senders.accepted)
    applied_at_stop = _ids(database_url, "signal_events")
    assert accepted_before - applied_before, "nothing was in flight when the stack stopped"

    stack.start()  # the same command: `kamwatch run` (the broker starts empty)
    wait_for(lambda: accepted <= _ids(database_url, "events"), 180, "every 202 stored by ingest")
    wait_for(lambda: accepted <= _ids(database_url, "signal_events"), 180, "every 202 applied by signals")
    stored = _ids(database_url, "events")
    report(
        f"whole-stack restart ({how}, {backend}, {killed} processes killed): {SENDERS} senders, "
        f"answers {dict(senders.statuses)}; {len(accepted)} events answered 202; when the stop began "
        f"{len(accepted_before - stored_before)} were not yet stored and "
        f"{len(accepted_before - applied_before)} not yet applied by signals, "
        f"{len(accepted - applied_at_stop)} still not applied once it had stopped; after `kamwatch run`: "
        f"0 lost (all {len(accepted)} stored and applied), {len(stored)} stored in all"
    )


def _ids_of_accounts(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text("SELECT account_id FROM ingest_accounts"))}
    finally:
        engine.dispose()
