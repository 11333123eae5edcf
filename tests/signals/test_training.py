"""Acceptance: `kamwatch train` beats the scorecard on later held-out dates, and a promoted model
is used by the running service without a restart (real broker, both DBs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.signals import repository
from services.signals.commands import run_train
from services.signals.config import SignalsSettings
from services.signals.events import Signal, event_row
from services.signals.handler import apply_signals
from shared.clock import ManualClock
from shared.db import transaction
from shared.events import to_json
from tests.helpers import NOW, wait_for
from tests.signals.streams import DAY, daily_usage
from tests.signals.synthetic import labelled_history


def store_history(db: sessionmaker[Session], events: list[Any]) -> None:
    """Write a labelled history straight into the signals store (as if consumed long ago)."""
    signals = [Signal(e.source, e.id, e.type, e.subject, e.time, e.data, to_json(e)) for e in events]
    with transaction(db) as session:
        inserted = repository.insert_new_events(session, [event_row(s, NOW) for s in signals])
        apply_signals(session, [s for s in signals if (s.source, s.event_id) in inserted])


def kamwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kamwatch.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _model_version(client: TestClient, auth: dict[str, str]) -> str | None:
    response = client.get("/v1/accounts/live-1/risk", headers=auth)
    return response.json()["model_version"] if response.status_code == 200 else None


def test_trained_model_beats_scorecard_and_is_hot_loaded(
    signals: TestClient,
    auth: dict[str, str],
    send: Callable[[list[Any]], int],
    db: sessionmaker[Session],
    signals_settings: SignalsSettings,
    clock: ManualClock,
    service_env: Callable[..., dict[str, str]],
) -> None:
    store_history(db, labelled_history(NOW - 200 * DAY))
    signals_settings.min_churns = 5

    version, report = run_train(signals_settings, clock, progress=False)

    assert report["model"]["roc_auc"] > report["scorecard"]["roc_auc"]
    assert report["validation"]["from"] >= report["cutoff"] > report["train"]["to"]
    folder = Path(signals_settings.model_dir) / version
    saved = json.loads((folder / "report.json").read_text())
    assert {"roc_auc", "pr_auc", "brier", "top_decile_lift", "recall_at_budget", "lead_days_median"} <= set(
        saved["model"]
    )
    assert "ROC AUC" in (folder / "report.md").read_text() or "roc_auc" in (folder / "report.md").read_text()
    assert (folder / "model.joblib").exists() and json.loads((folder / "metadata.json").read_text())[
        "features"
    ]

    send(daily_usage("live-1", NOW - 40 * DAY, 41, 900.0))
    wait_for(lambda: _model_version(signals, auth) == "scorecard-3", what="scored by the scorecard")

    env = service_env(KAMWATCH_SIGNALS_MODEL_DIR=signals_settings.model_dir)
    promoted = kamwatch(env, "model", "promote", version)
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: _model_version(signals, auth) == version, what="promoted model in use without restart")
    risk = signals.get("/v1/accounts/live-1/risk", headers=auth).json()
    assert risk["changes"][0] == f"now scored by {version} (was scorecard-3)"
    listing = kamwatch(env, "model", "list")
    assert f"* {version}" in listing.stdout

    rolled = kamwatch(env, "model", "rollback")
    assert rolled.returncode == 0 and "scorecard" in rolled.stdout
    wait_for(lambda: _model_version(signals, auth) == "scorecard-3", what="rolled back to the scorecard")


def test_train_refuses_without_enough_churns(
    db: sessionmaker[Session], service_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    store_history(db, daily_usage("lonely", NOW - 200 * DAY, 150, 100.0))
    result = kamwatch(service_env(KAMWATCH_SIGNALS_MODEL_DIR=str(tmp_path)), "train", "--quiet")
    assert result.returncode == 2
    assert "too few labelled churns" in result.stderr and "0 account.churned" in result.stderr


def test_the_usage_level_baseline_breaks_ties_so_a_budget_can_be_flagged() -> None:
    from services.signals.training import naive_scores

    rows = [
        {"usage_28d_avg": 2.0, "usage_baseline_90d_avg": 2.0, "days_since_last_activity": 0.0},
        {"usage_28d_avg": 0.0, "usage_baseline_90d_avg": 3.0, "days_since_last_activity": 29.0},
        {"usage_28d_avg": 0.0, "usage_baseline_90d_avg": 0.0, "days_since_last_activity": 40.0},
        {"usage_28d_avg": 0.0, "usage_baseline_90d_avg": 0.0, "days_since_last_activity": 90.0},
    ]
    scores = naive_scores(rows)
    assert len(set(scores.tolist())) == 4  # no ties among silent accounts
    assert list(scores.argsort()) == [0, 1, 2, 3]  # less usage, longer silence: riskier


def test_the_choice_keeps_the_compact_model_unless_another_wins_by_more_than_its_error() -> None:
    from services.signals.training import auc_standard_error, choose

    fitted = {
        name: {"auc": auc}
        for name, auc in {
            "usage_logistic": 0.70,
            "logistic_strong": 0.69,
            "logistic": 0.72,
            "gradient_boosting": 0.74,
            "blend": 0.735,
        }.items()
    }
    # Few churned accounts: 0.04 between candidates is inside one standard error (about 0.06).
    few = auc_standard_error(0.74, 20, 300)
    assert 0.04 < few < 0.1 and auc_standard_error(0.74, 2000, 30000) < 0.01
    best, selection = choose(fitted, (20, 300))
    assert best == "usage_logistic" and selection["standard_error"] == round(few, 4)
    # Many: the error is small and the best candidate wins; without sizes, the best wins too.
    assert choose(fitted, (2000, 30000))[0] == "gradient_boosting"
    assert choose(fitted)[0] == "gradient_boosting"
    # Within the error but not the simplest: the first of the simplicity order that qualifies.
    fitted["usage_logistic"]["auc"] = 0.60
    assert choose(fitted, (20, 300))[0] == "logistic_strong"


def test_the_simpler_choice_never_falls_below_the_book_style_regression() -> None:
    """Within one standard error of the best, but at or under the textbook regression on the same
    rows: the next candidate above it is chosen; when none beats it, the usual rule applies."""
    from services.signals.training import choose

    fitted = {n: {"auc": a} for n, a in {"levels": 0.625, "logistic_strong": 0.64, "logistic": 0.664}.items()}
    assert choose(fitted, (26, 439))[0] == "levels"  # the error is about 0.055
    best, selection = choose(fitted, (26, 439), reference=0.633)
    assert best == "logistic_strong" and "book-style regression's (0.6330)" in selection["method"]
    assert choose(fitted, (26, 439), reference=0.64)[0] == "logistic"  # a tie is not above it
    assert choose(fitted, (26, 439), reference=0.70)[0] == "levels"  # nothing beats it
    assert choose(fitted, (26, 439), reference=0.60)[0] == "levels"  # below the floor already


def test_a_candidate_that_cannot_fill_the_alert_budget_is_not_chosen() -> None:
    """Its top scores are one tie larger than the budget: live it would flag nobody."""
    from services.signals.training import choose

    fitted = {
        "level_logistic": {"auc": 0.56, "flags": 0.0, "budget": 0.09},
        "usage_logistic": {"auc": 0.53, "flags": 0.09, "budget": 0.09},
        "gradient_boosting": {"auc": 0.552, "flags": 0.088, "budget": 0.09},
    }
    best, selection = choose(fitted, (1500, 6000))
    assert best == "gradient_boosting" and "level_logistic" in selection["method"]
    assert selection["roc_auc"]["level_logistic"] == 0.56  # still reported
    fitted["level_logistic"]["flags"] = 0.06  # two thirds of the budget: usable
    assert choose(fitted, (1500, 6000))[0] == "level_logistic"


def test_the_calibration_never_turns_a_models_ranking_upside_down() -> None:
    """Churners sit higher on x in two of three blocks, lower in the first: the model fitted on
    all rows ranks by x, but the folds (contiguous blocks, as StratifiedKFold keeps them) pool into
    an inverted relation, and a sigmoid fitted on them used to flip the ranking."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline

    from services.signals.training import _calibrated

    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 30)
    block = np.r_[np.arange(90) * 3 // 90, np.arange(30) * 3 // 30]
    x = (np.where(block == 0, -1.0, 1.0) * y + rng.normal(0, 0.5, 120)).reshape(-1, 1)

    def model() -> Pipeline:
        return Pipeline([("model", LogisticRegression())])

    raw = roc_auc_score(y, model().fit(x, y).predict_proba(x)[:, 1])
    unguarded = CalibratedClassifierCV(model(), method="sigmoid", cv=3, ensemble=False).fit(x, y)
    assert raw > 0.6 and roc_auc_score(y, unguarded.predict_proba(x)[:, 1]) < 0.4  # the old flip
    guarded = _calibrated(model(), x, y)
    scores = guarded.predict_proba(x)[:, 1]
    assert roc_auc_score(y, scores) == raw  # the model's own ranking, calibrated in scale only
    assert np.all(np.diff(scores[np.argsort(x[:, 0])]) >= 0)  # increasing in x, like the model
