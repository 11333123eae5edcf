"""Base for each service's Settings: common settings nested, secrets checked at start-up."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from shared.config import CommonSettings

PLACEHOLDER_MARKERS = ("dev-", "changeme", "change-me", "placeholder", "example", "secret")
MIN_SECRET_BYTES = 32


class ServiceSettings(BaseSettings):
    """Common part of every service's Settings; subclasses set their own env prefix."""

    host: str = "127.0.0.1"
    port: int = 8000
    group_id: str = "kamwatch"
    tick_interval_s: float = Field(
        default=5.0, gt=0, description="time-driven work (relays, sweeps) every so often"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    clock_file: str | None = Field(default=None, description="tests: file holding a clock offset in s")
    common: CommonSettings = Field(default_factory=CommonSettings)

    def secret_fields(self) -> dict[str, list[str]]:
        """Secret settings by name; prod refuses empty or placeholder values."""
        return {}

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> ServiceSettings:
        if self.common.profile != "prod":
            return self
        for name, values in self.secret_fields().items():
            if not values or any(not v or v.lower().startswith(PLACEHOLDER_MARKERS) for v in values):
                raise ValueError(
                    f"{name} must be set to a real secret in the prod profile "
                    f"(empty or placeholder values such as 'dev-...' are refused)"
                )
            if any(len(v.encode()) < MIN_SECRET_BYTES for v in values):
                raise ValueError(
                    f"{name} is too short for the prod profile: use at least {MIN_SECRET_BYTES} bytes "
                    "of random data (e.g. `openssl rand -hex 32`)"
                )
        return self
