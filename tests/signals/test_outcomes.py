"""Outcomes close the loop: account.churned -> band churned (out of the portfolio, no longer scored);
account.renewed -> the registry's renewal date moves forward by the term, once. Both databases."""

from __future__ import annotations

import json
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.models import RiskHistory, RiskScore
from services.signals.outcomes import add_months, next_renewal
from shared.clock import ManualClock
from shared.events import to_json
from shared.kafka import OutMessage
from tests.helpers import NOW
from tests.signals.streams import daily_usage, event, full_story, healthy_history
from tests.signals.test_training import store_history

DAY = timedelta(days=1)


def _records(*events: Any) -> list[Any]:
    """Consumer records as the batch loop hands them to the processor."""
    return [
        SimpleNamespace(
            topic="events",
            partition=0,
            offset=i,
            key=e.subject.encode(),
            value=to_json(e).encode(),
            headers=[],
            timestamp=0,
        )
        for i, e in enumerate(events)
    ]


def _handle(processor: Any, *events: Any) -> list[OutMessage]:
    """One consumer batch; what it decided to produce counts as acknowledged by the broker."""
    out: list[OutMessage] = processor.handle(_records(*events))
    processor.published(out)
    return out


def _register(api: TestClient, auth: dict[str, str], account: str, **fields: Any) -> dict[str, Any]:
    body = {"name": account.title(), "arr": "100000", "currency": "EUR", "tier": "strategic", **fields}
    response = api.put(f"/v1/accounts/{account}", json=body, headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _data(message: OutMessage) -> dict[str, Any]:
    return dict(json.loads(message.value or b"{}")["data"])


def _risk_changes(out: list[OutMessage]) -> list[dict[str, Any]]:
    return [_data(m) for m in out if m.ref and m.ref[0] == "risk"]


def _history(db: sessionmaker[Session], account: str) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).where(RiskHistory.account_id == account)) or 0)


def _ids(api: TestClient, auth: dict[str, str], **params: str) -> list[tuple[str, str]]:
    response = api.get("/v1/portfolio", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [(i["account_id"], i["band"]) for i in response.json()["items"]]


def churned(account: str, days_ago: float = 0, id: str = "churn-1", reason: str = "budget cuts") -> Any:
    data = {"reason": reason, "arr": "100000.00", "currency": "EUR"}
    return event("account.churned", account, NOW - days_ago * DAY, data, id=f"{account}-{id}", source="crm")


def renewed(account: str, days_ago: float = 0, id: str = "renew-1") -> Any:
    data = {"arr": "100000.00", "currency": "EUR"}
    return event("account.renewed", account, NOW - days_ago * DAY, data, id=f"{account}-{id}", source="crm")


def test_a_churned_account_leaves_the_portfolio_and_is_no_longer_scored_or_swept(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any, clock: ManualClock
) -> None:
    _register(api, auth, "acme", owner={"name": "Kim", "email": "kim@example.com"})
    _register(api, auth, "globex")
    store_history(db, full_story("acme", NOW) + healthy_history("globex", NOW))
    processor.published(processor.tick())  # the sweep scores both; the relay sends the changes
    assert sorted(_ids(api, auth)) == [("acme", "red"), ("globex", "green")]

    [change] = _risk_changes(_handle(processor, churned("acme")))

    assert change["band"] == "churned" and change["previous_band"] == "red" and change["score"] == 1.0
    assert change["changes"] == ["account churned on 2026-11-01: budget cuts"]
    assert change["extra"]["revenue_at_risk"] == 0.0
    assert _ids(api, auth) == [("globex", "green")]
    assert api.get("/v1/portfolio", headers=auth).json()["total"] == 1
    assert sorted(_ids(api, auth, include="churned")) == [("acme", "churned"), ("globex", "green")]
    assert _ids(api, auth, band="churned") == [("acme", "churned")]
    risk = api.get("/v1/accounts/acme/risk", headers=auth).json()
    assert risk["band"] == "churned" and risk["revenue_at_risk"] == 0.0 and risk["drivers"] == []
    assert "churned" in risk["changes"][0]
    history = _history(db, "acme")

    # Redelivered churn, later usage and a second churn report: nothing is scored or published.
    late_usage = daily_usage("acme", NOW - DAY, 1, 5.0, source="late")
    again = churned("acme", id="churn-2", reason="a second report")
    assert _risk_changes(_handle(processor, churned("acme"), *late_usage, again)) == []
    assert _history(db, "acme") == history

    # Days later the sweep re-scores globex, never acme; a registry change only refreshes its row.
    clock.advance(2 * DAY)
    _register(api, auth, "acme", name="Acme (former customer)")
    processor.tick()
    with db() as session:
        acme, globex = session.get(RiskScore, "acme"), session.get(RiskScore, "globex")
        assert acme is not None and globex is not None
        assert acme.band == "churned" and acme.as_of == NOW and acme.name == "Acme (former customer)"
        assert globex.as_of == NOW + 2 * DAY
    assert _history(db, "acme") == history
    with db() as session:  # a new day, another model: still not due
        day = NOW + 3 * DAY
        assert repository.due_for_sweep(session, day, "another-model", 100) == ["globex"]

    # A renewal dated *before* the churn (late delivery) does not bring it back ...
    assert _risk_changes(_handle(processor, renewed("acme", days_ago=30))) == []
    assert _ids(api, auth, band="churned") == [("acme", "churned")]
    # ... one dated after it (a win-back) does: it is scored again, out of band churned.
    [back] = _risk_changes(_handle(processor, renewed("acme", days_ago=-1, id="win-back")))
    assert back["previous_band"] == "churned" and back["band"] in ("green", "amber", "red")
    assert "acme" in {a for a, _ in _ids(api, auth)}


def test_a_churn_of_an_account_never_scored_before_is_stored_as_churned(
    api: TestClient, auth: dict[str, str], processor: Any
) -> None:
    [change] = _risk_changes(_handle(processor, churned("newco")))

    assert change["band"] == "churned" and change["previous_band"] is None
    assert _ids(api, auth) == [] and _ids(api, auth, include="churned") == [("newco", "churned")]


def test_renewed_moves_the_renewal_date_forward_by_the_term_once(
    api: TestClient, auth: dict[str, str], processor: Any, clock: ManualClock
) -> None:
    _register(api, auth, "quarterly", renewal_date="2026-11-15", billing_period="quarterly")
    _register(api, auth, "yearly", renewal_date="2026-11-03")  # no term: 12 months
    _register(api, auth, "undated", term_months=6)
    _register(api, auth, "done-by-hand", renewal_date="2027-10-20")  # already the next renewal

    out = processor.handle(
        _records(*(renewed(a, days_ago=1) for a in ("quarterly", "yearly", "undated", "done-by-hand")))
    )

    def renewal(account: str) -> Any:
        return api.get(f"/v1/accounts/{account}", headers=auth).json()["renewal_date"]

    expected = {
        "quarterly": "2027-02-15",
        "yearly": "2027-11-03",
        "undated": "2027-04-30",  # the event's date (31 Oct) + 6 months, clamped to the month's end
        "done-by-hand": "2027-10-20",
    }
    assert {a: renewal(a) for a in expected} == expected
    published = {_data(m)["id"]: _data(m) for m in out if m.ref and m.ref[0] == "account"}
    assert {a: r["renewal_date"] for a, r in published.items()} == {
        a: d for a, d in expected.items() if a != "done-by-hand"
    }
    assert published["quarterly"]["term_months"] == 3
    assert all(
        json.loads(m.value or b"{}")["type"] == "account.upserted" for m in out if m.ref[0] == "account"
    )
    processor.published(out)

    # The same event again (redelivery) moves nothing and publishes nothing.
    again = _handle(processor, renewed("quarterly", days_ago=1))
    assert renewal("quarterly") == "2027-02-15" and [m for m in again if m.ref[0] == "account"] == []
    # A second renewal in the same term moves nothing; the next quarter's renewal moves it again.
    _handle(processor, renewed("quarterly", days_ago=0, id="renew-2"))
    assert renewal("quarterly") == "2027-02-15"
    clock.advance(107 * DAY)
    _handle(processor, renewed("quarterly", days_ago=-106, id="renew-3"))
    assert renewal("quarterly") == "2027-05-15"
    processor.published(processor.tick())
    assert [m for m in processor.tick() if m.ref[0] == "account"] == []  # the outbox is empty


def test_next_renewal_rules() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert next_renewal(date(2026, 12, 1), date(2026, 11, 20), 1) == date(2027, 1, 1)
    assert next_renewal(None, date(2026, 11, 20), None) == date(2027, 11, 20)
    assert next_renewal(date(2026, 5, 1), date(2026, 11, 20), 12) == date(2027, 5, 1)  # late: from the date
    assert next_renewal(date(2027, 11, 20), date(2026, 11, 20), 12) is None  # already moved
    assert next_renewal(date(2027, 2, 1), date(2026, 11, 20), 1) is None


def test_term_months_through_put_get_and_the_csv_import_with_billing_period_as_another_spelling(
    api: TestClient, auth: dict[str, str]
) -> None:
    assert _register(api, auth, "monthly", billing_period="monthly")["term_months"] == 1
    assert _register(api, auth, "plain")["term_months"] is None  # absent: 12 months (documented)
    assert api.get("/v1/accounts/monthly", headers=auth).json()["term_months"] == 1
    bad = {"name": "X", "arr": "1", "term_months": 0, "billing_period": "weekly"}
    response = api.put("/v1/accounts/bad", json=bad, headers=auth)
    assert response.status_code == 422
    fields = {p["field"]: p["message"] for p in response.json()["problems"]}
    assert "monthly, quarterly, annual" in fields["billing_period"] and "term_months" in fields
    clash = {"name": "X", "arr": "1", "term_months": 6, "billing_period": "annual"}
    assert "give one of them" in api.put("/v1/accounts/bad", json=clash, headers=auth).text

    csv = "id,name,arr,term_months,billing_period\nq,Q,1,,quarterly\nt,T,1,24,\nx,X,1,121,\n"
    checked = api.post("/v1/accounts:import?dry_run=true", content=csv, headers=auth).json()
    assert [(p["row"], p["field"]) for p in checked["problems"]] == [(4, "term_months")]
    imported = api.post("/v1/accounts:import", content=csv.replace("121", "120"), headers=auth)
    assert imported.status_code == 200, imported.text
    terms = {a: api.get(f"/v1/accounts/{a}", headers=auth).json()["term_months"] for a in "qtx"}
    assert terms == {"q": 3, "t": 24, "x": 120}
