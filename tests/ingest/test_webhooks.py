"""Webhook signatures and translators: pure functions, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.ingest.webhooks import (
    SignatureInvalid,
    sign_stripe,
    sign_zendesk,
    stripe_to_events,
    verify_stripe,
    verify_zendesk,
    zendesk_to_events,
)
from shared.events import validate_event
from tests.helpers import NOW

BODY = b'{"id":"evt_1"}'
T = 1_790_000_000


def test_stripe_signature_accepts_any_matching_v1_and_rotated_secrets() -> None:
    header = sign_stripe(BODY, "whsec_new", T) + ",v1=" + "0" * 64
    verify_stripe(header, BODY, ["whsec_old", "whsec_new"], now=T + 10)


@pytest.mark.parametrize(
    ("header", "now", "why"),
    [
        (None, T, "missing"),
        ("t=abc,v1=00", T, "t=<unix time>"),
        (sign_stripe(BODY, "whsec_other", T), T, "does not match"),
        (sign_stripe(BODY, "whsec_new", T), T + 301, "tolerance"),
        (sign_stripe(BODY, "whsec_new", T), T - 301, "tolerance"),
    ],
)
def test_stripe_signature_rejections_say_why(header, now, why: str) -> None:
    with pytest.raises(SignatureInvalid, match=why):
        verify_stripe(header, BODY, ["whsec_new"], now=now)


def test_stripe_signature_covers_the_raw_body() -> None:
    header = sign_stripe(BODY, "s", T)
    with pytest.raises(SignatureInvalid):
        verify_stripe(header, BODY.replace(b"1", b"2"), ["s"], now=T)


def test_zendesk_signature() -> None:
    stamp = "2026-09-21T10:00:00Z"
    now = datetime(2026, 9, 21, 10, tzinfo=UTC).timestamp()
    signature = sign_zendesk(BODY, "zd", stamp)
    verify_zendesk(signature, stamp, BODY, ["zd"], now=now)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        verify_zendesk(signature, stamp, BODY, ["zd"], now=now + 3600)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_zendesk(signature, stamp, BODY + b" ", ["zd"], now=now)
    with pytest.raises(SignatureInvalid, match="missing"):
        verify_zendesk(None, stamp, BODY, ["zd"], now=now)


def stripe_invoice_event(event_type: str = "invoice.overdue", **invoice: object) -> dict:
    due = int(NOW.timestamp()) - 47 * 86400
    obj = {
        "id": "in_1",
        "customer": "cus_42",
        "currency": "eur",
        "amount_due": 3000000,
        "amount_paid": 0,
        "amount_remaining": 3000000,
        "due_date": due,
        **invoice,
    }
    return {"id": "evt_1", "type": event_type, "created": int(NOW.timestamp()), "data": {"object": obj}}


def test_stripe_overdue_invoice_becomes_invoice_overdue_with_days_and_amount() -> None:
    [event] = stripe_to_events(stripe_invoice_event())
    parsed = validate_event(event, NOW)
    assert parsed.subject == "stripe:cus_42" and parsed.type == "invoice.overdue"
    assert parsed.data["days_overdue"] == 47
    assert parsed.data["amount"] == "30000.00" and parsed.data["currency"] == "EUR"


@pytest.mark.parametrize(
    ("stripe_type", "kam_type"),
    [
        ("invoice.paid", "invoice.paid"),
        ("invoice.payment_failed", "payment.failed"),
        ("invoice.marked_uncollectible", "invoice.overdue"),
    ],
)
def test_stripe_invoice_types(stripe_type: str, kam_type: str) -> None:
    [event] = stripe_to_events(stripe_invoice_event(stripe_type))
    assert validate_event(event, NOW).type == kam_type


def test_stripe_subscription_change_computes_mrr() -> None:
    sub = {
        "id": "sub_1",
        "customer": "cus_42",
        "currency": "usd",
        "status": "active",
        "items": {
            "data": [{"quantity": 2, "price": {"unit_amount": 120000, "recurring": {"interval": "year"}}}]
        },
    }
    previous = {
        "items": {
            "data": [{"quantity": 3, "price": {"unit_amount": 120000, "recurring": {"interval": "year"}}}]
        }
    }
    payload = {
        "id": "evt_2",
        "type": "customer.subscription.updated",
        "created": int(NOW.timestamp()),
        "data": {"object": sub, "previous_attributes": previous},
    }
    [event] = stripe_to_events(payload)
    data = validate_event(event, NOW).data
    assert data["mrr"] == "200.00" and data["previous_mrr"] == "300.00"


def test_irrelevant_stripe_events_translate_to_nothing() -> None:
    assert stripe_to_events({"id": "evt", "type": "charge.succeeded", "created": 1}) == []


def zendesk_event(zen_type: str = "ticket.created", **detail: object) -> dict:
    body = {
        "id": "5e1c",
        "type": f"zen:event-type:{zen_type}",
        "time": NOW.isoformat(),
        "detail": {"id": "1042", "priority": "URGENT", "status": "OPEN", "organization_id": "9001", **detail},
    }
    return body


def test_zendesk_ticket_created_becomes_ticket_opened() -> None:
    [event] = zendesk_to_events(zendesk_event())
    parsed = validate_event(event, NOW)
    assert parsed.type == "ticket.opened" and parsed.subject == "zendesk:9001"
    assert parsed.data["priority"] == "urgent"


def test_zendesk_solved_and_reopened() -> None:
    solved = zendesk_event("ticket.status_changed", status="SOLVED")
    assert validate_event(zendesk_to_events(solved)[0], NOW).type == "ticket.closed"
    reopened = {**zendesk_event("ticket.status_changed"), "event": {"previous": "SOLVED", "current": "OPEN"}}
    parsed = validate_event(zendesk_to_events(reopened)[0], NOW)
    assert parsed.type == "ticket.updated" and parsed.data["reopened"] is True


def test_zendesk_without_organization_names_the_field() -> None:
    from shared.errors import EventInvalid

    with pytest.raises(EventInvalid) as info:
        zendesk_to_events(zendesk_event(organization_id=None))
    assert info.value.problems[0].field == "detail.organization_id"


def test_translations_are_json_serialisable() -> None:
    json.dumps(stripe_to_events(stripe_invoice_event()))
