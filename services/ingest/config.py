"""Ingest settings (env prefix KAMWATCH_INGEST_)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings

SecretList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_INGEST_", extra="ignore")

    port: int = 8001
    group_id: str = "kamwatch-ingest"
    # Comma-separated: during a rotation both the old and the new secret are accepted.
    stripe_webhook_secrets: SecretList = Field(default_factory=lambda: ["dev-stripe-secret"])
    zendesk_webhook_secrets: SecretList = Field(default_factory=lambda: ["dev-zendesk-secret"])
    cloudevents_webhook_secrets: SecretList = Field(default_factory=lambda: ["dev-cloudevents-secret"])
    signature_tolerance_s: int = Field(default=300, ge=1)
    max_batch_events: int = Field(default=500, ge=1, le=10000)
    relay_after_s: float = Field(default=10.0, ge=0)
    # An inbox row relayed this long ago and still not consumed is relayed again (duplicates
    # are harmless: dedup on source + id); a broker that came back empty is caught sooner by
    # the epoch check.
    inbox_lease_s: float = Field(default=300.0, gt=0)
    # The group that applies kamwatch.events: its committed offsets say what need not be
    # published again after the broker lost its data.
    downstream_group: str = "kamwatch-signals"
    tick_interval_s: float = Field(default=5.0, gt=0)

    _split_secrets = field_validator(
        "stripe_webhook_secrets", "zendesk_webhook_secrets", "cloudevents_webhook_secrets", mode="before"
    )(_split)

    def secret_fields(self) -> dict[str, list[str]]:
        return {
            "KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS": self.stripe_webhook_secrets,
            "KAMWATCH_INGEST_ZENDESK_WEBHOOK_SECRETS": self.zendesk_webhook_secrets,
            "KAMWATCH_INGEST_CLOUDEVENTS_WEBHOOK_SECRETS": self.cloudevents_webhook_secrets,
        }
