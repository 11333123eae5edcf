"""Signals settings (env prefix KAMWATCH_SIGNALS_)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings

DEFAULT_SCORECARD = str(Path(__file__).with_name("scorecard.yaml"))
DEFAULT_QUALIFICATION = str(Path(__file__).with_name("qualification.yaml"))
DEFAULT_RATES = str(Path(__file__).with_name("rates.yaml"))


class SignalsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KAMWATCH_SIGNALS_", extra="ignore")

    port: int = 8002
    group_id: str = "kamwatch-signals"
    scorecard_path: str = DEFAULT_SCORECARD
    qualification_path: str = Field(
        default=DEFAULT_QUALIFICATION, description="weights and thresholds of key-account qualification"
    )
    model_dir: str = Field(
        default_factory=lambda: str(Path(os.environ.get("KAMWATCH_VAR_DIR", "var")) / "models"),
        description="trained model versions + the 'current' pointer (default $KAMWATCH_VAR_DIR/models)",
    )
    rates_path: str = Field(
        default=DEFAULT_RATES,
        description="the rates table (YAML: currency, date, rates); re-read when it changes",
    )
    reporting_currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="revenue at risk is converted into it for ranking; default the rates table's currency",
    )
    max_arr: Decimal = Field(
        default=Decimal(10) ** 12,
        gt=0,
        description="a registry ARR (or potential ARR) above this is refused with a 422 (a typo guard)",
    )
    horizon_days: int = Field(default=90, ge=7, le=365)
    amber_threshold: float = Field(default=0.30, gt=0, lt=1)
    red_threshold: float = Field(default=0.60, gt=0, lt=1)
    publish_step: float = Field(default=0.05, ge=0, le=1, description="publish when the score moves more")
    tick_interval_s: float = Field(default=5.0, gt=0)
    relay_after_s: float = Field(default=10.0, ge=0, description="outbox rows older than this are re-sent")
    sweep_batch: int = Field(default=500, ge=1, le=100_000)
    state_cache_rows: int = Field(
        default=400_000,
        ge=0,
        le=100_000_000,
        description="bucket and entity rows the worker keeps in memory (about 0.5 KB each, so the "
        "default is about 200 MB): least recently used accounts leave first; 0 = off",
    )
    api_publish_timeout_s: float = Field(default=5.0, gt=0)
    min_churns: int = Field(default=10, ge=1, description="train refuses with fewer labelled churns")
    revenue_gauges_interval_s: float = Field(
        default=900.0, gt=0, description="how often the tick refreshes the trailing-90-day revenue gauges"
    )
    observation_step_days: int = Field(default=7, ge=1, le=90)
    # prod: registry Slack webhooks must be https on one of these hosts (checked at PUT/import;
    # keep it equal to KAMWATCH_ALERTS_SLACK_ALLOWED_HOSTS, which alerts checks before posting).
    slack_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["hooks.slack.com"])

    @field_validator("slack_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    alert_budget: float = Field(
        default=0.09,
        gt=0,
        lt=0.5,
        description="share of live accounts flagged amber or red (budget bands refit it on the live "
        "scores every LEARN_CHECK_INTERVAL_S); a point under the 10% a KAM team can work, for drift "
        "between two refits",
    )
    red_budget: float = Field(default=0.03, gt=0, lt=0.5, description="share flagged red")
    learn: bool = Field(
        default=False,
        description="retrain in the background when enough new outcomes arrived; promote only a "
        "model that beats the one in use and the scorecard on the latest honest period",
    )
    budget_bands: bool = Field(
        default=False,
        description="keep amber-or-red at ALERT_BUDGET of the live portfolio (red at RED_BUDGET), "
        "whatever scorer is in use; thresholds refitted every LEARN_CHECK_INTERVAL_S",
    )
    portfolio_cache_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description=(
            "GET /v1/portfolio counts `total` per filter set, and checks that every stored ranking "
            "amount is current, at most this often; the API looks at the rates file as often "
            "(0: on every request)"
        ),
    )
    budget_min_accounts: int = Field(default=100, ge=10, description="smaller portfolios keep fixed bands")
    peer_usage: bool = Field(
        default=True,
        description="with BUDGET_BANDS, while the scorecard is in use: compare each account's usage "
        "with the live portfolio's (usage_vs_peers), refitted every PEER_REFIT_DAYS or when the "
        "portfolio grew or shrank by half",
    )
    peer_refit_days: float = Field(default=7.0, gt=0, description="age of the peer reference to refit it")
    learn_min_new_churns: int = Field(default=10, ge=1, description="new account.churned events to retrain")
    learn_min_new_share: float = Field(
        default=0.25, ge=0, le=10, description="... and at least this share of the churns seen last time"
    )
    learn_check_interval_s: float = Field(default=60.0, gt=0, description="how often to look for them")

    @model_validator(mode="after")
    def _bands_ordered(self) -> SignalsSettings:
        if self.amber_threshold >= self.red_threshold:
            raise ValueError(
                "KAMWATCH_SIGNALS_AMBER_THRESHOLD must be below KAMWATCH_SIGNALS_RED_THRESHOLD "
                f"(got {self.amber_threshold} and {self.red_threshold})"
            )
        if self.red_budget >= self.alert_budget:
            raise ValueError(
                "KAMWATCH_SIGNALS_RED_BUDGET must be below KAMWATCH_SIGNALS_ALERT_BUDGET "
                f"(got {self.red_budget} and {self.alert_budget})"
            )
        return self
