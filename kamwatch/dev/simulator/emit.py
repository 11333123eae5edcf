"""Sinks for simulated events: raw Kafka topics, ingest webhooks, the events API, a JSON-lines file.

Every sink takes a list of events (in time order) and returns once they are accepted
(broker acknowledged, HTTP 202, or written).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

from kamwatch.dev.simulator.payloads import channel, stripe_payload, zendesk_payload
from services.ingest.webhooks import sign_stripe, sign_zendesk
from shared.config import CommonSettings, TopicNames
from shared.errors import ConfigError
from shared.events import CloudEvent, rfc3339, to_json

API_BATCH = 500


class Sink(Protocol):
    def send(self, events: list[CloudEvent]) -> None: ...

    def close(self) -> None: ...


def topic_for(event_type: str, topics: TopicNames) -> str:
    """The raw topic an event type travels on (shared.config.TopicNames)."""
    return topics.raw_for(event_type)


def event_line(event: CloudEvent) -> str:
    return to_json(event) + "\n"


class FileSink:
    """One canonical CloudEvent JSON per line (stable key order: byte-identical per seed)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def send(self, events: list[CloudEvent]) -> None:
        self._handle.writelines(event_line(e) for e in events)

    def close(self) -> None:
        self._handle.close()


class KafkaSink:
    """Produces each event to its raw topic, key = subject; waits for the broker's acks."""

    def __init__(self, common: CommonSettings) -> None:
        from shared.kafka import make_producer

        self._topics = common.topics
        self._producer = make_producer(common, client_id="kamwatch-simulator")

    def send(self, events: list[CloudEvent]) -> None:
        futures = [
            self._producer.send(
                topic_for(e.type, self._topics),
                key=(e.subject or "").encode(),
                value=to_json(e).encode(),
            )
            for e in events
        ]
        self._producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)

    def close(self) -> None:
        self._producer.close(timeout=5)


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code in (401, 403):
        raise ConfigError(f"{what} refused the API key ({response.status_code}); pass --api-key")
    if response.status_code >= 400:
        raise ConfigError(f"{what} answered {response.status_code}: {response.text[:300]}")


class ApiSink:
    """POST /v1/events on ingest, up to 500 events per request (bearer key, events:write)."""

    def __init__(self, client: httpx.Client, api_key: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def send(self, events: list[CloudEvent]) -> None:
        for start in range(0, len(events), API_BATCH):
            body = "[" + ",".join(to_json(e) for e in events[start : start + API_BATCH]) + "]"
            headers = {**self._headers, "Content-Type": "application/json"}
            _check(self._client.post("/v1/events", content=body, headers=headers), "POST /v1/events")

    def close(self) -> None:
        self._client.close()


class WebhookSink:
    """Payments as signed Stripe webhooks, tickets as signed Zendesk webhooks, the rest via the API."""

    def __init__(
        self,
        client: httpx.Client,
        api_key: str,
        stripe_secret: str,
        zendesk_secret: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._api = ApiSink(client, api_key)
        self._stripe_secret = stripe_secret
        self._zendesk_secret = zendesk_secret
        self._wall_clock = wall_clock  # signatures carry the sending time, not the event time

    def send(self, events: list[CloudEvent]) -> None:
        for door, group in _runs(events, channel):
            if door == "api":
                self._api.send(group)
            else:
                for event in group:
                    self._post_signed(door, event)

    def _post_signed(self, door: str, event: CloudEvent) -> None:
        now = self._wall_clock()
        if door == "stripe":
            body = json.dumps(stripe_payload(event)).encode()
            headers = {"Stripe-Signature": sign_stripe(body, self._stripe_secret, int(now))}
        else:
            body = json.dumps(zendesk_payload(event)).encode()
            stamp = rfc3339(datetime.fromtimestamp(int(now), UTC))
            headers = {
                "X-Zendesk-Webhook-Signature": sign_zendesk(body, self._zendesk_secret, stamp),
                "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            }
        headers["Content-Type"] = "application/json"
        response = self._client.post(f"/v1/webhooks/{door}", content=body, headers=headers)
        _check(response, f"POST /v1/webhooks/{door}")

    def close(self) -> None:
        self._client.close()


def _runs(events: Iterable[CloudEvent], key: Callable[[CloudEvent], str]) -> Iterator[tuple[str, list[Any]]]:
    """Consecutive events grouped by `key`, order kept."""
    current: str | None = None
    group: list[CloudEvent] = []
    for event in events:
        door = key(event)
        if group and door != current:
            yield str(current), group
            group = []
        current = door
        group.append(event)
    if group:
        yield str(current), group


def batches(events: Iterable[CloudEvent], size: int) -> Iterator[list[CloudEvent]]:
    batch: list[CloudEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
