"""Tables owned by signals: the account registry, processed events, state, scores."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, Money, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")
OUTCOME_FILTER = "type IN ('account.churned', 'account.renewed')"


class Account(Base):
    """The registry: one row per key account; `record` is the AccountRecord JSON (exact money).
    Outbox: `published_at` is NULL until `version` reached kamwatch.accounts."""

    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_unpublished", "published_at", "updated_at"),
        # The few deleted accounts, for the portfolio's anti-join (services/signals/repository.py).
        Index(
            "ix_accounts_deleted",
            "id",
            postgresql_where=text("deleted"),
            sqlite_where=text("deleted"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    arr: Mapped[Decimal] = mapped_column(Money())  # exact: NUMERIC(18,2), cents on SQLite
    currency: Mapped[str] = mapped_column(String(3))
    tier: Mapped[str] = mapped_column(String(50))
    segment: Mapped[str | None] = mapped_column(String(50), nullable=True)
    renewal_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    term_months: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None = 12 (yearly)
    owner_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    manager_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    manager_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    record: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SignalEvent(Base):
    """Every canonical event signals applied, exactly once (unique on source + id); `rebuild`
    replays this table."""

    __tablename__ = "signal_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_signal_events_account_time", "account_id", "event_time"),
        # A small partial index: the outcomes of an account (is it churned?) without reading its
        # usage history. Queries must repeat OUTCOME_FILTER literally for the planners to use it.
        Index(
            "ix_signal_events_outcomes",
            "account_id",
            sqlite_where=text(OUTCOME_FILTER),
            postgresql_where=text(OUTCOME_FILTER),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SignalBucket(Base):
    """Counters of one account for one event-time day."""

    __tablename__ = "signal_buckets"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)


class SignalEntity(Base):
    """The latest state of one ticket / invoice / contact / subscription / NPS answer."""

    __tablename__ = "signal_entities"
    __table_args__ = (Index("ix_signal_entities_account_active", "account_id", "active", "event_time"),)

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    event_key: Mapped[str] = mapped_column(String(720))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)  # money as decimal strings: exact
    active: Mapped[bool] = mapped_column(Boolean)


class RiskScore(Base):
    """The current score of each account (one indexed lookup serves GET /risk); account fields
    are copied here so the portfolio is one table."""

    __tablename__ = "risk_scores"
    __table_args__ = (
        Index("ix_risk_scores_owner", "owner_email"),
        Index("ix_risk_scores_as_of", "as_of"),
        # The portfolio's order (revenue at risk in the reporting currency, largest first, then
        # id): a page is the first rows of this index. Its count reads the (band, account_id)
        # index only, with the columns of the common filters (PostgreSQL: INCLUDE).
        Index("ix_risk_scores_ranking", text("ranking DESC"), "account_id"),
        Index("ix_risk_scores_ranking_rates", "ranking_rates"),
        # Filtered pages (band; tier and owner in any case) are the first rows of their own index.
        Index("ix_risk_scores_band_ranking", "band", text("ranking DESC"), "account_id"),
        Index("ix_risk_scores_tier_ranking", text("lower(tier)"), text("ranking DESC"), "account_id"),
        Index("ix_risk_scores_owner_email_lower", text("lower(owner_email)")),
        Index("ix_risk_scores_owner_name_lower", text("lower(owner_name)")),
        Index(
            "ix_risk_scores_band_account",
            "band",
            "account_id",
            postgresql_include=["tier", "owner_email", "owner_name"],
        ),
    )

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(8))
    model_version: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    drivers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # shared.contracts.Driver
    changes: Mapped[list[str]] = mapped_column(JSON)
    features: Mapped[dict[str, float]] = mapped_column(JSON)
    published_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    published_band: Mapped[str | None] = mapped_column(String(8), nullable=True)
    account_version: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200))
    arr: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    tier: Mapped[str] = mapped_column(String(50))
    owner_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    revenue_at_risk: Mapped[Decimal] = mapped_column(Money())  # ARR x score, in `currency`
    # revenue_at_risk in the reporting currency (money.UNRANKED without a rate), converted with the
    # rates whose digest is `ranking_rates`; the portfolio sorts by it while every row carries the
    # digest of the rates it answers with (repository.portfolio, refresh_ranking).
    ranking: Mapped[Decimal] = mapped_column(Money(), default=Decimal(-1), server_default=text("-1"))
    ranking_rates: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # Which version of the account's buckets and entities the worker's in-memory copy must have
    # (services/signals/statecache.py); a new one on every state write, NULL = read the tables.
    state_token: Mapped[str | None] = mapped_column(String(40), nullable=True, default=None)

    @property
    def owner(self) -> str | None:
        """The owner as lists show it: the name, else the e-mail address."""
        return self.owner_name or self.owner_email

    @property
    def top_drivers(self) -> list[str]:
        return [driver["text"] for driver in self.drivers[:3]]


class RiskHistory(Base):
    """Every score change; rows with `publish` are the risk.changed outbox."""

    __tablename__ = "risk_history"
    __table_args__ = (
        Index("ix_risk_history_account", "account_id", "id"),
        Index("ix_risk_history_outbox", "publish", "published_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(8))
    previous_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    previous_band: Mapped[str | None] = mapped_column(String(8), nullable=True)
    model_version: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    drivers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # shared.contracts.Driver
    changes: Mapped[list[str]] = mapped_column(JSON)
    features: Mapped[dict[str, float]] = mapped_column(JSON)
    publish: Mapped[bool] = mapped_column(Boolean)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def published(self) -> bool:
        """risk.changed was acknowledged by the broker."""
        return self.published_at is not None


class AccountPlan(Base):
    """The account plan (objectives, opportunities, relationship notes, QBR cadence), written by
    the KAM through PUT /v1/accounts/{id}/plan; `plan` is the AccountPlanIn JSON."""

    __tablename__ = "account_plans"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))
