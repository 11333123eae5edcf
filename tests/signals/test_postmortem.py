"""Churn post-mortems: lead times from the stored score history, drivers 90 and 30 days before,
missed churns, roll-ups; the API and `kamwatch postmortem` (Markdown + PNG). Both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository
from services.alerts.config import AlertsSettings
from services.alerts.lifecycle import account_values
from services.signals import postmortem
from services.signals.models import RiskHistory
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.contracts import AccountRecord, RiskChange
from shared.db import transaction
from tests.signals.streams import event
from tests.signals.test_training import kamwatch, store_history

SCORES = {"green": 0.1, "amber": 0.4, "red": 0.7, "churned": 1.0}


def at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def register(api: TestClient, auth: dict[str, str], account: str, segment: str) -> None:
    body = {
        "name": account.title(),
        "arr": "80000.00",
        "currency": "EUR",
        "tier": "strategic",
        "segment": segment,
    }
    assert api.put(f"/v1/accounts/{account}", json=body, headers=auth).status_code == 200


def scores(db: sessionmaker[Session], account: str, changes: list[tuple[datetime, str, list[str]]]) -> None:
    """Stored score changes (as the engine writes them): when, band, driver sentences."""
    with transaction(db) as session:
        for when, band, drivers in changes:
            session.add(
                RiskHistory(
                    account_id=account,
                    score=SCORES[band],
                    band=band,
                    model_version="scorecard-test",
                    as_of=when,
                    scored_at=when,
                    drivers=[{"feature": "f", "value": 1, "contribution": 0.1, "text": t} for t in drivers],
                    changes=[],
                    features={},
                    publish=False,
                )
            )


def churn(account: str, when: datetime, **data: Any) -> Any:
    return event(
        "account.churned", account, when, {"currency": "EUR", **data}, id=f"{account}-churn", source="crm"
    )


def history(api: TestClient, auth: dict[str, str], db: sessionmaker[Session]) -> None:
    register(api, auth, "acme", "manufacturing")
    register(api, auth, "globex", "retail")
    register(api, auth, "initech", "retail")
    scores(
        db,
        "acme",
        [
            (at(5, 1), "amber", ["an earlier scare"]),  # an earlier flagged stretch, ended by green
            (at(5, 20), "green", ["usage steady"]),
            (at(8, 21), "amber", ["usage fell 40 %", "the champion left"]),  # 41 days before 1 Oct
            (at(9, 19), "red", ["2 urgent tickets open", "usage fell 60 %"]),  # 12 days before 1 Oct
            (at(10, 1, 10), "churned", []),  # the churn itself: not a warning
        ],
    )
    scores(db, "globex", [(at(6, 1), "green", ["usage steady"]), (at(9, 1), "green", ["usage steady"])])
    store_history(
        db,
        [
            churn(
                "acme",
                at(10, 1),
                reason="budget cut after a merger",
                reason_category="budget",
                arr="120000.00",
            ),
            churn("globex", at(9, 15)),  # never flagged; no ARR in the event: the registry's 80,000.00
            churn("initech", at(3, 1), reason_category="price"),  # before --since
        ],
    )


def test_post_mortem_reports_lead_times_drivers_and_missed_churns(
    api: TestClient,
    auth: dict[str, str],
    db: sessionmaker[Session],
    service_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    history(api, auth, db)
    response = api.get("/v1/outcomes", params={"type": "churned", "since": "2026-06-01"}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    globex, acme = body["items"]  # oldest churn first; initech churned before 1 Jun

    # acme: the last flagged stretch starts amber on 21 Aug (41 days before 1 Oct), red on 19 Sep (12)
    assert (acme["first_amber_at"][:10], acme["lead_days_amber"]) == ("2026-08-21", 41)
    assert (acme["first_red_at"][:10], acme["lead_days_red"]) == ("2026-09-19", 12)
    assert (acme["reason_category"], acme["reason"], acme["arr_lost"]) == (
        "budget",
        "budget cut after a merger",
        "120000.00",
    )
    # 90 days before (3 Jul) the score in effect was the green of 20 May; 30 days before (1 Sep)
    # the amber of 21 Aug with its drivers
    assert acme["before_90d"]["band"] == "green" and acme["before_90d"]["drivers"] == ["usage steady"]
    assert acme["before_30d"]["band"] == "amber"
    assert acme["before_30d"]["drivers"] == ["usage fell 40 %", "the champion left"]
    assert acme["missed"] is False

    assert globex["missed"] is True and globex["lead_days_amber"] is None and globex["first_red_at"] is None
    assert (globex["reason_category"], globex["arr_lost"]) == ("unspecified", "80000.00")

    roll = body["rollups"]
    assert (roll["churned"], roll["flagged"], roll["missed"]) == (2, 1, ["globex"])
    assert roll["lead_days_amber"] == {
        "median": 41,
        "distribution": {"0-29": 0, "30-59": 1, "60-89": 0, "90+": 0},
    }
    # Revenue lost: 120,000.00 (acme's event) + 80,000.00 (globex's registry ARR) = 200,000.00
    assert roll["revenue_lost"] == [{"currency": "EUR", "arr": "200000.00"}]
    assert [(r["segment"], r["reason_category"], r["accounts"]) for r in roll["reasons"]] == [
        ("manufacturing", "budget", 1),
        ("retail", "unspecified", 1),
    ]
    everything = api.get("/v1/outcomes", headers=auth).json()
    assert [i["account_id"] for i in everything["items"]] == ["initech", "globex", "acme"]
    assert api.get("/v1/outcomes", params={"type": "renewed"}, headers=auth).status_code == 422

    done = kamwatch(service_env(), "postmortem", "--since", "2026-06-01", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2 churns, 1 flagged, 1 missed" in done.stdout
    report = (tmp_path / "postmortem.md").read_text()
    assert (
        "| acme | 2026-10-01 | budget: budget cut after a merger | 120000.00 EUR | 2026-08-21 (41 d) "
        in report
    )
    assert "| 2026-09-19 (12 d) |" in report and "- globex" in report and "initech" not in report
    assert (tmp_path / "postmortem-lead-times.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = kamwatch(service_env(), "postmortem", "--since", "June")
    assert bad.returncode != 0 and "use YYYY-MM-DD" in bad.stderr


def _alerts_app(common: CommonSettings, clock: ManualClock) -> TestClient:
    from services.alerts.app import create_app as alerts_app

    settings = AlertsSettings(common=common, grouping_window_s=120)
    return TestClient(alerts_app(settings, clock=clock, with_consumer=False))


def _alert_story(alerts: TestClient, clock: ManualClock, auth: dict[str, str]) -> None:
    """acme's alert as the alerts service kept it: opened amber on 21 Aug, joined by the red of
    19 Sep (one alert per episode), acknowledged 90 minutes after it opened with one step done."""
    lifecycle = alerts.app.state.lifecycle  # type: ignore[attr-defined]
    sessions = alerts.app.state.sessions  # type: ignore[attr-defined]
    record = AccountRecord(
        id="acme",
        name="Acme",
        arr=120000,
        tier="strategic",
        owner={"name": "Olivia", "email": "olivia@example.com"},
    )
    with transaction(sessions) as session:
        repository.upsert_account(session, account_values(record, at(8, 1)))
    for when, band, previous in ((at(8, 21), "amber", "green"), (at(9, 19), "red", "amber")):
        clock.set(when)
        change = RiskChange(
            account_id="acme",
            score=SCORES[band],
            band=band,  # type: ignore[arg-type]
            previous_band=previous,  # type: ignore[arg-type]
            previous_score=SCORES[band] - 0.05,  # no score_rise: only the band triggers
            model_version="m1",
            as_of=when,
        )
        with transaction(sessions) as session:
            lifecycle.on_risk(session, change, when)
        clock.set(when + timedelta(minutes=3))  # past the grouping window: the owner is told
        alerts.app.state.processor.advance_due()  # type: ignore[attr-defined]
    # One alert per episode: the red of 19 Sep joined the amber alert of 21 Aug.
    [amber] = [a["id"] for a in alerts.get("/v1/alerts", headers=auth).json()["alerts"]]
    clock.set(at(8, 21) + timedelta(minutes=90))  # (a clock moved back: only the ack time matters)
    assert alerts.post(f"/v1/alerts/{amber}/ack", json={"by": "Olivia"}, headers=auth).status_code == 200
    first = alerts.get(f"/v1/alerts/{amber}/tasks", headers=auth).json()["tasks"][0]
    done = alerts.post(f"/v1/alerts/{amber}/tasks/{first['id']}/done", json={"by": "Olivia"}, headers=auth)
    assert done.status_code == 200


def test_post_mortem_lists_each_churn_s_alerts_with_ack_times_and_steps_from_the_alerts_api(
    api: TestClient,
    auth: dict[str, str],
    db: sessionmaker[Session],
    common_settings: CommonSettings,
    service_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    history(api, auth, db)
    clock = ManualClock(at(8, 1))
    with _alerts_app(common_settings, clock) as alerts:
        _alert_story(alerts, clock, auth)

        def alerts_of(account: str) -> list[dict[str, Any]]:  # what the CLI asks over HTTP
            listed = alerts.get("/v1/alerts", params={"account": account}, headers=auth).json()["alerts"]
            return [alerts.get(f"/v1/alerts/{a['id']}", headers=auth).json() for a in listed]

        with transaction(db) as session:
            body = postmortem.with_alerts(postmortem.report(session, at(6, 1)), alerts_of)
    globex, acme = body["items"]
    assert globex["alerts"] == [] and globex["missed"] is True
    [episode] = acme["alerts"]  # amber on 21 Aug; the red of 19 Sep joined it (one per episode)
    assert (episode["opened_at"][:10], episode["minutes_to_ack"], episode["severity"]) == (
        "2026-08-21",
        90,
        "critical",
    )
    assert "band_red" in episode["triggers"]
    assert episode["acknowledged_by"] == "Olivia" and len(episode["steps_done"]) == 1
    assert len(episode["steps_open"]) >= 1
    assert body["rollups"]["alerts"] == {"alerts": 1, "acknowledged": 1, "median_minutes_to_ack": 90}
    report = postmortem.markdown(body, None)
    assert "median time to acknowledge: 90 minutes" in report
    assert "| acme | #" in report and "(90 min) | 1 / 0 /" in report

    # The CLI with the alerts service unreachable still writes the report, and says what is missing.
    done = kamwatch(
        service_env(KAMWATCH_ALERTS_URL="http://127.0.0.1:9"), "postmortem", "--out", str(tmp_path)
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "alerts not included: http://127.0.0.1:9 did not answer" in done.stderr
    assert (
        "Alerts not included: http://127.0.0.1:9 did not answer" in (tmp_path / "postmortem.md").read_text()
    )
