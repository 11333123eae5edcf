"""The renewals desk: exactly the accounts renewing within the window, red then amber then green,
the largest ARR first within a band, with the documented forecast and totals. Both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.signals.models import RiskScore
from shared.db import transaction
from tests.helpers import NOW
from tests.signals.streams import event
from tests.signals.test_training import store_history

SCORES = {"red": 0.8, "amber": 0.4, "green": 0.1, "churned": 1.0}


def account(api: TestClient, auth: dict[str, str], account_id: str, arr: str, renewal: date | None) -> None:
    body: dict[str, Any] = {"name": account_id.upper(), "arr": arr, "currency": "EUR", "tier": "key"}
    if renewal is not None:
        body["renewal_date"] = renewal.isoformat()
    response = api.put(f"/v1/accounts/{account_id}", json=body, headers=auth)
    assert response.status_code == 200, response.text


def scored(db: sessionmaker[Session], account_id: str, band: str, arr: float) -> None:
    """A current score as the engine leaves it (only band and score matter here)."""
    with transaction(db) as session:
        session.add(
            RiskScore(
                account_id=account_id,
                score=SCORES[band],
                band=band,
                model_version="scorecard-test",
                as_of=NOW,
                scored_at=NOW,
                drivers=[],
                changes=[],
                features={},
                name=account_id.upper(),
                arr=arr,
                currency="EUR",
                tier="key",
                revenue_at_risk=arr * SCORES[band],
            )
        )


def mrr(account_id: str, when: datetime, amount: str, n: int) -> Any:
    data = {"subscription_id": "s1", "status": "active", "mrr": amount, "currency": "EUR"}
    return event("subscription.changed", account_id, when, data, id=f"{account_id}-{n}", source="billing")


def test_within_90_lists_exactly_the_accounts_renewing_in_90_days_in_arr_order_within_band(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    # Today is 2026-11-01 (NOW); 90 days later is 2027-01-30 (both included).
    plan = [  # id, ARR, renewal date, band (None: not scored yet)
        ("r1", "200000.00", date(2026, 12, 1), "red"),  # 30 days
        ("r2", "50000.00", date(2027, 1, 30), "red"),  # 90 days: the last day of the window
        ("a1", "300000.00", date(2026, 11, 15), "amber"),  # 14 days
        ("g1", "400000.00", date(2026, 12, 20), "green"),  # 49 days, MRR +20 %
        ("g2", "100000.00", date(2026, 11, 1), "green"),  # today, MRR -10 %
        ("g3", "100000.00", date(2026, 11, 20), "green"),  # 19 days, no billing events
        ("new1", "10000.00", date(2026, 12, 1), None),  # registered, not scored yet
        ("late", "900000.00", date(2027, 1, 31), "red"),  # 91 days: outside
        ("past", "900000.00", date(2026, 10, 31), "red"),  # yesterday: outside
        ("gone", "900000.00", date(2026, 12, 1), "churned"),  # churned: not up for renewal
        ("undated", "900000.00", None, "red"),  # no renewal date
    ]
    for account_id, arr, renewal, band in plan:
        account(api, auth, account_id, arr, renewal)
        if band:
            scored(db, account_id, band, float(arr))
    store_history(
        db,
        [
            mrr("g1", datetime(2026, 7, 1, tzinfo=UTC), "10000.00", 1),
            mrr("g1", datetime(2026, 10, 1, tzinfo=UTC), "12000.00", 2),
            mrr("g2", datetime(2026, 7, 1, tzinfo=UTC), "10000.00", 1),
            mrr("g2", datetime(2026, 10, 1, tzinfo=UTC), "9000.00", 2),
        ],
    )

    response = api.get("/v1/renewals", params={"within": 90}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    rows = [
        (i["account_id"], i["band"], i["arr"], i["days_to_renewal"], i["mrr_trend"], i["forecast"])
        for i in body["items"]
    ]
    # MRR trend = (MRR today - MRR 90 days ago, on 2026-08-03) / MRR 90 days ago:
    #   g1 (12,000 - 10,000) / 10,000 = +0.2 -> expand;  g2 (9,000 - 10,000) / 10,000 = -0.1 -> contract
    assert rows == [
        ("r1", "red", "200000.00", 30, None, "churn"),
        ("r2", "red", "50000.00", 90, None, "churn"),
        ("a1", "amber", "300000.00", 14, None, "contract"),
        ("g1", "green", "400000.00", 49, "0.2000", "expand"),
        ("g2", "green", "100000.00", 0, "-0.1000", "contract"),  # same ARR as g3: by id
        ("g3", "green", "100000.00", 19, None, "renew"),
        ("new1", None, "10000.00", 30, None, "renew"),
    ]
    assert body["items"][3]["forecast_reason"] == "MRR +20.0 % over 90 days"
    # ARR up for renewal per band: red 200,000 + 50,000; amber 300,000; green 400,000 + 2 x 100,000
    assert [(t["band"], t["accounts"], t["arr"]) for t in body["totals"]] == [
        ("red", 2, "250000.00"),
        ("amber", 1, "300000.00"),
        ("green", 3, "600000.00"),
        ("unscored", 1, "10000.00"),
    ]
    # A narrower window: only today's and the next 14 days' renewals.
    narrow = api.get("/v1/renewals", params={"within": 14}, headers=auth).json()
    assert [i["account_id"] for i in narrow["items"]] == ["a1", "g2"]
    assert api.get("/v1/renewals", params={"within": -1}, headers=auth).status_code == 422
