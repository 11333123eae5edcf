"""Property tests (hypothesis): event models, webhook translators and feature math never fail in a
way the services would turn into a crash or a 500."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.webhooks import stripe_to_events, zendesk_to_events
from services.signals.features import (
    FEATURE_NAMES,
    AccountInfo,
    compute_features,
    relevant_state,
    split_metric_feature,
)
from services.signals.state import AccountState, event_key
from shared.errors import EventInvalid
from shared.events import CloudEvent, decode_json, validate_event
from tests.helpers import NOW
from tests.reliability.strategies import broken_events, json_values, valid_event

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEATURES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# What ingest's API maps to 422 (services/ingest/api.py); anything else would be a 500.
TRANSLATE_ERRORS = (EventInvalid, ValueError, TypeError, KeyError, AttributeError, ArithmeticError)


def _check_validation(obj: Any) -> None:
    try:
        event = validate_event(obj, NOW)
    except EventInvalid as error:
        assert error.problems, "an EventInvalid must name at least one field"
        assert all(p.field and p.message for p in error.problems)
        return
    assert isinstance(event, CloudEvent) and event.dataschema


@FAST
@given(json_values)
def test_any_json_validates_or_names_the_bad_fields(obj: Any) -> None:
    _check_validation(obj)


@FAST
@given(broken_events())
def test_nearly_valid_events_validate_or_name_the_bad_fields(obj: dict[str, Any]) -> None:
    _check_validation(obj)


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_decode_or_raise_event_invalid(raw: bytes) -> None:
    try:
        decode_json(raw)
    except EventInvalid as error:
        assert error.problems


def test_deep_nesting_and_huge_input_are_event_invalid() -> None:
    # Each must be refused with a reason: the test used to pass as well when the input validated.
    for raw, reason in (
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "at most"),
        (json.dumps({**valid_event("usage.recorded"), "id": "x" * 300_000}).encode(), "at most"),
    ):
        with pytest.raises(EventInvalid) as raised:
            validate_event(decode_json(raw), NOW)
        assert raised.value.problems and reason in raised.value.problems[0].message


def _stripe_like(draw_obj: Any, kind: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "evt_1",
        "type": kind,
        "created": int(NOW.timestamp()),
        "data": {
            "object": {
                "id": "in_1",
                "customer": "cus_1",
                "currency": "eur",
                "amount_due": 1000,
                "status": "active",
                "items": {"data": [{"price": {"unit_amount": 100, "recurring": {"interval": "month"}}}]},
            },
            "previous_attributes": {},
        },
    }
    return base


@FAST
@given(
    st.sampled_from(
        [
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.overdue",
            "invoice.marked_uncollectible",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ]
    ),
    st.lists(
        st.tuples(st.sampled_from(["top", "object", "items", "previous"]), st.text(max_size=12), json_values),
        max_size=4,
    ),
)
def test_stripe_translator_returns_events_or_a_422_error(
    kind: str, edits: list[tuple[str, str, Any]]
) -> None:
    payload = _stripe_like(None, kind)
    obj = payload["data"]["object"]
    for where, key, value in edits:
        target = {
            "top": payload,
            "object": obj,
            "items": obj["items"]["data"][0]["price"],
            "previous": payload["data"]["previous_attributes"],
        }[where]
        target[key or "created"] = value
    _translate(stripe_to_events, payload)


@FAST
@given(
    st.dictionaries(st.sampled_from(["id", "type", "time", "detail", "event", "x"]), json_values, max_size=6)
)
def test_zendesk_translator_returns_events_or_a_422_error(payload: dict[str, Any]) -> None:
    if isinstance(payload.get("type"), str):
        payload["type"] = "zen:event-type:ticket.created"
    _translate(zendesk_to_events, payload)


@FAST
@given(json_values.filter(lambda v: isinstance(v, dict)))
def test_translators_accept_arbitrary_dicts(payload: dict[str, Any]) -> None:
    _translate(stripe_to_events, payload)
    _translate(zendesk_to_events, payload)


def _translate(translate: Any, payload: dict[str, Any]) -> None:
    try:
        events = translate(payload)
    except TRANSLATE_ERRORS:
        return
    assert isinstance(events, list)
    for event in events:
        json.dumps(event)  # what the API validates next (validate_submission -> 422 if bad)


# --- feature math ------------------------------------------------------------------------
@st.composite
def account_streams(draw: st.DrawFn) -> list[CloudEvent]:
    """Valid canonical events of one account over the last 200 days (all families)."""
    count = draw(st.integers(1, 40))
    events = []
    for i in range(count):
        event_type = draw(st.sampled_from(sorted(_DATA)))
        data = draw(_DATA[event_type])
        when = NOW - timedelta(minutes=draw(st.integers(0, 200 * 24 * 60)))
        obj = {**valid_event(event_type), "id": f"e{i}", "time": when.isoformat(), "data": data}
        events.append(validate_event(obj, NOW))
    return events


_ids = st.sampled_from(["a", "b", "c"])
_DATA: dict[str, Any] = {
    "usage.recorded": st.builds(
        lambda q, u: {"metric": "api_calls", "quantity": q, "active_users": u},
        st.floats(0, 1e6),
        st.integers(0, 500),
    ),
    "ticket.opened": st.builds(
        lambda t, p: {"ticket_id": t, "priority": p, "status": "open"},
        _ids,
        st.sampled_from(["low", "normal", "high", "urgent"]),
    ),
    "ticket.closed": st.builds(
        lambda t, c: {"ticket_id": t, "priority": "high", "status": "solved", "csat": c},
        _ids,
        st.integers(1, 5),
    ),
    "invoice.issued": st.builds(
        lambda i, a, d: {
            "invoice_id": i,
            "amount": str(a),
            "currency": "EUR",
            "due_date": (NOW - timedelta(days=d)).date().isoformat(),
        },
        _ids,
        st.integers(0, 10**7),
        st.integers(-30, 150),
    ),
    "invoice.paid": st.builds(
        lambda i: {"invoice_id": i, "amount": "10.00", "currency": "EUR", "due_date": "2026-09-01"}, _ids
    ),
    "payment.failed": st.builds(lambda i: {"invoice_id": i, "amount": "5", "currency": "EUR"}, _ids),
    "contact.joined": st.builds(
        lambda c, r: {"contact_id": c, "role": r},
        _ids,
        st.sampled_from(["champion", "executive_sponsor", "user"]),
    ),
    "contact.left": st.builds(
        lambda c, r: {"contact_id": c, "role": r},
        _ids,
        st.sampled_from(["champion", "executive_sponsor", "user"]),
    ),
    "survey.responded": st.builds(lambda s: {"score": s}, st.integers(0, 10)),
    "engagement.recorded": st.builds(
        lambda k, o: {"kind": k, "outcome": o},
        st.sampled_from(["qbr", "meeting"]),
        st.sampled_from(["held", "declined", "no_show"]),
    ),
}


def _features(events: list[CloudEvent], arr: float = 100000.0) -> dict[str, float]:
    state = AccountState()
    for e in events:
        state.apply(e.type, e.data, e.time, event_key(e.source, e.id))
    buckets, entities = relevant_state(state.buckets, state.entities.values(), NOW)
    features, _ = compute_features(buckets, entities, AccountInfo(arr=arr), NOW)
    return features


BOUNDED_01 = (
    "key_contact_departed_90d",
    "single_threaded",
    "nps_detractor",
    "subscription_cancelling",
    "new_executive_arrived_90d",
    "role_coverage",
)


@FEATURES
@given(account_streams(), st.randoms(use_true_random=False))
def test_features_are_finite_bounded_and_independent_of_order(events: list[CloudEvent], rng: Any) -> None:
    features = _features(events)
    per_metric = {name: split_metric_feature(name) for name in features if split_metric_feature(name)}
    assert set(features) - set(per_metric) == set(FEATURE_NAMES)
    assert all(math.isfinite(v) for v in features.values()), features
    shares = [n for n, parts in per_metric.items() if parts and parts[1] == "active_days_28d"]
    for name in (*BOUNDED_01, "usage_active_days_28d", *shares):
        assert 0.0 <= features[name] <= 1.0, (name, features[name])
    trends = [n for n, parts in per_metric.items() if parts and parts[1] == "trend_8w"]
    for name in ("usage_trend_8w", *trends):
        assert -1.0 <= features[name] <= 1.0, (name, features[name])
    signed = ("usage_slope_28d", "last_nps", "days_to_renewal", "payment_lateness_vs_usual")
    signed += ("usage_breadth_change", "mrr_change_90d", "usage_trend_8w", *trends)
    for name, value in features.items():
        if name not in signed:
            assert value >= 0, (name, value)
    assert -1 <= features["last_nps"] <= 10
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert _features(shuffled) == features  # bit for bit, whatever the arrival order


@FEATURES
@given(account_streams(), st.integers(0, 13 * 24 * 60))
def test_one_more_urgent_ticket_adds_exactly_one_to_the_14_day_count(
    events: list[CloudEvent], minutes_ago: int
) -> None:
    before = _features(events)
    obj = {
        **valid_event("ticket.opened"),
        "id": "extra-urgent",
        "time": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "data": {"ticket_id": "fresh-ticket", "priority": "urgent", "status": "open"},
    }
    after = _features([*events, validate_event(obj, NOW)])
    assert after["urgent_tickets_opened_14d"] == before["urgent_tickets_opened_14d"] + 1
    assert after["tickets_opened_14d"] == before["tickets_opened_14d"] + 1
    assert after["open_urgent_tickets"] == before["open_urgent_tickets"] + 1


@FEATURES
@given(account_streams(), st.floats(1, 1e6), st.integers(0, 23 * 60))
def test_more_usage_today_never_lowers_the_recent_averages(
    events: list[CloudEvent], quantity: float, minutes_ago: int
) -> None:
    # Averages count days since the first usage ever, so only same-window additions are monotone.
    before = _features(events)
    obj = {
        **valid_event("usage.recorded"),
        "id": "extra-usage",
        "time": (NOW - timedelta(minutes=min(minutes_ago, 12 * 60))).isoformat(),
        "data": {"metric": "api_calls", "quantity": quantity},
    }
    after = _features([*events, validate_event(obj, NOW)])
    assert after["usage_7d_avg"] >= before["usage_7d_avg"]
    assert after["usage_28d_avg"] >= before["usage_28d_avg"]
    assert after["days_since_last_activity"] == 0.0


@FEATURES
@given(account_streams(), st.floats(1, 1e9))
def test_overdue_share_of_arr_falls_as_arr_grows(events: list[CloudEvent], arr: float) -> None:
    small, large = _features(events, arr), _features(events, arr * 2)
    assert large["amount_overdue_to_arr"] <= small["amount_overdue_to_arr"]
    assert large["amount_overdue"] == small["amount_overdue"]
