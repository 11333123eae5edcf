"""Stripe- and Zendesk-shaped webhook payloads for simulated events (pure functions).

Shaped after what the ingest translators read (services/ingest/webhooks.py): a payload built here
and translated there gives back the event's type, subject and data (Stripe's whole-day
`days_overdue` of a paid invoice may differ by one; CSAT is not carried by these webhooks).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from shared.events import CloudEvent, rfc3339

STRIPE_TYPES = {
    "invoice.paid": "invoice.paid",
    "payment.failed": "invoice.payment_failed",
    "invoice.overdue": "invoice.overdue",
}
ZENDESK_STATUS = {"new": "NEW", "open": "OPEN", "pending": "PENDING", "on_hold": "HOLD"}
ZENDESK_STATUS.update({"solved": "SOLVED", "closed": "CLOSED"})


def channel(event: CloudEvent) -> str:
    """Which door an event goes through with `--target webhooks`: stripe, zendesk or api."""
    if event.type in STRIPE_TYPES or event.type == "subscription.changed":
        return "stripe"
    if event.type.startswith("ticket.") and "csat" not in event.data:
        return "zendesk"
    return "api"


def _unix(value: datetime) -> int:
    return int(value.timestamp())


def _day_unix(value: str) -> int:
    return _unix(datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC))


def _minor(amount: str) -> int:
    return int(Decimal(amount) * 100)


def _customer(event: CloudEvent) -> str:
    return (event.subject or "").removeprefix("stripe:")


def stripe_payload(event: CloudEvent) -> dict[str, Any]:
    """A Stripe event (`evt_...`) that ingest translates back into `event`."""
    if event.type == "subscription.changed":
        return _stripe_subscription(event)
    data = event.data
    invoice: dict[str, Any] = {
        "id": data["invoice_id"],
        "object": "invoice",
        "customer": _customer(event),
        "currency": str(data["currency"]).lower(),
        "amount_due": _minor(data["amount"]),
        "amount_paid": _minor(data["amount"]) if event.type == "invoice.paid" else 0,
        "amount_remaining": 0 if event.type == "invoice.paid" else _minor(data["amount"]),
        "due_date": _day_unix(data["due_date"]),
    }
    if event.type == "invoice.paid":
        invoice["status_transitions"] = {"paid_at": _unix(event.time)}
    return {
        "id": f"evt_{event.id}",
        "object": "event",
        "type": STRIPE_TYPES[event.type],
        "created": _unix(event.time),
        "data": {"object": invoice},
    }


def _items(mrr: str) -> dict[str, Any]:
    price = {"unit_amount": _minor(mrr), "recurring": {"interval": "month", "interval_count": 1}}
    return {"data": [{"price": price, "quantity": 1}]}


def _stripe_subscription(event: CloudEvent) -> dict[str, Any]:
    data = event.data
    deleted = data["status"] == "canceled"
    sub = {
        "id": data["subscription_id"],
        "object": "subscription",
        "customer": _customer(event),
        "currency": str(data["currency"]).lower(),
        "status": data["status"],
        "cancel_at_period_end": bool(data.get("cancel_at_period_end")),
        "items": _items(data.get("previous_mrr", "0") if deleted else data["mrr"]),
    }
    body: dict[str, Any] = {"object": sub}
    if not deleted and data.get("previous_mrr") is not None:
        body["previous_attributes"] = {"items": _items(data["previous_mrr"])}
    return {
        "id": f"evt_{event.id}",
        "object": "event",
        "type": "customer.subscription.deleted" if deleted else "customer.subscription.updated",
        "created": _unix(event.time),
        "data": body,
    }


def zendesk_payload(event: CloudEvent) -> dict[str, Any]:
    """A Zendesk event-subscription webhook that ingest translates back into `event`."""
    data = event.data
    detail = {
        "id": data["ticket_id"],
        "organization_id": (event.subject or "").removeprefix("zendesk:"),
        "status": ZENDESK_STATUS[data["status"]],
        "priority": str(data["priority"]).upper(),
    }
    if data.get("opened_at"):
        detail["created_at"] = data["opened_at"]
    payload: dict[str, Any] = {
        "id": event.id,
        "type": "zen:event-type:ticket.created",
        "time": rfc3339(event.time),
        "detail": detail,
    }
    if event.type != "ticket.opened":
        previous = "solved" if data.get("reopened") else "open"
        payload["type"] = "zen:event-type:ticket.status_changed"
        payload["event"] = {"previous": previous.upper(), "current": detail["status"]}
    return payload
