"""Pydantic shapes of the signals HTTP answers (they document the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared.contracts import Driver, RiskBand

Band = RiskBand  # green | amber | red | churned (the account left; no longer scored)
# ISO 8601 with the +00:00 offset, as the API has always answered.
IsoTime = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class FromRow(BaseModel):
    """An answer read straight from a table row (SQLAlchemy object)."""

    model_config = ConfigDict(from_attributes=True)


class RiskOut(FromRow):
    account_id: str
    name: str
    score: float = Field(description="probability of churn within the horizon (default 90 days)")
    band: Band
    drivers: list[Driver]
    changes: list[str] = Field(description="what changed since the previous score, in words")
    model_version: str
    as_of: IsoTime
    scored_at: IsoTime
    arr: float
    currency: str
    tier: str
    revenue_at_risk: float = Field(description="ARR x score")


class HistoryItem(FromRow):
    id: int
    score: float
    band: Band
    previous_score: float | None
    previous_band: Band | None
    drivers: list[Driver]
    changes: list[str]
    model_version: str
    as_of: IsoTime
    published: bool = Field(description="risk.changed acknowledged by the broker")


class HistoryOut(BaseModel):
    account_id: str
    items: list[HistoryItem]
    next_before_id: int | None = Field(description="pass as before_id for the next page; null at the end")


class FeaturesOut(FromRow):
    account_id: str
    as_of: IsoTime
    features: dict[str, float] = Field(description="catalog: docs/features.md")


class PortfolioItem(FromRow):
    account_id: str
    name: str
    score: float
    band: Band
    model_version: str
    as_of: IsoTime
    scored_at: IsoTime
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
