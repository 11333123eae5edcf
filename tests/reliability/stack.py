"""The three services as real processes (python -m kamwatch.cli <svc>) with JSON logs in files,
the alert sinks, and the helpers the fault and log tests share."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kamwatch.dev.broker import free_port
from shared.config import CommonSettings
from shared.db import transaction
from tests.alerts.conftest import Sinks
from tests.helpers import wait_for

SERVICE_NAMES = ("ingest", "signals", "alerts")
WEBHOOK_SECRETS = {
    "KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS": "whsec_storm_old,whsec_storm_new",
    "KAMWATCH_INGEST_ZENDESK_WEBHOOK_SECRETS": "zd_storm_secret",
    "KAMWATCH_INGEST_CLOUDEVENTS_WEBHOOK_SECRETS": "ce_storm_secret",
}


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class ServiceProcess:
    """One service process; restartable on the same port, log appended to one file."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, wait: bool = True) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kamwatch.cli", self.name, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        if wait:
            self.wait_healthy()

    def wait_healthy(self) -> None:
        process = self.process
        assert process is not None
        wait_for(lambda: healthy(self.port) or process.poll() is not None, 60, f"{self.name} /healthz")
        assert process.poll() is None, f"{self.name} exited: " + self.log_path.read_text()[-3000:]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


def service_envs(
    service_env: Callable[..., dict[str, str]],
    common: CommonSettings,
    tmp_path: Path,
    sinks: Sinks | None,
    **extra: str,
) -> dict[str, dict[str, str]]:
    prefix = common.topics.events
    fast = {"KAMWATCH_CONSUMER_MAX_POLL_RECORDS": "200", **extra}
    if sinks is not None:  # registry webhooks on the local receiver (loopback needs trusting)
        fast["KAMWATCH_TRUSTED_WEBHOOK_HOSTS"] = f"127.0.0.1:{sinks.http_port}"
    envs = {
        "ingest": service_env(
            KAMWATCH_INGEST_GROUP_ID=f"{prefix}-ingest",
            KAMWATCH_INGEST_RELAY_AFTER_S="1",
            KAMWATCH_INGEST_TICK_INTERVAL_S="0.5",
            **WEBHOOK_SECRETS,
            **fast,
        ),
        "signals": service_env(
            KAMWATCH_SIGNALS_GROUP_ID=f"{prefix}-signals",
            KAMWATCH_SIGNALS_MODEL_DIR=str(tmp_path / "models"),
            KAMWATCH_SIGNALS_RELAY_AFTER_S="1",
            KAMWATCH_SIGNALS_TICK_INTERVAL_S="0.5",
            **fast,
        ),
    }
    if sinks is not None:
        envs["alerts"] = service_env(
            KAMWATCH_ALERTS_GROUP_ID=f"{prefix}-alerts",
            KAMWATCH_ALERTS_SMTP_PORT=str(sinks.smtp_port),
            KAMWATCH_ALERTS_GROUPING_WINDOW_S="0",
            KAMWATCH_ALERTS_TICK_INTERVAL_S="0.2",
            KAMWATCH_ALERTS_SENDING_LEASE_S="0",
            KAMWATCH_ALERTS_SLACK_MIN_INTERVAL_S="0",
            KAMWATCH_ALERTS_BACKOFF_BASE_S="0.5",
            KAMWATCH_ALERTS_BACKOFF_MAX_S="2",
            **fast,
        )
    return envs


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with transaction(sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def person_set(sinks: Sinks, account_id: str) -> dict[str, Any]:
    """Owner, manager and sponsor with an address and an own webhook on the Slack receiver."""
    roles = {"owner": "Olivia Owner", "manager": "Max Manager", "executive_sponsor": "Sam Sponsor"}
    return {
        role: {
            "name": name,
            "email": f"{role}.{account_id}@customer-contacts.example",
            "slack_webhook": sinks.webhook(f"{role}-{account_id}"),
            "timezone": "UTC",
        }
        for role, name in roles.items()
    }


def register_accounts(signals_url: str, key: str, records: dict[str, dict[str, Any]]) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=signals_url, headers=headers, timeout=30) as client:
        for account_id, record in records.items():
            response = client.put(f"/v1/accounts/{account_id}", json=record)
            assert response.status_code == 200, response.text


def policy_without_quiet_hours(tmp_path: Path) -> str:
    """The shipped policy minus quiet hours, so results do not depend on the time of day."""
    from services.alerts.config import DEFAULT_POLICY

    lines, skipping = [], False
    for line in Path(DEFAULT_POLICY).read_text().splitlines():
        if line.startswith("quiet_hours:"):
            skipping = True
            continue
        if skipping and (line.startswith(" ") or not line.strip()):
            continue
        skipping = False
        lines.append(line)
    path = tmp_path / "policy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fresh_database(request: Any, backend: str) -> str:
    """A module's `database_url` override: one backend only, tables emptied (as tests/conftest.py)."""
    from tests.conftest import _import_all_models, _truncate

    url: str = request.getfixturevalue(f"{backend}_url")
    _import_all_models()
    _truncate(url)
    return url
