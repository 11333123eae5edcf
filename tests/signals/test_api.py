"""Risk queries: risk, history, features, portfolio; 404 naming the id, 422 naming the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.signals.config import SignalsSettings
from services.signals.models import RiskScore
from services.signals.schemas import PortfolioOut, RiskOut
from shared.auth import create_key
from shared.contracts import Driver
from shared.db import transaction
from tests.helpers import NOW
from tests.signals.streams import full_story, healthy_history
from tests.signals.test_training import store_history

OWNERS = {"kim": ("Kim", "kim@example.com"), "lee": ("Lee", "lee@example.com")}


@pytest.fixture
def signals_settings(signals_settings: SignalsSettings) -> SignalsSettings:
    """No portfolio memo: every request checks the stored rankings and counts, so a test that
    changes them sees the converting and the indexed way each at once."""
    return signals_settings.model_copy(update={"portfolio_cache_s": 0.0})


def _register(api: TestClient, auth: dict[str, str], account: str, arr: str, tier: str, owner: str) -> None:
    name, email = OWNERS[owner]
    body = {
        "name": account.title(),
        "arr": arr,
        "currency": "EUR",
        "tier": tier,
        "owner": {"name": name, "email": email},
    }
    assert api.put(f"/v1/accounts/{account}", json=body, headers=auth).status_code == 200


def _portfolio(api: TestClient, auth: dict[str, str], **params: Any) -> Any:
    return api.get("/v1/portfolio", params=params, headers=auth)


def test_portfolio_ranks_by_revenue_at_risk_with_filters_and_pages(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    _register(api, auth, "big-healthy", "900000", "strategic", "kim")
    _register(api, auth, "mid-risky", "300000", "strategic", "lee")
    _register(api, auth, "small-risky", "20000", "key", "kim")
    store_history(
        db,
        healthy_history("big-healthy", NOW) + full_story("mid-risky", NOW) + full_story("small-risky", NOW),
    )
    processor.tick()  # the sweep scores registered accounts

    page = _portfolio(api, auth).json()
    assert [i["account_id"] for i in page["items"]] == ["mid-risky", "big-healthy", "small-risky"]
    at_risk = [i["revenue_at_risk"] for i in page["items"]]
    assert at_risk == sorted(at_risk, reverse=True) and page["total"] == 3
    assert page["items"][0]["revenue_at_risk"] == round(300000 * page["items"][0]["score"], 2)
    assert [i["account_id"] for i in _portfolio(api, auth, band="red").json()["items"]] == [
        "mid-risky",
        "small-risky",
    ]
    assert [i["account_id"] for i in _portfolio(api, auth, owner="kim@example.com").json()["items"]] == [
        "big-healthy",
        "small-risky",
    ]
    assert [i["account_id"] for i in _portfolio(api, auth, tier="key").json()["items"]] == ["small-risky"]
    first = _portfolio(api, auth, limit=2).json()
    second = _portfolio(api, auth, limit=2, offset=first["next_offset"]).json()
    assert [i["account_id"] for i in first["items"] + second["items"]] == [
        i["account_id"] for i in page["items"]
    ]
    assert second["next_offset"] is None
    beyond = _portfolio(api, auth, offset=10).json()  # past the end: still the total
    assert beyond["items"] == [] and beyond["total"] == 3 and beyond["next_offset"] is None


def test_risk_and_portfolio_answers_are_exactly_their_documented_schemas(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    """The two hot routes render their JSON from table columns, not through the response
    models: each answer must still be what RiskOut / PortfolioOut would send, field for field,
    with the drivers and top drivers the score holds."""
    _register(api, auth, "mid-risky", "300000", "strategic", "lee")
    _register(api, auth, "big-healthy", "900000", "key", "kim")
    store_history(db, full_story("mid-risky", NOW) + healthy_history("big-healthy", NOW))
    processor.tick()
    with transaction(db) as session:
        stored = {r.account_id: r for r in session.scalars(select(RiskScore))}
    for account_id, score in stored.items():
        risk = api.get(f"/v1/accounts/{account_id}/risk", headers=auth).json()
        assert RiskOut.model_validate(risk).model_dump(mode="json") == risk
        assert risk["drivers"] == [Driver.model_validate(d).model_dump() for d in score.drivers]
        assert risk["changes"] == score.changes
    assert len(stored["mid-risky"].drivers) >= 3  # the top drivers below are cut to three
    for params in ({}, {"band": "red"}, {"tier": "KEY"}, {"owner": "KIM@example.com"}, {"limit": 1}):
        page = _portfolio(api, auth, **params).json()
        assert PortfolioOut.model_validate(page).model_dump(mode="json") == page
        assert page["items"], params
        for item in page["items"]:
            assert item["top_drivers"] == [d["text"] for d in stored[item["account_id"]].drivers[:3]]
            assert item["owner"] == OWNERS["lee" if item["account_id"] == "mid-risky" else "kim"][0]


def test_risk_history_and_features_of_one_account(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    _register(api, auth, "acme", "120000", "strategic", "kim")
    store_history(db, full_story("acme", NOW))
    processor.tick()

    risk = api.get("/v1/accounts/acme/risk", headers=auth).json()
    assert risk["band"] == "red" and risk["model_version"] == "scorecard-3"
    assert risk["as_of"] == NOW.isoformat() and risk["drivers"] and risk["changes"]
    history = api.get("/v1/accounts/acme/risk/history", headers=auth).json()
    assert history["items"][0]["score"] == risk["score"] and history["items"][0]["published"] is False
    features = api.get("/v1/accounts/acme/features", headers=auth).json()["features"]
    assert features["key_contact_departed_90d"] == 1.0 and features["days_to_renewal"] == 999.0


def test_unknown_account_is_404_with_its_id_and_bad_params_are_422(
    api: TestClient, auth: dict[str, str]
) -> None:
    for path in ("risk", "risk/history", "features"):
        response = api.get(f"/v1/accounts/ghost-7/{path}", headers=auth)
        assert response.status_code == 404 and "ghost-7" in response.json()["message"]
    bad_band = _portfolio(api, auth, band="purple")
    assert bad_band.status_code == 422 and bad_band.json()["problems"][0]["field"] == "query.band"
    bad_limit = _portfolio(api, auth, limit=0)
    assert bad_limit.status_code == 422 and bad_limit.json()["problems"][0]["field"] == "query.limit"
    assert api.get("/v1/portfolio").status_code == 401
    assert api.get("/v1/accounts/ghost-7/risk").status_code == 401
    bogus = api.get("/v1/accounts/ghost-7/risk", headers={"Authorization": "Bearer kw_0000_nope"})
    assert bogus.status_code == 401


def test_risk_needs_the_risk_read_scope(api: TestClient, db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        key = create_key(session, "writer", ["accounts:write"])
    response = api.get("/v1/accounts/acme/risk", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403 and "risk:read" in response.json()["message"]


def _store_scores(
    db: sessionmaker[Session], amounts: list[str], currencies: list[str], first: int = 0
) -> None:
    """Scores written directly (no stored ranking amount), one per amount, currencies in turn."""
    from decimal import Decimal

    from services.signals.models import RiskScore

    with transaction(db) as session:
        for n, amount in enumerate(amounts, start=first):
            session.add(
                RiskScore(
                    account_id=f"acct-{n:02d}",
                    score=0.5,
                    band="amber",
                    model_version="m",
                    as_of=NOW,
                    scored_at=NOW,
                    drivers=[],
                    changes=[],
                    features={},
                    name=f"Account {n}",
                    arr=Decimal(amount) * 2,
                    currency=currencies[n % len(currencies)],
                    tier="strategic",
                    revenue_at_risk=Decimal(amount),
                )
            )


def _keyset_pages(api: TestClient, auth: dict[str, str], limit: int) -> tuple[dict[str, Any], list[str], int]:
    """The whole ranking in one page, and the ids of every keyset page of `limit` in turn."""
    whole = _portfolio(api, auth, limit=500).json()
    seen, after, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": limit} if after is None else {"limit": limit, "after": after}
        page = _portfolio(api, auth, **params).json()
        assert page["total"] == whole["total"]  # every matching account, not those after the cursor
        seen += [i["account_id"] for i in page["items"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            return whole, seen, pages


def test_portfolio_keyset_pages_equal_one_page_across_ties_and_currencies(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], signals_settings: Any
) -> None:
    """`after` = the previous page's next_after: the pages together are the one-page ranking,
    with no row twice or missing, across equal amounts, several currencies and a currency without
    a rate (ranked last); a cursor that is not one is a 422 naming `after`. Rows written with
    no stored ranking amount are ranked by converting in the query; once the worker has stored
    them, the index gives the same ranking."""
    from services.signals import repository
    from services.signals.money import load_rates

    amounts = ["0", "0", "100", "100", "100", "250.50", "999.99", "12000", "100", "0.01", "3500"]
    _store_scores(db, amounts * 2, ["EUR", "USD", "GBP", "XTS"])
    rates = load_rates(signals_settings.rates_path, signals_settings.reporting_currency)
    with transaction(db) as session:
        assert not repository.ranking_current(session, rates)
    converted, seen, pages = _keyset_pages(api, auth, 4)
    assert converted["total"] == len(amounts) * 2 and converted["next_after"] is None
    assert seen == [i["account_id"] for i in converted["items"]] and pages >= len(seen) // 4
    assert converted["items"][-1]["currency"] == "XTS"  # no rate: after every ranked amount
    with transaction(db) as session:
        assert repository.refresh_ranking(session, rates, limit=5) == 5  # a bounded batch
        assert not repository.ranking_current(session, rates)
    with transaction(db) as session:
        assert repository.refresh_ranking(session, rates) == len(amounts) * 2 - 5
        assert repository.ranking_current(session, rates)
    for limit in (4, 3):
        whole, seen, pages = _keyset_pages(api, auth, limit)
        assert whole["items"] == converted["items"] and whole["total"] == converted["total"]
        assert seen == [i["account_id"] for i in whole["items"]] and pages >= len(seen) // limit
    offset_page = _portfolio(api, auth, limit=5, offset=20).json()
    assert [i["account_id"] for i in offset_page["items"]] == seen[20:]
    assert offset_page["total"] == len(amounts) * 2 and offset_page["next_offset"] is None
    whole = converted
    hostile = [["100", "a\u0000b"], ["NaN", "acct-01"], ["9" * 600, "acct-01"], ["1", "a\u2028b"]]
    forged = [base64.urlsafe_b64encode(json.dumps(c).encode()).decode() for c in hostile]
    for bad in ("not-a-cursor", "W10", "WzEsMl0", *forged):  # garbage, [], [1,2], forged cursors
        response = _portfolio(api, auth, after=bad)
        assert response.status_code == 422 and "after" in response.json()["message"], response.text
    both = _portfolio(api, auth, after=whole["items"][0]["account_id"], offset=3)
    assert both.status_code == 422 and "not both" in both.json()["message"]


def test_the_portfolio_total_is_memoised_briefly_but_pages_always_follow_the_live_rows(
    db: sessionmaker[Session], auth: dict[str, str], signals_settings: Any, clock: Any
) -> None:
    """`total` is counted at most every `portfolio_cache_s` per filter set; whether a next
    page exists comes from the page itself (one row more), so a stale total never cuts a walk
    short, and a last page counts its own rows."""
    from services.signals import repository
    from services.signals.app import create_app
    from services.signals.money import load_rates

    settings = signals_settings.model_copy(update={"portfolio_cache_s": 60.0})
    rates = load_rates(settings.rates_path, settings.reporting_currency)
    _store_scores(db, ["300", "200", "100"], ["USD"])
    with TestClient(create_app(settings, clock=clock, with_consumer=False)) as api:
        with transaction(db) as session:
            repository.refresh_ranking(session, rates)
        first = _portfolio(api, auth, limit=2).json()
        assert first["total"] == 3 and first["next_offset"] == 2
        _store_scores(db, ["400", "50"], ["USD"], first=3)  # two more accounts, within the minute
        with transaction(db) as session:
            repository.refresh_ranking(session, rates)
        again = _portfolio(api, auth, limit=2).json()
        assert [i["account_id"] for i in again["items"]] == ["acct-03", "acct-00"]  # live rows
        assert again["total"] == 3  # the memoised count
        walked, offset = [], 0
        while offset is not None:
            page = _portfolio(api, auth, limit=2, offset=offset).json()
            walked += [i["account_id"] for i in page["items"]]
            offset = page["next_offset"]
        assert walked == ["acct-03", "acct-00", "acct-01", "acct-02", "acct-04"]
        assert page["total"] == 5  # the last page counts its own rows
        assert _portfolio(api, auth, limit=2, tier="strategic").json()["total"] == 5  # another filter set
