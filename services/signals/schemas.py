"""Pydantic shapes of the signals HTTP answers (they document the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.contracts import Driver, RiskBand

Band = RiskBand  # green | amber | red | churned (the account left; no longer scored)


class RiskOut(BaseModel):
    account_id: str
    name: str
    score: float = Field(description="probability of churn within the horizon (default 90 days)")
    band: Band
    drivers: list[Driver]
    changes: list[str] = Field(description="what changed since the previous score, in words")
    model_version: str
    as_of: str
    scored_at: str
    arr: float
    currency: str
    tier: str
    revenue_at_risk: float = Field(description="ARR x score")


class HistoryItem(BaseModel):
    id: int
    score: float
    band: Band
    previous_score: float | None
    previous_band: Band | None
    drivers: list[Driver]
    changes: list[str]
    model_version: str
    as_of: str
    published: bool = Field(description="risk.changed acknowledged by the broker")


class HistoryOut(BaseModel):
    account_id: str
    items: list[HistoryItem]
    next_before_id: int | None = Field(description="pass as before_id for the next page; null at the end")


class FeaturesOut(BaseModel):
    account_id: str
    as_of: str
    features: dict[str, float] = Field(description="catalog: docs/features.md")


class PortfolioItem(BaseModel):
    account_id: str
    name: str
    score: float
    band: Band
    model_version: str
    as_of: str
    scored_at: str
    arr: float
    currency: str
    tier: str
    revenue_at_risk: float
    owner: str | None
    top_drivers: list[str]


class PortfolioOut(BaseModel):
    items: list[PortfolioItem]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class ImportProblem(BaseModel):
    row: int = Field(description="line number in the file; the header is line 1")
    field: str
    message: str


class ImportOut(BaseModel):
    dry_run: bool
    rows: int
    valid: int | None = None
    imported: int | None = None
    changed: int | None = None
    problems: list[ImportProblem]
