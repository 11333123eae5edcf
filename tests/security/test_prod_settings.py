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


def _prod_ingest(common_settings: CommonSettings, **common: object) -> IngestSettings:
    prod = common_settings.model_copy(update={"profile": "prod", **common})
    return IngestSettings(
        common=prod,
        stripe_webhook_secrets=[LONG],
        zendesk_webhook_secrets=[LONG],
        cloudevents_webhook_secrets=[LONG],
    )


def test_prod_serves_no_public_docs_or_schema(common_settings: CommonSettings) -> None:
    """/docs and /openapi.json describe every route: off in prod (issue 11 Low #11)."""
    from fastapi.testclient import TestClient

    from services.ingest.app import create_app

    with TestClient(create_app(_prod_ingest(common_settings), with_consumer=False)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
    dev = IngestSettings(common=common_settings)
    with TestClient(create_app(dev, with_consumer=False)) as client:
        assert client.get("/openapi.json").status_code == 200


def test_metrics_need_the_token_when_one_is_set(common_settings: CommonSettings) -> None:
    """/metrics shows ARR at risk: with KAMWATCH_METRICS_TOKEN only Prometheus (bearer) reads it."""
    from fastapi.testclient import TestClient

    from services.ingest.app import create_app

    token = "m" * 40
    with TestClient(
        create_app(_prod_ingest(common_settings, metrics_token=token), with_consumer=False)
    ) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and "kamwatch_" in answer.text
