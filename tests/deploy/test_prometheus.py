"""promtool accepts the scrape config and the alert rules, and the rules' unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.observability.prom import require_binary

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-local.yml"])
def test_promtool_check_config_accepts_the_scrape_configs(config: str) -> None:
    result = _promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {config} is valid" in result.stdout + result.stderr


def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    result = _promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 rules found" in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_rule_has_a_unit_test_and_a_runbook_section() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"][0]["rules"]
    tests = (PROMETHEUS_DIR / "rules.test.yml").read_text()
    operations = (PROMETHEUS_DIR.parents[1] / "docs" / "operations.md").read_text()
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tests, f"{rule['alert']} has no promtool test"
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f'<a id="{anchor}"></a>' in operations, f"docs/operations.md has no section for {anchor}"
