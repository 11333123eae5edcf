"""Pydantic shapes of the signals HTTP answers (they document the OpenAPI schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared.contracts import Driver

# green | amber | red (scored), churned (the account left; no longer scored), no_data (no event yet:
# not scored, never published on kamwatch.risk, so not part of the RiskChange contract)
Band = Literal["green", "amber", "red", "churned", "no_data"]
MONEY_NOTE = "JSON number with at most two decimals, exact (stored as a decimal)"


class ReportingMoney(BaseModel):
    """The amounts converted into the reporting currency (the originals stay in `currency`)."""

    reporting_currency: str | None = Field(default=None, description="the currency of the *_reporting fields")
    rates_date: date | None = Field(default=None, description="the date of the rates table used")
    arr_reporting: float | None = Field(
        default=None, description="ARR in the reporting currency; null when the rates table lacks `currency`"
    )
    revenue_at_risk_reporting: float | None = Field(
        default=None,
        description="revenue at risk in the reporting currency (the portfolio ranks by it); null: no rate",
    )


# ISO 8601 with the +00:00 offset, as the API has always answered.
IsoTime = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class FromRow(BaseModel):
    """An answer read straight from a table row (SQLAlchemy object)."""

    model_config = ConfigDict(from_attributes=True)


class RiskOut(FromRow, ReportingMoney):
    account_id: str
    name: str
    score: float = Field(description="probability of churn within the horizon (default 90 days)")
    band: Band
    drivers: list[Driver]
    changes: list[str] = Field(description="what changed since the previous score, in words")
    model_version: str
    as_of: IsoTime
    scored_at: IsoTime
    arr: float = Field(description=f"annual recurring revenue in `currency`; {MONEY_NOTE}")
    currency: str
    tier: str
    revenue_at_risk: float = Field(description=f"ARR x score in `currency`, to the cent; {MONEY_NOTE}")


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


class PortfolioItem(FromRow, ReportingMoney):
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
    reporting_currency: str = Field(description="items are ranked by revenue_at_risk_reporting in it")
    rates_date: date
    total: int
    limit: int
    offset: int
    next_offset: int | None
    next_after: str | None = Field(
        default=None,
        description="pass as `after` for the next page (keyset pagination); None on the last page",
    )


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


class RegistryOut(BaseModel):
    items: list[dict[str, Any]] = Field(description="AccountRecord objects, by id")
    total: int
    limit: int
    offset: int
    next_offset: int | None
