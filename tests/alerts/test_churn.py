"""A churned account: its alerts are resolved with exactly one churn notice to everyone who received
them (real SMTP server and HTTP receiver, real broker, both databases), no new alert follows, and
only a reactivation (a change out of band churned, newer than the churn) lets alerts open again."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy.orm import Session, sessionmaker

from services.alerts.lifecycle import Lifecycle
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.contracts import RiskChange
from tests.alerts.conftest import Sinks, risk_changed
from tests.alerts.test_acceptance import _alerts, _detail, _setup_account, _turn_red, _two_ticks
from tests.alerts.test_lifecycle import T0, db, deliveries, feed, lifecycle, settings, tick  # noqa: F401 (fixtures)
from tests.alerts.test_lifecycle import alerts as stored_alerts
from tests.helpers import produce, wait_for

DAY = timedelta(days=1)
CHURN_NOTE = "account churned on 2026-11-02: budget cuts"


def churn_change(account_id: str, as_of: datetime, previous_band: str = "red") -> bytes:
    envelope = json.loads(
        risk_changed(
            account_id, "churned", 1.0, previous_band=previous_band, previous_score=0.82, as_of=as_of
        )
    )
    envelope["data"].update(drivers=[], changes=[CHURN_NOTE])
    return json.dumps(envelope).encode()


def _consumed(common: CommonSettings, group: str, topic: str) -> bool:
    """The group committed everything produced on `topic` (the consumer has processed it all)."""
    reader = KafkaConsumer(bootstrap_servers=common.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        ends = reader.end_offsets(partitions)
        return all((reader.committed(tp) or 0) >= ends[tp] for tp in partitions)
    finally:
        reader.close(autocommit=False)


def test_churn_resolves_the_alert_with_one_notice_per_recipient_and_no_alert_follows(
    alerts: TestClient, sinks: Sinks, common_settings: CommonSettings, clock: ManualClock, api_key: str
) -> None:
    _setup_account(common_settings, sinks, "acme")
    _turn_red(common_settings, "acme")
    wait_for(lambda: sinks.mails() and sinks.slack(), what="the owner's level-1 messages")
    clock.advance(DAY + timedelta(minutes=1))  # unacknowledged: the manager hears of it too
    wait_for(lambda: sinks.mails_to("manager.acme@example.com") and sinks.slack_to("manager-acme"), what="L2")
    before = len(sinks.mails()), len(sinks.slack())
    assert before == (2, 2)

    churn = churn_change("acme", clock.advance(timedelta(hours=2)))
    produce(common_settings.kafka_bootstrap, common_settings.topics.risk, [("acme", churn), ("acme", churn)])

    wait_for(lambda: len(sinks.mails()) == 4 and len(sinks.slack()) == 4, what="the churn notices")
    [alert] = _alerts(alerts, api_key, account="acme")
    assert alert["state"] == "resolved" and alert["band"] == "churned"
    resolved = [
        t for t in _detail(alerts, api_key, alert["id"])["transitions"] if t["to_state"] == "resolved"
    ]
    assert [t["actor"] for t in resolved] == ["kamwatch"] and CHURN_NOTE in resolved[0]["reason"]
    for role in ("owner", "manager"):
        [*_, notice] = sinks.mails_to(f"{role}.acme@example.com")
        assert notice["Subject"] == "Churned: Acme GmbH left; its churn-risk alert is closed"
        assert CHURN_NOTE in notice.get_body(("plain",)).get_content()
        assert notice["In-Reply-To"]  # threaded under the alert's earlier e-mail
        [*_, slack] = sinks.slack_to(f"{role}-acme")
        assert CHURN_NOTE in json.dumps(slack) and "Acknowledge" not in json.dumps(slack)

    # Late and newer risk changes for the churned account: none of them opens an alert.
    late = risk_changed("acme", "red", 0.9, previous_band="amber", as_of=clock.now() - DAY)
    newer = risk_changed("acme", "red", 0.95, previous_band="green", as_of=clock.advance(DAY))
    produce(common_settings.kafka_bootstrap, common_settings.topics.risk, [("acme", late), ("acme", newer)])
    group = f"{common_settings.topics.risk}-alerts"
    wait_for(lambda: _consumed(common_settings, group, common_settings.topics.risk), what="all consumed")
    clock.advance(3 * DAY)
    _two_ticks(alerts)

    assert [a["state"] for a in _alerts(alerts, api_key, account="acme")] == ["resolved"]
    assert (len(sinks.mails()), len(sinks.slack())) == (4, 4)


def _risk(band: str, score: float, previous: str | None, at: datetime) -> RiskChange:
    return RiskChange(
        account_id="acme",
        score=score,
        band=band,  # type: ignore[arg-type]
        previous_band=previous,  # type: ignore[arg-type]
        model_version="m1",
        as_of=at,
        changes=[CHURN_NOTE] if band == "churned" else [],
    )


def _sent(db: sessionmaker[Session]) -> None:  # noqa: F811
    """Mark every queued delivery sent (these lifecycle tests have no sinks)."""
    from sqlalchemy import update

    from services.alerts.models import Delivery
    from shared.db import transaction

    with transaction(db) as session:
        session.execute(update(Delivery).where(Delivery.state == "pending").values(state="sent"))


def test_the_episode_alert_closes_with_one_notice_and_only_a_reactivation_reopens(
    db: sessionmaker[Session],  # noqa: F811
    lifecycle: Lifecycle,  # noqa: F811
) -> None:
    feed(db, lifecycle, _risk("amber", 0.5, "green", T0), T0)
    tick(db, lifecycle, T0 + timedelta(minutes=2))
    _sent(db)
    later = T0 + timedelta(hours=1)
    feed(db, lifecycle, _risk("red", 0.8, "amber", later), later)  # joins the sent amber alert
    tick(db, lifecycle, later + timedelta(minutes=2))
    _sent(db)
    [episode] = stored_alerts(db)
    assert episode.severity == "critical" and episode.inhibited_by is None

    churned_at = T0 + timedelta(days=1)
    for _ in range(2):  # redelivered
        feed(db, lifecycle, _risk("churned", 1.0, "red", churned_at), churned_at)

    assert [(a.state, a.band, a.next_escalation_at) for a in stored_alerts(db)] == [
        ("resolved", "churned", None)
    ]
    notices = [(d.alert_id, d.step, d.channel) for d in deliveries(db) if d.kind == "resolution"]
    assert sorted(notices) == [(episode.id, "churned", "email"), (episode.id, "churned", "slack")]

    # Late, newer and registry-driven changes: nothing opens; a renewal alone is no reactivation.
    feed(db, lifecycle, _risk("red", 0.9, "amber", churned_at - DAY), churned_at)
    feed(db, lifecycle, _risk("red", 0.9, "green", churned_at + DAY), churned_at + DAY)
    tick(db, lifecycle, churned_at + 5 * DAY)
    assert len(stored_alerts(db)) == 1 and len(deliveries(db)) == 6  # L1 x2 (amber), E x2 (red), churn x2

    # Reactivated (signals moved it out of band churned after a win-back): alerts work again.
    back = churned_at + 10 * DAY
    feed(db, lifecycle, _risk("red", 0.7, "churned", back), back)
    assert [a.state for a in stored_alerts(db)] == ["resolved", "open"]
