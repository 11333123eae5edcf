"""Lifecycle on both databases (no broker): grouping, inhibition, snooze, transitions, idempotence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository
from services.alerts.app import create_app
from services.alerts.config import AlertsSettings
from services.alerts.lifecycle import Lifecycle, account_values
from services.alerts.models import Alert, ChurnedAccount, Delivery
from services.alerts.models import RiskScore as RiskScoreRow
from services.alerts.policy import load_policy
from shared.auth import create_key
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.contracts import AccountRecord, RiskChange
from shared.db import make_engine, make_sessionmaker, transaction
from shared.errors import Conflict

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str) -> AlertsSettings:
    # The owner's webhook is 127.0.0.1:9 (nothing listens): trusted, so it fails as unreachable.
    common = CommonSettings(database_url=database_url, trusted_webhook_hosts=["127.0.0.1:9"])
    return AlertsSettings(common=common, grouping_window_s=120)


@pytest.fixture
def db(settings: AlertsSettings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.common.database_url)
    factory = make_sessionmaker(engine)
    person = {"name": "Olivia", "email": "o@example.com", "slack_webhook": "http://127.0.0.1:9/hooks/o"}
    record = AccountRecord(id="acme", name="Acme", arr=120000, tier="strategic", owner=person, manager=None)
    with transaction(factory) as session:
        repository.upsert_account(session, account_values(record, T0))
    yield factory
    engine.dispose()


@pytest.fixture
def lifecycle(settings: AlertsSettings) -> Lifecycle:
    return Lifecycle(settings, load_policy(settings.policy_file))


def risk(band: str, score: float, previous: str, at: datetime) -> RiskChange:
    return RiskChange(
        account_id="acme",
        score=score,
        band=band,  # type: ignore[arg-type]
        previous_band=previous,  # type: ignore[arg-type]
        model_version="m1",
        as_of=at,
    )


def feed(db: sessionmaker[Session], lc: Lifecycle, change: RiskChange, now: datetime) -> None:
    with transaction(db) as session:
        lc.on_risk(session, change, now)


def tick(db: sessionmaker[Session], lc: Lifecycle, now: datetime) -> None:
    with transaction(db) as session:
        for alert in repository.due_alerts(session, now):
            lc.advance(session, alert, now)


def alerts(db: sessionmaker[Session]) -> list[Alert]:
    with transaction(db) as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def deliveries(db: sessionmaker[Session]) -> list[Delivery]:
    with transaction(db) as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_signals_within_the_grouping_window_go_out_as_one_message(db, lifecycle: Lifecycle) -> None:
    feed(db, lifecycle, risk("amber", 0.5, "green", T0), T0)
    feed(db, lifecycle, risk("red", 0.8, "amber", T0 + timedelta(seconds=30)), T0 + timedelta(seconds=30))
    tick(db, lifecycle, T0 + timedelta(seconds=60))
    assert deliveries(db) == []  # the window (2 min) is still open
    tick(db, lifecycle, T0 + timedelta(minutes=2))
    tick(db, lifecycle, T0 + timedelta(minutes=3))  # a second tick decides nothing new

    [alert] = alerts(db)
    # amber muted by red; the 30-point rise joins the same wave
    assert [t["trigger"] for t in json.loads(alert.triggers)] == ["band_red", "score_rise"]
    assert alert.severity == "critical" and alert.level == 1
    assert sorted(d.channel for d in deliveries(db)) == ["email", "slack"]


def test_red_after_a_sent_amber_joins_the_same_alert_and_escalates_at_once(db, lifecycle: Lifecycle) -> None:
    """One alert per account episode: the red that follows a sent amber is not a second alert; the
    severity rises, so the next step goes out at once (the owner again: there is no manager)."""
    feed(db, lifecycle, risk("amber", 0.5, "green", T0), T0)
    tick(db, lifecycle, T0 + timedelta(minutes=2))
    later = T0 + timedelta(hours=1)
    feed(db, lifecycle, risk("red", 0.8, "amber", later), later)
    [alert] = alerts(db)
    assert (alert.severity, alert.pending, alert.next_escalation_at) == ("critical", "escalate", later)
    assert [t["trigger"] for t in json.loads(alert.triggers)] == ["band_red", "score_rise"]  # amber muted
    tick(db, lifecycle, later)
    steps = [d.step for d in deliveries(db)]
    assert steps[:2] == ["L1", "L1"] and len(steps) == 4 and all(s.startswith("E") for s in steps[2:])
    [alert] = alerts(db)
    assert alert.pending is None and alert.level == 1

    # A new warning-level trigger in the episode: one update per grouping window, same alert.
    features = {"urgent_tickets_opened_14d": 4.0}
    for minute in (0, 1):
        at = later + timedelta(hours=2, minutes=minute)
        change = risk("red", 0.82, "red", at).model_copy(update={"features": features})
        feed(db, lifecycle, change, at)
    [alert] = alerts(db)
    assert alert.pending == "update" and alert.next_escalation_at == later + timedelta(hours=2, minutes=2)
    tick(db, lifecycle, later + timedelta(hours=2, minutes=3))
    updates = [d for d in deliveries(db) if d.kind == "update"]
    assert len(updates) == 2 and {d.step for d in updates} == {updates[0].step}  # e-mail + Slack, once

    # Snoozed, the alert keeps its snooze: the update of a new trigger waits for its end.
    snoozed_until = later + timedelta(hours=8)
    with transaction(db) as session:
        found = repository.lock_alert(session, alert.id)
        assert found is not None
        lifecycle.snooze(session, found, snoozed_until, "olivia", later + timedelta(hours=3), "busy")
    at = later + timedelta(hours=4)
    change = risk("red", 0.83, "red", at).model_copy(update={"features": {"max_days_overdue": 75.0}})
    feed(db, lifecycle, change, at)
    [alert] = alerts(db)
    assert (alert.state, alert.pending, alert.next_escalation_at) == ("snoozed", "update", snoozed_until)


def test_snooze_pauses_then_reminds_and_every_transition_is_stored(db, lifecycle: Lifecycle) -> None:
    feed(db, lifecycle, risk("red", 0.8, "green", T0), T0)
    tick(db, lifecycle, T0 + timedelta(minutes=2))
    [alert] = alerts(db)
    snoozed_at = T0 + timedelta(minutes=5)
    with transaction(db) as session:
        row = repository.lock_alert(session, alert.id)
        assert row is not None
        lifecycle.snooze(session, row, snoozed_at + timedelta(hours=4), "Olivia", snoozed_at, "in a meeting")
    tick(db, lifecycle, snoozed_at + timedelta(hours=3))
    assert len(deliveries(db)) == 2
    tick(db, lifecycle, snoozed_at + timedelta(hours=4))
    assert sorted(d.step for d in deliveries(db)) == ["L1", "L1", "L1.r1", "L1.r1"]

    with transaction(db) as session:
        row = repository.lock_alert(session, alert.id)
        assert row is not None
        lifecycle.acknowledge(session, row, "Olivia", snoozed_at + timedelta(hours=5), "calling them")
        lifecycle.resolve(session, row, "Olivia", snoozed_at + timedelta(hours=6), "renewal signed")
        with pytest.raises(Conflict):
            lifecycle.snooze(
                session, row, snoozed_at + timedelta(days=1), "x", snoozed_at + timedelta(hours=6), "y"
            )
        history = [(t.from_state, t.to_state, t.actor) for t in repository.transitions(session, alert.id)]
    assert (None, "open", "kamwatch") in history
    assert ("open", "snoozed", "Olivia") in history and ("snoozed", "open", "kamwatch") in history
    assert history[-2:] == [("open", "acknowledged", "Olivia"), ("acknowledged", "resolved", "Olivia")]


def test_api_needs_a_key_with_alerts_write_and_reports_unknown_alerts(settings: AlertsSettings, db) -> None:
    app = create_app(settings, clock=ManualClock(T0), with_consumer=False)
    with transaction(db) as session:
        reader = create_key(session, "reader", ["risk:read"])
        writer = create_key(session, "writer", ["alerts:write", "risk:read"])
    with TestClient(app) as client:
        assert client.get("/v1/alerts").status_code == 401
        assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {reader}"}).json()["alerts"] == []
        denied = client.post("/v1/alerts/1/ack", headers={"Authorization": f"Bearer {reader}"})
        assert denied.status_code == 403 and "alerts:write" in denied.json()["message"]
        missing = client.post("/v1/alerts/99/ack", headers={"Authorization": f"Bearer {writer}"})
        assert missing.status_code == 404
        bad_link = client.post("/v1/alert-links/abc.def")
        assert bad_link.status_code == 400 and "not valid" in bad_link.text


def test_a_permanent_failure_is_recorded_and_counted_not_silent(settings: AlertsSettings, db) -> None:
    from kamwatch.dev.broker import free_port
    from services.alerts import metrics
    from services.alerts.delivery import DeliveryWorker

    closed = free_port()  # nothing listens here
    settings = settings.model_copy(update={"max_attempts": 1, "smtp_port": closed, "slack_min_interval_s": 0})
    lc = Lifecycle(settings, load_policy(settings.policy_file))
    feed(db, lc, risk("red", 0.8, "green", T0), T0)
    tick(db, lc, T0 + timedelta(minutes=2))
    worker = DeliveryWorker(settings, db, ManualClock(T0 + timedelta(minutes=2)))
    worker.run()
    worker.refresh_gauges()

    rows = deliveries(db)
    assert [d.state for d in rows] == ["failed", "failed"]
    assert all(d.last_error and "unreachable" in d.last_error for d in rows)
    assert metrics.FAILED_DELIVERIES._value.get() == 2


def queued_red_alert(settings: AlertsSettings, db) -> tuple[AlertsSettings, Lifecycle, datetime]:
    """A red alert opened with its first messages queued; SMTP unreachable, one Slack message an
    hour per webhook. Returns the settings, the lifecycle and the time after the grouping window."""
    from kamwatch.dev.broker import free_port

    settings = settings.model_copy(update={"smtp_port": free_port(), "slack_min_interval_s": 3600})
    lc = Lifecycle(settings, load_policy(settings.policy_file))
    feed(db, lc, risk("red", 0.8, "green", T0), T0)
    tick(db, lc, T0 + timedelta(minutes=2))
    return settings, lc, T0 + timedelta(minutes=2)


def test_at_most_one_message_per_second_per_webhook(settings: AlertsSettings, db) -> None:
    from services.alerts.delivery import DeliveryWorker

    settings, lc, now = queued_red_alert(settings, db)
    with transaction(db) as session:
        alert = repository.lock_alert(session, alerts(db)[0].id)
        assert alert is not None
        alert.level_since = alert.last_notified_at = alert.next_escalation_at = T0  # force a repeat now
        lc.advance(session, alert, now)
    DeliveryWorker(settings, db, ManualClock(now)).run()

    slack = [d for d in deliveries(db) if d.channel == "slack"]
    assert [d.step for d in slack] == ["L1", "L1.r1"]  # same owner webhook
    assert [d.attempts for d in slack] == [1, 0]  # the second waits for the webhook's next slot


def test_a_busy_webhook_does_not_hold_up_the_messages_queued_behind_it(settings: AlertsSettings, db) -> None:
    """Older messages to one Slack webhook fill the batch: its first goes, the rest wait for the
    webhook's next slot, and the e-mail behind them is still sent in the same run."""
    from services.alerts.delivery import DeliveryWorker

    settings, _lc, now = queued_red_alert(settings, db)
    with transaction(db) as session:
        [slack] = [d for d in session.scalars(select(Delivery)) if d.channel == "slack"]
        backlog(session, slack, slack.alert_id, 5)  # due before the alert's own messages
    DeliveryWorker(settings, db, ManualClock(now)).run(limit=3)

    rows = deliveries(db)
    assert sum(d.attempts for d in rows if d.channel == "slack") == 1  # one slot of that webhook
    assert [d.attempts for d in rows if d.channel == "email"] == [1]  # not stuck behind the backlog


def test_a_critical_alert_takes_the_webhooks_next_slot_before_older_warnings(
    settings: AlertsSettings, db
) -> None:
    from services.alerts.delivery import DeliveryWorker

    settings, _lc, now = queued_red_alert(settings, db)
    with transaction(db) as session:
        [red] = session.scalars(select(Alert)).all()
        assert red.severity == "critical"
        columns = {c.key: getattr(red, c.key) for c in Alert.__table__.columns if c.key != "id"}
        warning = Alert(**{**columns, "account_id": "beta", "severity": "warning", "band": "amber"})
        session.add(warning)
        session.flush()
        [slack] = [d for d in session.scalars(select(Delivery)) if d.channel == "slack"]
        backlog(session, slack, warning.id, 3)  # warnings queued on the same webhook, due earlier
    DeliveryWorker(settings, db, ManualClock(now)).run()

    sent = [d for d in deliveries(db) if d.channel == "slack" and d.attempts]
    assert [(d.alert_id, d.step) for d in sent] == [(red.id, "L1")]  # its one slot: the critical alert


def backlog(session: Session, like: Delivery, alert_id: int, count: int) -> None:
    """`count` pending Slack messages like `like` for `alert_id`, due at T0 (before it)."""
    from services.alerts.states import DeliveryState

    for n in range(count):
        session.add(
            Delivery(
                alert_id=alert_id,
                step=f"B{n}",
                level=like.level,
                kind=like.kind,
                channel="slack",
                recipient=like.recipient,
                recipient_name=like.recipient_name,
                role=like.role,
                payload=like.payload,
                state=DeliveryState.pending,
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )


def test_api_snooze_ack_resolve_and_filters(settings: AlertsSettings, db, lifecycle: Lifecycle) -> None:
    feed(db, lifecycle, risk("red", 0.8, "green", T0), T0)
    tick(db, lifecycle, T0 + timedelta(minutes=2))
    [alert] = alerts(db)
    app = create_app(settings, clock=ManualClock(T0 + timedelta(minutes=3)), with_consumer=False)
    with transaction(db) as session:
        auth = {"Authorization": f"Bearer {create_key(session, 'kam', ['alerts:write', 'risk:read'])}"}
    with TestClient(app) as client:
        url = f"/v1/alerts/{alert.id}"
        assert client.post(url + "/snooze", json={}, headers=auth).status_code == 422
        snoozed = client.post(url + "/snooze", json={"duration": "4h", "by": "olivia"}, headers=auth).json()
        assert snoozed["state"] == "snoozed" and snoozed["snoozed_until"].startswith("2026-11-01T16:03")
        assert client.post(url + "/ack", json={"by": "olivia", "reason": "on it"}, headers=auth).json()[
            "state"
        ] == ("acknowledged")
        resolved = client.post(url + "/resolve", json={"by": "olivia"}, headers=auth).json()
        assert client.post(url + "/ack", headers=auth).status_code == 409
        listed = client.get(
            "/v1/alerts", params={"state": "resolved", "owner": "o@example.com"}, headers=auth
        )
        assert [a["id"] for a in listed.json()["alerts"]] == [alert.id]
        assert client.get("/v1/alerts", params={"account": "other"}, headers=auth).json()["alerts"] == []
    assert [t["to_state"] for t in resolved["transitions"] if t["from_state"] != t["to_state"]] == [
        "open",
        "snoozed",
        "acknowledged",
        "resolved",
    ]
    assert {d["step"] for d in resolved["deliveries"]} == {"L1"}  # nothing was sent, so no notice


def test_a_redelivered_risk_change_does_not_reopen_a_resolved_alert(db, lifecycle: Lifecycle) -> None:
    red, green = risk("red", 0.8, "green", T0), risk("green", 0.2, "red", T0 + timedelta(hours=1))
    for change in (red, green, red, green):  # the batch replayed after a crash
        feed(db, lifecycle, change, T0 + timedelta(hours=2))
    assert [a.state for a in alerts(db)] == ["resolved"]
    feed(db, lifecycle, risk("red", 0.85, "green", T0 + timedelta(hours=3)), T0 + timedelta(hours=3))
    assert [a.state for a in alerts(db)] == ["resolved", "open"]  # a new trigger opens a new alert


def test_each_alerts_replica_escalates_only_the_accounts_on_its_partitions(
    db: sessionmaker[Session], lifecycle: Lifecycle
) -> None:
    """Two members of the alerts group: due alerts are split by the partition of their account
    (as kamwatch.risk is), so none is escalated by both and none is left out."""
    from shared.kafka import Ownership, partition_of

    accounts = [f"acct-{i:02d}" for i in range(12)]
    with transaction(db) as session:
        for account in accounts:
            record = AccountRecord(
                id=account, name=account, arr=1000, tier="strategic", owner=None, manager=None
            )
            repository.upsert_account(session, account_values(record, T0))
    for account in accounts:
        feed(db, lifecycle, risk("red", 0.8, "green", T0).model_copy(update={"account_id": account}), T0)
    first, rest = Ownership(frozenset({0}), 3), Ownership(frozenset({1, 2}), 3)
    due_at = T0 + timedelta(minutes=5)
    with transaction(db) as session:
        mine = {a.account_id for a in repository.due_alerts(session, due_at, owns=first.owns)}
        theirs = {a.account_id for a in repository.due_alerts(session, due_at, owns=rest.owns)}
        every = {a.account_id for a in repository.due_alerts(session, due_at)}
    assert mine == {a for a in accounts if partition_of(a, 3) == 0} and mine
    assert theirs == every - mine and mine | theirs == set(accounts)
    with transaction(db) as session:
        assert repository.due_alerts(session, due_at, owns=Ownership(frozenset(), 3).owns) == []


def _story(account_id: str) -> list[RiskChange]:
    """Amber, the same change redelivered, a rise to red, back to green (resolves), red again,
    churned, then a change after the churn (ignored): every branch a change can take."""
    bands = [
        ("amber", 0.45, "green", 0.2),
        ("amber", 0.45, "green", 0.2),  # redelivered (same as-of time below)
        ("red", 0.8, "amber", 0.45),
        ("green", 0.1, "red", 0.8),
        ("red", 0.85, "green", 0.1),
        ("churned", 1.0, "red", 0.85),
        ("amber", 0.5, "churned", 1.0),
    ]
    times = [T0, T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    times += [T0 + timedelta(hours=3), T0 + timedelta(hours=4), T0 + timedelta(hours=3, minutes=30)]
    return [
        risk(band, score, previous, at).model_copy(
            update={"account_id": account_id, "previous_score": previous_score}
        )
        for (band, score, previous, previous_score), at in zip(bands, times, strict=True)
    ]


def test_a_batch_of_changes_ends_as_the_same_changes_one_by_one(db, lifecycle: Lifecycle) -> None:
    """on_risks reads the batch's scores, churn records and active alerts once: what it leaves in
    the tables is what the changes leave when each is its own batch (redelivery inside the
    batch, score-rise baseline from an earlier change of the batch, churn, resolve)."""
    person = {"name": "Olivia", "email": "o@example.com", "slack_webhook": "http://127.0.0.1:9/hooks/o"}
    with transaction(db) as session:
        for account_id in ("one-by-one", "batched"):
            record = AccountRecord(id=account_id, name=account_id, arr=1, tier="strategic", owner=person)
            repository.upsert_account(session, account_values(record, T0))
    for change in _story("one-by-one"):
        feed(db, lifecycle, change, T0)
    with transaction(db) as session:
        lifecycle.on_risks(session, _story("batched"), T0)

    def outcome(account_id: str) -> tuple[object, ...]:
        with transaction(db) as session:
            found = session.scalars(select(Alert).where(Alert.account_id == account_id).order_by(Alert.id))
            kept = [(a.state, a.severity, a.score, a.band, a.triggers, a.level) for a in found]
            scores = session.execute(
                select(RiskScoreRow.as_of, RiskScoreRow.score)
                .where(RiskScoreRow.account_id == account_id)
                .order_by(RiskScoreRow.as_of)
            ).all()
            churn = session.get(ChurnedAccount, account_id)
            return kept, [tuple(s) for s in scores], churn is not None

    alone, batched = outcome("one-by-one"), outcome("batched")
    assert batched == alone
    kept, scores, churned = batched
    assert churned and len(scores) == 6  # the redelivery recorded nothing
    assert {state for state, *_ in kept} == {"resolved"} and len(kept) >= 2
