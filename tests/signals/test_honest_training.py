"""Honest training and evaluation: label windows fully observed, a purge gap, budget thresholds,
identical rows for every scorer, `kamwatch backtest` with its report and plots, and the
learning loop that promotes only a model that beats the one in use and the scorecard."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.signals.commands import run_backtest
from services.signals.config import SignalsSettings
from services.signals.learning import Learner, decision_figures
from services.signals.modelstore import ModelHolder, ModelStore
from services.signals.scoring import load_scorecard
from services.signals.training import train
from shared.clock import ManualClock
from shared.config import CommonSettings
from tests.helpers import NOW
from tests.signals.streams import DAY, event
from tests.signals.test_training import kamwatch, store_history

HORIZON = 90
STEP = 7


def _settings(url: str, tmp_path: Path, **extra: Any) -> SignalsSettings:
    return SignalsSettings(
        common=CommonSettings(database_url=url), model_dir=str(tmp_path / "models"), min_churns=4, **extra
    )


def late_churn_history(end: datetime, accounts: int = 60, seed: int = 3) -> tuple[list[Any], dict[str, Any]]:
    """A year of weekly usage; a third of the churners leave inside the last horizon, where the
    old selection kept their rows (as positives) but dropped everyone else's."""
    rng = random.Random(seed)
    start = end - 365 * DAY
    events: list[Any] = []
    churns: dict[str, datetime] = {}
    for n in range(accounts):
        account = f"late-{n:03d}"
        churn_day = None
        if n % 3 == 0:
            churn_day = rng.randint(120, 300)
        elif n % 7 == 0:
            churn_day = rng.randint(300, 362)  # inside the last 90 days
        last = churn_day if churn_day is not None else 365
        level = rng.uniform(200, 2000)
        for d in range(0, last, 3):
            fading = churn_day is not None and d > last - 50
            quantity = level * (0.4 if fading else 1.0) * rng.uniform(0.7, 1.3)
            data = {"metric": "reports" if d % 2 else "api_calls", "quantity": round(quantity, 2)}
            events.append(event("usage.recorded", account, start + d * DAY, data, id=f"{account}-u{d}"))
        if churn_day is not None:
            churns[account] = start + churn_day * DAY
            outcome = {"reason": "budget"}
            events.append(event("account.churned", account, churns[account], outcome, id=f"{account}-out"))
    return events, {"start": start, "churns": churns}


def _fully_observed_base_rate(
    events: list[Any], churns: dict[str, datetime], end: datetime, since: datetime, until: datetime
) -> float:
    """Worked out from the raw events, independently of the training code: every weekly as-of
    date (grid ending at the history's end) with the whole 90-day window inside the history."""
    first: dict[str, datetime] = {}
    for e in events:
        first[e.subject] = min(first.get(e.subject, e.time), e.time)
    labels = []
    for account, begin in first.items():
        churn = churns.get(account)
        t = end
        while t >= begin + timedelta(days=28):
            if since <= t <= until and t + timedelta(days=HORIZON) <= end and (churn is None or t < churn):
                labels.append(int(churn is not None and churn <= t + timedelta(days=HORIZON)))
            t -= timedelta(days=STEP)
    return round(sum(labels) / len(labels), 4)


def test_validation_base_rate_is_that_of_fully_observed_rows(
    history_db: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    events, truth = late_churn_history(NOW)
    store_history(history_db, events)
    end = max(e.time for e in events)
    end = datetime(end.year, end.month, end.day, tzinfo=UTC) + DAY

    version, report = train(_settings(sqlite_url, tmp_path), history_db, load_scorecard(), NOW, False)
    folder = tmp_path / "models" / version
    assert {"report.md", "roc.png", "calibration.png", "lift.png", "lead_time.png"} <= {
        p.name for p in folder.iterdir()
    }

    valid = report["validation"]
    since, until = datetime.fromisoformat(valid["from"]), datetime.fromisoformat(valid["to"])
    assert until + timedelta(days=HORIZON) <= end  # no validation row peeks past the history
    expected = _fully_observed_base_rate(events, truth["churns"], end, since, until)
    assert valid["base_rate"] == expected
    assert report["model"]["base_rate"] == report["scorecard"]["base_rate"] == expected
    # A purge gap of one horizon between the periods, and every scorer on identical rows.
    assert datetime.fromisoformat(report["train"]["to"]) + timedelta(days=HORIZON) <= since
    rows = {report[k]["rows"] for k in ("model", "scorecard", "naive_usage_level", "book_regression")}
    assert rows == {valid["observations"]}
    assert report["unobserved_rows_left_out"] > 0  # the late churners' tail was left out


@pytest.mark.slow
@pytest.mark.timeout(900)  # a year of 120 accounts trained, then replayed twice (minutes on 2 busy cores)
def test_backtest_on_a_simulated_year_writes_reports_and_plots(
    history_db: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    from kamwatch.dev.simulator.generator import SimConfig, Simulation

    end = datetime(2026, 11, 1, tzinfo=UTC)
    config = SimConfig(
        accounts=120, seed=5, start=end - timedelta(days=365), live_start=end, end=end, aliases=False
    )
    store_history(history_db, list(Simulation(config).events()))
    settings = _settings(sqlite_url, tmp_path)
    version, trained = train(settings, history_db, load_scorecard(), end, False)

    out = tmp_path / "backtest"
    env = {
        **os.environ,
        "KAMWATCH_DATABASE_URL": sqlite_url,
        "KAMWATCH_SIGNALS_MODEL_DIR": settings.model_dir,
    }
    result = kamwatch(env, "backtest", "--out", str(out), "--model", version)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "recall" in result.stdout and "history" in result.stderr  # summary, and a progress bar

    assert {"report.md", "report.json", "roc.png", "calibration.png", "lift.png", "lead_time.png"} <= {
        p.name for p in out.iterdir()
    }
    assert all((out / name).stat().st_size > 1000 for name in ("roc.png", "lift.png"))
    saved = json.loads((out / "report.json").read_text())
    assert saved["scorer_in_use"] == version
    rows = {saved[k]["rows"] for k in ("model", "scorecard", "naive_usage_level")}
    assert rows == {saved["period"]["observed_rows"]} and saved["period"]["observed_rows"] > 0
    for key in ("recall_at_budget", "precision_at_budget", "lead_days_median", "lead_days_p25"):
        assert key in saved["model"]
    # The backtest starts at the model's cutoff: only rows it never saw while training.
    assert (
        saved["period"]["from"]
        >= json.loads((tmp_path / "models" / version / "metadata.json").read_text())["cutoff"]
    )
    # The deployed fit saw these dates (it is refitted on every observed row): the backtest scores
    # the fit on the training rows only, and so repeats the train report's validation figures.
    assert saved["fit"] == "validated" and saved["model"]["roc_auc"] == trained["model"]["roc_auc"]
    # ... and flags them at that fit's own threshold (the deployed fit's is on another scale).
    assert saved["thresholds"]["amber"] == trained["validated_thresholds"]["amber"]
    assert saved["model"]["recall_at_budget"] == trained["model"]["recall_at_budget"]
    markdown = (out / "report.md").read_text()
    assert "its fit on the training rows only" in markdown
    trained_md = (tmp_path / "models" / version / "report.md").read_text()
    assert f"refitted on all {trained['deployed']['observations']} observed rows" in trained_md
    assert "recall at the alert budget" in markdown and "usage level only" not in markdown.split("|")[0]
    again = run_backtest(settings, tmp_path / "again", version, None, progress=False)
    assert again["model"]["roc_auc"] == saved["model"]["roc_auc"]  # deterministic replay


def test_learning_promotes_a_better_model_and_rejects_one_that_is_not(
    history_db: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    from tests.signals.synthetic import labelled_history

    store_history(history_db, labelled_history(NOW - 200 * DAY))
    settings = _settings(
        sqlite_url, tmp_path, learn=True, learn_min_new_churns=3, learn_check_interval_s=0.01
    )
    holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard())
    learner = Learner(settings, history_db, holder, ManualClock(NOW))

    assert learner.poll()  # enough new churns: a background retraining starts
    assert learner._thread is not None
    learner._thread.join(120)
    log = (Path(settings.model_dir) / "promotions.log").read_text().splitlines()
    assert log[-1].startswith("promoted ")
    figures = json.loads(log[-1].split(" ", 2)[2])
    assert figures["roc_auc"] > figures["scorecard_roc_auc"] and figures["current_roc_auc"] is None
    assert holder.refresh() and holder.scorer.version == log[-1].split()[1]
    # Deployed: refitted on every observed row, through the last observed as-of date.
    report = json.loads((holder.store.version_dir(holder.scorer.version) / "report.json").read_text())
    assert report["deployed"]["to"] == report["observed"]["to"] > report["train"]["to"]
    assert report["deployed"]["observations"] == report["observed"]["observations"]
    assert holder.scorer.fitted_through == datetime.fromisoformat(report["observed"]["to"])
    assert not learner.poll()  # no new outcome since: nothing to do

    # The same history again: the model in use was fitted on every validation row, so nothing is
    # left to compare them on honestly, and the candidate is not promoted.
    assert learner.retrain(churns=99) == "rejected"
    last = (Path(settings.model_dir) / "promotions.log").read_text().splitlines()[-1]
    figures = json.loads(last.split(" ", 2)[2])
    assert last.startswith("rejected ") and figures["beats_current"] is False
    assert figures["versus_current"]["rows"] == 0
    assert holder.store.current() == log[-1].split()[1]


def test_a_promotion_needs_to_beat_both_the_model_in_use_and_the_scorecard() -> None:
    def report(model: float, card: float, current: float | None) -> dict[str, Any]:
        base = {"horizon_days": 90, "validation": {"from": "2026-01-01", "observations": 10}}
        extra = {"current_model": {"roc_auc": current}} if current is not None else {}
        return {**base, "model": {"roc_auc": model}, "scorecard": {"roc_auc": card}, **extra}

    assert decision_figures(report(0.7, 0.6, None))["beats_current"] is True
    assert decision_figures(report(0.7, 0.8, None))["beats_scorecard"] is False
    assert decision_figures(report(0.7, 0.6, 0.75))["beats_current"] is False
    # Judged on the rows the model in use never fitted on, when the report has them.
    newer = {"rows": 40, "model_roc_auc": 0.66, "current_roc_auc": 0.61}
    assert decision_figures(report(0.7, 0.6, 0.9) | {"versus_current": newer})["beats_current"] is True
    worse = newer | {"model_roc_auc": 0.6}
    assert decision_figures(report(0.7, 0.6, 0.5) | {"versus_current": worse})["beats_current"] is False
    none = {"rows": 0, "model_roc_auc": None, "current_roc_auc": None}
    assert decision_figures(report(0.7, 0.6, 0.5) | {"versus_current": none})["beats_current"] is False


def test_a_young_model_replaces_the_scorecard_only_by_more_than_its_standard_error() -> None:
    def report(model: float, churned: int) -> dict[str, Any]:
        validation = {"from": "2026-01-01", "observations": 4000, "churned_accounts": churned}
        validation["retained_accounts"] = 400
        return {"horizon_days": 30, "validation": validation, "model": {"roc_auc": model}} | {
            "scorecard": {"roc_auc": 0.58}
        }

    # A dozen churned validation accounts: a lead of 0.04 is well inside the noise (~0.09).
    young = decision_figures(report(0.62, 12))
    assert young["beats_scorecard"] is False and 0.07 < young["scorecard_margin"] < 0.11
    assert decision_figures(report(0.75, 12))["beats_scorecard"] is True
    # Hundreds of them: the same lead is a real one.
    assert decision_figures(report(0.62, 400))["beats_scorecard"] is True


def test_budget_bands_flag_at_most_the_budget_of_the_live_portfolio(
    history_db: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    from services.signals.handler import SignalsProcessor
    from shared.db import transaction
    from tests.signals.streams import daily_usage

    events: list[Any] = []
    for n in range(40):  # usage falls by n% in the last four weeks: higher n, riskier
        events += daily_usage(f"b-{n:02d}", NOW - 120 * DAY, 93, 1000.0)
        events += daily_usage(f"b-{n:02d}", NOW - 27 * DAY, 28, 1000.0 * (1 - n / 45), source="late")
    store_history(history_db, events)
    settings = _settings(
        sqlite_url, tmp_path, budget_bands=True, budget_min_accounts=20, alert_budget=0.1, red_budget=0.05
    )
    holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard())
    processor = SignalsProcessor(settings, history_db, ManualClock(NOW), holder)
    accounts = [f"b-{n:02d}" for n in range(40)]
    with transaction(history_db) as session:
        processor.engine.rescore(session, accounts, NOW, "event")
        before = {a: b for a, _s, b in repository_scores(session, holder)}
    assert sum(b != "green" for b in before.values()) > 4  # fixed thresholds flag more than 10%

    bands = processor.learner.refit_bands()
    assert bands is not None and bands["accounts"] == 40
    processor.tick()  # the sweep re-scores accounts whose band changed

    with transaction(history_db) as session:
        after = {a: b for a, _s, b in repository_scores(session, holder)}
    flagged = sorted(a for a, b in after.items() if b != "green")
    assert 1 <= len(flagged) <= 4  # at most 10% of 40
    assert flagged == accounts[-len(flagged) :]  # the steepest declines
    assert sum(b == "red" for b in after.values()) <= 2


def repository_scores(session: Session, holder: ModelHolder) -> list[tuple[str, float, str]]:
    from services.signals import repository

    return repository.live_scores(session, holder.scorer.version)


def test_refit_scorecard_learns_weights_from_few_outcomes(
    history_db: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    from services.signals.refit import refit_scorecard
    from tests.signals.synthetic import labelled_history

    store_history(history_db, labelled_history(NOW - 200 * DAY))
    settings = _settings(sqlite_url, tmp_path)
    path, figures = refit_scorecard(settings, history_db, load_scorecard(), NOW, progress=False)

    refitted = load_scorecard(path)
    assert refitted.version.startswith("scorecard-3-refit-") and refitted.thresholds is not None
    weights = {rule.feature: rule.weight for rule in refitted.spec.rules}
    assert all(w >= 0 for w in weights.values())
    # In this history churners show tickets, a detractor NPS and a declined QBR, not usage dips.
    assert weights["nps_detractor"] > weights["usage_ratio_28d_vs_90d"]
    assert figures["refitted"]["roc_auc"] >= figures["original"]["roc_auc"]
