"""Contracts of the internal topics: the account registry and risk changes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared.errors import EventInvalid, Problem, problems_from
from shared.events import ACCOUNT_ID_PATTERN, SCHEMA_VERSION, canonical_json, decode_json, envelope, find_nul

ACCOUNT_UPSERTED = "account.upserted"
RISK_CHANGED = "risk.changed"

M = TypeVar("M", bound=BaseModel)
# `churned`: the account left (an `account.churned` event); it is no longer scored or alerted.
RiskBand = Literal["green", "amber", "red", "churned"]
CHURNED = "churned"
# The contract term assumed when the registry has no `term_months` (a yearly contract).
DEFAULT_TERM_MONTHS = 12
BILLING_PERIODS = {"monthly": 1, "quarterly": 3, "annual": 12}
# Features every risk.changed carries in `features` (signals guarantees them, alert policies may
# name them); docs/features.md has the whole catalog.
CONTRACT_FEATURES = (
    "usage_ratio_28d_vs_90d",
    "days_since_last_activity",
    "urgent_tickets_opened_14d",
    "open_urgent_tickets",
    "max_days_overdue",
    "amount_overdue_to_arr",
    "failed_payments_90d",
    "key_contact_departed_90d",
    "days_since_key_contact_departed",
    "single_threaded",
    "qbr_declined_or_missed_180d",
    "last_nps",
    "days_to_renewal",
)
SystemName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")]


class Person(BaseModel):
    """Someone alerts can reach: the KAM owner, their manager, or the executive sponsor."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    slack_webhook: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    slack_handle: Annotated[str, StringConstraints(max_length=100)] | None = None
    timezone: str | None = None


class AccountRecord(BaseModel):
    """One key account in the registry (published as `account.upserted`)."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    arr: Decimal = Field(ge=0, max_digits=18, decimal_places=2)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    tier: Annotated[str, StringConstraints(min_length=1, max_length=50)] = "standard"
    segment: Annotated[str, StringConstraints(max_length=50)] | None = None
    renewal_date: date | None = None
    term_months: int | None = Field(
        default=None,
        ge=1,
        le=120,
        description="contract term in months (1 monthly, 3 quarterly, 12 annual...); absent = "
        f"{DEFAULT_TERM_MONTHS}. `account.renewed` moves renewal_date forward by it",
    )
    owner: Person | None = None
    manager: Person | None = None
    executive_sponsor: Person | None = None
    external_ids: dict[SystemName, Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        default_factory=dict,
        description="ids of this account in other systems, e.g. {'stripe': 'cus_123'}",
    )
    deleted: bool = False
    updated_at: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL: one in a name or alias would fail every write.
        try:
            where = find_nul(value, "")
        except RecursionError:
            raise ValueError("the record is nested too deeply") from None
        if where is not None:
            raise ValueError(f"{where or 'record'} must not contain the NUL character \\u0000")
        return value


class Driver(BaseModel):
    """One reason behind a score, in words a KAM can act on."""

    feature: str
    value: float
    contribution: float
    text: str


class RiskChange(BaseModel):
    """A scored account whose band changed or whose score moved past the publish step."""

    account_id: str
    score: float = Field(ge=0, le=1)
    band: RiskBand
    previous_score: float | None = None
    previous_band: RiskBand | None = None
    drivers: list[Driver] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)
    features: dict[str, float] = Field(default_factory=dict)
    model_version: str
    as_of: AwareDatetime
    scored_at: datetime | None = None
    received_at: AwareDatetime | None = Field(
        default=None,
        description="when the earliest event behind this change reached kamwatch (latency metrics); "
        "none for a change made by the time-driven sweep",
    )
    extra: dict[str, Any] = Field(default_factory=dict)


def read_contract_data(raw: bytes | None, expected_type: str, model: type[M]) -> M:
    """The validated `data` of an internal-topic CloudEvent of `expected_type`, or EventInvalid
    naming the field (what ingest and alerts read from kamwatch.accounts and kamwatch.risk)."""
    event = decode_json(raw or b"")
    if not isinstance(event, dict) or event.get("type") != expected_type:
        raise EventInvalid(f"not a {expected_type} event", [Problem("type", f"expected '{expected_type}'")])
    try:
        return model.model_validate(event.get("data"))
    except ValidationError as exc:
        problems = problems_from(exc.errors(include_url=False), "data")
        raise EventInvalid(f"{expected_type} data is invalid", problems) from None


CONTRACT_MODELS: dict[str, type[BaseModel]] = {ACCOUNT_UPSERTED: AccountRecord, RISK_CHANGED: RiskChange}


def contract_event(
    event_type: str, data: Any, *, id: str, source: str, subject: str, time: datetime
) -> bytes:
    """The one writer of internal-topic CloudEvents (`account.upserted`, `risk.changed`)."""
    schema = f"kamwatch:schemas/{SCHEMA_VERSION}/{CONTRACT_MODELS[event_type].__name__}.json"
    obj = envelope(
        event_type,
        data,
        id=id,
        source=source,
        time=time,
        subject=subject,
        datacontenttype="application/json",
        dataschema=schema,
    )
    return canonical_json(obj).encode()
