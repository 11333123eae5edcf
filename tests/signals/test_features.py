"""Pure logic: event-time buckets, order-independent state, the feature windows."""

from __future__ import annotations

import random
from datetime import date, timedelta

from services.signals.features import (
    FEATURE_NAMES,
    METRIC_FEATURES,
    AccountInfo,
    compute_features,
    relevant_state,
    split_metric_feature,
)
from services.signals.state import AccountState, event_key
from shared.contracts import CONTRACT_FEATURES
from tests.helpers import NOW
from tests.signals.streams import DAY, daily_usage, full_story, invoice

REQUIRED = CONTRACT_FEATURES


def fold(events: list) -> AccountState:
    state = AccountState()
    for e in events:
        state.apply(e.type, e.data, e.time, event_key(e.source, e.id))
    return state


def features_of(
    events: list, as_of=NOW, arr: float = 120000.0, renewal: date | None = None
) -> dict[str, float]:
    state = fold(events)
    buckets, entities = relevant_state(state.buckets, state.entities.values(), as_of)
    return compute_features(buckets, entities, AccountInfo(arr, renewal), as_of)[0]


def test_every_catalog_name_is_computed_and_the_contract_names_exist() -> None:
    features = features_of(full_story("a", NOW))
    per_metric = {name for name in features if split_metric_feature(name) is not None}
    assert set(features) - per_metric == set(FEATURE_NAMES)
    assert {split_metric_feature(n)[1] for n in per_metric} == set(METRIC_FEATURES)  # type: ignore[index]
    assert set(REQUIRED) <= set(features)


def test_state_is_the_same_in_any_order_and_with_duplicates() -> None:
    events = full_story("a", NOW)
    rng = random.Random(5)
    for _ in range(5):
        shuffled = events + rng.sample(events, len(events) // 10)
        rng.shuffle(shuffled)
        assert fold(shuffled).entities == fold(events).entities
    # buckets count duplicates (the DB dedups on (source, id) before folding), so compare unique
    assert fold(sorted(events, key=lambda e: e.id)).buckets == fold(events).buckets


def test_a_late_event_lands_in_the_day_it_happened() -> None:
    state = fold(daily_usage("a", NOW - 3 * DAY, 1, 500.0))
    assert state.buckets == {
        (NOW - 3 * DAY).date(): {
            "events": 1,
            "usage_events": 1,
            "usage_milli": 500000,
            "max_active_users": 20,
            "u:api_calls": 500000,
            "max_users:api_calls": 20,
        }
    }


def test_usage_ratio_against_the_accounts_own_baseline() -> None:
    steady = daily_usage("a", NOW - 120 * DAY, 121, 1000.0)
    assert features_of(steady)["usage_ratio_28d_vs_90d"] == 1.0
    halved = daily_usage("a", NOW - 120 * DAY, 93, 1000.0) + daily_usage("a2", NOW - 27 * DAY, 28, 500.0)
    assert features_of(halved)["usage_ratio_28d_vs_90d"] == 0.5
    new_account = daily_usage("a", NOW - 10 * DAY, 11, 50.0)
    assert features_of(new_account)["usage_ratio_28d_vs_90d"] == 1.0  # no baseline yet: not a drop


def test_silence_and_overdue_age_with_the_clock() -> None:
    overdue = invoice("a", "issued", "I-1", NOW - 10 * DAY, NOW - 40 * DAY, amount="6000.00")
    events = [*daily_usage("a", NOW - 60 * DAY, 61, 100.0), overdue]
    now = features_of(events)
    later = features_of(events, as_of=NOW + 20 * DAY)
    assert (now["days_since_last_activity"], later["days_since_last_activity"]) == (0.0, 20.0)
    assert (now["max_days_overdue"], later["max_days_overdue"]) == (10.0, 30.0)
    assert later["amount_overdue_to_arr"] == 0.05


def test_relationship_and_engagement_features() -> None:
    features = features_of(full_story("a", NOW), renewal=(NOW + timedelta(days=45)).date())
    assert features["key_contact_departed_90d"] == 1.0 and features["days_since_key_contact_departed"] == 12.0
    assert features["engaged_contacts"] == 2.0 and features["single_threaded"] == 0.0
    assert features["qbr_declined_or_missed_180d"] == 1.0 and features["last_nps"] == 4.0
    assert features["nps_detractor"] == 1.0 and features["days_to_renewal"] == 45.0
    assert features["open_urgent_tickets"] == 1.0 and features["tickets_reopened_90d"] == 1.0
    assert features["mean_days_to_resolve_90d"] == 10.0 and features["csat_avg_90d"] == 2.0
    assert features["failed_payments_90d"] == 1.0


def test_features_ignore_what_happens_after_the_as_of_time() -> None:
    events = full_story("a", NOW)
    early = NOW - 60 * DAY
    assert features_of([e for e in events if e.time <= early], as_of=early)["key_contact_departed_90d"] == 0.0


def test_every_feature_is_documented_in_the_catalog(repo_root) -> None:
    catalog = (repo_root / "docs" / "features.md").read_text()
    assert [name for name in FEATURE_NAMES if f"`{name}`" not in catalog] == []


def test_the_renewal_ahead_of_each_day_steps_by_the_contract_term() -> None:
    from services.signals.features import renewal_on_or_after

    assert renewal_on_or_after(date(2027, 3, 31), date(2025, 6, 1), None) == date(2026, 3, 31)
    assert renewal_on_or_after(date(2027, 3, 31), date(2025, 3, 31), 12) == date(2025, 3, 31)
    assert renewal_on_or_after(date(2025, 1, 1), date(2026, 5, 1), 12) == date(2027, 1, 1)
    assert renewal_on_or_after(None, date(2026, 5, 1), 1) is None
    # Monthly plans renew every month: never a countdown to one yearly date.
    assert renewal_on_or_after(date(2027, 1, 15), date(2026, 5, 20), 1) == date(2026, 6, 15)
    assert renewal_on_or_after(date(2026, 1, 31), date(2026, 2, 10), 1) == date(2026, 2, 28)
    assert renewal_on_or_after(date(2026, 1, 1), date(2026, 8, 2), 3) == date(2026, 10, 1)


def test_days_to_renewal_follows_the_registry_term() -> None:
    story = daily_usage("a", NOW - 60 * DAY, 61, 100.0)
    monthly = compute_features(
        *relevant_state(fold(story).buckets, fold(story).entities.values(), NOW),
        AccountInfo(1000.0, date(2027, 1, 20), 1),
        NOW,
    )[0]
    assert monthly["days_to_renewal"] == (date(2026, 11, 20) - NOW.date()).days
