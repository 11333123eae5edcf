"""Policy YAML: the shipped file is valid; errors name the line and the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.alerts.config import DEFAULT_POLICY, AlertsSettings
from services.alerts.policy import load_policy, parse_policy
from shared.config import CommonSettings
from shared.errors import ConfigError

SHIPPED = Path(DEFAULT_POLICY).read_text()


def test_the_shipped_policy_has_the_default_escalation_owner_manager_sponsor() -> None:
    policy = load_policy(DEFAULT_POLICY)
    plan = policy.plan(policy.route("strategic", None, None))
    assert [(lvl.role, lvl.after) for lvl in plan.levels] == [
        ("owner", timedelta(0)),
        ("manager", timedelta(hours=24)),
        ("executive_sponsor", timedelta(hours=48)),
    ]
    assert policy.grouping_window == timedelta(minutes=2)
    assert policy.muted_by("band_amber") == {"band_red"}


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, "policy.yaml")
    return str(caught.value)


def _line(fragment: str) -> int:
    return next(i for i, line in enumerate(SHIPPED.splitlines(), 1) if fragment in line)


def test_a_bad_duration_names_its_line_and_field() -> None:
    message = _error(SHIPPED.replace("after: 48h", "after: 48 hours"))
    assert f"policy.yaml:{_line('after: 48h')}: escalations.default.levels.2.after:" in message


def test_an_unknown_field_and_a_bad_severity_are_both_reported_with_lines() -> None:
    text = SHIPPED.replace("grouping_window: 2m", "grouping_windw: 2m").replace(
        "    - band: amber\n      severity: warning", "    - band: amber\n      severity: urgent"
    )
    message = _error(text)
    assert f"policy.yaml:{_line('grouping_window')}: grouping_windw: unknown field" in message
    assert "triggers.band_entered.1.severity" in message


def test_references_to_unknown_features_triggers_and_plans_are_refused() -> None:
    text = (
        SHIPPED.replace("max_days_overdue:", "max_days_overdu:")
        .replace("target: band_amber", "target: band_purple")
        .replace("escalation: default\n", "escalation: vip\n")
    )
    message = _error(text)
    assert (
        f"policy.yaml:{_line('max_days_overdue:')}: triggers.critical_signals.1.when.max_days_overdu"
        in message
    )
    assert f"policy.yaml:{_line('target: band_amber')}: inhibit.0.target: unknown trigger" in message
    assert "routes.0.escalation: no escalation named 'vip'" in message


def test_broken_yaml_names_the_line() -> None:
    assert _error("version: 1\ntriggers: [\n").startswith("policy.yaml:3: not valid YAML")


def test_prod_refuses_the_dev_link_secret_and_the_crash_hook() -> None:
    prod = CommonSettings(profile="prod")
    with pytest.raises(ValueError, match="KAMWATCH_ALERTS_LINK_SECRET"):
        AlertsSettings(common=prod)
    with pytest.raises(ValueError, match="CRASH_AFTER_SENDS"):
        AlertsSettings(
            common=prod, link_secret="a-real-long-random-value-0123456789abcdef", crash_after_sends=1
        )
    with pytest.raises(ValueError, match="https"):
        AlertsSettings(
            common=prod,
            link_secret="a-real-long-random-value-0123456789abcdef",
            default_slack_webhook="http://x/y",
        )
