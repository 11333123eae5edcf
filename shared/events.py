"""The event contract: CloudEvents 1.0 (JSON structured mode) with typed `data` per event type."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from shared.errors import EventInvalid, Problem, problems_from

SCHEMA_VERSION = "v1"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ACCOUNT_REF_PATTERN = re.compile(r"^(?P<system>[a-z][a-z0-9_\-]{0,31}):(?P<external_id>[^\s]{1,128})$")
MAX_EVENT_BYTES = 256 * 1024
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(days=1)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- usage ---------------------------------------------------------------------------------
class UsageRecorded(_Data):
    """Consumption of the product over one period (e.g. API calls for a day)."""

    metric: Identifier
    quantity: float = Field(ge=0, le=1e15, allow_inf_nan=False)
    active_users: int | None = Field(default=None, ge=0, le=10_000_000)


# --- tickets -------------------------------------------------------------------------------
class TicketPriority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class TicketStatus(StrEnum):
    new = "new"
    open = "open"
    pending = "pending"
    on_hold = "on_hold"
    solved = "solved"
    closed = "closed"


class TicketChanged(_Data):
    """A support ticket opened, changed or closed."""

    ticket_id: Identifier
    priority: TicketPriority
    status: TicketStatus
    csat: int | None = Field(default=None, ge=1, le=5, description="satisfaction 1 (bad)-5 (good)")
    reopened: bool = False
    opened_at: AwareDatetime | None = None


# --- payments ------------------------------------------------------------------------------
class InvoiceChanged(_Data):
    """An invoice issued, paid or overdue."""

    invoice_id: Identifier
    amount: Money
    currency: Currency
    due_date: date
    days_overdue: int = Field(default=0, ge=0, le=3650)
    uncollectible: bool = False


class PaymentFailed(_Data):
    """A payment attempt for an invoice failed."""

    invoice_id: Identifier
    amount: Money
    currency: Currency
    due_date: date | None = None
    failure_reason: Annotated[str, StringConstraints(max_length=200)] | None = None


class ExpansionKind(StrEnum):
    """The component an expansion grows (docs/metrics.md: expansion by component)."""

    seats_volume = "seats_volume"  # more seats, usage or volume
    new_product_premium = "new_product_premium"  # a new product or a premium tier (vertical)
    department_business_unit = "department_business_unit"  # another department or BU (horizontal)
    site_subsidiary = "site_subsidiary"  # another site or subsidiary (geographic)


class SubscriptionChanged(_Data):
    """The recurring revenue of a subscription changed (upgrade, downgrade, cancellation)."""

    subscription_id: Identifier
    status: Literal["active", "trialing", "past_due", "unpaid", "canceled", "paused"]
    mrr: Money
    previous_mrr: Money | None = None
    currency: Currency
    cancel_at_period_end: bool = False
    expansion_kind: ExpansionKind | None = Field(
        default=None,
        description="what an increase of MRR expands: seats_volume, new_product_premium, "
        "department_business_unit or site_subsidiary (absent: unspecified)",
    )


# --- contacts ------------------------------------------------------------------------------
class ContactRole(StrEnum):
    executive_sponsor = "executive_sponsor"
    champion = "champion"
    decision_maker = "decision_maker"
    technical_evaluator = "technical_evaluator"
    influencer = "influencer"
    user = "user"


class ContactChanged(_Data):
    """A person at the customer joined, left or changed role (no personal data is carried)."""

    contact_id: Identifier
    role: ContactRole
    previous_role: ContactRole | None = None
    executive: bool = Field(default=False, description="the contact is a C-level/VP executive")


# --- engagement, surveys, outcomes ---------------------------------------------------------
class EngagementRecorded(_Data):
    """A business review (QBR) or meeting was held, declined or missed."""

    kind: Literal["qbr", "meeting"]
    outcome: Literal["held", "declined", "no_show"]
    scheduled_for: date | None = None


class SurveyResponded(_Data):
    """An NPS answer (0-10) from a contact at the account."""

    score: int = Field(ge=0, le=10)
    survey: Literal["nps"] = "nps"
    contact_id: Identifier | None = None


class AccountOutcome(_Data):
    """The label: the account churned or renewed (used for training and post-mortems)."""

    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    reason_category: Identifier | None = Field(
        default=None,
        description="a short category of the reason for post-mortem roll-ups "
        "(e.g. price, product_fit, champion_left, budget, competitor)",
    )
    arr: Money | None = None
    currency: Currency | None = None


DATA_MODELS: dict[str, type[_Data]] = {
    "usage.recorded": UsageRecorded,
    "ticket.opened": TicketChanged,
    "ticket.updated": TicketChanged,
    "ticket.closed": TicketChanged,
    "invoice.issued": InvoiceChanged,
    "invoice.paid": InvoiceChanged,
    "invoice.overdue": InvoiceChanged,
    "payment.failed": PaymentFailed,
    "subscription.changed": SubscriptionChanged,
    "contact.joined": ContactChanged,
    "contact.left": ContactChanged,
    "contact.role_changed": ContactChanged,
    "engagement.recorded": EngagementRecorded,
    "survey.responded": SurveyResponded,
    "account.churned": AccountOutcome,
    "account.renewed": AccountOutcome,
}
EVENT_TYPES = tuple(DATA_MODELS)


def schema_name(data_model: type[BaseModel]) -> str:
    return data_model.__name__


def dataschema_for(event_type: str) -> str:
    """The `dataschema` URI naming the JSON Schema (and its version) of an event type's data."""
    return f"kamwatch:schemas/{SCHEMA_VERSION}/{schema_name(DATA_MODELS[event_type])}.json"


class CloudEvent(BaseModel):
    """CloudEvents 1.0 envelope in JSON structured mode; extension attributes are kept."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    type: str
    time: AwareDatetime
    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in DATA_MODELS:
            raise ValueError(f"unknown event type {value!r}; expected one of: {', '.join(EVENT_TYPES)}")
        return value


class AccountRef(BaseModel):
    """Who an event is about: a kamwatch account id, or `<system>:<external id>` alias."""

    model_config = ConfigDict(frozen=True)

    account_id: str | None = None
    system: str | None = None
    external_id: str | None = None

    @property
    def key(self) -> str:
        return self.account_id if self.account_id else f"{self.system}:{self.external_id}"


def parse_account_ref(subject: str) -> AccountRef:
    """Read a CloudEvent subject as an account id or a `<system>:<external id>` alias."""
    match = ACCOUNT_REF_PATTERN.match(subject)
    if match:
        return AccountRef(system=match["system"], external_id=match["external_id"])
    if re.match(ACCOUNT_ID_PATTERN, subject):
        return AccountRef(account_id=subject)
    raise EventInvalid(
        "subject is not an account reference",
        [
            Problem(
                "subject",
                "expected a kamwatch account id (letters, digits, _ . -) or "
                "'<system>:<external id>' such as 'stripe:cus_123'",
            )
        ],
    )


def decode_json(raw: bytes | str) -> Any:
    """Decode JSON or raise EventInvalid saying where the JSON breaks."""
    if isinstance(raw, bytes) and len(raw) > MAX_EVENT_BYTES:
        raise EventInvalid("event too large", [Problem("event", f"must be at most {MAX_EVENT_BYTES} bytes")])
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise EventInvalid(
            "event is not UTF-8", [Problem("event", f"byte {exc.start} is not valid UTF-8")]
        ) from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = (
            f"line {exc.lineno} column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deeply"
        )
        raise EventInvalid("event is not valid JSON", [Problem("event", detail)]) from None


def validate_event(obj: Any, now: datetime) -> CloudEvent:
    """Validate one CloudEvent (envelope, time bounds and typed data); return it normalised."""
    if not isinstance(obj, dict):
        raise EventInvalid("event must be a JSON object", [Problem("event", f"got {type(obj).__name__}")])
    try:
        nul = find_nul(obj, "")
    except RecursionError:
        raise EventInvalid("event is nested too deeply", [Problem("event", "nested too deeply")]) from None
    if nul is not None:
        # PostgreSQL text cannot hold NUL: storing one would fail the whole batch, again and again.
        raise EventInvalid(
            "event contains a NUL character", [Problem(nul or "event", "must not contain \\u0000")]
        )
    try:
        event = CloudEvent.model_validate(obj)
    except ValidationError as exc:
        raise EventInvalid(
            "event envelope is invalid", problems_from(exc.errors(include_url=False))
        ) from None
    _check_time(event.time, now)
    model = DATA_MODELS[event.type]
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        raise EventInvalid(
            f"data is invalid for {event.type}", problems_from(exc.errors(include_url=False), "data")
        ) from None
    event.data = data.model_dump(mode="json", exclude_none=True)
    event.time = event.time.astimezone(UTC)
    event.dataschema = dataschema_for(event.type)
    return event


def find_nul(value: Any, where: str) -> str | None:
    """The path of the first string (or key) holding a NUL character, else None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        found = find_nul(item, path)
        if found is not None:
            return found
    return None


def _check_time(value: datetime, now: datetime) -> None:
    if value < EARLIEST_EVENT_TIME:
        raise EventInvalid(
            "event time is too old", [Problem("time", "must be on or after 2000-01-01T00:00:00Z")]
        )
    if value > now + MAX_FUTURE_SKEW:
        raise EventInvalid(
            "event time is in the future",
            [
                Problem(
                    "time",
                    "must not be more than 24 hours ahead of now; "
                    "send the time the event happened (RFC 3339, with offset)",
                )
            ],
        )


def rfc3339(when: datetime) -> str:
    """The one RFC 3339 writer: UTC with a `Z` (`2026-11-25T08:00:00Z`)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """The one RFC 3339 reader: an aware UTC datetime (a time without offset is taken as UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def canonical_json(payload: Any) -> str:
    """Stable key order and no spaces, so stored and produced bytes are deterministic."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def envelope(
    event_type: str,
    data: Any,
    *,
    id: str,
    source: str,
    time: datetime | str,
    subject: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The one CloudEvents 1.0 envelope builder (structured mode), as a JSON-ready dict. A `time`
    given as text (from a webhook) is passed on as it is, for validate_event to judge."""
    obj: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": event_type,
        "time": time if isinstance(time, str) else rfc3339(time),
        "data": data,
        **extensions,
    }
    if subject is not None:
        obj["subject"] = subject
    return obj


def to_json(event: CloudEvent, **overrides: Any) -> str:
    """Canonical JSON of an event; `overrides` replace or add attributes (e.g. the resolved
    `subject`) without copying the model."""
    payload = event.model_dump(mode="json", exclude_none=True)
    payload["time"] = rfc3339(event.time)
    payload.update(overrides)
    return canonical_json(payload)


def make_event(
    event_type: str,
    data: dict[str, Any],
    *,
    id: str,
    source: str,
    time: datetime,
    subject: str | None = None,
    **extensions: Any,
) -> CloudEvent:
    """Build and validate a CloudEvent (the helper simulators, translators and tests use)."""
    obj = envelope(event_type, data, id=id, source=source, time=time, subject=subject, **extensions)
    return validate_event(obj, now=time)
