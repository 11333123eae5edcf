"""The demo's pure parts: its timeline, the words it prints, the portfolio summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kamwatch.dev.simulator.demo import LIVE_SPAN, demo_config, notable, portfolio_summary, speedup
from kamwatch.dev.simulator.generator import Simulation
from shared.events import validate_event
from tests.helpers import make_contact_event, make_invoice_event, make_ticket_event, make_usage_event

NOW = datetime(2026, 11, 26, 21, 30, 15, 123456, tzinfo=UTC)


def test_the_demo_timeline_ends_now_and_streams_its_last_hours_live() -> None:
    cfg = demo_config(NOW)
    assert cfg.end == NOW.replace(microsecond=0)
    assert cfg.end - cfg.live_start == LIVE_SPAN
    assert cfg.start == datetime(2026, 7, 29, tzinfo=UTC)
    assert 60 <= speedup() <= 600
    accounts = Simulation(cfg).accounts
    assert all(a.renewal_date > NOW.date() for a in accounts)  # warnings, no outcomes yet
    assert {a.tier for a in accounts[: cfg.spotlight]} == {"strategic"}


def test_notable_events_are_put_in_words() -> None:
    def event(raw: dict) -> object:
        return validate_event(raw, now=NOW + timedelta(days=1))

    assert notable(event(make_contact_event("left", "champion"))) == "champion left"
    assert notable(event(make_contact_event("left", "executive_sponsor"))) == "executive sponsor left"
    assert "47 days overdue" in (notable(event(make_invoice_event("overdue", 47))) or "")
    assert notable(event(make_ticket_event("opened", "urgent"))) == "urgent ticket opened"
    assert notable(event(make_invoice_event("overdue", 15))) is None
    assert notable(event(make_usage_event())) is None


def test_portfolio_summary_counts_bands_and_names_the_red_accounts() -> None:
    body = {
        "items": [
            {"account_id": "a", "name": "Acme", "band": "red"},
            {"account_id": "b", "band": "amber"},
            {"account_id": "c", "name": "Cyan", "band": "green"},
        ]
    }
    assert portfolio_summary(body) == "portfolio: 1 red, 1 amber, 1 green; red: Acme"
    assert portfolio_summary({"items": []}) is None
    assert portfolio_summary([{"id": "x", "risk": {"band": "amber"}}]) == "portfolio: 0 red, 1 amber, 0 green"
