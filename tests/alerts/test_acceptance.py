"""Alerts acceptance on the real broker, both databases, a real SMTP server and HTTP receiver."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from shared.clock import ManualClock
from shared.config import CommonSettings
from tests.alerts.conftest import Sinks, account_event, registered, risk_changed
from tests.helpers import produce, read_topic, wait_for

DAY = timedelta(days=1)


def _setup_account(common: CommonSettings, sinks: Sinks, account_id: str) -> None:
    produce(common.kafka_bootstrap, common.topics.accounts, [(account_id, account_event(sinks, account_id))])
    wait_for(registered(common, account_id), what=f"read copy of {account_id}")


def _turn_red(common: CommonSettings, account_id: str, **extra: object) -> None:
    produce(
        common.kafka_bootstrap,
        common.topics.risk,
        [(account_id, risk_changed(account_id, "red", 0.82, **extra))],
    )


def _alerts(client: TestClient, key: str, **filters: str) -> list[dict]:
    response = client.get("/v1/alerts", params=filters, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return list(response.json()["alerts"])


def _detail(client: TestClient, key: str, alert_id: int) -> dict:
    response = client.get(f"/v1/alerts/{alert_id}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _two_ticks(client: TestClient) -> None:
    """Wait until the service has looked at the (moved) clock twice."""
    processor = client.app.state.processor  # type: ignore[attr-defined]
    start = processor.ticks
    wait_for(lambda: processor.ticks >= start + 2, what="two ticks")


def test_red_account_notifies_its_owner_once_on_slack_and_by_email(
    alerts: TestClient, sinks: Sinks, common_settings: CommonSettings, api_key: str
) -> None:
    _setup_account(common_settings, sinks, "acme")
    produce(
        common_settings.kafka_bootstrap, common_settings.topics.risk, [("acme", b'{"type": "risk.changed"}')]
    )
    _turn_red(common_settings, "acme")

    wait_for(lambda: sinks.mails() and sinks.slack(), what="a mail and a Slack message")
    [dead] = read_topic(common_settings.kafka_bootstrap, common_settings.topics.deadletter, 1)
    assert b"risk.changed data is invalid" in dict(dead.headers)["kw_error"]
    # The same risk change delivered again (at-least-once upstream) must not notify again.
    _turn_red(common_settings, "acme")
    wait_for(lambda: len(_alerts(alerts, api_key, account="acme")) == 1, what="one alert")
    _two_ticks(alerts)

    mails, slack = sinks.mails(), sinks.slack_to("owner-acme")
    assert len(mails) == 1 and len(sinks.slack()) == 1 and len(slack) == 1
    mail = mails[0]
    assert mail["To"].addresses[0].addr_spec == "owner.acme@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"].startswith("<kamwatch.alert-")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert "usage 43% below the 90-day baseline" in body and "champion left 12 days ago" in body
    assert "Acme GmbH" in text and "EUR 120,000" in text and "82/100" in text
    blocks = str(slack[0]["blocks"])
    assert "usage 43% below the 90-day baseline" in blocks and "Acknowledge" in blocks and "Snooze" in blocks
    [alert] = _alerts(alerts, api_key, owner="owner.acme@example.com")
    assert alert["state"] == "open" and alert["level"] == 1 and alert["severity"] == "critical"


def test_unacknowledged_alert_climbs_to_manager_then_sponsor_and_an_acknowledged_one_stops(
    alerts: TestClient, sinks: Sinks, common_settings: CommonSettings, clock: ManualClock, api_key: str
) -> None:
    for account in ("acme", "beta"):
        _setup_account(common_settings, sinks, account)
        _turn_red(common_settings, account)
    wait_for(lambda: len(sinks.mails()) == 2 and len(sinks.slack()) == 2, what="level-1 messages")
    # beta's owner acknowledges through the signed link in the e-mail (no API key).
    [beta_mail] = sinks.mails_to("owner.beta@example.com")
    link = next(
        line for line in beta_mail.get_body(("plain",)).get_content().splitlines() if "Acknowledge:" in line
    )
    page = alerts.post(link.split("Acknowledge: ")[1].replace("http://testserver", ""))
    assert page.status_code == 200 and "acknowledged" in page.text
    # ... and works its rescue plan (an overdue step would escalate even an acknowledged alert:
    # tests/alerts/test_playbooks.py).
    [beta_alert] = _alerts(alerts, api_key, account="beta")
    auth = {"Authorization": f"Bearer {api_key}"}
    for task in _detail(alerts, api_key, beta_alert["id"])["tasks"]:
        done = alerts.post(f"/v1/alerts/{beta_alert['id']}/tasks/{task['id']}/done", json={}, headers=auth)
        assert done.status_code == 200, done.text

    clock.advance(DAY + timedelta(minutes=1))
    wait_for(
        lambda: sinks.mails_to("manager.acme@example.com") and sinks.slack_to("manager-acme"), what="level 2"
    )
    clock.advance(2 * DAY)
    wait_for(lambda: sinks.mails_to("executive_sponsor.acme@example.com"), what="level 3 e-mail")
    wait_for(lambda: sinks.slack_to("executive_sponsor-acme"), what="level 3 Slack")
    _two_ticks(alerts)

    assert [
        len(sinks.mails_to(f"{role}.acme@example.com")) for role in ("owner", "manager", "executive_sponsor")
    ] == [
        1,
        1,
        1,
    ]
    escalation = sinks.mails_to("manager.acme@example.com")[0]
    first = sinks.mails_to("owner.acme@example.com")[0]
    assert escalation["In-Reply-To"] == first["Message-ID"]  # threaded under the first message
    assert "not acknowledged within 24 h" in escalation.get_body(("plain",)).get_content()
    assert len(sinks.mails()) == 4 and len(sinks.slack()) == 4  # nothing for beta's manager or sponsor
    [beta] = _alerts(alerts, api_key, account="beta")
    assert beta["state"] == "acknowledged" and beta["level"] == 1
    assert beta["acknowledged_by"] == "Olivia Owner <owner.beta@example.com>"
    [acme] = _alerts(alerts, api_key, account="acme")
    assert acme["level"] == 3
    steps = [t["reason"] for t in _detail(alerts, api_key, acme["id"])["transitions"]]
    assert any("escalation L2" in s for s in steps) and any("escalation L3" in s for s in steps)


@pytest.mark.parametrize(
    "sink_knobs", [["--refuse-first", "2", "--throttle-first", "1", "--retry-after", "1"]]
)
def test_throttled_slack_and_refusing_smtp_deliver_later_with_attempts_visible(
    alerts: TestClient, sinks: Sinks, common_settings: CommonSettings, clock: ManualClock, api_key: str
) -> None:
    _setup_account(common_settings, sinks, "acme")
    _turn_red(common_settings, "acme")
    [alert] = wait_for(lambda: _alerts(alerts, api_key, account="acme"), what="the alert")

    def delivered() -> bool:
        clock.advance(timedelta(seconds=30))  # past Retry-After and the backoff
        states = [d["state"] for d in _detail(alerts, api_key, alert["id"])["deliveries"]]
        return states == ["sent", "sent"]

    wait_for(delivered, what="both deliveries sent", interval_s=0.3)

    assert len(sinks.mails()) == 1 and len(sinks.slack()) == 1
    deliveries = {d["channel"]: d for d in _detail(alerts, api_key, alert["id"])["deliveries"]}
    email, slack = deliveries["email"], deliveries["slack"]
    assert [a["outcome"] for a in email["history"]] == ["retry", "retry", "sent"]
    assert "451" in email["history"][0]["detail"] and email["attempts"] == 3
    assert [a["outcome"] for a in slack["history"]] == ["retry", "sent"]
    assert "429" in slack["history"][0]["detail"]
    assert slack["recipient"].endswith("...")  # the webhook URL is a credential: masked
    metrics = alerts.get("/metrics").text
    assert 'kamwatch_alert_deliveries_total{channel="email",outcome="retry"}' in metrics


def test_risk_back_to_green_resolves_the_alert_and_sends_one_resolution_notice(
    alerts: TestClient, sinks: Sinks, common_settings: CommonSettings, clock: ManualClock, api_key: str
) -> None:
    _setup_account(common_settings, sinks, "acme")
    _turn_red(common_settings, "acme")
    wait_for(lambda: sinks.mails() and sinks.slack(), what="level-1 messages")
    green = risk_changed(
        "acme", "green", 0.15, previous_band="red", previous_score=0.82, as_of=clock.advance(DAY / 2)
    )
    produce(common_settings.kafka_bootstrap, common_settings.topics.risk, [("acme", green)])

    wait_for(lambda: len(sinks.mails()) == 2 and len(sinks.slack()) == 2, what="the resolution notices")
    [alert] = _alerts(alerts, api_key, account="acme")
    assert alert["state"] == "resolved"
    clock.advance(3 * DAY)  # resolved: no escalation may follow
    _two_ticks(alerts)
    assert len(sinks.mails()) == 2 and len(sinks.slack()) == 2
    notice = sinks.mails()[1]
    assert notice["Subject"].startswith("Resolved:") and notice["To"].addresses[0].addr_spec.startswith(
        "owner."
    )
    assert "risk returned to green" in notice.get_body(("plain",)).get_content()
    resolved = [
        t for t in _detail(alerts, api_key, alert["id"])["transitions"] if t["to_state"] == "resolved"
    ]
    assert resolved[0]["actor"] == "kamwatch" and "green" in resolved[0]["reason"]
