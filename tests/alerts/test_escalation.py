"""Pure logic: triggers, inhibition, the escalation schedule, signed links, message headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services.alerts.config import DEFAULT_POLICY
from services.alerts.escalation import (
    Fired,
    Position,
    due_step,
    evaluate,
    next_escalation_at,
    recipients,
    unmuted,
)
from services.alerts.links import LinkClaim, LinkInvalid, sign, verify
from services.alerts.messages import Envelope, MessageContext, email_message, message_id, slack_payload
from services.alerts.policy import load_policy
from shared.contracts import RiskChange

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
POLICY = load_policy(DEFAULT_POLICY)
PLAN = POLICY.plan("default")


def change(
    band: str, score: float, previous_band: str | None, previous_score: float | None = None, **features: float
) -> RiskChange:
    return RiskChange(
        account_id="acme",
        score=score,
        band=band,  # type: ignore[arg-type]
        previous_band=previous_band,  # type: ignore[arg-type]
        previous_score=previous_score,
        features=features,
        model_version="m1",
        as_of=T0,
    )


def names(fired: list[Fired]) -> list[str]:
    return [f.trigger for f in fired]


def test_entering_a_band_fires_but_falling_back_to_a_lower_band_does_not() -> None:
    assert names(evaluate(POLICY, change("red", 0.8, "green"), [])) == ["band_red"]
    assert names(evaluate(POLICY, change("red", 0.8, "green", 0.3), [])) == ["band_red", "score_rise"]
    assert names(evaluate(POLICY, change("amber", 0.5, "green", 0.4), [])) == ["band_amber"]
    assert names(evaluate(POLICY, change("amber", 0.5, "red", 0.8), [])) == []


def test_score_rise_counts_from_the_lowest_score_in_the_window() -> None:
    assert names(evaluate(POLICY, change("amber", 0.55, "amber", 0.5), [0.3, 0.45])) == ["score_rise"]
    assert names(evaluate(POLICY, change("amber", 0.55, "amber", 0.5), [0.4])) == []


def test_critical_signals_need_every_condition_and_never_fire_on_the_way_back_to_green() -> None:
    left = {"key_contact_departed_90d": 1.0, "days_since_key_contact_departed": 3.0}
    assert names(evaluate(POLICY, change("amber", 0.5, "amber", 0.5, **left), [])) == ["key_contact_left"]
    stale = {**left, "days_since_key_contact_departed": 40.0}
    assert names(evaluate(POLICY, change("amber", 0.5, "amber", 0.5, **stale), [])) == []
    assert evaluate(POLICY, change("green", 0.2, "red", 0.8, **left, max_days_overdue=90), []) == []


def test_red_mutes_amber() -> None:
    kept, muted = unmuted(POLICY, [Fired("band_amber", "warning"), Fired("band_red", "critical")], set())
    assert names(kept) == ["band_red"] and names(muted) == ["band_amber"]
    kept, muted = unmuted(POLICY, [Fired("band_amber", "warning")], {"band_red"})
    assert kept == [] and names(muted) == ["band_amber"]


def test_schedule_owner_then_manager_after_24h_then_sponsor_after_48h_more() -> None:
    assert due_step(PLAN, Position(0, None, None), T0) == ("notify", 1)
    at_1 = Position(1, T0, T0)
    assert next_escalation_at(PLAN, at_1) == T0 + timedelta(hours=24)
    assert due_step(PLAN, at_1, T0 + timedelta(hours=24)) == ("escalation", 2)
    t2 = T0 + timedelta(hours=24)
    at_2 = Position(2, t2, t2)
    # repeat interval 24 h comes before the 48 h escalation
    assert next_escalation_at(PLAN, at_2) == t2 + timedelta(hours=24)
    assert due_step(PLAN, at_2, t2 + timedelta(hours=24)) == ("repeat", 2)
    assert due_step(PLAN, at_2, t2 + timedelta(hours=48)) == ("escalation", 3)


def test_recipients_fall_back_to_the_default_webhook_and_skip_missing_people() -> None:
    people = {"owner": {"name": "Olivia", "email": "o@example.com", "slack_webhook": None}, "manager": None}
    found = recipients(people, "owner", ["slack", "email"], "http://127.0.0.1:8026/x")
    assert [(r.channel, r.address) for r in found] == [
        ("slack", "http://127.0.0.1:8026/x"),
        ("email", "o@example.com"),
    ]
    assert recipients(people, "manager", ["slack", "email"], "http://127.0.0.1:8026/x") == []


def test_links_verify_and_refuse_tampering_and_expiry() -> None:
    claim = LinkClaim(7, "ack", "Olivia <o@example.com>", T0 + timedelta(days=7))
    token = sign("k1", claim)
    assert verify("k1", token, T0) == claim
    with pytest.raises(LinkInvalid, match="expired"):
        verify("k1", token, T0 + timedelta(days=8))
    with pytest.raises(LinkInvalid, match="not valid"):
        verify("k2", token, T0)
    _body, mac = token.split(".")
    forged = sign("k1", LinkClaim(8, "ack", "x", T0 + timedelta(days=7))).split(".")[0]
    with pytest.raises(LinkInvalid):
        verify("k1", f"{forged}.{mac}", T0)


def _ctx(kind: str = "notify") -> MessageContext:
    return MessageContext(
        alert_id=7,
        kind=kind,
        level=1,
        account_name="Acme",
        arr=Decimal("120000"),
        currency="EUR",
        score=0.82,
        band="red",
        previous_band="green",
        triggers=["band_red", "key_contact_left"],
        drivers=["usage 43% below the 90-day baseline"],
        changes=["band green -> red"],
        recipient_name="Olivia",
        role="owner",
        ack_url="http://x/ack",
        snooze_url="http://x/snooze",
    )


def test_email_is_auto_generated_with_a_stable_message_id_and_threaded() -> None:
    first = message_id(7, "L1", "o@example.com", "kamwatch.local")
    assert (
        first
        == message_id(7, "L1", "O@example.com", "kamwatch.local")
        != message_id(7, "L2", "o@example.com", "kamwatch.local")
    )
    mail = email_message(_ctx("escalation"), Envelope("k <a@k>", "m@example.com", "<m2@k>", T0, [first]))
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["In-Reply-To"] == first and mail["References"] == first
    assert {part.get_content_type() for part in mail.iter_parts()} == {"text/plain", "text/html"}
    third = email_message(
        _ctx("update"), Envelope("k <a@k>", "o@example.com", "<m3@k>", T0, [first, "<m2@k>"])
    )
    assert third["In-Reply-To"] == first and third["References"] == f"{first} <m2@k>"


def test_slack_blocks_carry_the_account_the_drivers_and_both_links() -> None:
    payload = slack_payload(_ctx())
    text = str(payload["blocks"])
    assert "Acme" in text and "EUR 120,000" in text and "82/100" in text
    assert "usage 43% below the 90-day baseline" in text and "key contact left" in text
    assert "http://x/ack" in text and "http://x/snooze" in text


def test_quiet_hours_hold_a_warning_until_morning_in_the_recipients_zone_but_not_a_critical_one() -> None:
    from services.alerts.escalation import quiet_until

    quiet = POLICY.quiet_hours
    late_in_berlin = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)  # 23:30 in Berlin (CET)
    assert quiet_until(late_in_berlin, "Europe/Berlin", quiet, "warning") == datetime(
        2026, 11, 2, 6, tzinfo=UTC
    )
    assert quiet_until(late_in_berlin, "Europe/Berlin", quiet, "critical") is None
    assert quiet_until(late_in_berlin, "America/New_York", quiet, "warning") is None  # 17:30 there
    early = datetime(2026, 11, 2, 4, tzinfo=UTC)  # 05:00 in Berlin: same morning
    assert quiet_until(early, "Europe/Berlin", quiet, "warning") == datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert quiet_until(early, "Not/AZone", quiet, "warning") == datetime(2026, 11, 2, 7, tzinfo=UTC)  # UTC


def test_quiet_hours_times_must_be_quoted() -> None:
    from services.alerts.policy import parse_policy
    from shared.errors import ConfigError

    text = Path(DEFAULT_POLICY).read_text().replace('start: "22:00"', "start: 22:00")
    with pytest.raises(ConfigError, match=r"quiet_hours.start: 1320 is not a time of day; write it quoted"):
        parse_policy(text)
