"""Signals settings (env prefix KAMWATCH_SIGNALS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SignalsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_SIGNALS_", extra="ignore")

    port: int = 8002
    group_id: str = "kamwatch-signals"
