"""Slack webhook URLs in the prod profile: https and on the host allow-list, or nothing is posted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from services.alerts.channels import slack_url_allowed
from services.alerts.config import AlertsSettings
from services.alerts.delivery import DeliveryWorker
from shared.clock import ManualClock
from shared.config import CommonSettings
from tests.helpers import NOW

HOSTS = ["hooks.slack.com"]
PROD = {"common": CommonSettings(profile="prod"), "link_secret": "a-real-link-key-3f9a7c1e-0123456789abcdef"}


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", True),
        ("https://HOOKS.slack.com/services/T0/B0/x", True),
        ("https://hooks.slack.com:443/services/x", True),
        ("http://hooks.slack.com/services/x", False),
        ("https://hooks.slack.com.evil.example/services/x", False),
        ("https://hooks.slack.com@evil.example/services/x", False),
        ("https://evil.example/?u=https://hooks.slack.com/", False),
        ("https://hooks.slack.com:8443/services/x", False),
        ("https://127.0.0.1/services/x", False),
        ("https://[::1/x", False),
        ("hooks.slack.com/services/x", False),
    ],
)
def test_allow_list_needs_https_and_an_exact_host(url: str, allowed: bool) -> None:
    assert slack_url_allowed(url, HOSTS) is allowed


def test_prod_refuses_a_default_webhook_off_the_allow_list() -> None:
    with pytest.raises(ValidationError, match="SLACK_ALLOWED_HOSTS"):
        AlertsSettings(**PROD, default_slack_webhook="https://evil.example/hook")
    with pytest.raises(ValidationError, match="https"):
        AlertsSettings(**PROD, default_slack_webhook="http://hooks.slack.com/services/x")
    ok = AlertsSettings(**PROD, default_slack_webhook="https://hooks.slack.com/services/T/B/x")
    assert ok.slack_allowed_hosts == HOSTS
    custom = AlertsSettings(
        **PROD, slack_allowed_hosts="chat.example.com, hooks.slack.com", default_slack_webhook=None
    )
    assert custom.slack_allowed_hosts == ["chat.example.com", "hooks.slack.com"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://127.0.0.1:9/hook"])
def test_prod_delivery_never_posts_to_a_registry_webhook_off_the_list(url: str) -> None:
    """A Person.slack_webhook comes from the registry (untrusted input): checked at send time."""
    worker = DeliveryWorker(AlertsSettings(**PROD), sessions=None, clock=ManualClock(NOW))  # type: ignore[arg-type]
    row = SimpleNamespace(channel="slack", recipient=url, payload="{}")
    result = worker._send(row)  # type: ignore[arg-type]
    # Without the check this would be a "retry" (nothing listens on port 9).
    assert result.outcome == "failed" and "ALLOWED_HOSTS" in result.detail
