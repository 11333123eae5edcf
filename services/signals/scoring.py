"""Risk scorers: the transparent scorecard (YAML) and a trained model; bands and publish rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.signals.features import is_known_feature
from services.signals.peers import FEATURE as PEERS_FEATURE
from services.signals.peers import PeerReference
from shared.errors import ConfigError

DEFAULT_SCORECARD = Path(__file__).with_name("scorecard.yaml")


class Scorer(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """Its own amber and red thresholds (chosen for the alert budget), or None: settings."""

    def score(self, features: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """Probability of churn within the horizon, and each feature's contribution to it."""

    def probabilities(self, rows: list[dict[str, float]]) -> list[float]:
        """Scores of many feature rows at once (backtests); equal to score(row)[0] for each."""

    def derived(self, features: Mapping[str, float]) -> dict[str, float]:
        """Features it computes from these and the portfolio (usage_vs_peers), shown and stored
        with the score; {} for most scorers."""


class Rule(BaseModel):
    """Points rise linearly from 0 at `start` to `weight` at `full` (either direction)."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    start: float
    full: float
    weight: float = Field(ge=0)
    only_if: str | None = Field(default=None, description="another feature that must be > 0")

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if not is_known_feature(self.feature):
            raise ValueError(f"unknown feature {self.feature!r}; see docs/features.md")
        if self.only_if is not None and not is_known_feature(self.only_if):
            raise ValueError(f"only_if names unknown feature {self.only_if!r}")
        if self.start == self.full:
            raise ValueError(f"{self.feature}: start and full must differ")
        return self

    def points(self, features: Mapping[str, float]) -> float:
        if self.feature not in features:
            return 0.0
        if self.only_if is not None and features.get(self.only_if, 0.0) <= 0:
            return 0.0
        value = features[self.feature]
        fraction = (value - self.start) / (self.full - self.start)
        return self.weight * min(1.0, max(0.0, fraction))


class ScorecardFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    intercept: float
    rules: list[Rule]
    amber_threshold: float | None = Field(default=None, gt=0, lt=1, description="else the setting")
    red_threshold: float | None = Field(default=None, gt=0, lt=1, description="else the setting")


@dataclass
class Scorecard:
    """score = sigmoid(intercept + sum of rule points); a driver's contribution = its points.
    With a peer reference (fitted on the live portfolio) it also scores usage_vs_peers."""

    spec: ScorecardFile
    peers: PeerReference | None = None

    @property
    def version(self) -> str:
        suffix = f"+peers-{self.peers.id}" if self.peers is not None else ""
        return f"scorecard-{self.spec.version}{suffix}"

    def with_peers(self, peers: PeerReference | None) -> Scorecard:
        return Scorecard(self.spec, peers)

    def derived(self, features: Mapping[str, float]) -> dict[str, float]:
        gap = self.peers.gap(features) if self.peers is not None else None
        return {} if gap is None else {PEERS_FEATURE: gap}

    @property
    def thresholds(self) -> tuple[float, float] | None:
        if self.spec.amber_threshold is None or self.spec.red_threshold is None:
            return None
        return self.spec.amber_threshold, self.spec.red_threshold

    def probabilities(self, rows: list[dict[str, float]]) -> list[float]:
        return [self.score(row)[0] for row in rows]

    def score(self, features: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        contributions: dict[str, float] = {}
        if self.peers is not None or PEERS_FEATURE in features:  # never a stale stored value
            kept = {k: v for k, v in features.items() if k != PEERS_FEATURE}
            features = {**kept, **self.derived(features)}
        for rule in self.spec.rules:
            points = rule.points(features)
            if points > 0:
                contributions[rule.feature] = contributions.get(rule.feature, 0.0) + points
        logit = self.spec.intercept + sum(contributions.values())
        return 1 / (1 + math.exp(-logit)), contributions


def load_scorecard(path: str | Path | None = None) -> Scorecard:
    """Read and check the scorecard YAML; a bad file stops start-up with the reason."""
    path = Path(path or DEFAULT_SCORECARD)
    try:
        raw = yaml.safe_load(path.read_text())
        return Scorecard(ScorecardFile.model_validate(raw))
    except FileNotFoundError:
        raise ConfigError(f"scorecard file {path} does not exist (KAMWATCH_SIGNALS_SCORECARD_PATH)") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"scorecard file {path} is invalid: {exc}") from None


class ModelScorer:
    """A trained, calibrated scikit-learn pipeline; contributions = how much the probability
    drops when one feature is set to its training median (model-agnostic, in probability points)."""

    def __init__(
        self,
        version: str,
        pipeline: Any,
        feature_names: list[str],
        medians: dict[str, float],
        thresholds: tuple[float, float] | None = None,
    ) -> None:
        self.version = version
        self.pipeline = pipeline
        self.feature_names = feature_names
        self.medians = medians
        self.thresholds = thresholds
        self.fitted_through: datetime | None = None  # the latest as-of date it was fitted on
        self.fit = "deployed"  # or "validated": the fit on the training rows only (backtests)

    def derived(self, features: Mapping[str, float]) -> dict[str, float]:
        return {}

    def probabilities(self, rows: list[dict[str, float]]) -> list[float]:
        matrix = [[float(row.get(n, 0.0)) for n in self.feature_names] for row in rows]
        return [float(p) for p in self.pipeline.predict_proba(matrix)[:, 1]] if matrix else []

    def score(self, features: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        row = [float(features.get(n, 0.0)) for n in self.feature_names]
        rows = [row]
        for index, name in enumerate(self.feature_names):
            neutral = list(row)
            neutral[index] = self.medians.get(name, 0.0)
            rows.append(neutral)
        probabilities = self.pipeline.predict_proba(rows)[:, 1]
        score = float(probabilities[0])
        contributions = {
            name: score - float(probabilities[i + 1]) for i, name in enumerate(self.feature_names)
        }
        return score, contributions


def signed_log(values: Any) -> Any:
    """sign(x) * log(1 + |x|): tames heavy-tailed counts, levels and day spans for the model."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return np.sign(array) * np.log1p(np.abs(array))


# An account without a single stored event is not scored: band no_data (score 0, nothing at risk),
# never published on kamwatch.risk (alerts has nothing to say about it) and ranked last.
NO_DATA = "no_data"


def band_for(score: float, amber: float, red: float) -> Literal["green", "amber", "red"]:
    if score >= red:
        return "red"
    return "amber" if score >= amber else "green"


def should_publish(
    score: float, band: str, published_score: float | None, published_band: str | None, step: float
) -> bool:
    """Publish on a band change or when the score moved more than `step` since the last publish."""
    if published_score is None or published_band is None:
        return True
    return band != published_band or abs(score - published_score) > step
