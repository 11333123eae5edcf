"""Acceptance: decline -> red with drivers in words; silence alone raises risk (real broker, both DBs)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from shared.clock import ManualClock
from shared.config import CommonSettings
from tests.helpers import NOW, read_topic, wait_for
from tests.signals.streams import DAY, daily_usage, decline, healthy_history

ACME = {
    "name": "Acme",
    "arr": "120000",
    "currency": "EUR",
    "tier": "strategic",
    "owner": {"name": "Kim KAM", "email": "kim@example.com"},
}


def _risk(client: TestClient, auth: dict[str, str], account: str) -> dict[str, Any] | None:
    response = client.get(f"/v1/accounts/{account}/risk", headers=auth)
    return response.json() if response.status_code == 200 else None


def _features(
    client: TestClient, auth: dict[str, str], account: str, **expected: float
) -> dict[str, float] | None:
    response = client.get(f"/v1/accounts/{account}/features", headers=auth)
    if response.status_code != 200:
        return None
    features: dict[str, float] = response.json()["features"]
    # .get: the sweep may score a registered account before its first events are applied (band
    # no_data, no features yet); that is "not yet", not a failure of the probe.
    return features if all(features.get(k) == v for k, v in expected.items()) else None


def test_decline_turns_green_account_red_with_drivers_in_words(
    signals: TestClient, auth: dict[str, str], send, clock: ManualClock, common_settings: CommonSettings
) -> None:
    assert signals.put("/v1/accounts/acme", json=ACME, headers=auth).status_code == 200
    send(healthy_history("acme", NOW))
    features = wait_for(
        lambda: _features(signals, auth, "acme", engaged_contacts=3.0), what="history applied"
    )
    assert features["usage_ratio_28d_vs_90d"] == 1.0 and features["max_days_overdue"] == 0.0
    green = _risk(signals, auth, "acme")
    assert green is not None and green["band"] == "green"

    later = NOW + 30 * DAY
    clock.set(later)  # the sweep may score the silence first; the decline events follow at once
    send(decline("acme", later))
    wait_for(
        lambda: _features(
            signals, auth, "acme", usage_28d_avg=500.0, key_contact_departed_90d=1.0, max_days_overdue=45.0
        ),
        what="decline applied",
    )
    red = _risk(signals, auth, "acme")

    assert red is not None and red["band"] == "red" and red["score"] > green["score"]
    texts = " | ".join(d["text"] for d in red["drivers"])
    assert "below its 90-day baseline" in texts
    assert "champion left 12 days ago" in texts
    assert "invoice 45 days overdue" in texts

    def both_published() -> list[dict] | None:  # the outbox relay may lag the scoring a little
        found = _published_history(signals, auth, "acme")
        return found if found and found[-1]["band"] == "green" and found[0]["band"] == "red" else None

    history = wait_for(both_published, what="the green and the red risk changes published")

    published = read_topic(common_settings.kafka_bootstrap, common_settings.topics.risk, len(history))
    bodies = [json.loads(r.value) for r in published]
    assert all(r.key == b"acme" for r in published)
    assert bodies[0]["data"]["band"] == "green"
    last = bodies[-1]
    assert (
        last["type"] == "risk.changed" and last["subject"] == "acme" and last["source"] == "kamwatch/signals"
    )
    assert last["data"]["band"] == "red" and last["data"]["score"] == red["score"]
    assert [d["text"] for d in last["data"]["drivers"]] == [d["text"] for d in red["drivers"]]
    assert last["data"]["features"]["key_contact_departed_90d"] == 1.0
    assert last["data"]["features"]["max_days_overdue"] == 45.0
    assert last["data"]["extra"]["tier"] == "strategic" and last["data"]["extra"]["revenue_at_risk"] > 0


def _published_history(client: TestClient, auth: dict[str, str], account: str) -> list[dict[str, Any]] | None:
    """The account's score changes, newest first, once every one that should be published is."""
    items: list[dict[str, Any]] = client.get(f"/v1/accounts/{account}/risk/history", headers=auth).json()[
        "items"
    ]
    return items if items and items[0]["published"] and all(i["published"] for i in items) else None


def test_silence_alone_raises_risk_through_the_sweep(
    signals: TestClient, auth: dict[str, str], send, clock: ManualClock
) -> None:
    assert signals.put("/v1/accounts/quiet", json={**ACME, "name": "Quiet"}, headers=auth).status_code == 200
    send(daily_usage("quiet", NOW - 120 * DAY, 121, 800.0))
    wait_for(lambda: _features(signals, auth, "quiet", usage_28d_avg=800.0), what="usage applied")
    before = _risk(signals, auth, "quiet")
    assert before is not None and before["band"] == "green"

    clock.advance(timedelta(days=21))  # no new event: only the clock moves
    after = wait_for(
        lambda: (r := _risk(signals, auth, "quiet")) and r["as_of"] != before["as_of"] and r, what="sweep"
    )

    assert after["score"] > before["score"]
    assert after["band"] != "green"
    texts = [d["text"] for d in after["drivers"]]
    assert "no product activity for 21 days" in texts
