"""`kamwatch backtest`: score the whole stored portfolio at weekly as-of dates, as live would.

The replay uses the live code end to end (the same fold, features and scorer objects the
consumer uses), so a backtest says how the warnings would have looked on each date. Accuracy is
measured on fully observed rows only. By default a trained model is backtested from its cutoff
on (rows it never saw while training); `--since` moves the start. Memory holds a few numbers per
row, never the features of the portfolio.
"""

from __future__ import annotations

import json
import sys
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.signals import peers
from services.signals.evaluation import budget_thresholds, evaluate
from services.signals.models import SignalEvent
from services.signals.observations import (
    WARMUP_DAYS,
    HistoryBounds,
    history_end,
    iter_histories,
    iter_observations,
    observe_account,
)
from services.signals.report import report_markdown, write_plots
from services.signals.scoring import Scorecard, Scorer
from services.signals.training import naive_scores
from shared.db import transaction


@dataclass
class Replay:
    """Per row: the scores of each scorer, label, as-of date, account, observed flag."""

    scorers: dict[str, Scorer | None]
    scores: dict[str, array] = field(default_factory=dict)
    labels: array = field(default_factory=lambda: array("b"))
    observed: array = field(default_factory=lambda: array("b"))
    times: list[datetime] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    churned_at: dict[str, datetime] = field(default_factory=dict)

    def add(self, rows: list[Any]) -> None:
        if not rows:
            return
        features = [r.features for r in rows]
        for name, scorer in self.scorers.items():
            values = scorer.probabilities(features) if scorer is not None else list(naive_scores(features))
            self.scores.setdefault(name, array("d")).extend(values)
        for row in rows:
            self.labels.append(row.label)
            self.observed.append(int(row.observed))
            self.times.append(row.as_of)
            self.accounts.append(sys.intern(row.account_id))
            if row.churned_at is not None:
                self.churned_at[row.account_id] = row.churned_at


def replay(
    sessions: sessionmaker[Session],
    scorers: dict[str, Scorer | None],
    horizon: timedelta,
    step: timedelta,
    since: datetime | None,
    progress: bool,
) -> Replay:
    result = Replay(scorers)
    keep = (lambda t: t >= since) if since is not None else (lambda _t: True)
    pending: list[Any] = []
    for row in iter_observations(sessions, horizon, step, progress, keep):
        if pending and pending[-1].account_id != row.account_id:
            result.add(pending)
            pending = []
        pending.append(row)
    result.add(pending)
    return result


def scorecard_at_start(
    sessions: sessionmaker[Session],
    scorecard: Scorecard,
    horizon: timedelta,
    step: timedelta,
    since: datetime | None,
    min_accounts: int,
    progress: bool,
) -> tuple[Scorecard, datetime | None]:
    """The scorecard as it stood on the backtest's first date (`since`, or the first date of
    the history), and that date. A peer reference weighted by the accounts that left is fitted
    again as the learner would have fitted it then: on the accounts observed on that date and
    the last observation of each account that had churned by it. The weights then know no churn
    the backtest measures (the reference in use learned from all of them). An unweighted
    reference sees no outcome and is kept. One pass over the history, one row per account, the
    levels only."""
    if scorecard.peers is None or not scorecard.peers.weights:
        return scorecard, None
    end = history_end(sessions)
    if end is None:
        return scorecard, None
    bounds = HistoryBounds(end, step)
    if since is None:
        with transaction(sessions) as session:
            first = session.scalar(select(func.min(SignalEvent.event_time)))
        if first is None:
            return scorecard, None
        since = first + timedelta(days=WARMUP_DAYS)
    start = bounds.grid_on_or_after(since)
    live: list[dict[str, float]] = []
    churned: list[dict[str, float]] = []
    for account_id, signals, info in iter_histories(sessions, progress):
        churn = min((s.time for s in signals if s.type == "account.churned"), default=None)
        left = churn is not None and churn <= start
        when = bounds.grid_on_or_after(churn) - step if left and churn is not None else start

        def on_date(t: datetime, wanted: datetime = when) -> bool:
            return t == wanted

        for row in observe_account(account_id, signals, info, bounds, horizon, on_date):
            (churned if left else live).append(peers.levels(row.features))
    fitted = peers.fit(live, start.isoformat(), min_accounts, 0, churned)
    return scorecard.with_peers(fitted), start


def backtest(
    sessions: sessionmaker[Session],
    in_use: Scorer,
    scorecard: Scorecard,
    thresholds: tuple[float, float],
    horizon_days: int,
    step_days: int,
    budget: float,
    since: datetime | None,
    out_dir: Path,
    progress: bool = True,
    min_accounts: int = 1,
) -> dict[str, Any]:
    """Replay, measure, and write report.md, report.json and the PNG plots to `out_dir`. The
    scorecard is the one that stood on the first date (`scorecard_at_start`): when it is the
    scorer in use and its reference was refitted, it is measured at its own budget threshold."""
    horizon, step = timedelta(days=horizon_days), timedelta(days=step_days)
    scoring_card = in_use.version == scorecard.version
    then, start = scorecard_at_start(sessions, scorecard, horizon, step, since, min_accounts, progress)
    scorers: dict[str, Scorer | None] = {"model": in_use, "scorecard": then, "naive_usage_level": None}
    if scoring_card:
        scorers.pop("model")
    data = replay(sessions, scorers, horizon, step, since, progress)
    live_card = scoring_card and then.version == scorecard.version
    report = measure(data, in_use, then, thresholds, horizon_days, budget, live_card)
    report["scorecard"]["in_use"] = scorecard.version
    report["scorecard"]["as_of"] = start.isoformat() if start is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"Backtest of {in_use.version}"
    (out_dir / "report.md").write_text(report_markdown(title, report))
    observed = np.frombuffer(data.observed, dtype=np.int8).astype(bool)
    labels = np.frombuffer(data.labels, dtype=np.int8)[observed]
    curves = {name: (np.asarray(values)[observed], labels) for name, values in data.scores.items()}
    key = "model" if "model" in report else "scorecard"
    write_plots(out_dir, curves, report[key]["lead_days"])
    return report


def measure(
    data: Replay,
    in_use: Scorer,
    scorecard: Scorecard,
    thresholds: tuple[float, float],
    horizon_days: int,
    budget: float,
    live_card: bool = True,
) -> dict[str, Any]:
    """`live_card`: the scorecard measured is the one in use (when no model is), so it is taken
    at the live thresholds; a scorecard refitted as of the first date gets its own budget's."""
    observed = np.frombuffer(data.observed, dtype=np.int8).astype(bool)
    index = np.flatnonzero(observed)
    labels = np.frombuffer(data.labels, dtype=np.int8)[index]
    times = [data.times[i] for i in index]
    accounts = [data.accounts[i] for i in index]
    report: dict[str, Any] = {
        "horizon_days": horizon_days,
        "scorer_in_use": in_use.version,
        "fit": getattr(in_use, "fit", None),  # a model's "validated" fit never saw these dates
        "period": {
            "from": min(data.times).isoformat() if data.times else None,
            "to": max(data.times).isoformat() if data.times else None,
            "dates": len(set(data.times)),
            "accounts": len(set(data.accounts)),
            "rows": len(data.times),
            "observed_rows": int(index.size),
        },
        "thresholds": {"amber": thresholds[0], "red": thresholds[1], "budget": budget},
    }
    if index.size == 0:
        raise ValueError("no as-of date has a fully observed horizon: the history is too short to backtest")
    for name, values in data.scores.items():
        all_scores = np.asarray(values)
        if name == "model" or (name == "scorecard" and "model" not in data.scorers and live_card):
            amber = thresholds[0]  # the live operating point of the scorer in use
        else:
            amber = budget_thresholds(all_scores, data.times, budget, budget / 2)[0]
        report[name] = evaluate(all_scores[index], labels, times, accounts, data.churned_at, amber, budget)
        report[name]["flagged_share_all_dates"] = round(float((all_scores >= amber).mean()), 4)
    report["scorecard"]["version"] = scorecard.version
    return report
