"""Alerts fixtures: the local sinks as a real process, the service in-process, message readers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kamwatch.dev.broker import free_port, port_in_use
from services.alerts.app import create_app
from services.alerts.config import AlertsSettings
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW, account_upserted, wait_for


class Sinks:
    """A running `kamwatch alerts sinks` process and what it received."""

    def __init__(
        self, directory: Path, smtp_port: int, http_port: int, process: subprocess.Popen[bytes]
    ) -> None:
        self.directory, self.smtp_port, self.http_port, self.process = (
            directory,
            smtp_port,
            http_port,
            process,
        )

    def webhook(self, who: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hooks/{who}"

    def mails(self) -> list[EmailMessage]:
        files = sorted((self.directory / "mail").glob("*.eml"))
        return [message_from_bytes(f.read_bytes(), _class=EmailMessage, policy=policy.default) for f in files]

    def slack(self) -> list[tuple[str, dict[str, Any]]]:
        """(webhook path slug, payload) per message, oldest first."""
        files = sorted((self.directory / "slack").glob("*.json"))
        return [(f.stem.split("-", 2)[2], json.loads(f.read_text())) for f in files]

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails() if address in str(m["To"])]

    def slack_to(self, who: str) -> list[dict[str, Any]]:
        return [payload for slug, payload in self.slack() if slug == f"hooks_{who}"]


def start_sinks(directory: Path, *knobs: str) -> Sinks:
    smtp_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "kamwatch.cli", "alerts", "sinks", "--dir", str(directory)]
    command += ["--smtp-port", str(smtp_port), "--http-port", str(http_port), *knobs]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(
        lambda: port_in_use("127.0.0.1", smtp_port) and port_in_use("127.0.0.1", http_port), 15, "the sinks"
    )
    return Sinks(directory, smtp_port, http_port, process)


@pytest.fixture
def sink_knobs() -> list[str]:
    """Override in a test module (or parametrize) to make the sinks refuse or throttle."""
    return []


@pytest.fixture
def sinks(tmp_path: Path, sink_knobs: list[str]) -> Iterator[Sinks]:
    running = start_sinks(tmp_path / "outbox", *sink_knobs)
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def alerts_settings(common_settings: CommonSettings, sinks: Sinks) -> AlertsSettings:
    trusted = {"trusted_webhook_hosts": [f"127.0.0.1:{sinks.http_port}"]}  # the local receiver
    return AlertsSettings(
        common=common_settings.model_copy(update=trusted),
        group_id=f"{common_settings.topics.risk}-alerts",
        grouping_window_s=0,
        tick_interval_s=0.1,
        smtp_port=sinks.smtp_port,
        backoff_base_s=5,
        slack_min_interval_s=0,
        sending_lease_s=0,
        public_url="http://testserver",
    )


@pytest.fixture
def alerts(alerts_settings: AlertsSettings, clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(alerts_settings, clock=clock)
    with TestClient(app) as client:
        yield client


def people(sinks: Sinks, account_id: str) -> dict[str, Any]:
    """Owner, manager and sponsor, each with an e-mail address and an own webhook on the receiver."""
    roles = {"owner": "Olivia Owner", "manager": "Max Manager", "executive_sponsor": "Sam Sponsor"}
    return {
        role: {
            "name": name,
            "email": f"{role}.{account_id}@example.com",
            "slack_webhook": sinks.webhook(f"{role}-{account_id}"),
            "timezone": "Europe/Berlin",
        }
        for role, name in roles.items()
    }


def account_event(sinks: Sinks, account_id: str) -> bytes:
    return account_upserted(account_id, name=f"{account_id.title()} GmbH", **people(sinks, account_id))


DRIVERS = [
    {
        "feature": "usage_ratio_28d_vs_90d",
        "value": 0.57,
        "contribution": 0.31,
        "text": "usage 43% below the 90-day baseline",
    },
    {
        "feature": "days_since_key_contact_departed",
        "value": 12,
        "contribution": 0.22,
        "text": "champion left 12 days ago",
    },
]


def risk_changed(
    account_id: str,
    band: str,
    score: float,
    previous_band: str | None = "green",
    previous_score: float | None = 0.2,
    as_of: datetime = NOW,
    features: dict[str, float] | None = None,
    drivers: list[dict[str, Any]] | None = None,
) -> bytes:
    data = {
        "account_id": account_id,
        "score": score,
        "band": band,
        "previous_score": previous_score,
        "previous_band": previous_band,
        "drivers": DRIVERS if drivers is None else drivers,
        "changes": ["band green -> red", "usage fell 43%"] if band != "green" else ["band red -> green"],
        "features": features or {"usage_ratio_28d_vs_90d": 0.57, "days_to_renewal": 90},
        "model_version": "scorecard-2",
        "as_of": as_of.isoformat(),
    }
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "kamwatch/signals",
        "type": "risk.changed",
        "time": as_of.isoformat(),
        "subject": account_id,
        "data": data,
    }
    return json.dumps(envelope).encode()


def registered(common: CommonSettings, account_id: str) -> Callable[[], bool]:
    from services.alerts.models import AlertAccount

    engine = make_engine(common.database_url)
    factory = make_sessionmaker(engine)

    def probe() -> bool:
        with transaction(factory) as session:
            return session.get(AlertAccount, account_id) is not None

    return probe
