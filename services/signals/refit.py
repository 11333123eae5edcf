"""`kamwatch train --refit-scorecard`: the scorecard's weights fitted on the stored outcomes.

The rules (features, start, full) stay as a KAM team wrote them; each rule's 0..1 fraction
becomes one input of a strongly regularised logistic regression, whose coefficients (negative
ones set to 0, so every rule still only raises risk) become the weights. Works with few churns,
where a full model would not. The result is a new scorecard file with budget thresholds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sqlalchemy.orm import Session, sessionmaker

from services.signals.config import SignalsSettings
from services.signals.evaluation import budget_thresholds, evaluate
from services.signals.scoring import Scorecard, ScorecardFile
from services.signals.training import check_enough, collect, scorecard_at, split


def rule_fractions(scorecard: Scorecard, rows: list[dict[str, float]]) -> np.ndarray:
    rules = scorecard.spec.rules
    return np.array([[r.points(row) / r.weight if r.weight else 0.0 for r in rules] for row in rows])


def refit_scorecard(
    settings: SignalsSettings,
    sessions: sessionmaker[Session],
    scorecard: Scorecard,
    now: datetime,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    horizon = timedelta(days=settings.horizon_days)
    data = collect(sessions, horizon, timedelta(days=settings.observation_step_days), progress)
    train_idx, valid_idx, cutoff = split(data, horizon)
    check_enough(data, train_idx, valid_idx, settings.min_churns)
    # the peer reference as it stood at the validation cutoff (weights learned from churned
    # accounts see no validation outcome), and with it each row's usage_vs_peers
    scorecard = scorecard_at(scorecard, data, cutoff, settings.budget_min_accounts)
    rows = [{**data.rows[i], **scorecard.derived(data.rows[i])} for i in range(len(data.rows))]
    x = rule_fractions(scorecard, rows)
    y = np.array(data.labels)
    model = LogisticRegression(C=0.1, max_iter=3000).fit(x[train_idx], y[train_idx])
    weights = np.clip(model.coef_[0], 0, None)
    spec = scorecard.spec.model_dump()
    spec["version"] = f"{scorecard.spec.version}-refit-{now:%Y%m%d}"
    spec["intercept"] = round(float(model.intercept_[0]), 4)
    for rule, weight in zip(spec["rules"], weights, strict=True):
        rule["weight"] = round(float(weight), 4)
    unbanded = {**spec, "amber_threshold": None, "red_threshold": None}
    refitted = Scorecard(ScorecardFile.model_validate(unbanded), scorecard.peers)
    train_scores = np.array(refitted.probabilities([data.rows[i] for i in train_idx]))
    amber, red = budget_thresholds(
        train_scores, [data.times[i] for i in train_idx], settings.alert_budget, settings.red_budget
    )
    spec["amber_threshold"], spec["red_threshold"] = amber, red
    refitted = Scorecard(ScorecardFile.model_validate(spec), scorecard.peers)
    y_valid, times, accounts = data.subset(valid_idx)
    figures = {
        name: evaluate(
            np.array(card.probabilities([data.rows[i] for i in valid_idx])),
            y_valid,
            times,
            accounts,
            data.churned_at,
            card.thresholds[0] if card.thresholds else settings.amber_threshold,
        )
        for name, card in (("refitted", refitted), ("original", scorecard))
    }
    path = Path(settings.model_dir) / f"scorecard-{spec['version']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Refitted by `kamwatch train --refit-scorecard` on {now:%Y-%m-%d} from {scorecard.version}.\n"
    clean = {**spec, "rules": [{k: v for k, v in r.items() if v is not None} for r in spec["rules"]]}
    path.write_text(header + yaml.safe_dump(clean, sort_keys=False))
    return path, figures
