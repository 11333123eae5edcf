"""Money (issues 12 and 14): exact ARR and revenue at risk, the reporting currency with its dated
rates table, registry and portfolio filters, unknown parameters, no_data, deleted accounts and the
ARR ceiling. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.config import SignalsSettings
from services.signals.models import Account, RiskHistory, RiskScore
from services.signals.money import load_rates, revenue_at_risk
from shared.db import make_engine, make_sessionmaker, transaction
from shared.errors import ConfigError
from shared.migrate import upgrade
from tests.conftest import PG_BASE_URL
from tests.helpers import NOW
from tests.signals.streams import full_story, healthy_history
from tests.signals.test_training import store_history

RATES = """
currency: USD
date: 2026-10-30
rates:
  EUR: "1.10"
  GBP: "1.30"
"""


@pytest.fixture
def signals_settings(signals_settings: SignalsSettings, tmp_path: Path) -> SignalsSettings:
    path = tmp_path / "rates.yaml"
    path.write_text(RATES)
    # portfolio_cache_s=0: the API looks at the rates file on every request (by default at most
    # every 2 s), so a test can change it and ask at once.
    return signals_settings.model_copy(update={"rates_path": str(path), "portfolio_cache_s": 0})


def _put(api: TestClient, auth: dict[str, str], account: str, **fields: Any) -> Any:
    body = {"name": account.title(), "arr": "100000", **fields}
    return api.put(f"/v1/accounts/{account}", json=body, headers=auth)


def _ids(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [i.get("account_id", i.get("id")) for i in answer.json()["items"]]


def test_a_large_arr_with_cents_round_trips_exactly(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    arr = "987654321098.76"  # 15 significant digits: a float would be off in the last cent
    assert _put(api, auth, "big", arr=arr, currency="EUR").status_code == 200
    store_history(db, full_story("big", NOW))
    processor.tick()
    with transaction(db) as session:
        account = session.get(Account, "big")
        risk = session.get(RiskScore, "big")
        assert account is not None and risk is not None
        assert account.arr == Decimal(arr) and risk.arr == Decimal(arr)
        assert risk.revenue_at_risk == revenue_at_risk(Decimal(arr), risk.score)
        assert risk.revenue_at_risk == (Decimal(arr) * Decimal(str(risk.score))).quantize(Decimal("0.01"))
        # the column holds 18 digits exactly (16 before the point), beyond what a double can
        account.arr = Decimal("9999999999999999.99")
    with transaction(db) as session:
        stored = session.scalar(select(Account.arr).where(Account.id == "big"))
        assert stored == Decimal("9999999999999999.99")
        assert str(stored) == "9999999999999999.99"
    answer = api.get("/v1/accounts/big/risk", headers=auth).json()
    assert answer["arr"] == 987654321098.76  # a JSON number, as before
    assert Decimal(str(answer["revenue_at_risk"])) == risk.revenue_at_risk


def test_accounts_rank_by_revenue_at_risk_in_the_reporting_currency(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    # Same story, same score: EUR 1,000,000 (USD 1.1 M) ranks below GBP 900,000 (USD 1.17 M),
    # although its own figure is larger.
    _put(api, auth, "euro", arr="1000000.00", currency="EUR")
    _put(api, auth, "sterling", arr="900000.00", currency="GBP")
    _put(api, auth, "yen", arr="5000000.00", currency="JPY")  # no rate in this table
    store_history(db, full_story("euro", NOW) + full_story("sterling", NOW) + full_story("yen", NOW))
    processor.tick()
    page = api.get("/v1/portfolio", headers=auth).json()
    assert [i["account_id"] for i in page["items"]] == ["sterling", "euro", "yen"]
    assert page["reporting_currency"] == "USD" and page["rates_date"] == "2026-10-30"
    sterling, euro, yen = page["items"]
    assert euro["revenue_at_risk"] > sterling["revenue_at_risk"]  # the originals, in their currency
    assert (euro["currency"], sterling["currency"]) == ("EUR", "GBP")
    for item, rate in ((euro, Decimal("1.10")), (sterling, Decimal("1.30"))):
        assert item["reporting_currency"] == "USD"
        expected = (Decimal(str(item["revenue_at_risk"])) * rate).quantize(Decimal("0.01"))
        assert Decimal(str(item["revenue_at_risk_reporting"])) == expected
        assert Decimal(str(item["arr_reporting"])) == Decimal(str(item["arr"])) * rate
    assert yen["revenue_at_risk_reporting"] is None and yen["arr_reporting"] is None  # ranked last
    risk = api.get("/v1/accounts/euro/risk", headers=auth).json()
    assert risk["revenue_at_risk_reporting"] == euro["revenue_at_risk_reporting"]
    assert risk["rates_date"] == "2026-10-30"


def test_a_new_rates_table_reranks_the_portfolio_at_once_and_the_worker_stores_it(
    api: TestClient,
    auth: dict[str, str],
    db: sessionmaker[Session],
    processor: Any,
    signals_settings: SignalsSettings,
) -> None:
    """Scores store their ranking amount; a new rates table is used by the very next portfolio
    request (converting in the query) until the worker's tick has stored the new amounts. A
    rates file that becomes unreadable keeps the last good table for scoring."""
    _put(api, auth, "euro", arr="1000000.00", currency="EUR")
    _put(api, auth, "sterling", arr="900000.00", currency="GBP")
    store_history(db, full_story("euro", NOW) + full_story("sterling", NOW))
    processor.tick()
    path = Path(signals_settings.rates_path)
    before = load_rates(str(path))
    with transaction(db) as session:
        assert repository.ranking_current(session, before)
        ranked = {r.account_id: (r.ranking, r.ranking_rates) for r in session.scalars(select(RiskScore))}
    for account_id, amount in ranked.items():
        risk = api.get(f"/v1/accounts/{account_id}/risk", headers=auth).json()
        assert (Decimal(str(risk["revenue_at_risk_reporting"])), before.digest) == amount
    assert _ids(api.get("/v1/portfolio", headers=auth)) == ["sterling", "euro"]
    path.write_text(RATES.replace('"1.10"', '"1.50"'))  # EUR 1,000,000 is now worth USD 1.5 M
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    after = load_rates(str(path))
    assert after.digest != before.digest
    with transaction(db) as session:
        assert not repository.ranking_current(session, after)
    assert _ids(api.get("/v1/portfolio", headers=auth)) == ["euro", "sterling"]  # before the worker
    processor.tick()
    with transaction(db) as session:
        assert repository.ranking_current(session, after)
        euro = session.get(RiskScore, "euro")
        assert euro is not None and euro.ranking == after.ranking(euro.revenue_at_risk, "EUR")
    assert _ids(api.get("/v1/portfolio", headers=auth)) == ["euro", "sterling"]
    path.write_text("currency: USD\nrates: nonsense\n")
    os.utime(path, ns=(path.stat().st_mtime_ns + 2 * 10**9,) * 2)
    store_history(db, full_story("sterling", NOW + timedelta(days=1)))
    with transaction(db) as session:  # scoring goes on with the last good table
        processor.engine.rescore(session, ["sterling"], NOW + timedelta(days=1), "test")
    with transaction(db) as session:
        assert session.scalar(select(RiskScore.ranking_rates).where(RiskScore.account_id == "sterling")) == (
            after.digest
        )


def test_the_reporting_currency_may_be_any_currency_of_the_table(tmp_path: Path) -> None:
    path = tmp_path / "rates.yaml"
    path.write_text(RATES)
    rates = load_rates(str(path), "EUR")
    assert rates.currency == "EUR" and rates.date == date(2026, 10, 30)
    assert rates.convert(Decimal("110.00"), "USD") == Decimal("100.00")
    assert rates.convert(Decimal("100.00"), "GBP") == Decimal("118.18")
    assert rates.convert(Decimal("100.00"), "EUR") == Decimal("100.00")
    with pytest.raises(ConfigError, match="CHF"):
        load_rates(str(path), "CHF")
    path.write_text("currency: USD\ndate: 2026-10-30\nrates: {EUR: -1}\n")
    with pytest.raises(ConfigError, match=r"rates\.EUR"):
        load_rates(str(path))
    shipped = load_rates(SignalsSettings().rates_path)
    assert shipped.currency == "USD" and shipped.rate("EUR") is not None and shipped.rate("GBP") is not None


def test_registry_and_portfolio_filters(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    soon, later = (NOW + timedelta(days=20)).date(), (NOW + timedelta(days=200)).date()
    kim = {"name": "Kim", "email": "kim@example.com"}
    boss = {"name": "Bo Boss", "email": "bo@example.com"}
    _put(api, auth, "a1", owner=kim, manager=boss, tier="Strategic", segment="Retail", renewal_date=str(soon))
    _put(api, auth, "a2", owner=kim, tier="key", segment="retail", renewal_date=str(later))
    _put(api, auth, "a3", owner={"name": "Lee"}, manager=boss, tier="STRATEGIC", renewal_date=str(soon))
    store_history(db, healthy_history("a1", NOW) + healthy_history("a2", NOW) + healthy_history("a3", NOW))
    processor.tick()
    for route in ("/v1/portfolio", "/v1/accounts"):

        def ids(route: str = route, **params: Any) -> list[str]:
            return sorted(_ids(api.get(route, params=params, headers=auth)))

        assert ids(renewal_within=30, owner="kim@example.com") == ["a1"]
        assert ids(renewal_within=30) == ["a1", "a3"]
        assert ids(owner="KIM") == ["a1", "a2"]  # names and e-mails in any case
        assert ids(manager="bo@example.com") == ["a1", "a3"]
        assert ids(tier="strategic") == ["a1", "a3"]
        assert ids(segment="RETAIL") == ["a1", "a2"]
        answer = api.get(route, params={"nonsense": "1", "owner": "kim"}, headers=auth)
        assert answer.status_code == 422, answer.text
        assert "nonsense" in answer.json()["message"]
        assert [p["field"] for p in answer.json()["problems"]] == ["nonsense"]
        assert api.get(route, params={"renewal_within": "-1"}, headers=auth).status_code == 422


def test_a_new_account_without_events_is_no_data_and_never_published(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    _put(api, auth, "fresh", arr="500000")
    processor.tick()
    risk = api.get("/v1/accounts/fresh/risk", headers=auth).json()
    assert (risk["band"], risk["score"], risk["revenue_at_risk"]) == ("no_data", 0.0, 0.0)
    assert risk["changes"] == ["no events received yet: scored once the first one arrives"]
    assert [i["band"] for i in api.get("/v1/portfolio", headers=auth).json()["items"]] == ["no_data"]
    assert api.get("/v1/portfolio", params={"band": "no_data"}, headers=auth).json()["total"] == 1
    with transaction(db) as session:
        rows = list(session.scalars(select(RiskHistory).where(RiskHistory.account_id == "fresh")))
        assert [(r.band, r.publish) for r in rows] == [("no_data", False)]
    store_history(db, full_story("fresh", NOW))
    with transaction(db) as session:  # the first events: a real first score, published
        published = processor.engine.rescore(session, ["fresh"], NOW, "test")
        assert [(r.band != "no_data", r.previous_band, r.publish) for r in published] == [(True, None, True)]
        assert published[0].changes[0].startswith("first score")


def test_deleted_accounts_leave_the_portfolio_and_the_registry_list(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session], processor: Any
) -> None:
    _put(api, auth, "gone")
    _put(api, auth, "kept")
    store_history(db, healthy_history("gone", NOW) + healthy_history("kept", NOW))
    processor.tick()
    assert sorted(_ids(api.get("/v1/portfolio", headers=auth))) == ["gone", "kept"]
    assert _put(api, auth, "gone", deleted=True).status_code == 200
    processor.tick()
    assert _ids(api.get("/v1/portfolio", headers=auth)) == ["kept"]
    assert _ids(api.get("/v1/accounts", headers=auth)) == ["kept"]
    assert _ids(api.get("/v1/accounts", params={"include": "deleted"}, headers=auth)) == ["gone", "kept"]


def test_an_arr_above_the_ceiling_is_refused_naming_the_field(api: TestClient, auth: dict[str, str]) -> None:
    assert _put(api, auth, "max", arr="1000000000000.00").status_code == 200  # the ceiling itself
    answer = _put(api, auth, "typo", arr="1000000000000.01")
    assert answer.status_code == 422
    assert [p["field"] for p in answer.json()["problems"]] == ["arr"]
    assert "KAMWATCH_SIGNALS_MAX_ARR" in answer.json()["problems"][0]["message"]
    csv = "id,name,arr\nok,Ok,10\ntypo,Typo,5000000000000\n"
    answer = api.post("/v1/accounts:import", content=csv, headers={**auth, "content-type": "text/csv"})
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["field"] == "row 3: arr"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_keeps_float_money_to_the_cent(backend: str, tmp_path: Path) -> None:
    schema = f"kw_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        admin = create_engine(PG_BASE_URL)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url, "signals_0005")
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (id, name, arr, currency, tier, deleted, record, version,"
                    " updated_at) VALUES ('a', 'A', 123456789.07, 'EUR', 'key', false, :record, 1, :now)"
                ),
                {
                    "record": '{"manager": {"name": "Bo", "email": "bo@example.com"}}',
                    "now": NOW.replace(tzinfo=None),
                },
            )
        upgrade(url)
        with make_sessionmaker(engine)() as session:
            account = session.get(Account, "a")
            assert account is not None and account.arr == Decimal("123456789.07")
            assert (account.manager_name, account.manager_email) == ("Bo", "bo@example.com")
        engine.dispose()
    finally:
        if backend == "postgres":
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
