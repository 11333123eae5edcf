"""Key-account qualification: known inputs rank in the documented order (docs/metrics.md), a
high-potential low-ARR strategic account is suggested for promotion; the API and the offline
`kamwatch qualify --csv`. Both databases."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW
from tests.signals.streams import event
from tests.signals.test_training import kamwatch, store_history

DAY = timedelta(days=1)
# Built-in config: weights 0.5 / 0.3 / 0.2; current value = ARR x (margin / 0.7) / 250,000;
# growth = untapped / 1,000,000; strategic = flags / 3; promote >= 0.5, review < 0.4, demote < 0.25.
ACCOUNTS: list[dict[str, Any]] = [
    # V = min(1, 400,000 / 250,000) = 1; G = (500,000 - 400,000) / 1,000,000 = 0.1; S = 0
    # Q = 0.5 x 1 + 0.3 x 0.1 = 0.53 -> a key account above 0.4: keep
    {"id": "bigco", "arr": "400000", "tier": "key", "potential_arr": "500000"},
    # V = 50,000 / 250,000 = 0.2; G = min(1, 1,150,000 / 1,000,000) = 1; S = 3 / 3 = 1
    # Q = 0.1 + 0.3 + 0.2 = 0.6 -> not a key account, >= 0.5: promote
    {
        "id": "smallstar",
        "arr": "50000",
        "tier": "standard",
        "potential_arr": "1200000",
        "reference_customer": True,
        "target_sector": True,
        "innovation_partner": True,
    },
    # V = 150,000 / 250,000 = 0.6; no potential_arr: G = last year's expansion; S = 1 / 3
    {"id": "midco", "arr": "150000", "tier": "key", "reference_customer": True},
    # V = 100,000 x (0.35 / 0.7) / 250,000 = 0.2; G = 0; S = 0 -> Q = 0.1 -> demote
    {"id": "thinco", "arr": "100000", "tier": "strategic", "gross_margin": "0.35"},
]


def test_accounts_rank_in_the_documented_order_and_the_strategic_small_one_is_promoted(
    api: TestClient, auth: dict[str, str], db: sessionmaker[Session]
) -> None:
    for account in ACCOUNTS:
        body = {"name": account["id"].title(), "currency": "EUR", **account}
        response = api.put(f"/v1/accounts/{account['id']}", json=body, headers=auth)
        assert response.status_code == 200, response.text
    # midco expanded by seats 100 days ago: MRR 5,000 -> 6,000, 12 x 1,000 = 12,000 of expansion
    # in the last 365 days -> G = 12,000 / 1,000,000 = 0.012;
    # Q = 0.5 x 0.6 + 0.3 x 0.012 + 0.2 x 1/3 = 0.3 + 0.0036 + 0.0667 = 0.3703 -> below 0.4: review
    data = {"subscription_id": "m1", "status": "active", "currency": "EUR"}
    store_history(
        db,
        [
            event("subscription.changed", "midco", NOW - 400 * DAY, {**data, "mrr": "5000"}, id="m-1"),
            event(
                "subscription.changed",
                "midco",
                NOW - 100 * DAY,
                {**data, "mrr": "6000", "expansion_kind": "seats_volume"},
                id="m-2",
            ),
        ],
    )
    response = api.get("/v1/qualification", headers=auth)
    assert response.status_code == 200, response.text
    rows = [
        (i["rank"], i["account_id"], i["current_value"], i["growth_potential"], i["strategic_value"])
        + (i["score"], i["suggestion"])
        for i in response.json()["items"]
    ]
    assert rows == [
        (1, "smallstar", "0.2000", "1.0000", "1.0000", "0.6000", "promote"),
        (2, "bigco", "1.0000", "0.1000", "0.0000", "0.5300", "keep"),
        (3, "midco", "0.6000", "0.0120", "0.3333", "0.3703", "review"),
        (4, "thinco", "0.2000", "0.0000", "0.0000", "0.1000", "demote"),
    ]
    promote = api.get("/v1/qualification", params={"suggestion": "promote"}, headers=auth).json()
    assert [i["account_id"] for i in promote["items"]] == ["smallstar"]


def test_qualify_csv_offline(service_env: Callable[..., dict[str, str]], tmp_path: Path) -> None:
    columns = ["id", "name", "arr", "tier", "potential_arr", "gross_margin"]
    columns += ["reference_customer", "target_sector", "innovation_partner"]
    lines = [",".join(columns)]
    for a in ACCOUNTS:
        row = {**a, "name": a["id"].title()}
        lines.append(
            ",".join(
                str(row.get(c, "")).lower() if c in columns[6:] else str(row.get(c, "")) for c in columns
            )
        )
    export = tmp_path / "crm.csv"
    export.write_text("\n".join(lines) + "\n")

    done = kamwatch(service_env(), "qualify", "--csv", str(export))
    assert done.returncode == 0, done.stderr
    ranked = list(csv.DictReader(io.StringIO(done.stdout)))
    # offline there is no expansion history: midco's Q = 0.3 + 0 + 0.0667 = 0.3667 (still review)
    assert [(r["rank"], r["account_id"], r["score"], r["suggestion"]) for r in ranked] == [
        ("1", "smallstar", "0.6000", "promote"),
        ("2", "bigco", "0.5300", "keep"),
        ("3", "midco", "0.3667", "review"),
        ("4", "thinco", "0.1000", "demote"),
    ]
    export.write_text("id,name,arr,potential_arr\nx,X,1000,lots\n")
    bad = kamwatch(service_env(), "qualify", "--csv", str(export))
    assert bad.returncode == 2 and "row 2: potential_arr" in bad.stderr
