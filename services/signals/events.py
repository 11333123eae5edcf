"""The canonical event as signals reads it: a Signal, parsed from kamwatch.events or a stored row."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.signals.state import event_key
from shared.errors import EventInvalid, Problem
from shared.events import ACCOUNT_ID_PATTERN, decode_json, parse_rfc3339, to_json, validate_event


@dataclass(frozen=True)
class Signal:
    """One canonical event as signals keeps it."""

    source: str
    event_id: str
    type: str
    account_id: str
    time: datetime
    data: dict[str, Any]
    payload: str

    @property
    def key(self) -> str:
        return event_key(self.source, self.event_id)


def parse_signal(raw: bytes | None, now: datetime) -> Signal:
    event = validate_event(decode_json(raw or b""), now)
    if not event.subject or not re.match(ACCOUNT_ID_PATTERN, event.subject):
        raise EventInvalid(
            "event subject is not a kamwatch account id",
            [
                Problem(
                    "subject",
                    "must be the resolved account id (ingest resolves aliases such as stripe:cus_1)",
                )
            ],
        )
    return Signal(event.source, event.id, event.type, event.subject, event.time, event.data, to_json(event))


def signal_from_payload(payload: str) -> Signal:
    """A stored event back as a Signal (rebuild, training): no time-bound checks on replay."""
    obj = json.loads(payload)
    time = parse_rfc3339(obj["time"])
    return Signal(obj["source"], obj["id"], obj["type"], obj["subject"], time, obj["data"], payload)


def event_row(signal: Signal, now: datetime) -> dict[str, Any]:
    return {
        "source": signal.source,
        "event_id": signal.event_id,
        "type": signal.type,
        "account_id": signal.account_id,
        "event_time": signal.time,
        "payload": signal.payload,
        "received_at": now,
    }
