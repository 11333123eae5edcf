"""Pure folding of canonical events into per-account state: daily buckets and entity snapshots.

Both structures are order-independent (a commutative merge), so a shuffled or duplicated stream
gives the same state as the ordered one, and `rebuild` (in memory) equals the live path (in the DB):
- buckets: integer counters per account per event-time day (sums; `max_*` keys keep the maximum).
  Usage quantities are stored in milli-units so sums are exact (float sums depend on order).
- entities: the latest event per ticket / invoice / contact / subscription / NPS answer, chosen by
  (event time, source, id); a ticket keeps the earliest opening time seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from shared.events import parse_rfc3339

KEY_ROLES = ("champion", "executive_sponsor")
CLOSED_TICKET = ("solved", "closed")
Counts = dict[str, int]


@dataclass(frozen=True)
class EntityRow:
    """The latest known state of one thing at an account (a ticket, an invoice, a contact...)."""

    kind: str
    entity_id: str
    event_time: datetime
    event_key: str
    state: dict[str, Any]
    active: bool


@dataclass
class AccountState:
    """Everything signals keeps about one account, in memory (rebuild, training, one batch)."""

    buckets: dict[date, Counts] = field(default_factory=dict)
    entities: dict[tuple[str, str], EntityRow] = field(default_factory=dict)

    def apply(self, event_type: str, data: Mapping[str, Any], time: datetime, key: str) -> None:
        day = time.astimezone(UTC).date()
        self.buckets[day] = merge_counts(self.buckets.get(day, {}), bucket_delta(event_type, data, day))
        for entity in (entity_of(event_type, data, time, key), tenure_entity(time, key)):
            if entity is not None:
                ident = (entity.kind, entity.entity_id)
                self.entities[ident] = merge_entity(self.entities.get(ident), entity)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def merge_counts(old: Mapping[str, int], delta: Mapping[str, int]) -> Counts:
    merged = dict(old)
    for name, value in delta.items():
        if name.startswith("max_"):
            merged[name] = max(merged.get(name, value), value)
        else:
            merged[name] = merged.get(name, 0) + value
    return merged


def bucket_delta(event_type: str, data: Mapping[str, Any], day: date | None = None) -> Counts:
    """The counters one event adds to its day."""
    family, _, action = event_type.partition(".")
    delta: Counts = {"events": 1}
    builder = _BUCKET_BUILDERS.get(family)
    if builder is not None:
        builder(action, data, delta)
    if event_type == "invoice.paid" and day is not None and data.get("due_date"):
        due = date.fromisoformat(str(data["due_date"])[:10])
        delta["invoices_paid_late_days"] = max(delta["invoices_paid_late_days"], (day - due).days, 0)
    return delta


USAGE_PREFIX = "u:"  # u:<metric> = milli-units of that metric on the day
USERS_PREFIX = "max_users:"  # max_users:<metric> = the most active users reported for it that day


def _usage(_action: str, data: Mapping[str, Any], delta: Counts) -> None:
    milli = round(float(data.get("quantity", 0)) * 1000)
    metric = str(data.get("metric") or "usage")
    delta["usage_events"] = 1
    delta["usage_milli"] = milli
    delta[USAGE_PREFIX + metric] = milli
    if data.get("active_users") is not None:
        delta["max_active_users"] = int(data["active_users"])
        delta[USERS_PREFIX + metric] = int(data["active_users"])


def _ticket(action: str, data: Mapping[str, Any], delta: Counts) -> None:
    if action == "opened":
        delta[f"tickets_opened_{data.get('priority', 'normal')}"] = 1
    if action == "closed":
        delta["tickets_closed"] = 1
    if data.get("reopened"):
        delta["tickets_reopened"] = 1
    if data.get("csat") is not None:
        delta["csat_sum"] = int(data["csat"])
        delta["csat_count"] = 1


def _payment(action: str, _data: Mapping[str, Any], delta: Counts) -> None:
    if action == "failed":
        delta["payments_failed"] = 1


def _invoice(action: str, data: Mapping[str, Any], delta: Counts) -> None:
    delta[f"invoices_{action}"] = 1
    if action == "paid":
        # Days late at payment, for lateness against the account's own history.
        delta["invoices_paid_late_days"] = int(data.get("days_overdue") or 0)


def _contact(action: str, data: Mapping[str, Any], delta: Counts) -> None:
    delta[f"contacts_{action}"] = 1
    role = data.get("role")
    if action == "left" and role in KEY_ROLES:
        delta["key_contacts_left"] = 1
    if action in ("joined", "role_changed") and (data.get("executive") or role == "executive_sponsor"):
        delta["executives_joined"] = 1


def _engagement(_action: str, data: Mapping[str, Any], delta: Counts) -> None:
    delta[f"{data.get('kind', 'meeting')}_{data.get('outcome', 'held')}"] = 1


def _survey(_action: str, data: Mapping[str, Any], delta: Counts) -> None:
    score = int(data.get("score", 0))
    delta["nps_sum"] = score
    delta["nps_count"] = 1
    if score <= 6:
        delta["nps_detractors"] = 1


def _account(action: str, _data: Mapping[str, Any], delta: Counts) -> None:
    delta[f"account_{action}"] = 1


def _subscription(_action: str, data: Mapping[str, Any], delta: Counts) -> None:
    previous = data.get("previous_mrr")
    if previous is None:
        return
    change = round((float(data.get("mrr", 0)) - float(previous)) * 100)  # cents, exact sums
    if change < 0:
        delta["subscription_downgrades"] = 1
        delta["mrr_contraction_cents"] = -change
    elif change > 0:
        delta["subscription_upgrades"] = 1
        delta["mrr_expansion_cents"] = change


_BUCKET_BUILDERS = {
    "usage": _usage,
    "ticket": _ticket,
    "payment": _payment,
    "invoice": _invoice,
    "contact": _contact,
    "engagement": _engagement,
    "survey": _survey,
    "account": _account,
    "subscription": _subscription,
}


def entity_of(event_type: str, data: Mapping[str, Any], time: datetime, key: str) -> EntityRow | None:
    """The snapshot an event leaves of the thing it is about, or None (usage, outcomes...)."""
    family, _, action = event_type.partition(".")
    built = _ENTITY_BUILDERS.get(family, lambda *_: None)(action, data, time)
    if built is None:
        return None
    kind, ident, state, active = built
    state["at"] = iso(time)
    return EntityRow(kind, ident, time.astimezone(UTC), key, state, active)


def tenure_entity(time: datetime, key: str) -> EntityRow:
    """The first day any event was seen for the account (tenure); merged with min."""
    day = time.astimezone(UTC).date().isoformat()
    return EntityRow("tenure", "first", time.astimezone(UTC), key, {"first_seen": day}, True)


def _ticket_entity(action: str, data: Mapping[str, Any], time: datetime) -> Any:
    opened = data.get("opened_at") or (iso(time) if action == "opened" else None)
    if opened is not None and not isinstance(opened, str):
        opened = iso(opened)
    elif opened is not None:
        opened = iso(parse_rfc3339(opened))
    status = str(data.get("status", "open"))
    state = {"priority": data.get("priority"), "status": status, "opened_at": opened}
    return "ticket", str(data["ticket_id"]), state, status not in CLOSED_TICKET and action != "closed"


def _invoice_entity(action: str, data: Mapping[str, Any], _time: datetime) -> Any:
    state = {
        "status": action,
        "amount": str(data.get("amount", "0")),
        "currency": data.get("currency"),
        "due_date": str(data.get("due_date")),
        "uncollectible": bool(data.get("uncollectible", False)),
    }
    return "invoice", str(data["invoice_id"]), state, action != "paid"


def _contact_entity(action: str, data: Mapping[str, Any], _time: datetime) -> Any:
    state = {"role": data.get("role"), "executive": bool(data.get("executive", False)), "action": action}
    return "contact", str(data["contact_id"]), state, action != "left"


def _usage_entity(_action: str, data: Mapping[str, Any], time: datetime) -> Any:
    """First and last usage day of the account (min/max, so order does not matter)."""
    day = time.astimezone(UTC).date().isoformat()
    active = day if float(data.get("quantity", 0)) > 0 else None
    return "usage", "span", {"first_seen": day, "last_active": active}, True


def _survey_entity(_action: str, data: Mapping[str, Any], _time: datetime) -> Any:
    return "nps", "last", {"score": int(data.get("score", 0))}, True


def _subscription_entity(_action: str, data: Mapping[str, Any], _time: datetime) -> Any:
    status = str(data.get("status"))
    cancelling = status == "canceled" or bool(data.get("cancel_at_period_end"))
    state = {"status": status, "mrr": str(data.get("mrr")), "cancelling": cancelling}
    return "subscription", str(data["subscription_id"]), state, status != "canceled"


_ENTITY_BUILDERS: dict[str, Any] = {
    "usage": _usage_entity,
    "ticket": _ticket_entity,
    "invoice": _invoice_entity,
    "contact": _contact_entity,
    "survey": _survey_entity,
    "subscription": _subscription_entity,
}


def merge_entity(old: EntityRow | None, new: EntityRow) -> EntityRow:
    """Latest event wins (by time, then source+id); a ticket keeps its earliest opening time."""
    if old is None:
        return new
    newer, older = (
        (new, old) if (new.event_time, new.event_key) > (old.event_time, old.event_key) else (old, new)
    )
    if newer.kind == "ticket":
        state = {**newer.state, "opened_at": _pick(min, newer.state, older.state, "opened_at")}
    elif newer.kind == "tenure":
        state = {"first_seen": _pick(min, newer.state, older.state, "first_seen")}
    elif newer.kind == "usage":
        state = {
            **newer.state,
            "first_seen": _pick(min, newer.state, older.state, "first_seen"),
            "last_active": _pick(max, newer.state, older.state, "last_active"),
        }
    else:
        return newer
    return EntityRow(newer.kind, newer.entity_id, newer.event_time, newer.event_key, state, newer.active)


def _pick(choose: Any, a: Mapping[str, Any], b: Mapping[str, Any], name: str) -> Any:
    values = [v for v in (a.get(name), b.get(name)) if v]
    return choose(values) if values else None


def event_key(source: str, event_id: str) -> str:
    return f"{source}\x1f{event_id}"
