"""A full run (ingest + signals + alerts as processes, JSON logs at DEBUG) must not log any API key,
webhook secret or signature, contact e-mail address or Slack webhook URL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.alerts.models import Delivery
from services.ingest.models import DeadLetter, StoredEvent
from services.ingest.webhooks import sign_stripe, sign_zendesk
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from shared.events import to_json
from tests.alerts.conftest import Sinks
from tests.helpers import encode, make_usage_event, produce, wait_for
from tests.reliability.conftest import report
from tests.reliability.stack import (
    SERVICE_NAMES,
    WEBHOOK_SECRETS,
    ServiceProcess,
    count,
    person_set,
    policy_without_quiet_hours,
    register_accounts,
    service_envs,
)
from tests.signals.streams import full_story

pytestmark = pytest.mark.slow
ACCOUNT = "logscan-gmbh"


def _cli_key(env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "kamwatch.cli", "keys", "create", "--scopes", "admin", "--name", "logscan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.split("store it now): ", 1)[1].split()[0]
    return key, done.stderr


def _webhooks(ingest: str) -> list[str]:
    """Good and bad signed webhooks; returns every signature value that was sent."""
    now = int(time.time())
    stripe = json.dumps(
        {
            "id": "evt_logscan",
            "type": "invoice.payment_failed",
            "created": now - 60,
            "data": {"object": {"id": "in_9", "customer": "cus_9", "currency": "eur", "amount_due": 500}},
        }
    ).encode()
    good = sign_stripe(stripe, WEBHOOK_SECRETS["KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS"].split(",")[1], now)
    forged = sign_stripe(stripe, "guessed-secret", now)
    stamp = datetime.now(UTC).isoformat()
    zendesk = json.dumps(
        {
            "id": "zd-logscan",
            "type": "zen:event-type:ticket.created",
            "time": stamp,
            "detail": {"id": "77", "priority": "URGENT", "status": "OPEN", "organization_id": "org-9"},
        }
    ).encode()
    zd_good = sign_zendesk(zendesk, WEBHOOK_SECRETS["KAMWATCH_INGEST_ZENDESK_WEBHOOK_SECRETS"], stamp)
    with httpx.Client(base_url=ingest, timeout=30) as client:
        assert client.post(
            "/v1/webhooks/stripe", content=stripe, headers={"Stripe-Signature": good}
        ).status_code in (
            200,
            202,
        )
        assert (
            client.post(
                "/v1/webhooks/stripe", content=stripe, headers={"Stripe-Signature": forged}
            ).status_code
            == 401
        )
        headers = {"X-Zendesk-Webhook-Signature": zd_good, "X-Zendesk-Webhook-Signature-Timestamp": stamp}
        assert client.post("/v1/webhooks/zendesk", content=zendesk, headers=headers).status_code == 202
        assert client.post("/v1/webhooks/zendesk", content=zendesk + b" ", headers=headers).status_code == 401
    return [good.split("v1=")[1], forged.split("v1=")[1], zd_good]


def _concurrent_new_accounts(signals: str, key: str, people: dict[str, Any]) -> list[str]:
    """Two PUTs of each new account at once: read-then-insert once gave one of them a 500 whose
    log line carried the SQL parameters (e-mail addresses). Now both are answered 200."""
    emails: list[str] = []
    statuses: list[int] = []

    def put(account_id: str, email: str) -> None:
        body = {"name": account_id, "arr": "1000", "owner": {"name": "Racer", "email": email}}
        response = httpx.put(
            f"{signals}/v1/accounts/{account_id}",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        statuses.append(response.status_code)

    threads = []
    for i in range(6):
        email = f"racer{i}.{people['owner']['email']}"
        emails.append(email)
        threads += [threading.Thread(target=put, args=(f"race-{i}", email)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * len(threads), statuses
    return emails


def _error_paths(services: dict[str, ServiceProcess], key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30) as client:
        # 422s naming fields, 404s, 401s and 403-free paths that log at warning or error level.
        bad = {"name": "x\r\ny", "arr": "1", "owner": {"name": "o", "email": "not-an-email"}}
        assert (
            client.put(f"{services['signals'].url}/v1/accounts/bad", json=bad, headers=auth).status_code
            == 422
        )
        assert client.get(f"{services['signals'].url}/v1/accounts/nobody", headers=auth).status_code == 404
        assert (
            client.post(f"{services['ingest'].url}/v1/events", content=b"{", headers=auth).status_code == 422
        )
        stripe = f"{services['ingest'].url}/v1/webhooks/stripe"
        assert (
            client.post(stripe, content=b"{}", headers={"Stripe-Signature": "t=" + "9" * 400}).status_code
            == 401
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_logs_of_a_full_run_hold_no_secret_key_signature_or_e_mail(
    service_env: Callable[..., dict[str, str]],
    common_settings: CommonSettings,
    sinks: Sinks,
    tmp_path: Path,
) -> None:
    envs = service_envs(
        service_env,
        common_settings,
        tmp_path,
        sinks,
        KAMWATCH_LOG_LEVEL="DEBUG",
        KAMWATCH_ALERTS_POLICY_FILE=policy_without_quiet_hours(tmp_path),
    )
    key, cli_log = _cli_key(envs["ingest"])
    logs = {name: tmp_path / f"{name}.log" for name in SERVICE_NAMES}
    services = {name: ServiceProcess(name, envs[name], logs[name]) for name in SERVICE_NAMES}
    people = person_set(sinks, ACCOUNT)
    record = {"name": "Logscan GmbH", "arr": "250000", "currency": "EUR", "tier": "strategic", **people}
    record["external_ids"] = {"stripe": "cus_9", "zendesk": "org-9"}
    engine = make_engine(common_settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        for service in services.values():
            service.start(wait=False)
        for service in services.values():
            service.wait_healthy()
        register_accounts(services["signals"].url, key, {ACCOUNT: record})
        story = full_story(ACCOUNT, datetime.now(UTC).replace(microsecond=0))
        body = "[" + ",".join(to_json(e) for e in story) + "]"
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        posted = httpx.post(f"{services['ingest'].url}/v1/events", content=body, headers=auth, timeout=60)
        assert posted.status_code == 202, posted.text
        bad_key = key[:-4] + "AAAA"
        denied = httpx.post(
            f"{services['ingest'].url}/v1/events",
            content=body,
            headers={"Authorization": f"Bearer {bad_key}"},
        )
        assert denied.status_code == 401
        signatures = _webhooks(services["ingest"].url)
        # Hostile input carrying personal data and a key: dead-lettered, and logged without them.
        leak = make_usage_event(subject=ACCOUNT, email=people["owner"]["email"], token=key)
        leak["data"]["contact"] = people["manager"]["email"]
        produce(common_settings.kafka_bootstrap, common_settings.topics.usage, [(ACCOUNT, encode(leak))])
        wait_for(lambda: count(sessions, DeadLetter) == 1, 60, "the hostile event dead-lettered")
        wait_for(lambda: count(sessions, StoredEvent) >= len(story) + 2, 90, "events stored")
        try:
            wait_for(lambda: sinks.mails_to(people["owner"]["email"]), 90, "the owner's alert e-mail")
        except AssertionError as exc:  # say why: the end of each service's log
            ends = "\n".join(
                f"--- {n} log ---\n{p.read_text(errors='replace')[-4000:]}" for n, p in logs.items()
            )
            raise AssertionError(f"{exc}\n{ends}") from None
        wait_for(lambda: count(sessions, Delivery, Delivery.state == "sent") >= 2, 60, "deliveries recorded")
        racers = _concurrent_new_accounts(services["signals"].url, key, people)
        # Error paths the run must also have logged (and logged without personal data).
        _error_paths(services, key)
    finally:
        for service in services.values():
            service.stop()
        engine.dispose()

    secrets = {"API key": key, "rejected API key": bad_key}
    for name, value in WEBHOOK_SECRETS.items():
        for i, secret in enumerate(value.split(",")):
            secrets[f"{name}[{i}]"] = secret
    for i, value in enumerate(signatures):
        secrets[f"webhook signature {i}"] = value
    for role, person in people.items():
        secrets[f"{role} e-mail"] = person["email"]
        secrets[f"{role} Slack webhook"] = person["slack_webhook"]
    for i, email in enumerate(racers):
        secrets[f"racing PUT e-mail {i}"] = email
    texts = {name: path.read_text(errors="replace") for name, path in logs.items()}
    texts["keys create (stderr)"] = cli_log
    lines = sum(len(t.splitlines()) for t in texts.values())
    json_lines = sum(1 for t in texts.values() for line in t.splitlines() if line.startswith("{"))
    # The scan only proves something if the run logged its steps, including the hostile input.
    for log, step in (
        ("alerts", "delivery.attempt"),
        ("alerts", "alert.opened"),
        ("ingest", "ingest.dead_letter"),
        ("signals", "consumer.started"),
    ):
        assert step in texts[log], f"{step} missing from the {log} log"
    leaks = [
        f"{what} in the {log} log" for log, text in texts.items() for what, s in secrets.items() if s in text
    ]
    report(
        f"log scan: {lines} lines ({json_lines} JSON) from {len(texts)} processes, "
        f"{len(secrets)} secret values searched, {len(sinks.mails())} mails and "
        f"{len(sinks.slack())} Slack posts delivered; leaks found: {len(leaks)}"
    )
    assert leaks == []
