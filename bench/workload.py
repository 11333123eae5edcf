"""Realistic events from the simulator (services/simulator), as raw-topic messages, and the registry CSV."""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from kamwatch.dev.simulator.emit import topic_for
from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.portfolio import Account
from shared.config import CommonSettings
from shared.events import to_json
from shared.kafka import make_producer

CSV_FIELDS = (
    "id", "name", "arr", "currency", "tier", "segment", "renewal_date",
    "owner_name", "owner_email", "manager_name", "manager_email", "sponsor_name", "sponsor_email",
    "external_ids",
)  # fmt: skip


@dataclass
class Message:
    """One raw-topic message: the family (usage, tickets, ...), key and CloudEvent JSON."""

    family: str
    key: bytes
    value: bytes
    event_id: str


@dataclass
class Workload:
    accounts: list[Account]
    messages: list[Message]

    @property
    def events(self) -> int:
        return len(self.messages)


def build(accounts: int, min_events: int, seed: int = 7, now: datetime | None = None) -> Workload:
    """A simulated portfolio with enough days of history (ending now) for `min_events` events."""
    now = now or datetime.now(UTC)
    # The simulator opens with ~9.5 events per account (contacts, subscription), then ~1.9 a day.
    days = max(1, math.ceil((min_events / max(1, accounts) - 9.5) / 1.9))
    while True:
        messages, simulation = _generate(accounts, days, seed, now)
        if len(messages) >= min_events:
            return Workload(simulation.accounts, messages)
        days += max(1, math.ceil((min_events - len(messages)) / accounts / 1.9))


def _generate(accounts: int, days: int, seed: int, now: datetime) -> tuple[list[Message], Simulation]:
    end = now.replace(microsecond=0) - timedelta(minutes=5)
    config = SimConfig(
        accounts=accounts, seed=seed, start=end - timedelta(days=days), live_start=end, end=end
    )
    simulation = Simulation(config)
    families = TopicFamilies()
    messages = [
        Message(families.of(e.type), (e.subject or "").encode(), to_json(e).encode(), e.id)
        for e in simulation.events()
    ]
    return messages, simulation


class TopicFamilies:
    """Event type -> raw topic field name of shared.config.TopicNames (cached)."""

    def __init__(self) -> None:
        from shared.config import TopicNames

        self._names = TopicNames()
        self._field = {getattr(self._names, f): f for f in TopicNames.model_fields}
        self._cache: dict[str, str] = {}

    def of(self, event_type: str) -> str:
        if event_type not in self._cache:
            self._cache[event_type] = self._field[topic_for(event_type, self._names)]
        return self._cache[event_type]


def registry_csv(accounts: list[Account], extra: list[dict[str, str]] | None = None) -> str:
    """The portfolio (and `extra` rows) as the CSV that POST /v1/accounts:import takes."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for account in accounts:
        record = account.record()
        row = {k: record[k] for k in CSV_FIELDS[:7]}
        for prefix, person in (
            ("owner", record["owner"]),
            ("manager", record["manager"]),
            ("sponsor", record["executive_sponsor"]),
        ):
            row[f"{prefix}_name"], row[f"{prefix}_email"] = person["name"], person["email"]
        row["external_ids"] = ";".join(f"{k}={v}" for k, v in record["external_ids"].items())
        writer.writerow(row)
    writer.writerows(extra or [])
    return out.getvalue()


IMPORT_CHUNK = 1000
IMPORT_ERRORS: list[str] = []  # 5xx answers met (and retried), reported in the results


def import_registry(signals_url: str, api_key: str, accounts: list[Account]) -> None:
    """The registry in chunks of 1,000 rows: one 10k-row import can outlast signals' outbox relay
    delay (10 s), and then the request and the relay mark the same rows and may deadlock."""
    for start in range(0, len(accounts), IMPORT_CHUNK):
        import_registry_csv(signals_url, api_key, registry_csv(accounts[start : start + IMPORT_CHUNK]))


def import_registry_csv(signals_url: str, api_key: str, text: str, attempts: int = 3) -> None:
    """POST the registry CSV to signals (it publishes account.upserted for ingest and alerts)."""
    for _ in range(attempts):
        response = httpx.post(
            f"{signals_url}/v1/accounts:import",
            content=text.encode(),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
            timeout=300,
        )
        if response.status_code == 200:
            return
        IMPORT_ERRORS.append(f"{response.status_code} {response.text[:200]}")
        if response.status_code < 500:
            break
    raise RuntimeError(f"registry import failed: {response.status_code} {response.text[:500]}")


def produce_all(common: CommonSettings, messages: list[Message]) -> float:
    """Produce every message to its raw topic as fast as the client goes; return seconds taken."""
    producer = make_producer(common, client_id="kamwatch-bench")
    started = time.perf_counter()
    try:
        for message in messages:
            topic = getattr(common.topics, message.family)
            producer.send(topic, key=message.key, value=message.value)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)
    return time.perf_counter() - started
