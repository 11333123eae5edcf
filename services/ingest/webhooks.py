"""Webhook signature checks and translators (pure functions over bytes and dicts)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.errors import EventInvalid, Problem
from shared.events import envelope, parse_rfc3339

# Stripe amounts are in the smallest unit; these currencies have none below the unit.
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
DAY_S = 86400


class SignatureInvalid(Exception):
    """The webhook's signature does not verify; the message says why (never the secret)."""


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def verify_stripe(
    header: str | None, body: bytes, secrets: list[str], now: float, tolerance_s: int = 300
) -> None:
    """Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]; HMAC-SHA256 of "<t>.<raw body>"."""
    if not header:
        raise SignatureInvalid("missing Stripe-Signature header")
    timestamp, candidates = _parse_signed_header(header)
    _check_age(timestamp, now, tolerance_s)
    signed = f"{timestamp}.".encode() + body
    expected = [_hmac(secret, signed).hex() for secret in secrets]
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str (hostile headers).
    if not any(hmac.compare_digest(e.encode(), c.encode()) for e in expected for c in candidates):
        raise SignatureInvalid("signature does not match the body (wrong secret or altered body)")


def sign_stripe(body: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header for `body` (simulator and tests)."""
    return f"t={timestamp},v1={_hmac(secret, f'{timestamp}.'.encode() + body).hex()}"


def _parse_signed_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():  # "²".isdigit() is True
            if len(value) > 12:  # a 400-digit t= overflowed the float compare: a 500, not a 401
                raise SignatureInvalid("signature timestamp t= is not a plausible unix time")
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureInvalid("signature header needs t=<unix time> and at least one v1=<hex>")
    return timestamp, candidates


def _check_age(timestamp: float, now: float, tolerance_s: int) -> None:
    if abs(now - timestamp) > tolerance_s:
        raise SignatureInvalid(
            f"signature timestamp is outside the {tolerance_s} s tolerance (replayed or clock skew)"
        )


def verify_zendesk(
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    secrets: list[str],
    now: float,
    tolerance_s: int = 300,
) -> None:
    """X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(timestamp + body))."""
    if not signature or not timestamp:
        raise SignatureInvalid(
            "missing X-Zendesk-Webhook-Signature or X-Zendesk-Webhook-Signature-Timestamp header"
        )
    try:
        sent_at = parse_rfc3339(timestamp)
    except ValueError:
        raise SignatureInvalid("X-Zendesk-Webhook-Signature-Timestamp is not an ISO 8601 time") from None
    _check_age(sent_at.timestamp(), now, tolerance_s)
    signed = timestamp.encode() + body
    expected = [base64.b64encode(_hmac(secret, signed)).decode() for secret in secrets]
    if not any(hmac.compare_digest(e.encode(), signature.strip().encode()) for e in expected):
        raise SignatureInvalid("signature does not match the body (wrong secret or altered body)")


def sign_zendesk(body: bytes, secret: str, timestamp: str) -> str:
    return base64.b64encode(_hmac(secret, timestamp.encode() + body)).decode()


# --- Stripe ---------------------------------------------------------------------------------
STRIPE_TYPES = {
    "invoice.paid": "invoice.paid",
    "invoice.payment_failed": "payment.failed",
    "invoice.overdue": "invoice.overdue",
    "invoice.marked_uncollectible": "invoice.overdue",
    "customer.subscription.updated": "subscription.changed",
    "customer.subscription.deleted": "subscription.changed",
}


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise EventInvalid("webhook payload is missing a field", [Problem(f"{where}.{key}", "is required")])
    return value


def _amount(minor: Any, currency: str) -> str:
    value = Decimal(int(minor or 0))
    if currency.lower() in ZERO_DECIMAL:
        return str(value)
    return str((value / 100).quantize(Decimal("0.01")))


def _date(unix: Any) -> str:
    return datetime.fromtimestamp(int(unix), UTC).date().isoformat()


def stripe_to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Translate one Stripe event into kamwatch CloudEvents (empty when not relevant)."""
    stripe_type = _require(payload, "type", "event")
    kam_type = STRIPE_TYPES.get(stripe_type)
    if kam_type is None:
        return []
    event_id = _require(payload, "id", "event")
    created = int(_require(payload, "created", "event"))
    obj = _require(_require(payload, "data", "event"), "object", "event.data")
    customer = _require(obj, "customer", "data.object")
    currency = str(_require(obj, "currency", "data.object"))
    if kam_type == "subscription.changed":
        data = _subscription_data(
            obj,
            payload.get("data", {}).get("previous_attributes") or {},
            deleted=stripe_type.endswith("deleted"),
        )
    else:
        data = _invoice_data(kam_type, obj, created, uncollectible=stripe_type.endswith("uncollectible"))
    data = {**data, "currency": currency.upper()}
    time = datetime.fromtimestamp(created, UTC)
    return [envelope(kam_type, data, id=event_id, source="stripe", time=time, subject=f"stripe:{customer}")]


def _invoice_data(
    kam_type: str, invoice: dict[str, Any], created: int, uncollectible: bool
) -> dict[str, Any]:
    currency = str(invoice["currency"])
    due = invoice.get("due_date") or invoice.get("created") or created
    data: dict[str, Any] = {"invoice_id": _require(invoice, "id", "data.object"), "due_date": _date(due)}
    if kam_type == "invoice.paid":
        paid_at = (invoice.get("status_transitions") or {}).get("paid_at") or created
        data["amount"] = _amount(invoice.get("amount_paid"), currency)
        data["days_overdue"] = max(0, (int(paid_at) - int(due)) // DAY_S)
    elif kam_type == "payment.failed":
        data["amount"] = _amount(invoice.get("amount_due"), currency)
    else:
        data["amount"] = _amount(invoice.get("amount_remaining", invoice.get("amount_due")), currency)
        data["days_overdue"] = max(0, (created - int(due)) // DAY_S)
        data["uncollectible"] = uncollectible
    return data


MONTHS_PER_INTERVAL = {
    "day": Decimal(1) / Decimal("30.4375"),
    "week": Decimal(7) / Decimal("30.4375"),
    "month": Decimal(1),
    "year": Decimal(12),
}


def _mrr(items: Any, currency: str) -> Decimal:
    total = Decimal(0)
    for item in (items or {}).get("data", []):
        price = item.get("price") or item.get("plan") or {}
        recurring = price.get("recurring") or price
        interval = recurring.get("interval", "month")
        count = Decimal(int(recurring.get("interval_count") or 1))
        months = MONTHS_PER_INTERVAL.get(interval, Decimal(1)) * count
        unit = Decimal(_amount(price.get("unit_amount") or price.get("amount") or 0, currency))
        total += unit * int(item.get("quantity") or 1) / months
    return total.quantize(Decimal("0.01"))


def _subscription_data(sub: dict[str, Any], previous: dict[str, Any], deleted: bool) -> dict[str, Any]:
    currency = str(sub["currency"])
    status = "canceled" if deleted else str(_require(sub, "status", "data.object"))
    if status == "incomplete" or status == "incomplete_expired":
        status = "unpaid"
    mrr = Decimal(0) if deleted else _mrr(sub.get("items"), currency)
    data: dict[str, Any] = {
        "subscription_id": _require(sub, "id", "data.object"),
        "status": status,
        "mrr": str(mrr),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
    }
    if "items" in previous:
        data["previous_mrr"] = str(_mrr(previous["items"], currency))
    elif deleted:
        data["previous_mrr"] = str(_mrr(sub.get("items"), currency))
    return data


# --- Zendesk --------------------------------------------------------------------------------
ZENDESK_PRIORITY = {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"}
ZENDESK_STATUS = {
    "new": "new",
    "open": "open",
    "pending": "pending",
    "hold": "on_hold",
    "on_hold": "on_hold",
    "solved": "solved",
    "closed": "closed",
}
ZENDESK_TYPES = {
    "ticket.created",
    "ticket.priority_changed",
    "ticket.status_changed",
    "ticket.csat_rating_changed",
}


def zendesk_to_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Translate one Zendesk event-subscription webhook into kamwatch CloudEvents."""
    zen_type = str(_require(payload, "type", "event")).removeprefix("zen:event-type:")
    if zen_type not in ZENDESK_TYPES:
        return []
    detail = _require(payload, "detail", "event")
    organization = detail.get("organization_id")
    if not organization:
        raise EventInvalid(
            "ticket has no organization",
            [
                Problem(
                    "detail.organization_id", "is required to find the account; set the ticket's organization"
                )
            ],
        )
    status = ZENDESK_STATUS.get(str(detail.get("status") or "open").lower())
    priority = ZENDESK_PRIORITY.get(str(detail.get("priority") or "normal").lower(), "normal")
    if status is None:
        raise EventInvalid(
            "unknown ticket status",
            [Problem("detail.status", "expected NEW, OPEN, PENDING, HOLD, SOLVED or CLOSED")],
        )
    change = payload.get("event") or {}
    previous = str(change.get("previous") or "").lower()
    if zen_type == "ticket.created":
        kam_type = "ticket.opened"
    elif status in ("solved", "closed"):
        kam_type = "ticket.closed"
    else:
        kam_type = "ticket.updated"
    data: dict[str, Any] = {
        "ticket_id": str(_require(detail, "id", "detail")),
        "priority": priority,
        "status": status,
        "reopened": zen_type == "ticket.status_changed"
        and previous in ("solved", "closed")
        and status not in ("solved", "closed"),
    }
    if detail.get("created_at"):
        data["opened_at"] = detail["created_at"]
    score = (change.get("current") or {}) if zen_type == "ticket.csat_rating_changed" else {}
    if isinstance(score, dict) and score.get("score") in ("good", "bad"):
        data["csat"] = 5 if score["score"] == "good" else 1
    event_id, time = str(_require(payload, "id", "event")), _require(payload, "time", "event")
    return [
        envelope(kam_type, data, id=event_id, source="zendesk", time=time, subject=f"zendesk:{organization}")
    ]
