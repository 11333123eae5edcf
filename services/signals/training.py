"""`kamwatch train`: honest point-in-time observations -> candidate models -> report -> artifact.

Rows come from services/signals/observations.py: every row's label window is fully observed
(t + horizon <= the end of the history), churners and non-churners alike. The split is by time
with a purge gap of one horizon: training rows have t + horizon <= cutoff (their labels were
known at the cutoff), validation rows have t >= cutoff. Candidates (`CANDIDATES`: logistic
regressions of three breadths and strengths, gradient boosting, a blend) are fitted and
calibrated on training rows and the best on validation ROC AUC is kept (`choose`). The report
puts every candidate beside the scorecard, a naive "usage level only" baseline and a book-style
regression over per-metric usage, on identical rows.
Amber and red thresholds flag the alert budget of the portfolio as it stands at the end of the
history (scores only, no labels), which is what the live service will see.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sqlalchemy.orm import Session, sessionmaker

from services.signals import peers
from services.signals.config import SignalsSettings
from services.signals.evaluation import budget_thresholds, evaluate, top_share_per_date
from services.signals.features import (
    METRIC_FEATURES,
    MODEL_FEATURES,
    is_heavy_tailed,
    metric_feature,
    split_metric_feature,
)
from services.signals.modelstore import ModelStore
from services.signals.observations import as_matrix, history_end, iter_observations
from services.signals.report import report_markdown, write_plots
from services.signals.scoring import Scorecard, Scorer, signed_log
from shared.errors import ConfigError

MAX_MODEL_METRICS = 10  # per-metric features for the metrics most accounts use
MIN_METRIC_SHARE = 0.05  # ... and only metrics used by at least 5% of the accounts
VALIDATION_SHARE = 0.3
LATEST_DATES = 4  # thresholds follow the scores of the portfolio at its last four weekly dates


class FeatureRows:
    """Feature rows stored compactly: one float64 array per row over a shared column index (a
    dict per row would take ~10x the memory on a large portfolio)."""

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}
        self._values: list[array] = []

    def __len__(self) -> int:
        return len(self._values)

    def append(self, features: dict[str, float]) -> None:
        values = array("d", bytes(8 * len(self.columns)))
        for name, value in features.items():
            index = self.columns.setdefault(name, len(self.columns))
            if index >= len(values):
                values.extend([0.0] * (index + 1 - len(values)))
            values[index] = value
        self._values.append(values)

    def __getitem__(self, i: int) -> dict[str, float]:
        values = self._values[i]
        return {name: values[k] for name, k in self.columns.items() if k < len(values)}

    def matrix(self, names: list[str], index: list[int] | None = None) -> np.ndarray:
        wanted = [self.columns.get(n, -1) for n in names]
        rows = range(len(self._values)) if index is None else index
        out = np.zeros((len(rows), len(names)))
        for r, i in enumerate(rows):
            values = self._values[i]
            for c, k in enumerate(wanted):
                if 0 <= k < len(values):
                    out[r, c] = values[k]
        return out


@dataclass
class Dataset:
    """Observed rows (label window fully inside the history) in time order."""

    rows: FeatureRows = field(default_factory=FeatureRows)
    labels: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    churned_at: dict[str, datetime] = field(default_factory=dict)
    unobserved_rows: int = 0
    latest: list[dict[str, float]] = field(default_factory=list)  # the portfolio at the last dates
    latest_times: list[datetime] = field(default_factory=list)

    def subset(self, index: list[int]) -> tuple[np.ndarray, list[datetime], list[str]]:
        return (
            np.array([self.labels[i] for i in index]),
            [self.times[i] for i in index],
            [self.accounts[i] for i in index],
        )


def collect(sessions: sessionmaker[Session], horizon: timedelta, step: timedelta, progress: bool) -> Dataset:
    data = Dataset()
    end = history_end(sessions)
    recent = end - LATEST_DATES * step if end is not None else None
    for row in iter_observations(sessions, horizon, step, progress):
        if row.churned_at is not None:
            data.churned_at[row.account_id] = row.churned_at
        if recent is not None and row.as_of > recent:
            data.latest.append(row.features)
            data.latest_times.append(row.as_of)
        if not row.observed:
            data.unobserved_rows += 1
            continue
        data.rows.append(row.features)
        data.labels.append(row.label)
        data.times.append(row.as_of)
        data.accounts.append(row.account_id)
    return data


def split(data: Dataset, horizon: timedelta) -> tuple[list[int], list[int], datetime]:
    """Validation = the latest 30% of observed as-of dates; training ends one horizon before."""
    dates = sorted(set(data.times))
    if not dates:
        raise ConfigError("no observation has a fully observed label window: the history is too short")
    cutoff = dates[min(len(dates) - 1, int(len(dates) * (1 - VALIDATION_SHARE)))]
    train = [i for i, t in enumerate(data.times) if t + horizon <= cutoff]
    valid = [i for i, t in enumerate(data.times) if t >= cutoff]
    return train, valid, cutoff


def scorecard_at(scorecard: Scorecard, data: Dataset, cutoff: datetime, min_accounts: int) -> Scorecard:
    """The scorecard as it stood at `cutoff` (the start of the validation period). A peer
    reference weighted by churned accounts is refit on the accounts observed then and the churns
    known by then, so the validation rows' own outcomes never shaped the baseline a model is
    measured (and promoted) against; an unweighted one sees no outcome and is kept."""
    if scorecard.peers is None or not scorecard.peers.weights:
        return scorecard
    live = [data.rows[i] for i, t in enumerate(data.times) if t == cutoff]
    last: dict[str, int] = {}  # each account that churned by the cutoff: its last row before
    for i, (t, account) in enumerate(zip(data.times, data.accounts, strict=True)):
        churn = data.churned_at.get(account)
        if (
            churn is not None
            and t < churn <= cutoff
            and (account not in last or t > data.times[last[account]])
        ):
            last[account] = i
    churned = [data.rows[last[a]] for a in sorted(last)]
    return scorecard.with_peers(peers.fit(live, cutoff.isoformat(), min_accounts, 0, churned))


def check_enough(data: Dataset, train: list[int], valid: list[int], minimum: int) -> None:
    churns = {data.accounts[i] for i in train if data.labels[i]}
    if len(data.churned_at) < minimum or len(churns) < minimum:
        raise ConfigError(
            f"too few labelled churns to learn from: {len(data.churned_at)} account.churned event(s) in the "
            f"history, {len(churns)} usable for training before the validation period (a churn is usable "
            f"once its whole label window lies one horizon before the validation period); "
            f"at least {minimum} are needed (KAMWATCH_SIGNALS_MIN_CHURNS). "
            "Keep using the scorecard until more outcomes are recorded."
        )
    if {data.labels[i] for i in valid} != {0, 1}:
        raise ConfigError(
            "the validation period (the latest 30% of as-of dates) needs both churned and retained "
            "accounts; record more outcomes or a longer history"
        )


def model_metrics(data: Dataset, index: list[int]) -> list[str]:
    """The usage metrics that get per-metric model features: used by most training accounts."""
    users: Counter[str] = Counter()
    levels = {
        parts[0]: name
        for name in data.rows.columns
        if (parts := split_metric_feature(name)) is not None and parts[1] == "level_28d"
    }
    if levels:
        used = data.rows.matrix(list(levels.values()), index) > 0
        users.update({metric: int(used[:, c].sum()) for c, metric in enumerate(levels)})
    floor = MIN_METRIC_SHARE * max(1, len(index))
    ranked = sorted((m for m, n in users.items() if n >= floor), key=lambda m: (-users[m], m))
    return ranked[:MAX_MODEL_METRICS]


def feature_names(metrics: list[str]) -> list[str]:
    per_metric = [metric_feature(m, k) for m in metrics for k in METRIC_FEATURES]
    return [*MODEL_FEATURES, *per_metric]


USAGE_KINDS = ("level_7d", "level_28d", "level_84d", "level_180d", "change_28d", "per_user_28d")
LEVEL_KINDS = ("level_84d", "per_user_28d")


def usage_columns(names: list[str]) -> list[str]:
    """The per-metric usage features (and tenure): the compact candidate's inputs."""
    keep = [n for n in names if (p := split_metric_feature(n)) is not None and p[1] in USAGE_KINDS]
    return [*keep, "tenure_days"] if "tenure_days" in names else keep


def level_columns(names: list[str], kinds: tuple[str, ...] = LEVEL_KINDS) -> list[str]:
    """Each metric's 12-week level and (by default) its rate per active user: the smallest
    candidates' inputs (the account's overall usage levels when no metric is used widely enough)."""
    keep = [n for n in names if (p := split_metric_feature(n)) is not None and p[1] in kinds]
    return keep or [n for n in ("usage_28d_avg", "usage_baseline_90d_avg") if n in names]


def _preprocess(names: list[str], scale: bool, keep: list[str] | None = None) -> ColumnTransformer:
    """Heavy-tailed inputs log-transformed (and all standardised for linear models); columns not
    in `keep` (when given) are dropped, so every candidate takes the same feature matrix."""
    used = set(keep) if keep is not None else set(names)
    heavy = [i for i, n in enumerate(names) if n in used and is_heavy_tailed(n)]
    plain = [i for i, n in enumerate(names) if n in used and not is_heavy_tailed(n)]
    log = FunctionTransformer(signed_log)
    parts: list[tuple[str, Any, list[int]]] = [
        ("log", Pipeline([("log", log), ("scale", StandardScaler())]) if scale else log, heavy),
        ("plain", StandardScaler() if scale else "passthrough", plain),
    ]
    return ColumnTransformer(parts)


def row_mean(x: np.ndarray) -> np.ndarray:
    """One column: the mean of each row (module level, so a fitted pipeline can be saved)."""
    return np.asarray(x, dtype=float).mean(axis=1, keepdims=True)


def overall_level_pipeline(names: list[str]) -> Pipeline:
    """One input: the mean over metrics of the standardised log 12-week level (how much of
    everything an account uses, as the scorecard's usage_vs_peers), in a logistic regression.
    Two coefficients: stable with the few dozen churns of a young history."""
    keep = [n for n in names if (p := split_metric_feature(n)) is not None and p[1] == "level_84d"]
    keep = keep or [n for n in ("usage_baseline_90d_avg",) if n in names]
    return Pipeline(
        [
            ("prepare", _preprocess(names, True, keep)),
            ("overall", FunctionTransformer(row_mean)),
            ("model", LogisticRegression(max_iter=3000, C=1.0)),
        ]
    )


def _folds(y: np.ndarray) -> int:
    return max(2, min(3, int(y.sum()), int(len(y) - y.sum())))


def logistic_pipeline(names: list[str], c: float, keep: list[str] | None = None) -> Pipeline:
    """Log-transformed, standardised, L2-regularised logistic regression (C = 1 / strength)."""
    return Pipeline(
        [("prepare", _preprocess(names, True, keep)), ("model", LogisticRegression(max_iter=3000, C=c))]
    )


def boosting_pipeline(names: list[str]) -> Pipeline:
    """Gradient-boosted trees (shallow, regularised)."""
    booster = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        random_state=0,
    )
    return Pipeline([("prepare", _preprocess(names, scale=False)), ("model", booster)])


# The candidate family: how much to trust many weak inputs is what differs between histories
# (a B2B portfolio with tickets, payments and people, or daily usage only), so the family spans
# regularisation strength and input breadth, plus trees; `choose` picks on the validation period.
CANDIDATES: dict[str, Callable[[list[str]], Pipeline]] = {
    "levels": lambda names: logistic_pipeline(names, 1.0, level_columns(names, ("level_84d",))),
    "overall_level": overall_level_pipeline,
    "level_logistic": lambda names: logistic_pipeline(names, 1.0, level_columns(names)),
    "logistic": lambda names: logistic_pipeline(names, 1.0),
    "logistic_strong": lambda names: logistic_pipeline(names, 0.03),
    "usage_logistic": lambda names: logistic_pipeline(names, 0.3, usage_columns(names)),
    "gradient_boosting": boosting_pipeline,
}
BLEND = ("logistic", "gradient_boosting")  # "blend": the average of these two


def fit_logistic(x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
    """The full logistic candidate, calibrated (sigmoid)."""
    return _calibrated(CANDIDATES["logistic"](names), x, y)


def fit_boosting(x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
    """Gradient-boosted trees, calibrated (sigmoid)."""
    return _calibrated(boosting_pipeline(names), x, y)


def _calibrated(pipeline: Pipeline, x: np.ndarray, y: np.ndarray) -> Any:
    """One model fitted on all rows, with a sigmoid fitted on its cross-validated scores
    (averaging per-fold models instead ranked measurably worse on held-out dates).

    The sigmoid is kept increasing: pooled across folds whose models put their scores on
    different scales (a few dozen churns), cross-validated scores can rank churners lower, and a
    sigmoid fitted on them turned the model's own ranking upside down (a logistic regression
    ranking 0.71 on the validation rows scored 0.29 calibrated). Then the sigmoid is fitted on
    the model's scores of its training rows instead: the ranking is the model's, only the scale
    is calibrated."""
    calibrated = CalibratedClassifierCV(pipeline, method="sigmoid", cv=_folds(y), ensemble=False).fit(x, y)
    pair = calibrated.calibrated_classifiers_[0]
    sigmoid = pair.calibrators[0]  # p = 1 / (1 + exp(a * score + b)): increasing when a < 0
    if sigmoid.a_ >= 0:
        estimator = pair.estimator
        respond = estimator.decision_function if hasattr(estimator, "decision_function") else None
        scores = respond(x) if respond is not None else estimator.predict_proba(x)[:, 1]
        sigmoid.fit(np.asarray(scores, dtype=float), y)
        if sigmoid.a_ >= 0:  # not even the training rows rank: keep the order, unit slope
            sigmoid.a_, sigmoid.b_ = -1.0, 0.0
    return calibrated


def refit(name: str, x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
    """The chosen candidate fitted again, the same way, on every observed row: what is deployed.
    Its validation figures describe the procedure; the refit adds the outcomes of the latest
    periods (the purge gap and validation rows), which a short history cannot spare."""
    if name == "blend":
        return Blend([_calibrated(CANDIDATES[m](names), x, y) for m in BLEND])
    return _calibrated(CANDIDATES[name](names), x, y)


class Blend:
    """The average of two calibrated models' probabilities."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)


def naive_scores(rows: list[dict[str, float]]) -> np.ndarray:
    """Usage level only: the less an account used the product in 28 days, the riskier. Ties
    (most often: no usage at all in 28 days) are broken by the 90-day level, then by the days
    since the last activity, so the baseline can be flagged at a budget like the others instead of
    all or none of a tie."""
    level = np.array([max(row.get("usage_28d_avg", 0.0), 0.0) for row in rows])
    longer = np.array([max(row.get("usage_baseline_90d_avg", 0.0), 0.0) for row in rows])
    silent = np.array([max(row.get("days_since_last_activity", 0.0), 0.0) for row in rows])
    return 1 / (1 + np.log1p(level + 1e-3 * longer + 1e-6 / (1 + silent)))


def book_regression(data: Dataset, train: list[int], metrics: list[str]) -> tuple[Any, list[str]]:
    """A textbook churn regression (per-metric 28-day usage, its change, per-user rates, logs)."""
    names = [metric_feature(m, k) for m in metrics for k in ("level_28d", "change_28d", "per_user_28d")]
    names = names or ["usage_28d_avg"]
    x = data.rows.matrix(names, train)
    y = np.array([data.labels[i] for i in train])
    model = Pipeline([("log", FunctionTransformer(signed_log)), ("scale", StandardScaler())])
    model.steps.append(("model", LogisticRegression(max_iter=3000)))
    return model.fit(x, y), names


def book_auc(data: Dataset, valid_idx: list[int], book: tuple[Any, list[str]]) -> float:
    """The validation ROC AUC of a fitted book-style regression (`book_regression`'s result)."""
    from sklearn.metrics import roc_auc_score

    model, names = book
    scores = model.predict_proba(data.rows.matrix(names, valid_idx))[:, 1]
    return float(roc_auc_score([data.labels[i] for i in valid_idx], scores))


def train(
    settings: SignalsSettings,
    sessions: sessionmaker[Session],
    scorecard: Scorecard,
    now: datetime,
    progress: bool = True,
    current: Scorer | None = None,
    horizon_days: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Fit, compare on the validation period, write the versioned artifact and its report."""
    horizon = timedelta(days=horizon_days or settings.horizon_days)
    data = collect(sessions, horizon, timedelta(days=settings.observation_step_days), progress)
    train_idx, valid_idx, cutoff = split(data, horizon)
    check_enough(data, train_idx, valid_idx, settings.min_churns)
    metrics = model_metrics(data, train_idx)
    names = feature_names(metrics)
    x = data.rows.matrix(names)
    y = np.array(data.labels)
    valid_times = [data.times[i] for i in valid_idx]
    fitted = _candidates(
        x[train_idx], y[train_idx], names, x[valid_idx], y[valid_idx], valid_times, settings.alert_budget
    )
    sizes = validation_sizes(data, valid_idx)
    book = book_regression(data, train_idx, metrics)  # the yardstick: one fit, for the choice and the report
    best, selection = choose(fitted, sizes, book_auc(data, valid_idx, book))
    model = fitted[best]["model"]
    everything = list(range(len(y)))
    deployed = refit(best, x, y, names)  # the validated procedure, on every observed row
    amber, red = portfolio_thresholds(
        lambda rows: deployed.predict_proba(as_matrix(rows, names))[:, 1], data, settings
    )
    # The validation figures are those of the fit on the training rows, flagged at its own
    # threshold for the budget (the deployed fit's probabilities are on another scale).
    validated_amber, validated_red = portfolio_thresholds(
        lambda rows: model.predict_proba(as_matrix(rows, names))[:, 1], data, settings
    )
    report = _report(settings, data, train_idx, valid_idx, cutoff, horizon, x, fitted, best, validated_amber)
    report["validated_thresholds"] = {"amber": validated_amber, "red": validated_red}
    report["selection"] = selection
    report["validation"].update(churned_accounts=sizes[0], retained_accounts=sizes[1])
    report["deployed"] = {"method": DEPLOYED, **_period(data, everything)}
    card = scorecard_at(scorecard, data, cutoff, settings.budget_min_accounts)
    if current is not None and current.version == scorecard.version:
        current = None  # the scorecard in use: measured as it stood at the cutoff, above
    baselines, baseline_scores = _baselines(data, valid_idx, book, card, current, settings)
    baselines["scorecard"]["in_use"] = scorecard.version
    report.update(baselines)
    validated = model.predict_proba(x[valid_idx])[:, 1]
    if current is not None and "current_model" in report:
        report["versus_current"] = versus_current(data, valid_idx, validated, current)
    y_valid = y[valid_idx]
    curves = {"model": (validated, y_valid)} | {
        name: (scores, y_valid) for name, scores in baseline_scores.items()
    }
    report["thresholds"] = {"amber": amber, "red": red, "budget": settings.alert_budget}
    report["beats_scorecard"] = _beats(report["model"], report["scorecard"])
    report["beats_book_regression"] = _beats(report["model"], report["book_regression"])
    medians = {n: float(np.median(x[:, i])) for i, n in enumerate(names)}
    store = ModelStore(Path(settings.model_dir))
    version = save_artifact(store, deployed, names, medians, report, now, best, validated=model)
    write_plots(store.version_dir(version), curves, report["model"]["lead_days"])
    return version, report


VALIDATED_FILE = "validated.joblib"
DEPLOYED = (
    "the chosen candidate refitted the same way on every observed row (training, purge gap and "
    "validation): the validation figures measure that procedure, and the deployed model also learns "
    "from the latest outcomes"
)


def versus_current(
    data: Dataset, valid_idx: list[int], scores: np.ndarray, current: Scorer
) -> dict[str, Any]:
    """The candidate against the model in use on the validation rows that model never fitted on
    (as-of dates after its `fitted_through`): the deployed model is refitted on every row it had,
    so on older rows it would be judged on its own training data."""
    from sklearn.metrics import roc_auc_score

    seen = getattr(current, "fitted_through", None)
    keep = [k for k, i in enumerate(valid_idx) if seen is None or data.times[i] > seen]
    labels = np.array([data.labels[valid_idx[k]] for k in keep])
    figures: dict[str, Any] = {"rows": len(keep), "after": seen.isoformat() if seen else None}
    if len(set(labels.tolist())) < 2:
        return figures | {"model_roc_auc": None, "current_roc_auc": None}
    theirs = np.array(current.probabilities([data.rows[valid_idx[k]] for k in keep]))
    return figures | {
        "model_roc_auc": round(float(roc_auc_score(labels, scores[keep])), 4),
        "current_roc_auc": round(float(roc_auc_score(labels, theirs)), 4),
    }


def portfolio_thresholds(
    score: Callable[[list[dict[str, float]]], np.ndarray], data: Dataset, settings: SignalsSettings
) -> tuple[float, float]:
    """Thresholds that flag the alert budget of the portfolio as it stands at the end of the
    history (its last weekly dates: what the live service will see; no labels are needed)."""
    rows, times = data.latest, data.latest_times
    if not rows:
        rows, times = [data.rows[i] for i in range(len(data.rows))], data.times
    return budget_thresholds(score(rows), times, settings.alert_budget, settings.red_budget)


def _beats(model: dict[str, Any], other: dict[str, Any]) -> bool:
    return (model.get("roc_auc") or 0) > (other.get("roc_auc") or 0)


SIMPLEST_FIRST = (  # overall_level is smaller, but after the per-metric levels: the mix of
    # metrics matters wherever metrics differ in value (a book-style regression has it), so the
    # overall level is kept only when the per-metric levels are clearly worse on the validation rows
    "levels",
    "level_logistic",
    "overall_level",
    "usage_logistic",
    "logistic_strong",
    "logistic",
    "gradient_boosting",
    "blend",
)


def choose(
    fitted: dict[str, dict[str, Any]], sizes: tuple[int, int] | None = None, reference: float | None = None
) -> tuple[str, dict[str, Any]]:
    """The simplest candidate whose validation ROC AUC is within one standard error of the best
    (the one-standard-error rule; ties to three decimals go to the simpler one as well), and, when
    a candidate beats it, above `reference`: the book-style regression's AUC on the same rows. That
    regression is as small as the compact candidates, so trading AUC for simplicity below it buys
    nothing (a simpler candidate 0.008 behind it was chosen over a wider one 0.03 ahead). The error
    is Hanley and McNeil's for the best AUC, with `sizes` = (churned, retained) validation
    accounts: rows of one account are not independent. A year of history validates on a few dozen
    churners, where the spread between candidates is mostly noise and the compact model is the
    safer bet; with hundreds of churners the error is small and the best simply wins. Held-out
    folds of the training period were tried instead and were too noisy to choose with."""
    aucs = {name: round(entry["auc"], 4) for name, entry in fitted.items()}
    # A scorer whose top scores are one large tie (say, every account with no usage in 12 weeks)
    # cannot fill the alert budget: budget bands keep a tie together, so live it would flag
    # nobody. Such a candidate is not chosen, whatever its AUC, while another can fill it.
    usable = {
        n: a for n, a in aucs.items() if fitted[n].get("flags", 1.0) >= fitted[n].get("budget", 0.0) / 2
    }
    unusable = sorted(set(aucs) - set(usable))
    aucs = usable or aucs
    top = max(aucs.values())
    error = auc_standard_error(top, *sizes) if sizes else 0.0
    floor = round(top - error, 3) if error else round(top, 3)
    raised = reference is not None and floor <= round(reference, 3) < round(top, 3)
    if raised and reference is not None:
        floor = round(round(reference, 3) + 0.001, 3)  # strictly above the reference
    best = next(name for name in SIMPLEST_FIRST if name in aucs and round(aucs[name], 3) >= floor)
    method = (
        f"the simplest of the {len(aucs)} candidates within one standard error ({error:.3f}, Hanley-McNeil "
        f"over {sizes[0] if sizes else '?'} churned and {sizes[1] if sizes else '?'} retained validation "
        f"accounts) of the best validation ROC AUC ({top:.4f}); the best figure is the best of "
        f"{len(aucs)} on these rows, so it is optimistic by the selection"
    )
    if raised:
        method += f", and above the book-style regression's ({reference:.4f})"
    if unusable and usable:
        method += f"; left out, as they flag under half the alert budget (ties): {', '.join(unusable)}"
    scores = {name: round(entry["auc"], 4) for name, entry in fitted.items()}
    return best, {"method": method, "roc_auc": scores, "standard_error": round(error, 4)}


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of a ROC AUC from the two class sizes."""
    if positives < 1 or negatives < 1:
        return 0.0
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return float(max(variance, 0.0) ** 0.5)


def validation_sizes(data: Dataset, valid_idx: list[int]) -> tuple[int, int]:
    """(accounts with a churn row, accounts with a retained row) in the validation period."""
    churned = {data.accounts[i] for i in valid_idx if data.labels[i]}
    retained = {data.accounts[i] for i in valid_idx if not data.labels[i]}
    return len(churned), len(retained)


def _candidates(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    valid_times: list[datetime] | None = None,
    budget: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Every candidate fitted (and calibrated) on the training rows, with its validation AUC and
    the share of the validation rows it flags when each date's top `budget` is flagged."""
    from sklearn.metrics import roc_auc_score

    models: dict[str, Any] = {name: _calibrated(make(names), x, y) for name, make in CANDIDATES.items()}
    models["blend"] = Blend([models[m] for m in BLEND])
    fitted = {}
    for name, model in models.items():
        scores = model.predict_proba(x_valid)[:, 1]
        entry = {"model": model, "auc": float(roc_auc_score(y_valid, scores))}
        if valid_times is not None and budget is not None:
            entry["flags"] = float(top_share_per_date(scores, valid_times, budget).mean())
            entry["budget"] = budget
        fitted[name] = entry
    return fitted


def _report(
    settings: SignalsSettings,
    data: Dataset,
    train_idx: list[int],
    valid_idx: list[int],
    cutoff: datetime,
    horizon: timedelta,
    x: np.ndarray,
    fitted: dict[str, dict[str, Any]],
    best: str,
    amber: float,
) -> dict[str, Any]:
    y_valid, times, accounts = data.subset(valid_idx)
    candidates = {}
    for name, entry in fitted.items():
        scores = entry["model"].predict_proba(x[valid_idx])[:, 1]
        candidates[name] = evaluate(
            scores, y_valid, times, accounts, data.churned_at, amber, settings.alert_budget
        )
    return {
        "horizon_days": horizon.days,
        "cutoff": cutoff.isoformat(),
        "purge_days": horizon.days,
        "alert_budget": settings.alert_budget,
        "train": _period(data, train_idx),
        "validation": _period(data, valid_idx),
        "observed": _period(data, list(range(len(data.labels)))),
        "unobserved_rows_left_out": data.unobserved_rows,
        "chosen": best,
        "candidates": candidates,
        "model": candidates[best],
    }


def _baselines(
    data: Dataset,
    valid_idx: list[int],
    book: tuple[Any, list[str]],
    scorecard: Scorecard,
    current: Scorer | None,
    settings: SignalsSettings,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scorecard, naive and book-style baselines (and the model in use) on the validation rows;
    each is flagged at its own threshold for the same alert budget, so recall and precision
    compare like with like."""
    y_valid, times, accounts = data.subset(valid_idx)
    valid_rows = [data.rows[i] for i in valid_idx]
    book_model, book_names = book
    scorers: dict[str, Any] = {
        "scorecard": lambda rows: np.array(scorecard.probabilities(rows)),
        "naive_usage_level": naive_scores,
        "book_regression": lambda rows: book_model.predict_proba(as_matrix(rows, book_names))[:, 1],
    }
    if current is not None and current.version != scorecard.version:
        scorers["current_model"] = lambda rows: np.array(current.probabilities(rows))
    out: dict[str, Any] = {}
    curves: dict[str, np.ndarray] = {}
    for name, score in scorers.items():
        threshold = portfolio_thresholds(score, data, settings)[0]
        curves[name] = score(valid_rows)
        out[name] = evaluate(
            curves[name], y_valid, times, accounts, data.churned_at, threshold, settings.alert_budget
        )
    out["scorecard"]["version"] = scorecard.version
    return out, curves


def _period(data: Dataset, index: list[int]) -> dict[str, Any]:
    times = [data.times[i] for i in index]
    positives = int(sum(data.labels[i] for i in index))
    return {
        "observations": len(index),
        "positives": positives,
        "base_rate": round(positives / len(index), 4) if index else None,
        "accounts": len({data.accounts[i] for i in index}),
        "from": min(times).isoformat() if times else None,
        "to": max(times).isoformat() if times else None,
    }


def save_artifact(
    store: ModelStore,
    model: Any,
    names: list[str],
    medians: dict[str, float],
    report: dict[str, Any],
    now: datetime,
    kind: str,
    validated: Any = None,
) -> str:
    """<model_dir>/<version>/: model.joblib (deployed), validated.joblib (the same candidate fitted
    on the training rows only: what backtests of the validation period score), metadata.json,
    report.json, report.md."""
    version = store.new_version(now)
    folder = store.version_dir(version)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    if validated is not None:
        joblib.dump(validated, folder / VALIDATED_FILE)
    metadata = {
        "version": version,
        "created_at": now.isoformat(),
        "kind": f"{kind} (scikit-learn, calibrated)",
        "sklearn_version": sklearn.__version__,
        "features": names,
        "medians": medians,
        "horizon_days": report["horizon_days"],
        "cutoff": report["cutoff"],
        "fitted_through": report.get("deployed", {}).get("to"),
        "validated_thresholds": report.get("validated_thresholds"),
        "thresholds": report["thresholds"],
        "metrics": report["model"],
        "scorecard_metrics": report["scorecard"],
    }
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(report_markdown(f"Churn model {version}", report))
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")  # last: marks it complete
    return version
