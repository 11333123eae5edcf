"""The console over a real stack: broker, SQLite, ingest + signals + alerts + console on real
ports, a portfolio built through the public APIs (a spotlight account whose champion left), and a
headless Debian chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kamwatch.dev.broker import LocalBroker, free_port
from services.alerts.app import create_app as alerts_app
from services.alerts.config import AlertsSettings
from services.console.app import create_app as console_app
from services.console.config import ConsoleSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.config import IngestSettings
from services.signals.app import create_app as signals_app
from services.signals.config import SignalsSettings
from shared.auth import SCOPES, create_key
from shared.clock import ManualClock
from shared.config import CommonSettings, TopicNames
from shared.db import make_engine, make_sessionmaker, transaction
from shared.kafka import ensure_topics
from shared.migrate import upgrade
from tests.alerts.conftest import Sinks, start_sinks
from tests.helpers import NOW, cloud_event, wait_for

DAY = timedelta(days=1)
PHASES = (60, 25, 16, 5, 0)  # days before NOW at which the clock stops to score
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_NAME = "<script>window.pwned=1</script><b>Evil & Co</b>"
OWNER = {"name": "Dana Fischer", "email": "dana@example.com"}
# (id, name, ARR, declining?) - three slide to red (each opens an alert), two stay green.
ACCOUNTS = (
    ("acme", "Acme GmbH", "360000", True),
    ("initech", "Initech SA", "240000", True),
    ("evil", XSS_NAME, "90000", True),
    ("globex", "Globex Ltd", "500000", False),
    ("umbrella", "Umbrella plc", "120000", False),
)


class Served:
    """A FastAPI app on a real port, in a thread (uvicorn runs its lifespan: consumers start)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, f"server on {self.port}")
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@dataclass
class Stack:
    console: str
    signals: str
    alerts: str
    key: str
    reader_key: str
    clock: ManualClock
    ingest: TestClient
    sinks: Sinks
    alert_ids: dict[str, int] = field(default_factory=dict)

    def api(self, base: str, path: str, key: str | None = None) -> Any:
        response = httpx.get(base + path, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def send(self, events: list[dict[str, Any]]) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        for start in range(0, len(events), 500):
            response = self.ingest.post("/v1/events", json=events[start : start + 500], headers=auth)
            assert response.status_code == 202, response.text


def _event(account: str, kind: str, data: dict[str, Any], days_ago: float, n: str) -> dict[str, Any]:
    return cloud_event(
        kind, data, id=f"{account}-{n}", subject=account, source="seed", time=NOW - days_ago * DAY
    )


def story(account: str, declining: bool) -> list[dict[str, Any]]:
    """120 days of usage and three contacts; a declining account then loses usage and its
    champion, and an invoice goes 45 days overdue (the demo's spotlight story)."""
    events = [
        _event(
            account,
            "usage.recorded",
            {"metric": "api_calls", "quantity": 1000.0, "active_users": 30},
            d,
            f"u{d}",
        )
        for d in range(120, 30, -1)
    ]
    for contact, role in (("ana", "champion"), ("ira", "executive_sponsor"), ("tom", "technical_evaluator")):
        events.append(
            _event(account, "contact.joined", {"contact_id": contact, "role": role}, 120, f"j-{contact}")
        )
    late = 500.0 if declining else 1000.0
    events += [
        _event(
            account,
            "usage.recorded",
            {"metric": "api_calls", "quantity": late, "active_users": 30},
            d,
            f"u{d}",
        )
        for d in range(30, -1, -1)
    ]
    if declining:
        invoice = {
            "invoice_id": f"{account}-in7",
            "amount": "90000.00",
            "currency": "EUR",
            "due_date": (NOW - 45 * DAY).date().isoformat(),
            "days_overdue": 45,
        }
        events.append(
            _event(account, "contact.left", {"contact_id": "ana", "role": "champion"}, 12, "left-ana")
        )
        events.append(_event(account, "invoice.overdue", invoice, 1, "overdue"))
    return events


def _settings(common: CommonSettings, tmp: Path, smtp_port: int, console_url: str) -> tuple[Any, Any, Any]:
    topics = common.topics
    ingest = IngestSettings(common=common, group_id=f"{topics.events}-ingest", tick_interval_s=0.5)
    signals = SignalsSettings(
        common=common, group_id=f"{topics.events}-signals", model_dir=str(tmp / "models"), tick_interval_s=0.5
    )
    alerts = AlertsSettings(
        common=common,
        group_id=f"{topics.risk}-alerts",
        grouping_window_s=0,
        tick_interval_s=0.2,
        smtp_port=smtp_port,
        slack_min_interval_s=0,
        console_url=console_url,
    )
    return ingest, signals, alerts


def _common(broker: LocalBroker, tmp: Path) -> CommonSettings:
    url = f"sqlite:///{tmp / 'kamwatch.db'}"
    upgrade(url)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    common = CommonSettings(
        database_url=url,
        kafka_bootstrap=broker.bootstrap,
        topic_partitions=3,
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
        topics=TopicNames(**{name: f"{prefix}.{name}" for name in TopicNames.model_fields}),
    )
    ensure_topics(common, partitions=3)
    return common


def _keys(common: CommonSettings) -> tuple[str, str]:
    engine = make_engine(common.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        keys = create_key(session, "console test", list(SCOPES)), create_key(session, "viewer", ["risk:read"])
    engine.dispose()
    return keys


def _seed(stack: Stack) -> None:
    """Register the accounts, then replay their stories in three phases with the clock following,
    so each account has a score history over weeks (the trend chart), as in the demo."""
    auth = {"Authorization": f"Bearer {stack.key}"}
    stack.clock.set(NOW - PHASES[0] * DAY)
    for account_id, name, arr, _ in ACCOUNTS:
        record = {
            "name": name,
            "arr": arr,
            "currency": "EUR",
            "tier": "strategic",
            "segment": "manufacturing",
            "renewal_date": (NOW + 75 * DAY).date().isoformat(),
            "owner": OWNER,
            "manager": {"name": "Sam Osei", "email": "sam@example.com"},
        }
        response = httpx.put(
            f"{stack.signals}/v1/accounts/{account_id}", json=record, headers=auth, timeout=10
        )
        assert response.status_code == 200, response.text
    stories = [event for account_id, _, _, declining in ACCOUNTS for event in story(account_id, declining)]
    previous = None
    for days in PHASES:
        until = NOW - days * DAY
        stack.clock.set(until)
        stack.send([e for e in stories if (previous is None or _time(e) > previous) and _time(e) <= until])
        previous = until
        for account_id, *_ in ACCOUNTS:
            wait_for(
                lambda a=account_id, t=until: _scored_at(stack, a) == t, 120, f"{account_id} scored", 0.3
            )
    for account_id, _, _, declining in ACCOUNTS:
        assert _band(stack, account_id) == ("red" if declining else "green")
        if declining:
            alerts = wait_for(
                lambda a=account_id: stack.api(stack.alerts, f"/v1/alerts?account={a}")["alerts"], 60, "alert"
            )
            stack.alert_ids[account_id] = alerts[0]["id"]


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def _stored(stack: Stack, account_id: str) -> int:
    return len(stack.api(stack.signals, f"/v1/accounts/{account_id}/timeline?limit=500")["items"])


def _scored_at(stack: Stack, account_id: str) -> datetime | None:
    response = httpx.get(
        f"{stack.signals}/v1/accounts/{account_id}/risk", headers={"Authorization": f"Bearer {stack.key}"}
    )
    return datetime.fromisoformat(response.json()["as_of"]) if response.status_code == 200 else None


def _band(stack: Stack, account_id: str) -> str | None:
    response = httpx.get(
        f"{stack.signals}/v1/accounts/{account_id}/risk", headers={"Authorization": f"Bearer {stack.key}"}
    )
    return response.json()["band"] if response.status_code == 200 else None


@pytest.fixture(scope="package")
def stack(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    common = _common(broker, tmp)
    key, reader_key = _keys(common)
    clock = ManualClock(NOW)
    sinks = start_sinks(tmp / "outbox")
    console_port = free_port()
    ingest, signals, alerts = _settings(common, tmp, sinks.smtp_port, f"http://127.0.0.1:{console_port}")
    try:
        with ExitStack() as running:
            signals_url = running.enter_context(Served(signals_app(signals, clock=clock))).url
            alerts_url = running.enter_context(Served(alerts_app(alerts, clock=clock))).url
            console = ConsoleSettings(signals_url=signals_url, alerts_url=alerts_url, common=common)
            console_url = running.enter_context(Served(console_app(console, clock=clock), console_port)).url
            ingest_client = running.enter_context(TestClient(ingest_app(ingest, clock=clock)))
            instance = Stack(
                console_url, signals_url, alerts_url, key, reader_key, clock, ingest_client, sinks
            )
            _seed(instance)
            yield instance
    finally:
        sinks.process.terminate()
        sinks.process.wait(10)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `make test` installs it (deploy/ensure-tools.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    """Every browser test leaves a screenshot under test-artifacts/ (not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(
    page: Any, stack: Stack, key: str | None = None, email: str = OWNER["email"], start: str = "/"
) -> None:
    page.goto(stack.console + start)
    page.wait_for_url(re.compile(r".*/signin.*"))
    page.fill("#api_key", key or stack.key)
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/signin" not in url)
