"""Issue 10, acceptance 4, through the whole pipeline (ingest -> signals -> alerts -> SMTP + Slack
receiver, real broker, SQLite and PostgreSQL): `account.churned` takes the account out of the
default portfolio (`?include=churned` shows it), resolves its alert with one churn notice, and no
alert follows; `account.renewed` moves the renewal date forward by the term, once."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.signals.models import SignalEvent
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.alerts.conftest import Sinks
from tests.alerts.test_churn import _consumed
from tests.e2e.test_pipeline import Pipeline, pipeline, sinks, usage  # noqa: F401 (fixtures)
from tests.helpers import NOW, cloud_event, read_topic, wait_for

pytestmark = pytest.mark.slow
DAY = timedelta(days=1)


def _portfolio(p: Pipeline, **params: str) -> list[tuple[str, str]]:
    response = p.signals.get("/v1/portfolio", params=params, headers=p.auth)
    assert response.status_code == 200, response.text
    return [(i["account_id"], i["band"]) for i in response.json()["items"]]


def _alerts(p: Pipeline, account: str) -> list[dict[str, Any]]:
    return list(p.alerts.get(f"/v1/alerts?account={account}", headers=p.auth).json()["alerts"])


def _register(p: Pipeline, account: str, **fields: Any) -> None:
    body = {"name": f"{account.title()} GmbH", "arr": "360000", "currency": "EUR", "tier": "strategic"}
    response = p.signals.put(f"/v1/accounts/{account}", json={**body, **fields}, headers=p.auth)
    assert response.status_code == 200, response.text


def _story(account: str) -> list[dict[str, Any]]:
    """Healthy for three months, then usage halves, the champion leaves and an invoice is overdue."""

    def crm(event_type: str, data: dict[str, Any], id: str, days_ago: int) -> dict[str, Any]:
        return cloud_event(
            event_type, data, id=f"{account}-{id}", subject=account, source="crm", time=NOW - days_ago * DAY
        )

    return [
        *usage(account, 120, 31, 1000.0),
        *usage(account, 30, 0, 500.0),
        crm("contact.joined", {"contact_id": "champ", "role": "champion"}, "c1", 120),
        crm("contact.joined", {"contact_id": "cto", "role": "executive_sponsor"}, "c2", 120),
        crm("contact.left", {"contact_id": "champ", "role": "champion"}, "c3", 12),
        crm(
            "invoice.overdue",
            {
                "invoice_id": "in_7",
                "amount": "90000.00",
                "currency": "EUR",
                "due_date": (NOW - 45 * DAY).date().isoformat(),
                "days_overdue": 45,
            },
            "i1",
            1,
        ),
    ]


def test_a_churned_account_leaves_the_portfolio_its_alert_closes_with_one_notice_and_none_follows(
    pipeline: Pipeline,  # noqa: F811
    sinks: Sinks,  # noqa: F811
    common_settings: CommonSettings,
) -> None:
    owner = {"name": "Dana Fischer", "email": "dana@example.com", "slack_webhook": sinks.webhook("dana")}
    _register(pipeline, "acme", owner=owner)
    pipeline.send(_story("acme"))
    wait_for(lambda: (pipeline.risk("acme") or {}).get("band") == "red", 60, "red band")
    wait_for(lambda: sinks.mails_to("dana@example.com") and sinks.slack_to("dana"), 60, "the alert")
    [alert] = wait_for(lambda: _alerts(pipeline, "acme"), 10, "the alert in the API")

    churn = {"reason": "budget cuts", "arr": "360000.00", "currency": "EUR"}
    churned = cloud_event("account.churned", churn, id="acme-churn", subject="acme", source="crm", time=NOW)
    pipeline.send([churned])

    wait_for(lambda: (pipeline.risk("acme") or {}).get("band") == "churned", 60, "band churned")
    assert ("acme", "churned") not in _portfolio(pipeline) and _portfolio(pipeline) == []
    assert _portfolio(pipeline, include="churned") == [("acme", "churned")]
    wait_for(lambda: len(sinks.mails_to("dana@example.com")) == 2, 30, "the churn e-mail")
    wait_for(lambda: len(sinks.slack_to("dana")) == 2, 30, "the churn Slack message")
    [alert] = _alerts(pipeline, "acme")
    assert alert["state"] == "resolved" and alert["band"] == "churned"
    notice = sinks.mails_to("dana@example.com")[1]
    assert notice["Subject"].startswith("Churned: Acme GmbH")
    assert "account churned on 2026-11-01: budget cuts" in notice.get_body(("plain",)).get_content()

    # More decline, the same churn again, and days passing: no new alert, no new message.
    worse = cloud_event(
        "contact.left",
        {"contact_id": "cto", "role": "executive_sponsor"},
        id="acme-c4",
        subject="acme",
        source="crm",
        time=NOW,
    )
    pipeline.send([worse, {**churned, "id": "acme-churn-again"}])
    wait_for(lambda: _applied(common_settings, "acme-c4", "acme-churn-again"), 60, "signals applied both")
    group = f"{common_settings.topics.risk}-alerts"
    wait_for(lambda: _consumed(common_settings, group, common_settings.topics.risk), 30, "alerts caught up")
    clock = pipeline.alerts.app.state.clock  # type: ignore[attr-defined]
    processor = pipeline.alerts.app.state.processor  # type: ignore[attr-defined]
    clock.advance(3 * DAY)  # an open alert would escalate now
    ticks = processor.ticks
    wait_for(lambda: processor.ticks >= ticks + 2, 30, "two alerts ticks after the clock moved")

    risk = pipeline.risk("acme") or {}
    assert risk["band"] == "churned" and risk["as_of"].startswith("2026-11-01")
    assert [a["state"] for a in _alerts(pipeline, "acme")] == ["resolved"]
    assert len(sinks.mails_to("dana@example.com")) == 2 and len(sinks.slack_to("dana")) == 2


def _applied(common: CommonSettings, *event_ids: str) -> bool:
    engine = make_engine(common.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            found = session.scalars(select(SignalEvent.event_id).where(SignalEvent.event_id.in_(event_ids)))
            return set(found) == set(event_ids)
    finally:
        engine.dispose()


def test_renewed_moves_the_renewal_date_by_the_term_and_publishes_it_on_the_accounts_topic(
    pipeline: Pipeline,  # noqa: F811
    common_settings: CommonSettings,
) -> None:
    _register(pipeline, "globex", renewal_date="2026-11-15", billing_period="quarterly")
    renewed = cloud_event(
        "account.renewed",
        {"arr": "360000.00", "currency": "EUR"},
        id="globex-renewal",
        subject="globex",
        source="crm",
        time=NOW,
    )
    pipeline.send([renewed])

    def renewal_date() -> Any:
        return pipeline.signals.get("/v1/accounts/globex", headers=pipeline.auth).json()["renewal_date"]

    wait_for(lambda: renewal_date() == "2027-02-15", 60, "the renewal date moved by one quarter")
    records = read_topic(common_settings.kafka_bootstrap, common_settings.topics.accounts, 2)
    published = [json.loads(r.value)["data"] for r in records if r.key == b"globex"]
    assert [(d["renewal_date"], d["term_months"]) for d in published] == [
        ("2026-11-15", 3),
        ("2027-02-15", 3),
    ]
