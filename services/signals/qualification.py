"""Key-account qualification: a score from current value, growth potential and strategic value,
with a suggestion (promote, keep, review, demote). Weights and thresholds: qualification.yaml
(KAMWATCH_SIGNALS_QUALIFICATION_PATH); definitions: docs/metrics.md#qualification."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from services.signals import repository, revenue
from services.signals.registry import parse_csv
from shared.contracts import AccountRecord
from shared.errors import ConfigError, ValidationFailed

STEP = Decimal("0.0001")
STRATEGIC_FLAGS = ("reference_customer", "target_sector", "innovation_partner")
EXPANSION_DAYS = 365


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_value: Decimal = Field(ge=0)
    growth_potential: Decimal = Field(ge=0)
    strategic_value: Decimal = Field(ge=0)


class QualificationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: Weights
    current_value_full_arr: Decimal = Field(gt=0)
    reference_margin: Decimal = Field(gt=0, le=1)
    growth_potential_full_arr: Decimal = Field(gt=0)
    strategic_flags: list[str]
    key_tiers: list[str]
    promote_at: Decimal = Field(ge=0, le=1)
    review_below: Decimal = Field(ge=0, le=1)
    demote_below: Decimal = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> QualificationConfig:
        total = self.weights.current_value + self.weights.growth_potential + self.weights.strategic_value
        if total != 1:
            raise ValueError(f"weights must add up to 1 (they add up to {total})")
        if not self.demote_below <= self.review_below:
            raise ValueError("demote_below must not be above review_below")
        unknown = [f for f in self.strategic_flags if f not in STRATEGIC_FLAGS]
        if unknown or not self.strategic_flags:
            raise ValueError(f"strategic_flags must be among {', '.join(STRATEGIC_FLAGS)} (got {unknown})")
        return self


def load_config(path: str) -> QualificationConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return QualificationConfig.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"qualification config {path}: {exc}") from None


@dataclass(frozen=True)
class Inputs:
    account_id: str
    name: str
    tier: str
    currency: str
    arr: Decimal
    gross_margin: Decimal | None
    potential_arr: Decimal | None
    expansion_12m: Decimal
    flags: tuple[str, ...]


def inputs_of(record: AccountRecord, expansion_12m: Decimal = Decimal(0)) -> Inputs:
    return Inputs(
        account_id=record.id,
        name=record.name,
        tier=record.tier,
        currency=record.currency,
        arr=record.arr,
        gross_margin=record.gross_margin,
        potential_arr=record.potential_arr,
        expansion_12m=expansion_12m,
        flags=tuple(f for f in STRATEGIC_FLAGS if getattr(record, f)),
    )


def _unit(value: Decimal) -> Decimal:
    return min(Decimal(1), max(Decimal(0), value))


def _q(value: Decimal) -> str:
    return str(value.quantize(STEP, rounding=ROUND_HALF_UP))


def qualify(account: Inputs, config: QualificationConfig) -> dict[str, Any]:
    margin_factor = (
        (account.gross_margin / config.reference_margin) if account.gross_margin is not None else 1
    )
    value = _unit(account.arr * margin_factor / config.current_value_full_arr)
    if account.potential_arr is not None:
        untapped = max(Decimal(0), account.potential_arr - account.arr)
    else:  # no estimate: last year's expansion is the evidence of room to grow
        untapped = account.expansion_12m
    growth = _unit(untapped / config.growth_potential_full_arr)
    counted = [f for f in config.strategic_flags if f in account.flags]
    strategic = Decimal(len(counted)) / Decimal(len(config.strategic_flags))
    w = config.weights
    score = w.current_value * value + w.growth_potential * growth + w.strategic_value * strategic
    key = account.tier in config.key_tiers
    if not key and score >= config.promote_at:
        suggestion = "promote"
    elif key and score < config.demote_below:
        suggestion = "demote"
    elif key and score < config.review_below:
        suggestion = "review"
    else:
        suggestion = "keep"
    return {
        "account_id": account.account_id,
        "name": account.name,
        "tier": account.tier,
        "key_account": key,
        "arr": str(account.arr),
        "currency": account.currency,
        "untapped_arr": str(untapped.quantize(revenue.CENT)),
        "strategic_flags": counted,
        "current_value": _q(value),
        "growth_potential": _q(growth),
        "strategic_value": _q(strategic),
        "score": _q(score),
        "suggestion": suggestion,
    }


def rank(accounts: list[Inputs], config: QualificationConfig) -> list[dict[str, Any]]:
    """Highest score first; ties by ARR (largest first), then id."""
    items = [qualify(a, config) for a in accounts]
    items.sort(key=lambda i: (-Decimal(i["score"]), -Decimal(i["arr"]), i["account_id"]))
    return [{"rank": n, **item} for n, item in enumerate(items, start=1)]


def from_registry(session: Session, now: datetime, config: QualificationConfig) -> list[dict[str, Any]]:
    """The live registry, with each account's expansion of the last 365 days from its events."""
    report = revenue.compute(session, now - timedelta(days=EXPANSION_DAYS), now, "account")
    expansion = {g["key"]: Decimal(g["expansion"]) for g in report["groups"]}
    records = [AccountRecord.model_validate_json(row.record) for row in repository.live_accounts(session)]
    return rank([inputs_of(r, expansion.get(r.id, Decimal(0))) for r in records], config)


def from_csv(text: str, now: datetime, config: QualificationConfig) -> list[dict[str, Any]]:
    """A CRM export in the registry's CSV columns (offline: no expansion history)."""
    records, problems = parse_csv(text, now)
    if problems:
        details = "; ".join(f"row {p['row']}: {p['field']}: {p['message']}" for p in problems[:10])
        raise ValidationFailed(f"{len(problems)} problem(s) in the CSV: {details}")
    return rank([inputs_of(r) for r in records], config)


CSV_OUT = (
    "rank",
    "account_id",
    "name",
    "tier",
    "arr",
    "currency",
    "current_value",
    "growth_potential",
    "strategic_value",
    "score",
    "suggestion",
)


def to_csv(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_OUT, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    return out.getvalue()
