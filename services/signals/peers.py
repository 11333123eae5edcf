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

FEATURE = "usage_vs_peers"
LEVEL = "level_84d"
OVERALL = "usage_baseline_90d_avg"  # when no metric is used by most accounts
MIN_COVERAGE = 0.5  # a metric counts when at least half the live accounts use it
MIN_SPREAD = 0.1  # in log units: a metric everybody uses alike says nothing
CLIP = 4.0


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

    def __post_init__(self) -> None:
        if not self.id:
            spec = json.dumps({"inputs": self.inputs, "overall": self.overall}, sort_keys=True)
            object.__setattr__(self, "id", hashlib.sha256(spec.encode()).hexdigest()[:8])

    def _mean(self, features: Mapping[str, float]) -> float:
        total = 0.0
        for name, (center, spread) in self.inputs.items():
            value = math.log1p(max(0.0, float(features.get(name, 0.0))))
            total += min(CLIP, max(-CLIP, (value - center) / spread))
        return total / len(self.inputs)

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
        )


def fit(
    rows: Iterable[Mapping[str, float]], fitted_at: str = "", min_accounts: int = 1, portfolio: int = 0
) -> PeerReference | None:
    """The reference of these live accounts' features; None with fewer than `min_accounts`
    accounts that have usage, or no usage input that tells accounts apart."""
    levels: dict[str, list[float]] = {}
    kept: list[dict[str, float]] = []  # each account's levels only: a few numbers per account
    for row in rows:
        if not has_usage(row):
            continue
        kept.append({n: float(v) for n, v in row.items() if n == OVERALL or n.endswith("." + LEVEL)})
        for name, value in kept[-1].items():
            if value > 0:
                levels.setdefault(name, []).append(math.log1p(value))
    users = len(kept)
    if users < max(1, min_accounts):
        return None
    wide = {n: v for n, v in levels.items() if n != OVERALL and len(v) >= MIN_COVERAGE * users}
    if not wide and OVERALL in levels:
        wide = {OVERALL: levels[OVERALL]}
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
    draft = PeerReference(inputs, users)
    means = sorted(draft._mean(row) for row in kept)
    spread = max(MIN_SPREAD, (_quantile(means, 0.75) - _quantile(means, 0.25)) / 1.349)
    overall = (round(_quantile(means, 0.5), 2), round(spread, 2))
    return PeerReference(inputs, users, portfolio or users, fitted_at, overall=overall)


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def has_usage(features: Mapping[str, float]) -> bool:
    """Per-metric usage in the state window: an account that sends no usage (only tickets or
    payments, say) is not compared, rather than taken for one that uses nothing."""
    return any(name.startswith("usage.") for name in features)
