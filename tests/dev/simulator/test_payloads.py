"""Stripe and Zendesk payloads: what ingest's translators make of them is the simulated event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.payloads import channel, stripe_payload, zendesk_payload
from services.ingest.webhooks import stripe_to_events, zendesk_to_events
from shared.events import validate_event

START = datetime(2025, 3, 3, tzinfo=UTC)


def simulated() -> list:
    end = START + timedelta(days=150)
    cfg = SimConfig(accounts=15, seed=9, start=START, live_start=end, end=end)
    return list(Simulation(cfg).events())


def test_stripe_payloads_translate_back_to_the_simulated_events() -> None:
    events = [e for e in simulated() if channel(e) == "stripe"]
    assert {e.type for e in events} >= {
        "invoice.paid",
        "invoice.overdue",
        "payment.failed",
        "subscription.changed",
    }
    for event in events:
        [translated] = stripe_to_events(stripe_payload(event))
        back = validate_event(translated, now=event.time)
        assert (back.type, back.subject, back.time) == (event.type, event.subject, event.time)
        same = {k: _money(k, v) for k, v in event.data.items() if k not in ("days_overdue", "failure_reason")}
        assert {k: _money(k, back.data.get(k)) for k in same} == same
        if event.type == "invoice.overdue":
            assert back.data["days_overdue"] == event.data["days_overdue"]
        if event.type == "invoice.paid":  # Stripe counts whole days from the due date's midnight
            assert abs(back.data["days_overdue"] - event.data["days_overdue"]) <= 1


def _money(key: str, value: object) -> object:
    return Decimal(str(value)) if key in ("amount", "mrr", "previous_mrr") else value


def test_zendesk_payloads_translate_back_to_the_simulated_events() -> None:
    events = [e for e in simulated() if channel(e) == "zendesk"]
    assert any(e.data.get("reopened") for e in events)
    for event in events:
        [translated] = zendesk_to_events(zendesk_payload(event))
        back = validate_event(translated, now=event.time)
        assert (back.type, back.subject, back.time, back.data) == (
            event.type,
            event.subject,
            event.time,
            event.data,
        )


def test_what_webhooks_cannot_carry_goes_through_the_events_api() -> None:
    events = simulated()
    api = {e.type for e in events if channel(e) == "api"}
    assert {"usage.recorded", "invoice.issued", "contact.joined", "engagement.recorded"} <= api
    assert all("csat" in e.data for e in events if e.type.startswith("ticket.") and channel(e) == "api")
