"""Contracts of the internal topics: the account registry and risk changes."""

from __future__ import annotations

import functools
import unicodedata
import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
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
# Registry strings end up in e-mail headers, Slack messages and log lines: a CR/LF or another
# control or line-separator character in a name made the e-mail composer raise on every tick.
MAX_RECORD_BYTES = 64 * 1024


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _forbidden(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in _BIDI_CONTROLS


def _plain_text(value: str) -> str:
    bad = next((c for c in value if _forbidden(c)), None)
    if bad is not None:
        raise ValueError(
            f"must not contain control or line-separator characters (found U+{ord(bad):04X}); "
            "write it on one line"
        )
    return value


def _iana_zone(value: str) -> str:
    """A real IANA time zone name (ZoneInfo raises OSError, not a ValueError, on odd names)."""
    if value not in _zones():
        raise ValueError(f"{value[:64]!r} is not an IANA time zone; write e.g. 'Europe/Berlin' or 'UTC'")
    return value


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


PlainText = AfterValidator(_plain_text)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), PlainText]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=50), PlainText]
Handle = Annotated[str, StringConstraints(max_length=100), PlainText]
Segment = Annotated[str, StringConstraints(max_length=50), PlainText]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=128), PlainText]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), PlainText]
# Printable ASCII only: no spaces, control characters or line separators in a URL we post to.
WebhookUrl = Annotated[str, StringConstraints(max_length=500, pattern=r"^https?://[!-~]+$")]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_iana_zone)]


class Person(BaseModel):
    """Someone alerts can reach: the KAM owner, their manager, or the executive sponsor."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email | None = None
    slack_webhook: WebhookUrl | None = None
    slack_handle: Handle | None = None
    timezone: TimeZone | None = None


class AccountRecord(BaseModel):
    """One key account in the registry (published as `account.upserted`)."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)]
    name: Name
    arr: Decimal = Field(ge=0, max_digits=18, decimal_places=2)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    tier: ShortText = "standard"
    segment: Segment | None = None
    renewal_date: date | None = None
    term_months: int | None = Field(
        default=None,
        ge=1,
        le=120,
        description="contract term in months (1 monthly, 3 quarterly, 12 annual...); absent = "
        f"{DEFAULT_TERM_MONTHS}. `account.renewed` moves renewal_date forward by it",
    )
    potential_arr: Decimal | None = Field(
        default=None,
        ge=0,
        max_digits=18,
        decimal_places=2,
        description="estimated ARR the account could reach (other sites, units, products, volume): "
        "the growth potential of key-account qualification",
    )
    gross_margin: Decimal | None = Field(
        default=None, ge=0, le=1, max_digits=5, decimal_places=4, description="gross margin 0..1, if known"
    )
    reference_customer: bool = Field(default=False, description="strategic: gives references")
    target_sector: bool = Field(default=False, description="strategic: in a sector we target")
    innovation_partner: bool = Field(default=False, description="strategic: co-develops the product")
    owner: Person | None = None
    manager: Person | None = None
    executive_sponsor: Person | None = None
    external_ids: dict[SystemName, ExternalId] = Field(
        default_factory=dict,
        max_length=32,
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


def mask_webhook(url: str) -> str:
    """A Slack webhook URL is a credential: show where it points, not its token."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}/{path[:12]}..." if len(path) > 12 else f"{scheme}://{host}/..."


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_people(record: dict[str, Any]) -> dict[str, Any]:
    """A registry record (JSON) with each person's e-mail and Slack webhook masked, for readers
    that may see the portfolio but not contact data (risk:read without accounts:write)."""
    masked = dict(record)
    for role in ("owner", "manager", "executive_sponsor"):
        person = masked.get(role)
        if isinstance(person, dict):
            person = dict(person)
            if person.get("email"):
                person["email"] = mask_email(str(person["email"]))
            if person.get("slack_webhook"):
                person["slack_webhook"] = mask_webhook(str(person["slack_webhook"]))
            masked[role] = person
    return masked


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
