"""The weekly risk trend: as-of scores by the live scoring code over the stored history; its last
point equals the live score; churn ends it. Both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW
from tests.signals.streams import daily_usage, event, full_story
from tests.signals.test_training import store_history

DAY = timedelta(days=1)


def register(api: TestClient, auth: dict[str, str], account: str) -> None:
    body = {"name": account.title(), "arr": "100000", "currency": "EUR", "tier": "strategic"}
    assert api.put(f"/v1/accounts/{account}", json=body, headers=auth).status_code == 200


def trend(api: TestClient, auth: dict[str, str], account: str, weeks: int) -> list[dict[str, Any]]:
    response = api.get(f"/v1/accounts/{account}/risk/trend", params={"weeks": weeks}, headers=auth)
    assert response.status_code == 200, response.text
    return list(response.json()["points"])


def test_weekly_trend_turns_red_the_week_after_the_champion_left_and_ends_in_churn(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    # full_story: 120 healthy days up to NOW - 30 d, then usage halves, an invoice goes overdue and
    # the champion leaves at NOW - 12 d (2026-10-20). Weekly points are NOW - 7 k (Sundays 12:00).
    register(api, auth, "acme")
    register(api, auth, "newco")
    store_history(db, full_story("acme", NOW) + daily_usage("newco", NOW - 19 * DAY, 20, 100.0))
    processor.published(processor.tick())  # the live scores as of NOW

    points = trend(api, auth, "acme", 20)
    assert len(points) == 20  # the history starts 150 days back: every week has a point
    assert points[-1]["as_of"] == NOW.isoformat() and points[0]["as_of"] == (NOW - 19 * 7 * DAY).isoformat()
    healthy = [p for p in points if p["as_of"] <= (NOW - 30 * DAY).isoformat()]
    assert len(healthy) == 15 and {p["band"] for p in healthy} == {"green"}
    # the first red week is the first point after the champion left: 2026-10-25 (NOW - 7 d)
    first_red = next(p for p in points if p["band"] == "red")
    assert first_red["as_of"] == (NOW - 7 * DAY).isoformat()
    assert first_red["drivers"][0] == "champion left 5 days ago"
    # the last point is what the live engine scored as of NOW: same score, band and drivers
    live = api.get("/v1/accounts/acme/risk", headers=auth).json()
    assert (points[-1]["score"], points[-1]["band"]) == (live["score"], live["band"])
    assert points[-1]["drivers"] == [d["text"] for d in live["drivers"][:3]]

    assert len(trend(api, auth, "acme", 16)) == 16
    assert len(trend(api, auth, "newco", 16)) == 3  # 20 days of events: NOW, NOW - 7 d, NOW - 14 d

    # A churn reported 3 days ago (a late event: nothing is cached) ends the trend in band churned.
    churn = {"reason": "budget cuts", "currency": "EUR"}
    store_history(db, [event("account.churned", "acme", NOW - 3 * DAY, churn, id="acme-churn", source="crm")])
    after = trend(api, auth, "acme", 2)
    assert [(p["band"], p["score"]) for p in after] == [("red", first_red["score"]), ("churned", 1.0)]

    response = api.get("/v1/accounts/nobody/risk/trend", headers=auth)
    assert response.status_code == 404 and "unknown" in response.text
    assert api.get("/v1/accounts/acme/risk/trend", params={"weeks": 0}, headers=auth).status_code == 422
