"""Prod secrets (issue 11 Low #12): at least 32 bytes, named in the refusal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.alerts.config import AlertsSettings
from services.ingest.config import IngestSettings
from shared.config import CommonSettings

PROD = CommonSettings(profile="prod")
LONG = "3f9a7c1e" * 5  # 40 bytes


@pytest.mark.parametrize("short", ["x", "k3y", "0123456789abcdef0123456789abcde"])  # 1, 3, 31 bytes
def test_prod_refuses_secrets_shorter_than_32_bytes(short: str) -> None:
    with pytest.raises(ValidationError, match="KAMWATCH_ALERTS_LINK_SECRET is too short"):
        AlertsSettings(common=PROD, link_secret=short)
    with pytest.raises(ValidationError, match="KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS is too short"):
        IngestSettings(
            common=PROD,
            stripe_webhook_secrets=[LONG, short],
            zendesk_webhook_secrets=[LONG],
            cloudevents_webhook_secrets=[LONG],
        )


def test_prod_accepts_32_byte_secrets() -> None:
    AlertsSettings(common=PROD, link_secret="0123456789abcdef0123456789abcdef")
    IngestSettings(
        common=PROD,
        stripe_webhook_secrets=[LONG],
        zendesk_webhook_secrets=[LONG],
        cloudevents_webhook_secrets=[LONG],
    )
