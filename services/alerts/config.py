"""Alerts settings (env prefix KAMWATCH_ALERTS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AlertsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_ALERTS_", extra="ignore")

    port: int = 8003
    group_id: str = "kamwatch-alerts"
