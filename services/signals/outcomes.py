"""Outcomes that change the registry: `account.renewed` moves the renewal date forward by the term.

(`account.churned` needs no registry change: the engine reads the latest outcome per account and
moves a churned account to band `churned`; see RiskEngine.rescore.)
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.orm import Session

from services.signals import metrics, repository
from services.signals.models import Account
from services.signals.registry import record_json
from shared.contracts import DEFAULT_TERM_MONTHS, AccountRecord
from shared.logging import get_logger

log = get_logger(__name__)
RENEWED = "account.renewed"


class Outcome(Protocol):
    """What this module reads of a Signal (services/signals/service.py)."""

    @property
    def type(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def source(self) -> str: ...
    @property
    def event_id(self) -> str: ...


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def next_renewal(current: date | None, renewed_on: date, term_months: int | None) -> date | None:
    """The renewal date after a renewal on `renewed_on`: the current renewal date plus one term (or
    `renewed_on` plus one term when none is set). None when the registry already shows a later
    renewal (a date more than half a term after the event: someone moved it by hand already)."""
    term = term_months or DEFAULT_TERM_MONTHS
    if current is None:
        return add_months(renewed_on, term)
    half_term = (add_months(renewed_on, term) - renewed_on) / 2
    if current > renewed_on + half_term:
        return None
    return add_months(current, term)


def apply_renewals(session: Session, fresh: Sequence[Outcome], now: datetime) -> list[Account]:
    """Move the renewal date of each account with a newly applied `account.renewed` (call it with
    events seen for the first time only: a redelivered event is not fresh, so it never moves the
    date twice). Returns the changed registry rows; they are the registry outbox (published_at
    NULL) and go out as `account.upserted` so ingest and alerts see the new date."""
    renewals = sorted((s for s in fresh if s.type == RENEWED), key=lambda s: (s.time, s.source, s.event_id))
    if not renewals:
        return []
    # Every touched account in id order, as RiskEngine.rescore locks them later (no deadlock).
    accounts = repository.accounts_by_id(session, {s.account_id for s in fresh}, lock=True)
    changed: dict[str, Account] = {}
    for renewal in renewals:
        row = accounts.get(renewal.account_id)
        if row is None or row.deleted:
            log.info("signals.renewal_unregistered", account_id=renewal.account_id)
            continue
        record = AccountRecord.model_validate_json(row.record)
        moved = next_renewal(record.renewal_date, renewal.time.date(), record.term_months)
        if moved is None:
            log.info(
                "signals.renewal_already_recorded",
                account_id=row.id,
                renewal_date=str(record.renewal_date),
                renewed_on=renewal.time.date().isoformat(),
            )
            continue
        updated = record.model_copy(update={"renewal_date": moved, "updated_at": now})
        row, _ = repository.save_account(session, updated, record_json(updated))
        changed[row.id] = row
        metrics.RENEWALS.inc()
        log.info(
            "signals.renewal_moved",
            account_id=row.id,
            renewal_date_was=str(record.renewal_date),
            renewal_date=moved.isoformat(),
            event_id=renewal.event_id,
        )
    return list(changed.values())
