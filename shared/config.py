"""Settings shared by every service (env prefix KAMWATCH_)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Which raw topic an event type travels on, by the family before the first dot (the contract
# that ingest's HTTP side, the simulator and upstream producers share).
RAW_TOPIC_BY_FAMILY = {
    "usage": "usage",
    "ticket": "tickets",
    "invoice": "payments",
    "payment": "payments",
    "subscription": "payments",
    "contact": "contacts",
    "engagement": "engagement",
    "survey": "engagement",
    "account": "engagement",
}


class TopicNames(BaseSettings):
    """Kafka topic names; every one can be renamed with KAMWATCH_TOPIC_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="KAMWATCH_TOPIC_", extra="ignore")

    usage: str = "kamwatch.usage"
    tickets: str = "kamwatch.tickets"
    payments: str = "kamwatch.payments"
    contacts: str = "kamwatch.contacts"
    engagement: str = "kamwatch.engagement"
    events: str = "kamwatch.events"
    deadletter: str = "kamwatch.deadletter"
    accounts: str = "kamwatch.accounts"
    risk: str = "kamwatch.risk"

    @property
    def raw(self) -> list[str]:
        return [self.usage, self.tickets, self.payments, self.contacts, self.engagement]

    def raw_for(self, event_type: str) -> str:
        """The raw topic for an event type (`usage.recorded` -> the usage topic)."""
        return str(getattr(self, RAW_TOPIC_BY_FAMILY[event_type.split(".", 1)[0]]))

    def all(self) -> list[str]:
        return [*self.raw, self.events, self.deadletter, self.accounts, self.risk]


class CommonSettings(BaseSettings):
    """Database, broker and runtime settings every service reads."""

    model_config = SettingsConfigDict(env_prefix="KAMWATCH_", extra="ignore")

    profile: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite:///var/kamwatch.db"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_partitions: int = Field(default=6, ge=1, le=1024)
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    # Consumer tuning: the defaults suit the local broker (see docs/architecture.md).
    consumer_session_timeout_ms: int = 6000
    consumer_heartbeat_interval_ms: int = 1000
    consumer_max_poll_records: int = 1000
    consumer_fetch_max_wait_ms: int = 100
    # /readyz fails when a consumer had no partition, or lag without progress, for this long.
    consumer_stall_after_s: float = Field(default=120.0, gt=0)
    # On start, input waiting on the topics is applied before the first tick (at most this long).
    consumer_catchup_timeout_s: float = Field(default=60.0, ge=0)
    producer_delivery_timeout_ms: int = 30000
    # A checked API key is trusted for this long (a revocation takes effect within it); 0 = off.
    api_key_cache_s: float = Field(default=5.0, ge=0, le=300)
    # Threads serving the synchronous routes; the database pool holds one connection for each,
    # plus the consumer's and the ticks', so no request waits for a connection behind another.
    api_threads: int = Field(default=16, ge=1, le=256)
    # /metrics shows ARR at risk: with a token it needs `Authorization: Bearer <token>`.
    metrics_token: str | None = None
    # /docs, /redoc and /openapi.json: None = on in dev, off in prod.
    public_docs: bool | None = None
    # host:port pairs a registry webhook may point at although they are loopback or private
    # (the local Slack receiver of `kamwatch run`); comma-separated. See shared/netguard.py.
    trusted_webhook_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    topics: TopicNames = Field(default_factory=TopicNames)

    @field_validator("trusted_webhook_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("KAMWATCH_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    def subprocess_env(self, base: dict[str, str], log_format: str = "json") -> dict[str, str]:
        """`base` (e.g. os.environ) without KAMWATCH_* variables, plus every one of these settings
        as a variable: what a `python -m kamwatch.cli <svc>` child needs to run exactly as this
        process is configured. Children log as `log_format` (JSON: their output goes to files)."""
        env = {k: v for k, v in base.items() if not k.startswith("KAMWATCH_")}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name != "topics" and value is not None:  # None: the child's default
                text = ",".join(value) if isinstance(value, list) else str(value)
                env[f"KAMWATCH_{name.upper()}"] = text
        for name in TopicNames.model_fields:
            env[f"KAMWATCH_TOPIC_{name.upper()}"] = getattr(self.topics, name)
        env["KAMWATCH_LOG_FORMAT"] = log_format
        return env
