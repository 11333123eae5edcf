"""Usage against the portfolio: the day-one scorecard's view of an account that simply uses the
product less than its peers.

The scorecard's usage rules look at an account against its own past (a drop, a silence, a falling
trend). In many histories nothing declines before a churn: the accounts that leave are those
that never used much. Until enough churns have arrived to train a model, the only reference for
"much" is the rest of the portfolio. A `PeerReference` holds, for each metric used by most live
accounts, the median and spread of log(1 + the 12-week daily level) across them; an account's
`usage_vs_peers` is the mean, over those metrics, of how many spreads its own level sits from
the median (each clipped at +-4 so one metric cannot dominate), itself put in the portfolio's
spreads of that mean (negative: below its peers).

Which metrics count, and which way: at first every metric the same, more use counting as
healthier. Once MIN_CHURNS accounts with usage have churned, their last stored features teach the
reference what the portfolio's own churn looked like: a penalised logistic regression of "churned"
(their features when they left) against "live" (the live accounts now), over the same spreads,
gives each metric a signed weight. A metric that accounts which left used less counts for more; one
they used more (errors, help searches) counts against. This is a case-control fit, not a trained
model: it needs no fully observed label window, so it is ready months before `kamwatch train` has
enough rows to validate one, and it only re-weighs the one scorecard rule that compares levels.

The reference is fitted on the live portfolio by the learner (docs/features.md: "Usage against
the portfolio"), saved as <model_dir>/peers.json and named in the scorer's version
(`scorecard-<v>+peers-<id>`), so a score always says which reference it used and
`signals rebuild --check` recomputes the same value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURE = "usage_vs_peers"
LEVEL = "level_84d"
OVERALL = "usage_baseline_90d_avg"  # when no metric is used by most accounts
MIN_COVERAGE = 0.5  # a metric counts when at least half the live accounts use it
MIN_SPREAD = 0.1  # in log units: a metric everybody uses alike says nothing
CLIP = 4.0
MIN_CHURNS = 20  # churned accounts with usage before their weights replace equal weights
PENALTY = 0.05  # the weights' logistic regression: C (smaller: weights nearer equal magnitude)


@dataclass(frozen=True)
class PeerReference:
    """Per usage input (feature name): (median, spread) of log(1 + level) over the live accounts
    with usage (`accounts` of the `portfolio` live accounts), rounded so that a stable portfolio
    keeps its reference (and its scores) from one refit to the next."""

    inputs: dict[str, tuple[float, float]]
    accounts: int
    portfolio: int = 0
    fitted_at: str = ""
    id: str = field(default="", compare=False)
    overall: tuple[float, float] = (0.0, 1.0)  # (median, spread) of the mean over the inputs
    # per input, signed, their magnitudes summing to 1, learned from `churns` churned accounts;
    # empty: every input counts the same, more use healthier
    weights: dict[str, float] = field(default_factory=dict)
    churns: int = 0

    def __post_init__(self) -> None:
        if not self.id:
            spec: dict[str, Any] = {"inputs": self.inputs, "overall": self.overall}
            if self.weights:  # a reference without weights keeps the id it always had
                spec["weights"] = self.weights
            text = json.dumps(spec, sort_keys=True)
            object.__setattr__(self, "id", hashlib.sha256(text.encode()).hexdigest()[:8])

    def spreads(self, features: Mapping[str, float]) -> list[float]:
        """Per input, how many spreads the account's level sits from the median (clipped)."""
        out = []
        for name, (center, spread) in self.inputs.items():
            value = math.log1p(max(0.0, float(features.get(name, 0.0))))
            out.append(min(CLIP, max(-CLIP, (value - center) / spread)))
        return out

    def _mean(self, features: Mapping[str, float]) -> float:
        values = self.spreads(features)
        if self.weights:
            return sum(self.weights.get(name, 0.0) * v for name, v in zip(self.inputs, values, strict=True))
        return sum(values) / len(values)

    def gap(self, features: Mapping[str, float]) -> float | None:
        """How many of the portfolio's spreads the account's usage sits below (negative) or
        above its peers' median; None for an account without usage data (it is not compared)."""
        if not has_usage(features):
            return None
        center, spread = self.overall
        return round(min(CLIP, max(-CLIP, (self._mean(features) - center) / spread)), 6)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "accounts": self.accounts,
            "portfolio": self.portfolio,
            "fitted_at": self.fitted_at,
            "inputs": {k: list(v) for k, v in sorted(self.inputs.items())},
            "overall": list(self.overall),
            "weights": dict(sorted(self.weights.items())),
            "churns": self.churns,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PeerReference:
        inputs = {str(k): (float(v[0]), float(v[1])) for k, v in dict(raw["inputs"]).items()}
        return cls(
            inputs,
            int(raw["accounts"]),
            int(raw.get("portfolio", raw["accounts"])),
            str(raw.get("fitted_at", "")),
            str(raw.get("id", "")),
            (float(raw["overall"][0]), float(raw["overall"][1])),
            {str(k): float(v) for k, v in dict(raw.get("weights") or {}).items()},
            int(raw.get("churns", 0)),
        )


def levels(row: Mapping[str, float]) -> dict[str, float]:
    """An account's levels only: a few numbers per account (all that `fit` reads of a row)."""
    return {n: float(v) for n, v in row.items() if n == OVERALL or n.endswith("." + LEVEL)}


def fit(
    rows: Iterable[Mapping[str, float]],
    fitted_at: str = "",
    min_accounts: int = 1,
    portfolio: int = 0,
    churned: Iterable[Mapping[str, float]] = (),
) -> PeerReference | None:
    """The reference of these live accounts' features, with weights learned from the `churned`
    accounts' last features when MIN_CHURNS of them have usage; None with fewer than
    `min_accounts` accounts that have usage, or no usage input that tells accounts apart."""
    logs: dict[str, list[float]] = {}
    kept: list[dict[str, float]] = []
    for row in rows:
        if not has_usage(row):
            continue
        kept.append(levels(row))
        for name, value in kept[-1].items():
            if value > 0:
                logs.setdefault(name, []).append(math.log1p(value))
    users = len(kept)
    if users < max(1, min_accounts):
        return None
    wide = {n: v for n, v in logs.items() if n != OVERALL and len(v) >= MIN_COVERAGE * users}
    if not wide and OVERALL in logs:
        wide = {OVERALL: logs[OVERALL]}
    inputs = {}
    for name, values in wide.items():
        padded = sorted(values + [0.0] * (users - len(values)))  # accounts that do not use it: 0
        center = _quantile(padded, 0.5)
        spread = (_quantile(padded, 0.75) - _quantile(padded, 0.25)) / 1.349  # a normal's sigma
        if spread >= MIN_SPREAD:
            inputs[name] = (round(center, 2), round(spread, 2))
    if not inputs:
        return None
    # The mean over metrics is put on the portfolio's own scale: correlated metrics average out
    # less than independent ones, so its spread is measured, not assumed.
    cases = [levels(row) for row in churned if has_usage(row)]
    weights = _weights(PeerReference(inputs, users), kept, cases)
    draft = PeerReference(inputs, users, weights=weights)
    means = sorted(draft._mean(row) for row in kept)
    spread = max(MIN_SPREAD, (_quantile(means, 0.75) - _quantile(means, 0.25)) / 1.349)
    overall = (round(_quantile(means, 0.5), 2), round(spread, 2))
    churns = len(cases) if weights else 0
    return PeerReference(
        inputs, users, portfolio or users, fitted_at, overall=overall, weights=weights, churns=churns
    )


def _weights(
    draft: PeerReference, live: list[dict[str, float]], cases: list[dict[str, float]]
) -> dict[str, float]:
    """Signed weights per input from the churned accounts against the live ones (empty with
    fewer than MIN_CHURNS churned accounts, or when nothing sets them apart): minus the
    coefficients of a penalised logistic regression of churned, scaled so that their
    magnitudes sum to 1 and rounded, so that the same accounts give the same reference."""
    if len(cases) < MIN_CHURNS:
        return {}
    # Imported here: scikit-learn costs the scoring service about 100 MB it needs only for a fit.
    from sklearn.linear_model import LogisticRegression

    x = np.array([draft.spreads(row) for row in live + cases])
    y = np.r_[np.zeros(len(live)), np.ones(len(cases))]
    model = LogisticRegression(C=PENALTY, max_iter=1000).fit(x, y)
    raw = -model.coef_[0]
    total = float(np.abs(raw).sum())
    if total < 1e-6:
        return {}
    return {name: round(float(w) / total, 3) for name, w in zip(draft.inputs, raw, strict=True)}


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def has_usage(features: Mapping[str, float]) -> bool:
    """Per-metric usage in the state window: an account that sends no usage (only tickets or
    payments, say) is not compared, rather than taken for one that uses nothing."""
    return any(name.startswith("usage.") for name in features)
