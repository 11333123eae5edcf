"""The routes the console reads and writes: plan, timeline, contacts, portfolio board, whoami."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from shared.auth import create_key
from shared.db import transaction
from tests.helpers import NOW
from tests.signals.streams import full_story, healthy_history
from tests.signals.test_training import store_history

PLAN = {
    "objectives": [{"id": "o1", "title": "Roll out to Lyon", "owner": "Dana", "due": "2027-02-28"}],
    "opportunities": [
        {"id": "x1", "component": "geographic", "description": "Iberia", "estimated_arr": "80000"},
        {
            "id": "x2",
            "component": "volume",
            "description": "More seats",
            "estimated_arr": "5000",
            "stage": "lost",
        },
    ],
    "contacts": [{"contact_id": "champ", "name": "Ana Ruiz", "influence": "high", "relationship": "strong"}],
    "qbr_cadence_days": 90,
    "next_qbr": "2027-01-15",
}


def _register(api: TestClient, auth: dict[str, str], account: str, **extra: Any) -> None:
    body = {"name": account.title(), "arr": "300000", "currency": "EUR", "tier": "strategic", **extra}
    assert api.put(f"/v1/accounts/{account}", json=body, headers=auth).status_code == 200


def _key(db: sessionmaker[Session], *scopes: str) -> dict[str, str]:
    with transaction(db) as session:
        return {"Authorization": f"Bearer {create_key(session, 'reader', list(scopes))}"}


def test_the_plan_round_trips_and_refuses_lost_updates_and_bad_fields(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    _register(api, auth, "acme")
    empty = api.get("/v1/accounts/acme/plan", headers=auth).json()
    assert empty["version"] == 0 and empty["objectives"] == []

    saved = api.put(
        "/v1/accounts/acme/plan",
        json=PLAN,
        headers={**auth, "If-Match": "0", "X-Kamwatch-User": "dana@x.com"},
    )
    assert saved.status_code == 200, saved.text
    plan = api.get("/v1/accounts/acme/plan", headers=auth).json()
    assert plan["version"] == 1 and plan["updated_by"] == "dana@x.com"
    assert (
        plan["objectives"][0]["title"] == "Roll out to Lyon" and plan["objectives"][0]["status"] == "planned"
    )
    assert float(plan["open_pipeline_arr"]) == 80000  # the lost opportunity is not pipeline
    assert plan["contacts"][0]["influence"] == "high"

    stale = api.put("/v1/accounts/acme/plan", json=PLAN, headers={**auth, "If-Match": "0"})
    assert stale.status_code == 409 and "reload" in stale.json()["message"]
    bad = {**PLAN, "opportunities": [{**PLAN["opportunities"][0], "component": "galactic"}]}
    invalid = api.put("/v1/accounts/acme/plan", json=bad, headers=auth)
    assert invalid.status_code == 422
    assert invalid.json()["problems"][0]["field"] == "opportunities.0.component"
    assert api.put("/v1/accounts/nobody/plan", json=PLAN, headers=auth).status_code == 404

    reader = _key(db, "risk:read")
    assert api.get("/v1/accounts/acme/plan", headers=reader).status_code == 200
    assert api.put("/v1/accounts/acme/plan", json=PLAN, headers=reader).status_code == 403


def test_timeline_in_words_contacts_with_departures_and_the_board(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    _register(api, auth, "acme", segment="manufacturing", renewal_date="2026-12-31")
    _register(api, auth, "calm", segment="retail")
    store_history(db, full_story("acme", NOW) + healthy_history("calm", NOW))
    processor.tick()

    timeline = api.get("/v1/accounts/acme/timeline?notable=true&limit=200", headers=auth).json()["items"]
    texts = [item["text"] for item in timeline]
    assert "The champion champ left" in texts
    assert all(item["type"] != "usage.recorded" for item in timeline)
    assert timeline == sorted(timeline, key=lambda i: i["time"], reverse=True)

    contacts = {
        c["contact_id"]: c for c in api.get("/v1/accounts/acme/contacts", headers=auth).json()["items"]
    }
    assert contacts["champ"]["role"] == "champion" and contacts["champ"]["active"] is False
    assert contacts["sponsor"]["active"] is True

    board = api.get("/v1/portfolio/board", headers=auth).json()
    first = board["items"][0]
    assert first["account_id"] == "acme" and first["band"] == "red"
    assert first["segment"] == "manufacturing" and first["days_to_renewal"] == 60
    assert first["trend"] and first["trend"][-1] == first["score"]
    assert {t["band"] for t in board["totals"]} == {"red", "green"}
    retail = api.get("/v1/portfolio/board?segment=retail", headers=auth).json()
    assert [i["account_id"] for i in retail["items"]] == ["calm"]
    soon = api.get("/v1/portfolio/board?renewal_within_days=90", headers=auth).json()
    assert [i["account_id"] for i in soon["items"]] == ["acme"]

    me = api.get("/v1/auth/whoami", headers=_key(db, "risk:read")).json()
    assert me["scopes"] == ["risk:read"] and me["name"] == "reader"
    assert api.get("/v1/auth/whoami", headers={"Authorization": "Bearer kw_nope_x"}).status_code == 401


def test_the_board_ranks_in_the_reporting_currency_as_the_portfolio_and_drops_deleted_accounts(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    # Same story, same score: JPY 90 M (USD 571,500 at the shipped rate) ranks below EUR 1 M
    # (USD 1.035 M) although its own figure is 90 times larger; a deleted account leaves both.
    _register(api, auth, "euro", arr="1000000.00", currency="EUR")
    _register(api, auth, "yen", arr="90000000.00", currency="JPY")
    _register(api, auth, "gone", arr="5000000.00", currency="USD")
    store_history(db, full_story("euro", NOW) + full_story("yen", NOW) + full_story("gone", NOW))
    processor.tick()
    _register(api, auth, "gone", arr="5000000.00", currency="USD", deleted=True)
    board = api.get("/v1/portfolio/board", headers=auth).json()
    portfolio = api.get("/v1/portfolio", headers=auth).json()
    assert [i["account_id"] for i in board["items"]] == ["euro", "yen"] and board["total"] == 2
    assert [i["account_id"] for i in portfolio["items"]] == ["euro", "yen"]
    assert {t["currency"] for t in board["totals"]} == {"EUR", "JPY"}
