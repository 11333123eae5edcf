"""Pure logic: the scorecard, bands, the publish rule, drivers and changes in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.signals.drivers import describe_changes, top_drivers
from services.signals.scoring import band_for, load_scorecard, should_publish
from shared.errors import ConfigError


def test_scorecard_is_transparent_points_through_a_sigmoid() -> None:
    card = load_scorecard()
    quiet, nothing = card.score({"usage_ratio_28d_vs_90d": 1.0, "days_to_renewal": 999.0})
    assert nothing == {} and round(quiet, 4) == 0.0474
    score, points = card.score(
        {"usage_ratio_28d_vs_90d": 0.4, "key_contact_departed_90d": 1.0, "max_days_overdue": 45}
    )
    assert points == {"usage_ratio_28d_vs_90d": 2.0, "key_contact_departed_90d": 1.6, "max_days_overdue": 1.0}
    assert score > 0.8


def test_only_if_rule_needs_its_companion_feature() -> None:
    card = load_scorecard()
    assert "csat_avg_90d" not in card.score({"csat_avg_90d": 0.0, "csat_responses_90d": 0.0})[1]
    assert card.score({"csat_avg_90d": 1.5, "csat_responses_90d": 2.0})[1]["csat_avg_90d"] == 0.5


def test_bad_scorecard_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(
        "version: '2'\nintercept: -3\nrules:\n  - {feature: usage_typo, start: 1, full: 0, weight: 1}\n"
    )
    with pytest.raises(ConfigError, match="unknown feature 'usage_typo'"):
        load_scorecard(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scorecard(tmp_path / "missing.yaml")


def test_bands_and_publish_step() -> None:
    assert [band_for(s, 0.3, 0.6) for s in (0.1, 0.3, 0.59, 0.6)] == ["green", "amber", "amber", "red"]
    assert should_publish(0.2, "green", None, None, 0.05)
    assert not should_publish(0.22, "green", 0.2, "green", 0.05)
    assert should_publish(0.26, "green", 0.2, "green", 0.05)
    assert should_publish(0.31, "amber", 0.29, "green", 0.05)


def test_drivers_speak_words_and_changes_say_what_moved() -> None:
    features = {
        "usage_ratio_28d_vs_90d": 0.57,
        "key_contact_departed_90d": 1.0,
        "days_since_key_contact_departed": 12.0,
        "max_days_overdue": 47.0,
    }
    drivers = top_drivers(
        {"usage_ratio_28d_vs_90d": 1.2, "key_contact_departed_90d": 1.6, "max_days_overdue": 1.1},
        features,
        {"key_contact_role": "executive_sponsor"},
    )
    assert [d.text for d in drivers] == [
        "executive sponsor left 12 days ago",
        "usage 43% below its 90-day baseline",
        "invoice 47 days overdue",
    ]
    changes = describe_changes(
        {
            "score": 0.1,
            "band": "green",
            "drivers": [{"feature": "max_days_overdue", "text": "invoice 2 days overdue"}],
        },
        0.7,
        "red",
        drivers[:2],
    )
    assert changes[:2] == ["band green -> red", "risk rose from 10% to 70%"]
    assert "new: executive sponsor left 12 days ago" in changes
    assert "no longer: invoice 2 days overdue" in changes


def test_a_driver_that_only_drops_out_of_the_top_drivers_is_not_a_change() -> None:
    """Issue 14.4: 'no longer: renewal in 56 days' was written when the line merely fell out of
    the top five while it still raised the score."""
    previous = {
        "score": 0.6,
        "band": "amber",
        "drivers": [{"feature": "days_to_renewal", "text": "renewal in 56 days"}],
    }
    still = describe_changes(previous, 0.62, "amber", [], {"days_to_renewal": 0.3})
    gone = describe_changes(previous, 0.62, "amber", [], {"days_to_renewal": 0.0})
    assert not [c for c in still if c.startswith("no longer")]
    assert "no longer: renewal in 56 days" in gone
