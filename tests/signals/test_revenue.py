"""NRR / GRR over a quarter, expansion by component, NPS and QBR attendance (docs/metrics.md),
checked against a hand calculation to the cent. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from services.signals import revenue
from shared.db import transaction
from tests.signals.streams import event
from tests.signals.test_training import store_history


def at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def register(api: TestClient, auth: dict[str, str], account: str, owner: str, arr: str = "1.00") -> None:
    body = {
        "name": account.title(),
        "arr": arr,
        "currency": "EUR",
        "tier": "strategic",
        "segment": "manufacturing" if owner == "Kim" else "retail",
        "owner": {"name": owner},
    }
    response = api.put(f"/v1/accounts/{account}", json=body, headers=auth)
    assert response.status_code == 200, response.text


def sub(account: str, when: datetime, sub_id: str, mrr: str, n: int, **extra: Any) -> Any:
    data = {"subscription_id": sub_id, "status": "active", "mrr": mrr, "currency": "EUR", **extra}
    return event("subscription.changed", account, when, data, id=f"{account}-s{n}", source="billing")


def nps(account: str, when: datetime, score: int, n: int) -> Any:
    return event("survey.responded", account, when, {"score": score}, id=f"{account}-nps{n}", source="survey")


def qbr(account: str, when: datetime, outcome: str) -> Any:
    data = {"kind": "qbr", "outcome": outcome}
    return event("engagement.recorded", account, when, data, id=f"{account}-qbr-{when.date()}", source="crm")


def outcome(kind: str, account: str, when: datetime) -> Any:
    data = {"reason": "budget cuts", "arr": "40000.00", "currency": "EUR"}
    return event(f"account.{kind}", account, when, data, id=f"{account}-{kind}", source="crm")


def quarter(api: TestClient, auth: dict[str, str], db: sessionmaker[Session]) -> None:
    """Q3 2026 = [2026-07-01, 2026-10-01). Owners: Kim has alpha and beta, Lee the others."""
    for account in ("alpha", "beta"):
        register(api, auth, account, "Kim")
    for account in ("gamma", "delta", "foxtrot", "golf"):
        register(api, auth, account, "Lee")
    register(api, auth, "echo", "Lee", arr="50000.00")
    store_history(
        db,
        [
            # alpha expands by seats: 10,000.00 -> 12,500.00 MRR on 15 Aug
            sub("alpha", at(6, 1), "a1", "10000.00", 1),
            sub(
                "alpha",
                at(8, 15),
                "a1",
                "12500.00",
                2,
                previous_mrr="10000.00",
                expansion_kind="seats_volume",
            ),
            # beta adds a business unit: a second subscription of 2,000.50 MRR on 1 Sep
            sub("beta", at(5, 10), "b1", "8000.00", 1),
            sub("beta", at(9, 1), "b2", "2000.50", 2, expansion_kind="department_business_unit"),
            # gamma contracts: 5,000.00 -> 4,250.25 MRR on 20 Jul
            sub("gamma", at(4, 1), "g1", "5000.00", 1),
            sub("gamma", at(7, 20), "g1", "4250.25", 2, previous_mrr="5000.00"),
            # delta churns on 10 Sep; the cancellation booked after the churn is not counted again
            sub("delta", at(3, 3), "d1", "3333.33", 1),
            outcome("churned", "delta", at(9, 10)),
            sub("delta", at(9, 10, 12), "d1", "0.00", 2, previous_mrr="3333.33"),
            # echo: no billing events, registry ARR 50,000.00, flat
            # foxtrot churned before the quarter: not in the cohort; golf is new business
            sub("foxtrot", at(2, 1), "f1", "900.00", 1),
            outcome("churned", "foxtrot", at(6, 15)),
            sub("golf", at(8, 1), "h1", "700.00", 1, expansion_kind="seats_volume"),
            # NPS in the quarter: 10, 9 (promoters), 7 (passive), 3 (detractor); June's 0 is outside
            nps("alpha", at(7, 5), 10, 1),
            nps("alpha", at(8, 5), 9, 2),
            nps("beta", at(7, 6), 7, 1),
            nps("gamma", at(9, 30, 23), 3, 1),
            nps("gamma", at(6, 30, 23), 0, 2),
            # QBRs in the quarter: 2 held of 4; October's is outside
            qbr("alpha", at(7, 10), "held"),
            qbr("beta", at(8, 10), "held"),
            qbr("gamma", at(8, 11), "declined"),
            qbr("delta", at(8, 12), "no_show"),
            qbr("echo", at(10, 1), "declined"),
        ],
    )


def test_nrr_and_grr_of_five_accounts_over_a_quarter_equal_the_hand_calculation(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    quarter(api, auth, db)
    params = {"from": "2026-07-01", "to": "2026-10-01", "by": "owner"}
    response = api.get("/v1/metrics/revenue", params=params, headers=auth)
    assert response.status_code == 200, response.text
    [total] = response.json()["totals"]

    # Starting ARR = 12 x MRR on 1 Jul (echo: its registry ARR):
    #   alpha 12 x 10,000.00 = 120,000.00    beta 12 x 8,000.00 = 96,000.00
    #   gamma 12 x 5,000.00 = 60,000.00      delta 12 x 3,333.33 = 39,999.96    echo 50,000.00
    #   total 365,999.96 (foxtrot churned in June and golf had no ARR: not in the cohort)
    assert total["currency"] == "EUR" and total["accounts"] == 5 and total["churned_accounts"] == 1
    assert total["starting_arr"] == "365999.96"
    # Expansion: alpha 12 x (12,500.00 - 10,000.00) = 30,000.00 (seats_volume);
    #            beta 12 x 2,000.50 = 24,006.00 (department_business_unit); total 54,006.00
    assert total["expansion"] == "54006.00"
    assert total["expansion_by_kind"] == {
        "seats_volume": "30000.00",
        "new_product_premium": "0.00",
        "department_business_unit": "24006.00",
        "site_subsidiary": "0.00",
        "unspecified": "0.00",
    }
    # Contraction: gamma 12 x (5,000.00 - 4,250.25) = 12 x 749.75 = 8,997.00
    assert total["contraction"] == "8997.00"
    # Churn: delta's ARR when it churned, 39,999.96 (its later cancellation is not counted twice)
    assert total["churn"] == "39999.96"
    # Ending = 365,999.96 + 54,006.00 - 8,997.00 - 39,999.96 = 371,009.00
    assert total["ending_arr"] == "371009.00" and total["net_revenue_growth"] == "5009.04"
    # NRR = 371,009.00 / 365,999.96 = 1.01368590... -> 1.0137
    # GRR = (365,999.96 - 8,997.00 - 39,999.96) / 365,999.96 = 317,003.00 / 365,999.96 = 0.86612851 -> 0.8661
    assert (total["nrr"], total["grr"]) == ("1.0137", "0.8661")
    # NPS = 100 x (2 promoters - 1 detractor) / 4 answers = 25.00; QBR attendance = 2 held / 4 = 0.5
    assert (total["nps"], total["nps_responses"]) == ("25.00", 4)
    assert (total["qbr_attendance"], total["qbrs_scheduled"]) == ("0.5000", 4)

    groups = {g["key"]: g for g in response.json()["groups"]}
    assert sorted(groups) == ["Kim", "Lee"]
    # Kim: start 120,000.00 + 96,000.00 = 216,000.00; + 54,006.00 = 270,006.00; NRR 1.250028 -> 1.2500
    kim = groups["Kim"]
    assert (kim["starting_arr"], kim["ending_arr"], kim["nrr"], kim["grr"]) == (
        "216000.00",
        "270006.00",
        "1.2500",
        "1.0000",
    )
    # Lee: start 60,000.00 + 39,999.96 + 50,000.00 = 149,999.96; - 8,997.00 - 39,999.96 = 101,003.00
    #      NRR = GRR = 101,003.00 / 149,999.96 = 0.67335351 -> 0.6734; NPS 100 x (0 - 1) / 1 = -100.00
    lee = groups["Lee"]
    assert (lee["starting_arr"], lee["ending_arr"], lee["nrr"], lee["grr"]) == (
        "149999.96",
        "101003.00",
        "0.6734",
        "0.6734",
    )
    assert (lee["nps"], lee["qbr_attendance"]) == ("-100.00", "0.0000")

    by_account = api.get("/v1/metrics/revenue", params={**params, "by": "account"}, headers=auth).json()
    beta = next(g for g in by_account["groups"] if g["key"] == "beta")
    assert (beta["starting_arr"], beta["expansion_by_kind"]["department_business_unit"]) == (
        "96000.00",
        "24006.00",
    )
    assert "golf" not in {g["key"] for g in by_account["groups"]}
    # One account alone (the console's brief): its own totals, equal to its group above.
    alone = api.get("/v1/metrics/revenue", params={**params, "account": "beta"}, headers=auth).json()
    assert [t["starting_arr"] for t in alone["totals"]] == ["96000.00"]
    assert alone["totals"][0]["nrr"] == beta["nrr"]
    unknown = api.get("/v1/metrics/revenue", params={**params, "account": "nobody"}, headers=auth).json()
    assert unknown["totals"] == []


def test_revenue_gauges_and_a_bad_period(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    quarter(api, auth, db)
    with transaction(db) as session:  # trailing 90 days from 1 Oct = from 3 Jul: gamma's cut is in
        revenue.refresh_gauges(session, at(10, 1, 0))
    nrr = REGISTRY.get_sample_value("kamwatch_revenue_retention_ratio", {"ratio": "nrr", "currency": "EUR"})
    churn = REGISTRY.get_sample_value("kamwatch_revenue_arr", {"component": "churn", "currency": "EUR"})
    assert (nrr, churn) == (1.0137, 39999.96)

    response = api.get("/v1/metrics/revenue", params={"from": "2026-10-01", "to": "2026-07-01"}, headers=auth)
    assert response.status_code == 422 and "'to'" in response.text
    response = api.get("/v1/metrics/revenue", params={"from": "2026-07-01"}, headers=auth)
    assert response.status_code == 422 and "to" in response.text
