"""Console settings (env prefix KAMWATCH_CONSOLE_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_CONSOLE_", extra="ignore")

    port: int = 8000
    signals_url: str = Field(default="http://127.0.0.1:8002", description="public API of signals")
    alerts_url: str = Field(default="http://127.0.0.1:8003", description="public API of alerts")
    api_timeout_s: float = Field(default=10.0, gt=0)
    session_secret: str = Field(
        default="dev-console-session-secret", description="signs the session cookie; set a long random value"
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    max_sessions: int = Field(default=10_000, ge=1)
    cookie_secure: bool = Field(default=False, description="Secure cookies (set true behind HTTPS)")
    # Production: an authenticating proxy (oauth2-proxy, IAP...) names the user in a header and the
    # console acts with one service key. Only enable it when the proxy is the only way in.
    proxy_user_header: str | None = Field(default=None, description="e.g. X-Forwarded-Email")
    proxy_api_key: str | None = Field(default=None, description="the key used for proxy-signed-in users")

    def secret_fields(self) -> dict[str, list[str]]:
        fields = {"KAMWATCH_CONSOLE_SESSION_SECRET": [self.session_secret]}
        if self.proxy_user_header:
            fields["KAMWATCH_CONSOLE_PROXY_API_KEY"] = [self.proxy_api_key or ""]
        return fields
