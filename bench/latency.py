"""Benchmark 2: latency at a steady rate, event produced -> risk updated -> notification delivered.

The whole pipeline runs (ingest, signals, alerts as subprocesses; the local SMTP and Slack sinks
in their own process). A paced producer process (bench/loadgen.py) sends the simulated stream at
R events/s and records each send time. "Risk updated" is the moment the event's row becomes
visible in signals' signal_events table: signals inserts it and re-scores the account in the same
transaction, so visibility = the new score is committed (polled every POLL_S). Notification:
probe accounts get a 60-days-overdue invoice at known times (a critical alert); the time the first
Slack or e-mail message naming the probe lands in the sinks is its delivery time. The alerts
grouping window is set to 0 here (its 2-minute default holds messages back on purpose).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.env import (
    Schema,
    Service,
    create_api_key,
    service_env,
    start_service,
    topic_settings,
    wait_drained,
    wait_until,
)
from bench.stats import percentile
from bench.workload import Message, Workload, import_registry_csv, produce_all, registry_csv
from kamwatch.dev.broker import LocalBroker, free_port, port_in_use
from shared.config import CommonSettings
from shared.events import make_event, to_json

POLL_S = 0.02
PROBE_PREFIX = "bench-probe"


@dataclass
class Probe:
    account_id: str
    name: str
    message: Message

    @property
    def row(self) -> dict[str, str]:
        return {
            "id": self.account_id,
            "name": self.name,
            "arr": "900000.00",
            "currency": "USD",
            "tier": "strategic",
            "segment": "enterprise",
            "owner_name": "Bench Owner",
            "owner_email": "owner@bench.example.com",
            "manager_name": "Bench Manager",
            "manager_email": "manager@bench.example.com",
        }


def make_probe(number: int, now: datetime) -> Probe:
    """An account whose invoice is 60 days overdue: the critical `invoice_overdue` trigger. It
    fires only from band amber on (policy.yaml `min_band`), so the invoice is the whole ARR: the
    shipped scorecard then scores the probe 0.31, amber, from this one event."""
    account_id = f"{PROBE_PREFIX}-{number:03d}"
    data = {
        "invoice_id": f"in_probe{number:04d}",
        "amount": "900000.00",  # = the probe's ARR (Probe.row)
        "currency": "USD",
        "due_date": (now - timedelta(days=61)).date().isoformat(),
        "days_overdue": 60,
    }
    event = make_event(
        "invoice.overdue", data, id=f"{account_id}-overdue", source="kamwatch/bench", time=now,
        subject=account_id,
    )  # fmt: skip
    message = Message("payments", account_id.encode(), to_json(event).encode(), event.id)
    return Probe(account_id, f"Bench Probe {number:03d}", message)


class Watcher:
    """Polls signal_events for newly committed rows; records when each event id became visible."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.seen: dict[str, float] = {}
        self.last_id = int(schema.scalar("SELECT coalesce(max(id), 0) FROM signal_events"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from sqlalchemy import text

        query = text("SELECT id, event_id FROM signal_events WHERE id > :last ORDER BY id")
        while not self._stop.is_set():
            with self.schema.engine.connect() as connection:
                rows = connection.execute(query, {"last": self.last_id}).all()
            now = time.time()
            for row_id, event_id in rows:
                self.seen[event_id] = now
                self.last_id = max(self.last_id, row_id)
            self._stop.wait(POLL_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Stack:
    schema: Schema
    common: CommonSettings
    services: list[Service]
    sinks: subprocess.Popen[bytes]
    sink_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.sinks.terminate()
        self.sinks.wait(10)
        self.schema.close()


def start_stack(broker: LocalBroker, work: Path) -> Stack:
    schema = Schema()
    common = topic_settings(broker, schema.url)
    sink_dir = work / f"sinks-{schema.name}"
    smtp_port, http_port = free_port(), free_port()
    sinks = subprocess.Popen(
        [sys.executable, "-m", "bench.sinks", str(sink_dir), str(smtp_port), str(http_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_in_use("127.0.0.1", http_port), 30, "the local sinks")
    alerts_env = {
        "KAMWATCH_ALERTS_SMTP_HOST": "127.0.0.1",
        "KAMWATCH_ALERTS_SMTP_PORT": str(smtp_port),
        "KAMWATCH_ALERTS_DEFAULT_SLACK_WEBHOOK": f"http://127.0.0.1:{http_port}/services/bench/kamwatch",
        "KAMWATCH_ALERTS_GROUPING_WINDOW_S": "0",
    }
    logs = work / "logs"
    services = [start_service("signals", common, logs)]
    services.append(start_service("ingest", common, logs))
    services.append(start_service("alerts", common, logs, **alerts_env))
    return Stack(schema, common, services, sinks, sink_dir)


def warm_up(stack: Stack, workload: Workload, history: list[Message], probes: list[Probe]) -> None:
    """Registry (load and probe accounts) and the history, processed and scored."""
    key = create_api_key(stack.schema.url, ["accounts:write", "risk:read"])
    extra = [p.row for p in probes]
    import_registry_csv(stack.services[0].url, key, registry_csv(workload.accounts, extra))
    total = len(workload.accounts) + len(probes)
    wait_until(
        lambda: stack.schema.scalar("SELECT count(*) FROM ingest_accounts") >= total, 120, "ingest registry"
    )
    produce_all(stack.common, history)
    wait_until(
        lambda: stack.schema.scalar("SELECT count(*) FROM signal_events") >= len(history),
        900,
        "the history to be processed",
        0.5,
    )
    wait_until(
        lambda: stack.schema.scalar("SELECT count(*) FROM alert_risk_scores") >= total,
        300,
        "alerts to hold every account's first score",
        0.5,
    )
    # Every consumer caught up: alerts worked through the warm-up's risk changes for seconds
    # after each account had its first score, which delayed the first rate's notifications.
    wait_drained(stack.services, 300, "every consumer to drain the warm-up")


def plan_for(messages: list[Message], probes: list[Probe], common: CommonSettings) -> list[dict[str, str]]:
    """The load with the probe events spread evenly through it."""
    plan = [_plan_item(m, common) for m in messages]
    step = max(1, len(plan) // (len(probes) + 1))
    for n, probe in enumerate(probes, start=1):
        plan.insert(min(len(plan), n * step + n - 1), _plan_item(probe.message, common))
    return plan


def _plan_item(message: Message, common: CommonSettings) -> dict[str, str]:
    return {
        "topic": getattr(common.topics, message.family),
        "key": message.key.decode(),
        "value": message.value.decode(),
        "id": message.event_id,
    }


def run_rate(
    stack: Stack, rate: float, messages: list[Message], probes: list[Probe], work: Path, drain_s: float
) -> dict[str, Any]:
    plan = plan_for(messages, probes, stack.common)
    plan_path, sent_path = work / f"plan-{int(rate)}.jsonl", work / f"sent-{int(rate)}.json"
    plan_path.write_text("".join(json.dumps(item) + "\n" for item in plan))
    watcher = Watcher(stack.schema)
    watcher.start()
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(plan_path), str(sent_path), "--rate", str(rate)],
        env=service_env(stack.common),
        check=True,
    )
    sent: dict[str, float] = json.loads(sent_path.read_text())
    send_s = max(sent.values()) - started
    deadline = time.monotonic() + drain_s
    while len(watcher.seen.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    watcher.stop()
    notified = wait_notifications(stack.sink_dir, probes, deadline=time.monotonic() + 30)
    result = summarize(rate, sent, watcher.seen, probes, notified, send_s)
    ingest = ingest_published(stack.schema, started)
    stage = [ingest[i] - t for i, t in sent.items() if i in ingest]
    result["ingest_published_s"] = {"p50": percentile(stage, 50), "p99": percentile(stage, 99)}
    return result


def ingest_published(schema: Schema, since: float) -> dict[str, float]:
    """When ingest had published each event to kamwatch.events (its outbox timestamp)."""
    from sqlalchemy import text

    query = text("SELECT event_id, published_at FROM events WHERE received_at >= :since")
    with schema.engine.connect() as connection:
        rows = connection.execute(query, {"since": datetime.fromtimestamp(since - 1, UTC)}).all()
    return {event_id: at.timestamp() for event_id, at in rows if at is not None}


def wait_notifications(sink_dir: Path, probes: list[Probe], deadline: float) -> dict[str, float]:
    found: dict[str, float] = {}
    while len(found) < len(probes) and time.monotonic() < deadline:
        found = delivered(sink_dir, probes)
        time.sleep(0.5)
    return found


def delivered(sink_dir: Path, probes: list[Probe]) -> dict[str, float]:
    """First message (Slack or e-mail) naming each probe account -> its delivery time."""
    names = {p.name: p.account_id for p in probes}
    first: dict[str, float] = {}
    for path in [*sink_dir.glob("slack/*.json"), *sink_dir.glob("mail/*.eml")]:
        at = int(path.name.split("-", 1)[0]) / 1e9
        body = path.read_text(errors="replace")
        for name, account_id in names.items():
            if name in body and at < first.get(account_id, float("inf")):
                first[account_id] = at
    return first


def summarize(
    rate: float,
    sent: dict[str, float],
    seen: dict[str, float],
    probes: list[Probe],
    notified: dict[str, float],
    send_s: float,
) -> dict[str, Any]:
    risk = [seen[i] - t for i, t in sent.items() if i in seen]
    probe_sent = {p.account_id: sent[p.message.event_id] for p in probes if p.message.event_id in sent}
    notify = [notified[a] - t for a, t in probe_sent.items() if a in notified]
    processed_s = (max(seen[i] for i in sent if i in seen) - min(sent.values())) if risk else float("nan")
    return {
        "offered_events_per_s": rate,
        "sent": len(sent),
        "sent_events_per_s": round(len(sent) / max(send_s, 1e-9), 1),
        "processed": len(risk),
        "processed_events_per_s": round(len(risk) / processed_s, 1) if risk else 0.0,
        "risk_updated_s": {"p50": percentile(risk, 50), "p99": percentile(risk, 99), "max": max(risk or [0])},
        "probes": len(probes),
        "probes_notified": len(notify),
        "notified_s": {"p50": percentile(notify, 50), "p99": percentile(notify, 99)},
    }


def split_history(workload: Workload, live_events: int) -> tuple[list[Message], list[Message]]:
    """History (warm-up) and the last `live_events` messages (the steady stream)."""
    cut = max(0, workload.events - live_events)
    return workload.messages[:cut], workload.messages[cut:]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
