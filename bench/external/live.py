"""The live target of issue 10, measured offline: at mid-stream snapshots, which share of the
accounts that churn within the next horizon does the portfolio flag, flagging the alert budget?

This replays what a running kamwatch knows at each snapshot date S, from a history already loaded
by `bench.external.run` (its SQLite database under --out):
- the model in use at S is what learning would have trained from the outcomes known at S: the
  observations whose label window ended by S (t + horizon <= S), put through `kamwatch train`'s
  own procedure (split with a purge gap, the candidate family, `choose`), kept only if it beats
  the scorecard on its validation rows by more than one standard error of its ROC AUC
  (learning's promotion rule, `learning.scorecard_margin`); with too few churns for that,
  or a candidate that does not beat it, the scorecard with its peer reference fitted on the live
  accounts at S, as live;
- the portfolio at S is every account alive at S, scored by that model with the features as of
  S (the same observation code as train and backtest);
- budget bands flag the top ALERT_BUDGET share of those scores (ties kept together);
- recall = flagged accounts among those that churn in (S, S + horizon].

    .venv/bin/python -m bench.external.run --data behaviours --accounts 500 --out var/external/b500
    .venv/bin/python -m bench.external.live --out var/external/b500

It prints one line per snapshot and writes <out>/live.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from services.signals import peers, training
from services.signals.config import SignalsSettings
from services.signals.evaluation import share_threshold
from services.signals.learning import SHORT_HORIZON_DAYS, scorecard_margin
from services.signals.observations import Observation, as_matrix, iter_observations
from services.signals.scoring import load_scorecard
from shared.db import make_engine, make_sessionmaker
from shared.errors import ConfigError


def dataset(rows: list[Observation], horizon: timedelta, at: datetime) -> training.Dataset:
    """The observed rows as known at `at` (label window ended by then), as `collect` builds them."""
    data = training.Dataset()
    for row in rows:
        if row.churned_at is not None and row.churned_at <= at:
            data.churned_at[row.account_id] = row.churned_at
        if row.as_of + horizon > at:
            continue
        data.rows.append(row.features)
        data.labels.append(int(row.churned_at is not None and row.churned_at <= row.as_of + horizon))
        data.times.append(row.as_of)
        data.accounts.append(row.account_id)
    return data


def trainable(
    rows: list[Observation], at: datetime, settings: SignalsSettings
) -> tuple[int, training.Dataset, list[int], list[int], datetime] | None:
    """(horizon days, rows known at `at`, training and validation indexes, cutoff) as learning
    would train at `at`: at the configured horizon, else at 30 days; None with too few churns."""
    for days in (settings.horizon_days, SHORT_HORIZON_DAYS):
        horizon = timedelta(days=days)
        data = dataset(rows, horizon, at)
        try:
            train_idx, valid_idx, cutoff = training.split(data, horizon)
            training.check_enough(data, train_idx, valid_idx, settings.min_churns)
        except ConfigError:
            continue
        return days, data, train_idx, valid_idx, cutoff
    return None


def fit_at(
    rows: list[Observation],
    at: datetime,
    settings: SignalsSettings,
    refit: bool,
    drop: tuple[str, ...] = (),
    se_rule: bool = True,
    margin_rule: bool = True,
) -> tuple[str, Any]:
    """(name, scorer over feature dicts) of the model learning would use at `at`."""
    found = trainable(rows, at, settings)
    if found is not None:
        days, data, train_idx, valid_idx, cutoff = found
        metrics = training.model_metrics(data, train_idx)
        names = [n for n in training.feature_names(metrics) if not (drop and n.endswith(drop))]
        x = data.rows.matrix(names)
        y = np.array(data.labels)
        times = [data.times[i] for i in valid_idx]
        fitted = training._candidates(
            x[train_idx], y[train_idx], names, x[valid_idx], y[valid_idx], times, settings.alert_budget
        )
        sizes = training.validation_sizes(data, valid_idx) if se_rule else None
        reference = training.book_auc(data, valid_idx, training.book_regression(data, train_idx, metrics))
        best, _selection = training.choose(fitted, sizes, reference)
        # learning promotes it only if it beats the scorecard in use on the validation rows by
        # more than one standard error of its AUC (learning.scorecard_margin); `train` measures
        # the scorecard as it stood at the cutoff (training.scorecard_at: no validation outcome
        # in its peer weights)
        card = _card_scorer(rows, cutoff, settings, peer_usage=True)
        card_auc = float(roc_auc_score(y[valid_idx], card([data.rows[i] for i in valid_idx])))
        card = _card_scorer(rows, at, settings, peer_usage=True)
        auc = fitted[best]["auc"]
        margin = scorecard_margin(auc, *training.validation_sizes(data, valid_idx)) if margin_rule else 0.0
        if auc <= card_auc + margin:
            return f"scorecard (kept: {best}@{days}d {auc:.3f} <= {card_auc:.3f} + {margin:.3f})", card
        model = fitted[best]["model"]
        if refit:
            model = training.refit(best, x, y, names)
        return f"{best}@{days}d", _scorer(model, names)
    return "scorecard", _card_scorer(rows, at, settings, peer_usage=True)


def _card_scorer(rows: list[Observation], at: datetime, settings: SignalsSettings, peer_usage: bool) -> Any:
    """The scorecard as live at `at`: with the peer reference fitted on the live accounts then
    (the learner's refit_peers, with BUDGET_BANDS as in `kamwatch run`), or without it."""
    card = load_scorecard(settings.scorecard_path)
    if peer_usage:
        live = [r.features for r in rows if r.as_of == at]
        card = card.with_peers(
            peers.fit(live, at.isoformat(), settings.budget_min_accounts, 0, churned_by(rows, at))
        )
    return lambda feats: np.array(card.probabilities(feats))


def churned_by(rows: list[Observation], at: datetime) -> list[dict[str, float]]:
    """The features of every account that churned by `at`, at its last observation before its
    churn: what live keeps in its churned row (features as last scored)."""
    last: dict[str, Observation] = {}
    for row in rows:
        if row.churned_at is None or row.churned_at > at or row.as_of >= row.churned_at:
            continue
        if row.account_id not in last or row.as_of > last[row.account_id].as_of:
            last[row.account_id] = row
    return [last[a].features for a in sorted(last)]


EXTRA: dict[str, Any] = {  # tried beside the product's candidates with --study
    "levels_logistic": lambda names: training.logistic_pipeline(
        names,
        0.1,
        [n for n in names if n.endswith(("level_28d", "level_84d", "level_180d")) or n == "tenure_days"],
    ),
}


def study_at(
    rows: list[Observation], at: datetime, settings: SignalsSettings, budget: float
) -> dict[str, Any]:
    """Every candidate (and EXTRA) at one snapshot: its validation ROC AUC and, refitted on every
    observed row, the recall of the live portfolio at the budget."""
    horizon = timedelta(days=90)
    live = [r for r in rows if r.as_of == at]
    churning = np.array([r.churned_at is not None and at < r.churned_at <= at + horizon for r in live])
    found = trainable(rows, at, settings)
    if found is not None:
        days, data, train_idx, valid_idx, _cutoff = found
        names = training.feature_names(training.model_metrics(data, train_idx))
        x, y = data.rows.matrix(names), np.array(data.labels)
        out: dict[str, Any] = {"at": at.date().isoformat(), "horizon": days, "churning": int(churning.sum())}
        for name, make in {**training.CANDIDATES, **EXTRA}.items():
            validated = training._calibrated(make(names), x[train_idx], y[train_idx])
            auc = float(roc_auc_score(y[valid_idx], validated.predict_proba(x[valid_idx])[:, 1]))
            deployed = training._calibrated(make(names), x, y)
            scores = deployed.predict_proba(as_matrix([r.features for r in live], names))[:, 1]
            flagged = scores >= share_threshold(scores, budget)
            out[name] = {"auc": round(auc, 4), "hits": int(flagged[churning].sum())}
        print(json.dumps(out), file=sys.stderr)
        return out
    return {"at": at.date().isoformat(), "horizon": None, "churning": int(churning.sum())}


def cards_from(
    rows: list[Observation], start: datetime, settings: SignalsSettings, budget: float
) -> dict[str, Any]:
    """The scorecard without, with an unweighted and with a weighted peer reference, all fitted
    as of `start` (the weights from the churns known then), and the usage-level-only baseline,
    on the same fully observed rows from `start` on: ROC AUC and recall at the budget per date."""
    horizon = timedelta(days=settings.horizon_days)
    end = max(r.as_of for r in rows)
    valid = [r for r in rows if r.as_of >= start and r.as_of + horizon <= end]
    y = np.array(
        [int(r.churned_at is not None and r.as_of < r.churned_at <= r.as_of + horizon) for r in valid]
    )
    features = [r.features for r in valid]
    live = [r.features for r in rows if r.as_of == start]
    card = load_scorecard(settings.scorecard_path)
    minimum = settings.budget_min_accounts
    scorers: dict[str, Any] = {
        "scorecard": card.probabilities,
        "scorecard_peers_equal": card.with_peers(peers.fit(live, start.isoformat(), minimum)).probabilities,
        "scorecard_peers_weighted": card.with_peers(
            peers.fit(live, start.isoformat(), minimum, 0, churned_by(rows, start))
        ).probabilities,
        "naive_usage_level": training.naive_scores,
    }
    by_date: dict[datetime, list[int]] = {}
    for i, row in enumerate(valid):
        by_date.setdefault(row.as_of, []).append(i)
    out: dict[str, Any] = {"from": start.date().isoformat(), "rows": len(valid), "churn_rows": int(y.sum())}
    for name, score in scorers.items():
        scores = np.asarray(score(features), dtype=float)
        hits = 0
        for index in by_date.values():
            flagged = scores[index] >= share_threshold(scores[index], budget)
            hits += int((flagged & (y[index] == 1)).sum())
        out[name] = {
            "roc_auc": round(float(roc_auc_score(y, scores)), 4),
            "recall": round(hits / max(1, y.sum()), 4),
        }
    return out


def _scorer(model: Any, names: list[str]) -> Any:
    return lambda feats: model.predict_proba(as_matrix(feats, names))[:, 1]


def snapshot(
    rows: list[Observation],
    at: datetime,
    settings: SignalsSettings,
    variant: tuple[bool, tuple[str, ...], bool, bool],
    budget: float,
    horizon: timedelta,
) -> dict[str, Any]:
    name, score = fit_at(rows, at, settings, *variant)
    live = [r for r in rows if r.as_of == at]
    scores = score([r.features for r in live])
    flagged = scores >= share_threshold(scores, budget)
    churning = np.array([r.churned_at is not None and at < r.churned_at <= at + horizon for r in live])
    recall = float(flagged[churning].mean()) if churning.any() else None
    cards: dict[str, float] = {}
    if churning.any():  # the scorecard with and without its peer reference, beside the scorer
        for key, peer_usage in (("recall_scorecard", True), ("recall_scorecard_without_peers", False)):
            card = _card_scorer(rows, at, settings, peer_usage)([r.features for r in live])
            cards[key] = round(float((card >= share_threshold(card, budget))[churning].mean()), 4)
    result = {
        "at": at.date().isoformat(),
        "scorer": name,
        "accounts": len(live),
        "flagged_share": round(float(flagged.mean()), 4),
        "churning": int(churning.sum()),
        "recall": None if recall is None else round(recall, 4),
        **cards,
    }
    print(json.dumps(result), file=sys.stderr)
    return result


def _observations(out: Path, url: str, horizon: timedelta) -> list[Observation]:
    """Every weekly observation of the stored history; kept in <out>/observations.pkl (this
    tool's own file, rewritten whenever the database is newer) for the next run."""
    cache, database = out / "observations.pkl", out / "kamwatch.db"
    if cache.exists() and cache.stat().st_mtime >= database.stat().st_mtime:
        with cache.open("rb") as handle:
            return list(pickle.load(handle))  # noqa: S301 (written by this tool, in its own folder)
    engine = make_engine(url)
    try:
        rows = list(iter_observations(make_sessionmaker(engine), horizon, timedelta(days=7), progress=True))
    finally:
        engine.dispose()
    with cache.open("wb") as handle:
        pickle.dump(rows, handle)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder written by bench.external.run")
    parser.add_argument("--snapshots", type=int, default=6)
    parser.add_argument("--horizon", type=int, default=90, help="churn within this many days (90)")
    parser.add_argument("--budget", type=float, default=None, help="default: the alert budget setting")
    parser.add_argument(
        "--refit", action="store_true", help="with --only: deploy the candidate refit on all rows"
    )
    parser.add_argument("--only", action="store_true", help="only the variant --refit/--drop (default: all)")
    parser.add_argument("--study", action="store_true", help="every candidate at every snapshot")
    parser.add_argument("--drop", nargs="*", default=[], help="feature name endings to leave out (ablation)")
    parser.add_argument(
        "--cards",
        metavar="DATE",
        default=None,
        help="only the scorecard variants and the naive baseline on the rows from DATE on (YYYY-MM-DD)",
    )
    parser.add_argument(
        "--no-margin", action="store_true", help="with --only: promote on any lead over the scorecard"
    )
    args = parser.parse_args(argv)
    url = f"sqlite:///{(args.out / 'kamwatch.db').resolve()}"
    settings = SignalsSettings()
    budget = args.budget or settings.alert_budget
    horizon = timedelta(days=args.horizon)
    rows = _observations(args.out, url, horizon)
    dates = sorted({r.as_of for r in rows})
    usable = [d for d in dates if d + horizon <= dates[-1]]
    # snapshots spread over the second to the last quarter of the usable dates (mid-stream)
    picks = np.linspace(len(usable) * 0.3, len(usable) - 1, args.snapshots).round().astype(int)
    if args.cards:
        since = datetime.fromisoformat(args.cards + "T00:00:00+00:00")
        start = min((d for d in dates if d >= since), default=None)
        if start is None:
            parser.error(f"--cards: no observation on or after {args.cards}")
        result = cards_from(rows, start, settings, budget)
        (args.out / "live-cards.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        return 0
    if args.study:
        studies = [study_at(rows, usable[int(i)], settings, budget) for i in picks]
        (args.out / "live-study.json").write_text(json.dumps(studies, indent=2) + "\n")
        return 0
    # (refit on every row, feature endings left out, one-standard-error choice, promotion only
    # by more than one standard error over the scorecard): before, then now
    variants = [
        (False, (), False, False),
        (True, (), False, False),
        (True, (), True, False),
        (True, (), True, True),
    ]
    if args.drop:
        variants.append((True, tuple(args.drop), True, True))
    if args.only:
        variants = [(args.refit, tuple(args.drop), True, not args.no_margin)]
    report: dict[str, Any] = {"budget": budget, "horizon_days": args.horizon, "variants": []}
    for refit, drop, se_rule, margin_rule in variants:
        variant = (refit, drop, se_rule, margin_rule)
        results = [snapshot(rows, usable[int(i)], settings, variant, budget, horizon) for i in picks]
        known = [r for r in results if r["recall"] is not None]
        pooled = sum(r["recall"] * r["churning"] for r in known) / max(1, sum(r["churning"] for r in known))
        summary = {
            "refit": refit,
            "drop": list(drop),
            "one_standard_error_choice": se_rule,
            "scorecard_margin": margin_rule,
            "median_recall": float(np.median([r["recall"] for r in known])) if known else None,
            "pooled_recall": round(pooled, 4),
            "max_flagged_share": max(r["flagged_share"] for r in results),
            "snapshots": results,
        }
        report["variants"].append(summary)
        print(json.dumps({k: v for k, v in summary.items() if k != "snapshots"}))
    (args.out / "live.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
