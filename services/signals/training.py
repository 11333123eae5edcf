"""`kamwatch train`: point-in-time observations -> calibrated scikit-learn model -> report.

Observation (account, t): features as of t from the events with time <= t only (the same pure
fold and feature code as the live path); label = an `account.churned` event in (t, t + horizon].
Negatives need a fully observed horizon (t + horizon <= the end of the history); no observation
is taken after an account churned. Validation uses later dates than training: training rows
have t + horizon <= cutoff (their labels were known by then), validation rows have t >= cutoff.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from services.signals import repository
from services.signals.config import SignalsSettings
from services.signals.engine import account_info
from services.signals.events import Signal, signal_from_payload
from services.signals.features import MODEL_FEATURES, AccountInfo, compute_features, relevant_state
from services.signals.modelstore import ModelStore
from services.signals.scoring import Scorecard
from services.signals.state import AccountState
from shared.db import transaction
from shared.errors import ConfigError

WARMUP_DAYS = 28  # no observation before an account has four weeks of history


@dataclass
class Observations:
    rows: list[dict[str, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    churned_at: dict[str, datetime] = field(default_factory=dict)


def load_history(sessions: sessionmaker[Session]) -> tuple[dict[str, list[Signal]], dict[str, Any]]:
    history: dict[str, list[Signal]] = defaultdict(list)
    with transaction(sessions) as session:
        for chunk in repository.iter_events(session):
            for row in chunk:
                history[row.account_id].append(signal_from_payload(row.payload))
        infos = {a: account_info(r) for a, r in repository.accounts_by_id(session, history).items()}
    for signals in history.values():
        signals.sort(key=lambda s: (s.time, s.key))
    return dict(history), infos


def build_observations(
    history: dict[str, list[Signal]],
    infos: dict[str, Any],
    horizon: timedelta,
    step: timedelta,
    progress: bool,
) -> Observations:
    obs = Observations()
    end = max((s.time for signals in history.values() for s in signals), default=datetime.now(UTC))
    for account_id, signals in tqdm(
        sorted(history.items()), desc="observations", unit="account", file=sys.stderr, disable=not progress
    ):
        churn = min((s.time for s in signals if s.type == "account.churned"), default=None)
        if churn is not None:
            obs.churned_at[account_id] = churn
        _observe_account(
            obs, account_id, signals, infos.get(account_id) or account_info(None), churn, end, horizon, step
        )
    return obs


def _observe_account(
    obs: Observations,
    account_id: str,
    signals: list[Signal],
    info: Any,
    churn: datetime | None,
    end: datetime,
    horizon: timedelta,
    step: timedelta,
) -> None:
    first = signals[0].time
    t = datetime(first.year, first.month, first.day, tzinfo=UTC) + timedelta(days=WARMUP_DAYS)
    state, index = AccountState(), 0
    while t < (churn or end) and (churn is not None or t + horizon <= end):
        while index < len(signals) and signals[index].time <= t:
            s = signals[index]
            state.apply(s.type, s.data, s.time, s.key)
            index += 1
        buckets, entities = relevant_state(state.buckets, state.entities.values(), t)
        as_of_info = AccountInfo(info.arr, renewal_on_or_after(info.renewal_date, t.date()))
        features, _ = compute_features(buckets, entities, as_of_info, t)
        obs.rows.append(features)
        obs.labels.append(int(churn is not None and churn <= t + horizon))
        obs.times.append(t)
        obs.accounts.append(account_id)
        t += step


def renewal_on_or_after(renewal: date | None, day: date) -> date | None:
    """The registry keeps only the current renewal date; contracts renew yearly on that day, so
    the renewal ahead of a past day is the anniversary of it on or after that day."""
    if renewal is None:
        return None
    years = renewal.year - day.year
    candidate = _shift_years(renewal, -years)
    if candidate < day:
        candidate = _shift_years(candidate, 1)
    return candidate


def _shift_years(value: date, years: int) -> date:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February in a common year
        return value.replace(year=value.year + years, day=28)


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    """Standardised logistic regression, calibrated (sigmoid) on held-out folds."""
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000, class_weight="balanced"))]
    )
    folds = max(2, min(3, int(y.sum()), int(len(y) - y.sum())))
    return CalibratedClassifierCV(pipeline, method="sigmoid", cv=folds).fit(x, y)


def evaluate(
    scores: np.ndarray,
    y: np.ndarray,
    times: list[datetime],
    accounts: list[str],
    churned: dict[str, datetime],
    alert_at: float,
) -> dict[str, Any]:
    order = np.argsort(-scores, kind="stable")
    top = order[: max(1, len(order) // 10)]
    base = float(y.mean())
    return {
        "roc_auc": round(float(roc_auc_score(y, scores)), 4),
        "pr_auc": round(float(average_precision_score(y, scores)), 4),
        "brier": round(float(brier_score_loss(y, scores)), 4),
        "top_decile_lift": round(float(y[top].mean()) / base, 3) if base else None,
        "median_alert_lead_days": _lead_time(scores, times, accounts, churned, alert_at),
    }


def _lead_time(
    scores: np.ndarray,
    times: list[datetime],
    accounts: list[str],
    churned: dict[str, datetime],
    alert_at: float,
) -> float | None:
    """Median days between the first alert (score >= the amber threshold) and the churn."""
    first_alert: dict[str, datetime] = {}
    for score, t, account in zip(scores, times, accounts, strict=True):
        if account in churned and score >= alert_at and t < churned[account]:
            first_alert[account] = min(first_alert.get(account, t), t)
    leads = [(churned[a] - t).total_seconds() / 86400 for a, t in first_alert.items()]
    return round(statistics.median(leads), 1) if leads else None


def split(obs: Observations, horizon: timedelta) -> tuple[list[int], list[int], datetime]:
    """Time-ordered: train rows' labels were known by the cutoff; validation rows come after it."""
    times = sorted(obs.times)
    cutoff = times[int(len(times) * 0.7)] if times else datetime.now(UTC)
    train = [i for i, t in enumerate(obs.times) if t + horizon <= cutoff]
    valid = [i for i, t in enumerate(obs.times) if t >= cutoff]
    return train, valid, cutoff


def check_enough(obs: Observations, train: list[int], valid: list[int], minimum: int) -> None:
    churns = {obs.accounts[i] for i in train if obs.labels[i]}
    if len(obs.churned_at) < minimum or len(churns) < minimum:
        raise ConfigError(
            f"too few labelled churns to learn from: {len(obs.churned_at)} account.churned event(s) in the "
            f"history, {len(churns)} usable for training before the validation period; "
            f"at least {minimum} are needed (KAMWATCH_SIGNALS_MIN_CHURNS). "
            "Keep using the scorecard until more outcomes are recorded."
        )
    labels = {obs.labels[i] for i in valid}
    if labels != {0, 1}:
        raise ConfigError(
            "the validation period (the latest 30% of observation dates) needs both churned and retained "
            "accounts; record more outcomes or a longer history"
        )


def train(
    settings: SignalsSettings,
    sessions: sessionmaker[Session],
    scorecard: Scorecard,
    now: datetime,
    progress: bool = True,
) -> tuple[str, dict[str, Any]]:
    """Build observations, fit, validate on later dates, write the versioned artifact and report."""
    horizon = timedelta(days=settings.horizon_days)
    history, infos = load_history(sessions)
    obs = build_observations(
        history, infos, horizon, timedelta(days=settings.observation_step_days), progress
    )
    train_idx, valid_idx, cutoff = split(obs, horizon)
    check_enough(obs, train_idx, valid_idx, settings.min_churns)
    names = list(MODEL_FEATURES)
    x = np.array([[row[n] for n in names] for row in obs.rows], dtype=float)
    y = np.array(obs.labels)
    model = fit(x[train_idx], y[train_idx])
    valid_times = [obs.times[i] for i in valid_idx]
    valid_accounts = [obs.accounts[i] for i in valid_idx]
    model_scores = model.predict_proba(x[valid_idx])[:, 1]
    card_scores = np.array([scorecard.score(obs.rows[i])[0] for i in valid_idx])
    alert = settings.amber_threshold
    report: dict[str, Any] = {
        "horizon_days": settings.horizon_days,
        "cutoff": cutoff.isoformat(),
        "train": _period(obs, train_idx),
        "validation": _period(obs, valid_idx),
        "model": evaluate(model_scores, y[valid_idx], valid_times, valid_accounts, obs.churned_at, alert),
        "scorecard": {
            "version": scorecard.version,
            **evaluate(card_scores, y[valid_idx], valid_times, valid_accounts, obs.churned_at, alert),
        },
    }
    report["beats_scorecard"] = report["model"]["roc_auc"] > report["scorecard"]["roc_auc"]
    medians = {n: float(np.median(x[train_idx][:, i])) for i, n in enumerate(names)}
    version = save_artifact(ModelStore(Path(settings.model_dir)), model, names, medians, report, now)
    return version, report


def save_artifact(
    store: ModelStore,
    model: Any,
    names: list[str],
    medians: dict[str, float],
    report: dict[str, Any],
    now: datetime,
) -> str:
    """<model_dir>/<version>/: model.joblib, metadata.json, report.json, report.md."""
    version = store.new_version(now)
    folder = store.version_dir(version)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    metadata = {
        "version": version,
        "created_at": now.isoformat(),
        "kind": "calibrated logistic regression (scikit-learn)",
        "sklearn_version": sklearn.__version__,
        "features": names,
        "medians": medians,
        "horizon_days": report["horizon_days"],
        "metrics": report["model"],
        "scorecard_metrics": report["scorecard"],
    }
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "report.md").write_text(report_markdown(version, report))
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")  # last: marks it complete
    return version


def _period(obs: Observations, index: list[int]) -> dict[str, Any]:
    times = [obs.times[i] for i in index]
    return {
        "observations": len(index),
        "positives": int(sum(obs.labels[i] for i in index)),
        "accounts": len({obs.accounts[i] for i in index}),
        "from": min(times).isoformat() if times else None,
        "to": max(times).isoformat() if times else None,
    }


def report_markdown(version: str, report: dict[str, Any]) -> str:
    rows = ["roc_auc", "pr_auc", "brier", "top_decile_lift", "median_alert_lead_days"]
    lines = [
        f"# Churn model {version}",
        "",
        f"Horizon {report['horizon_days']} days; trained on observations up to "
        f"{report['train']['to']}, validated on {report['validation']['from']} .. "
        f"{report['validation']['to']} "
        f"(cutoff {report['cutoff']}).",
        "",
        f"| metric | model | {report['scorecard']['version']} |",
        "|---|---|---|",
        *(f"| {m} | {report['model'][m]} | {report['scorecard'][m]} |" for m in rows),
        "",
        f"Training: {json.dumps(report['train'])}",
        f"Validation: {json.dumps(report['validation'])}",
        "",
        f"Beats the scorecard on ROC AUC: {'yes' if report['beats_scorecard'] else 'no'}.",
        "Brier: lower is better. Lead time: days between the first score at or above the amber "
        "threshold and the churn.",
    ]
    return "\n".join(lines) + "\n"
