"""Accuracy of churn scores on observed rows: ranking, calibration, the alert budget, lead time.

Pure functions over arrays. Every scorer in a report (trained model, scorecard, baselines) is
measured on the same rows. Operating points follow an alert budget: amber flags the top
`budget` share of the portfolio, red the top `red_budget`; thresholds are score quantiles over
the most recent as-of dates, so they need no labels.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

RECENT_DATES = 13  # thresholds follow the score distribution of the last quarter of as-of dates


def budget_thresholds(
    scores: np.ndarray, times: Sequence[datetime], budget: float, red_budget: float
) -> tuple[float, float]:
    """Amber and red thresholds that flag `budget` and `red_budget` of the portfolio: the score
    quantiles over the most recent as-of dates (the portfolio as it looks now)."""
    dates = sorted(set(times))[-RECENT_DATES:]
    recent = np.array([s for s, t in zip(scores, times, strict=True) if t >= dates[0]]) if dates else scores
    if recent.size == 0:
        recent = np.asarray(scores)
    amber = share_threshold(recent, budget)
    red = max(share_threshold(recent, red_budget), amber + 1e-6)
    return round(min(amber, 1 - 2e-6), 6), round(min(red, 1 - 1e-6), 6)


def share_threshold(scores: np.ndarray, share: float) -> float:
    """The lowest threshold t with at most `share` of the scores >= t. Ties stay together: when
    many accounts share one score (e.g. nothing wrong), all of them are in or all out."""
    values = np.round(np.asarray(scores, dtype=float), 6)
    if values.size == 0:
        return 1.0
    unique, counts = np.unique(values, return_counts=True)  # ascending
    at_or_above = np.cumsum(counts[::-1])[::-1]  # how many scores are >= each unique value
    allowed = np.flatnonzero(at_or_above <= share * values.size)
    if allowed.size == 0:
        return float(unique[-1] + 1e-6)  # even the top score alone exceeds the share: flag none
    return float(unique[allowed[0]])


def evaluate(
    scores: np.ndarray,
    labels: np.ndarray,
    times: Sequence[datetime],
    accounts: Sequence[str],
    churned_at: dict[str, datetime],
    amber: float,
    budget: float = 0.09,
) -> dict[str, Any]:
    """Ranking, calibration and two operating points on these rows: score >= amber, and the top
    `budget` of the portfolio on each as-of date (what budget bands do live)."""
    flagged = scores >= amber
    positives = labels == 1
    both = bool(positives.any() and (~positives).any())
    top = top_share_per_date(scores, times, budget)
    return {
        "rows": int(labels.size),
        "base_rate": round(float(labels.mean()), 4) if labels.size else None,
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
        "pr_auc": round(float(average_precision_score(labels, scores)), 4) if both else None,
        "brier": round(float(brier_score_loss(labels, np.clip(scores, 0, 1))), 4) if labels.size else None,
        "top_decile_lift": _top_decile_lift(scores, labels),
        "flagged_share": round(float(flagged.mean()), 4) if labels.size else None,
        "flagged_share_max_date": _max_share_per_date(flagged, times),
        "recall_at_budget": round(float(flagged[positives].mean()), 4) if positives.any() else None,
        "precision_at_budget": round(float(labels[flagged].mean()), 4) if flagged.any() else None,
        "recall_top_budget_per_date": round(float(top[positives].mean()), 4) if positives.any() else None,
        "precision_top_budget_per_date": round(float(labels[top].mean()), 4) if top.any() else None,
        **lead_times(flagged, times, accounts, churned_at),
    }


def top_share_per_date(scores: np.ndarray, times: Sequence[datetime], share: float) -> np.ndarray:
    """Flags for the rows in the top `share` of their own as-of date (ties kept together)."""
    flags = np.zeros(len(scores), dtype=bool)
    by_date: dict[datetime, list[int]] = {}
    for i, t in enumerate(times):
        by_date.setdefault(t, []).append(i)
    for rows in by_date.values():
        values = np.asarray(scores)[rows]
        flags[rows] = values >= share_threshold(values, share)
    return flags


def _top_decile_lift(scores: np.ndarray, labels: np.ndarray) -> float | None:
    base = float(labels.mean()) if labels.size else 0.0
    if not base:
        return None
    top = np.argsort(-scores, kind="stable")[: max(1, labels.size // 10)]
    return round(float(labels[top].mean()) / base, 3)


def _max_share_per_date(flagged: np.ndarray, times: Sequence[datetime]) -> float | None:
    per_date: dict[datetime, list[bool]] = {}
    for hit, t in zip(flagged, times, strict=True):
        per_date.setdefault(t, []).append(bool(hit))
    shares = [sum(v) / len(v) for v in per_date.values() if len(v) >= 20]
    return round(max(shares), 4) if shares else None


def lead_times(
    flagged: np.ndarray, times: Sequence[datetime], accounts: Sequence[str], churned_at: dict[str, datetime]
) -> dict[str, Any]:
    """For churners with rows here: days from the first flag to the churn (median, 25th
    percentile), and how many churners were flagged at least once before they left."""
    first: dict[str, datetime] = {}
    seen: set[str] = set()
    for hit, t, account in zip(flagged, times, accounts, strict=True):
        churn = churned_at.get(account)
        if churn is None or t >= churn:
            continue
        seen.add(account)
        if hit:
            first[account] = min(first.get(account, t), t)
    leads = sorted((churned_at[a] - t).total_seconds() / 86400 for a, t in first.items())
    return {
        "churners": len(seen),
        "churners_flagged": len(first),
        "lead_days_median": round(statistics.median(leads), 1) if leads else None,
        "lead_days_p25": round(float(np.quantile(leads, 0.25)), 1) if leads else None,
        "lead_days": [round(x, 1) for x in leads],
    }


def lift_by_decile(scores: np.ndarray, labels: np.ndarray) -> list[float]:
    """Churn rate in each score decile (highest first) divided by the overall rate."""
    base = float(labels.mean()) if labels.size else 0.0
    if not base or labels.size < 10:
        return []
    order = np.argsort(-scores, kind="stable")
    return [round(float(labels[part].mean()) / base, 3) for part in np.array_split(order, 10)]


def calibration_curve(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[tuple[float, float]]:
    """(mean predicted, observed rate) per score-quantile bin."""
    if labels.size < bins:
        return []
    order = np.argsort(scores, kind="stable")
    return [
        (round(float(scores[part].mean()), 4), round(float(labels[part].mean()), 4))
        for part in np.array_split(order, bins)
        if part.size
    ]
