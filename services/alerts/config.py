"""Alerts settings (env prefix KAMWATCH_ALERTS_)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.alerts.channels import slack_url_allowed
from shared.settings import ServiceSettings

DEFAULT_POLICY = str(Path(__file__).resolve().parent / "policy.yaml")


class AlertsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_ALERTS_", extra="ignore")

    port: int = 8003
    group_id: str = "kamwatch-alerts"
    policy_file: str = DEFAULT_POLICY
    # Overrides the policy's grouping_window (tests use 0).
    grouping_window_s: float | None = Field(default=None, ge=0)
    tick_interval_s: float = Field(default=1.0, gt=0)
    # Acknowledge/Snooze links: HMAC key and the address people click.
    link_secret: str = "dev-alerts-link-secret"  # noqa: S105 - dev default, refused in prod
    public_url: str = "http://127.0.0.1:8003"
    console_url: str | None = None  # the KAM console; messages then link to the account brief
    # E-mail over SMTP.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "kamwatch <alerts@kamwatch.local>"
    message_id_domain: str = "kamwatch.local"
    # Slack: used for a Person without slack_webhook (the embedded profile points it at the local sink).
    default_slack_webhook: str | None = None
    slack_timeout_s: float = Field(default=10.0, gt=0)
    # prod: Slack webhook URLs must be https on one of these hosts (comma-separated in the env).
    slack_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["hooks.slack.com"])
    slack_min_interval_s: float = Field(default=1.0, ge=0, description="at most 1 message/s per webhook")
    # Outbox retries: exponential backoff from backoff_base_s, then a permanent failure.
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_base_s: float = Field(default=5.0, ge=0)
    backoff_max_s: float = Field(default=3600.0, ge=0)
    # Time one tick may spend sending before it returns to the consumer loop.
    delivery_budget_s: float = Field(default=5.0, gt=0)
    # A row still 'sending' after this long is a crashed send (longer than any send can take).
    sending_lease_s: float = Field(default=120.0, ge=0)
    # Tests only (refused in prod): SIGKILL the process right after the Nth successful send,
    # before the send is recorded, to prove that a crash there neither duplicates nor loses.
    crash_after_sends: int | None = None

    @field_validator("slack_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @property
    def trusted_webhook_hosts(self) -> list[str]:
        """KAMWATCH_TRUSTED_WEBHOOK_HOSTS plus the host:port of the operator's default webhook."""
        trusted = list(self.common.trusted_webhook_hosts)
        if self.default_slack_webhook:
            parts = urlsplit(self.default_slack_webhook)
            with contextlib.suppress(ValueError):
                port = parts.port or (443 if parts.scheme == "https" else 80)
                trusted.append(f"{(parts.hostname or '').lower()}:{port}")
        return trusted

    def secret_fields(self) -> dict[str, list[str]]:
        fields = {"KAMWATCH_ALERTS_LINK_SECRET": [self.link_secret]}
        if self.smtp_username:
            fields["KAMWATCH_ALERTS_SMTP_PASSWORD"] = [self.smtp_password or ""]
        return fields

    @model_validator(mode="after")
    def _prod_rules(self) -> AlertsSettings:
        if self.common.profile != "prod":
            return self
        if self.crash_after_sends is not None:
            raise ValueError("KAMWATCH_ALERTS_CRASH_AFTER_SENDS is a test setting, refused in prod")
        if self.default_slack_webhook and not self.default_slack_webhook.startswith("https://"):
            raise ValueError("KAMWATCH_ALERTS_DEFAULT_SLACK_WEBHOOK must be an https:// URL in prod")
        if self.default_slack_webhook and not slack_url_allowed(
            self.default_slack_webhook, self.slack_allowed_hosts
        ):
            raise ValueError(
                "KAMWATCH_ALERTS_DEFAULT_SLACK_WEBHOOK must be on a host listed in "
                "KAMWATCH_ALERTS_SLACK_ALLOWED_HOSTS (default hooks.slack.com)"
            )
        return self
