"""The console's pure parts: relationship map, totals, alert grouping, sessions, charts."""

from __future__ import annotations

from datetime import timedelta

from services.console import charts, views
from services.console.sessions import SessionStore
from services.console.web import safe_path
from tests.helpers import NOW


def _contact(contact_id: str, role: str, active: bool, days_ago: int, change: str = "joined") -> dict:
    since = (NOW - timedelta(days=days_ago)).isoformat()
    return {"contact_id": contact_id, "role": role, "active": active, "last_change": change, "since": since}


def test_relationship_map_flags_departures_gaps_and_single_threading() -> None:
    contacts = [
        _contact("ana", "champion", False, 12, "left"),
        _contact("ira", "executive_sponsor", True, 200),
        _contact("new", "user", True, 5),
    ]
    notes = [{"contact_id": "ira", "name": "Ira Novak", "influence": "high", "relationship": "strong"}]
    relmap = views.relationship_map(contacts, notes, NOW)
    assert relmap["gaps"] == ["Champion", "Technical evaluator"]
    assert [c["contact_id"] for c in relmap["departed_recently"]] == ["ana"]
    assert [c["contact_id"] for c in relmap["arrived_recently"]] == ["new"]
    assert relmap["single_threaded"] is False and relmap["active"] == 2
    sponsor = next(r for r in relmap["roles"] if r["role"] == "executive_sponsor")["contacts"][0]
    assert sponsor["name"] == "Ira Novak" and sponsor["influence"] == "high"
    alone = views.relationship_map([_contact("ira", "executive_sponsor", True, 200)], [], NOW)
    assert alone["single_threaded"] is True


def test_totals_per_band_never_add_currencies_and_alerts_group_by_worst() -> None:
    totals = [
        {"band": "red", "currency": "EUR", "accounts": 2, "arr": 100.0, "revenue_at_risk": 80.0},
        {"band": "red", "currency": "USD", "accounts": 1, "arr": 50.0, "revenue_at_risk": 40.0},
    ]
    rows = views.band_totals(totals)
    assert [r["band"] for r in rows] == ["red", "amber", "green"]
    assert rows[0]["accounts"] == 3 and rows[0]["money"] == [("EUR", 100.0, 80.0), ("USD", 50.0, 40.0)]
    alerts = [
        {"account_id": "a", "severity": "warning", "level": 1, "opened_at": "2026-11-01T10:00:00+00:00"},
        {"account_id": "b", "severity": "critical", "level": 2, "opened_at": "2026-11-01T11:00:00+00:00"},
        {"account_id": "a", "severity": "critical", "level": 1, "opened_at": "2026-11-01T09:00:00+00:00"},
    ]
    groups = views.group_alerts(alerts)
    assert [g["account_id"] for g in groups] == ["b", "a"]  # critical at level 2 first
    assert [a["severity"] for a in groups[1]["alerts"]] == ["critical", "warning"]


def test_sessions_refuse_forged_and_expired_cookies() -> None:
    store = SessionStore("secret-one", timedelta(hours=1), max_sessions=2)
    session = store.create("kw_x_y", {"key_id": "x", "name": "n", "scopes": ["risk:read"]}, None, NOW)
    cookie = store.cookie_value(session)
    assert store.find(cookie, NOW) is session and session.can("risk:read") and not session.can("alerts:write")
    assert store.find(session.sid + ".forged", NOW) is None
    assert SessionStore("secret-two", timedelta(hours=1), 2).find(cookie, NOW) is None
    assert store.find(cookie, NOW + timedelta(hours=2)) is None
    first = store.create("k1", {}, None, NOW)
    store.create("k2", {}, None, NOW)
    store.create("k3", {}, None, NOW)
    assert store.get(first.sid, NOW) is None  # the oldest is evicted beyond max_sessions


def test_only_local_redirects_and_charts_escape_nothing_user_given() -> None:
    assert safe_path("/accounts/acme") == "/accounts/acme"
    for hostile in ("//evil.example", "https://evil.example", "/\\evil", ""):
        assert safe_path(hostile) == "/portfolio"
    spark = charts.sparkline([0.1, 0.5, 0.9], "red")
    assert "<polyline" in spark and "now 90%" in spark
    trend = charts.trend_chart([(NOW, 0.1, "green"), (NOW + timedelta(days=7), 0.7, "red")])
    assert trend.count("<circle") == 2 and "to 70% (red)" in trend
