"""Slack message escaping (issue 11 Low #13): the top-level text is escaped like the blocks."""

from __future__ import annotations

import json
from decimal import Decimal

from services.alerts.messages import MessageContext, slack_payload


def test_the_top_level_slack_text_cannot_ping_a_channel_or_hide_a_link() -> None:
    ctx = MessageContext(
        alert_id=1,
        kind="notify",
        level=1,
        account_name="<!channel> <https://evil.example|Acme> & Co",
        arr=Decimal(1000),
        currency="EUR",
        score=0.8,
        band="red",
        previous_band="green",
        triggers=["band_red"],
        drivers=[],
        changes=[],
        recipient_name="Olivia",
        role="owner",
    )
    payload = slack_payload(ctx)
    text = str(payload["text"])
    assert "<!channel>" not in text and "<https://" not in text
    assert "&lt;!channel&gt;" in text and "&amp; Co" in text
    assert "<!channel>" not in json.dumps(payload["blocks"][1:])
