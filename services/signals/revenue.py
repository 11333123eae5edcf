"""Net and gross revenue retention over a period, with expansion by component, NPS and QBR
attendance (docs/metrics.md defines every figure). Pure functions over stored events: the SQL is in
repository.py, the route in kam_api.py."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.signals import metrics, repository
from shared.events import ExpansionKind

CENT = Decimal("0.01")
RATIO = Decimal("0.0001")
MONTHS = Decimal(12)
UNSPECIFIED = "unspecified"
EXPANSION_KINDS = (*(k.value for k in ExpansionKind), UNSPECIFIED)
ZERO_MRR_STATUSES = frozenset({"canceled"})
PROMOTER, DETRACTOR = 9, 6  # NPS: 9-10 promoters, 0-6 detractors


@dataclass(frozen=True)
class AccountInfo:
    """What the registry says about an account (grouping keys and the fallback ARR)."""

    id: str
    name: str
    arr: Decimal
    currency: str
    tier: str
    segment: str | None
    owner: str | None


@dataclass(frozen=True)
class Ev:
    """One stored event, reduced to what the figures read."""

    account_id: str
    type: str
    time: datetime
    source: str
    event_id: str
    data: dict[str, Any]

    @property
    def order(self) -> tuple[datetime, str, str]:
        return (self.time, self.source, self.event_id)


@dataclass
class Movement:
    """The revenue figures of one account or group (annual amounts)."""

    starting_arr: Decimal = Decimal(0)
    expansion: dict[str, Decimal] = field(default_factory=lambda: {k: Decimal(0) for k in EXPANSION_KINDS})
    contraction: Decimal = Decimal(0)
    churn: Decimal = Decimal(0)
    accounts: int = 0
    churned_accounts: int = 0
    promoters: int = 0
    detractors: int = 0
    responses: int = 0
    qbrs_held: int = 0
    qbrs_scheduled: int = 0

    def add(self, other: Movement) -> None:
        self.starting_arr += other.starting_arr
        for kind, amount in other.expansion.items():
            self.expansion[kind] += amount
        self.contraction += other.contraction
        self.churn += other.churn
        self.accounts += other.accounts
        self.churned_accounts += other.churned_accounts
        self.promoters += other.promoters
        self.detractors += other.detractors
        self.responses += other.responses
        self.qbrs_held += other.qbrs_held
        self.qbrs_scheduled += other.qbrs_scheduled

    def view(self) -> dict[str, Any]:
        expansion = sum(self.expansion.values(), Decimal(0))
        ending = self.starting_arr + expansion - self.contraction - self.churn
        start = self.starting_arr
        return {
            "accounts": self.accounts,
            "churned_accounts": self.churned_accounts,
            "starting_arr": _money(start),
            "expansion": _money(expansion),
            "expansion_by_kind": {k: _money(v) for k, v in self.expansion.items()},
            "contraction": _money(self.contraction),
            "churn": _money(self.churn),
            "ending_arr": _money(ending),
            "net_revenue_growth": _money(ending - start),
            "nrr": _ratio(ending, start),
            "grr": _ratio(start - self.contraction - self.churn, start),
            "nps": _ratio(Decimal(100 * (self.promoters - self.detractors)), Decimal(self.responses), CENT),
            "nps_responses": self.responses,
            "qbr_attendance": _ratio(Decimal(self.qbrs_held), Decimal(self.qbrs_scheduled)),
            "qbrs_scheduled": self.qbrs_scheduled,
        }


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _ratio(numerator: Decimal, denominator: Decimal, step: Decimal = RATIO) -> str | None:
    if denominator == 0:
        return None
    return str((numerator / denominator).quantize(step, rounding=ROUND_HALF_UP))


def _mrr(data: dict[str, Any]) -> Decimal:
    """The MRR a subscription.changed leaves the subscription at (a cancellation leaves 0)."""
    if data.get("status") in ZERO_MRR_STATUSES:
        return Decimal(0)
    return Decimal(str(data.get("mrr", "0")))


def account_movement(
    info: AccountInfo, events: Iterable[Ev], start: datetime, end: datetime
) -> Movement | None:
    """The figures of one account over [start, end); None when it is not in the cohort (no ARR at
    the start of the period, or churned before it)."""
    ordered = sorted(events, key=lambda e: e.order)
    outcomes = [e for e in ordered if e.type in ("account.churned", "account.renewed")]
    before = [e for e in outcomes if e.time < start]
    if before and before[-1].type == "account.churned":
        return None  # lost before the period: not in the cohort
    in_period = [e for e in outcomes if start <= e.time < end]
    churn_at = None  # the churn that ends the period lost: the first after the period's last renewal
    if in_period and in_period[-1].type == "account.churned":
        renewals = [i for i, e in enumerate(in_period) if e.type == "account.renewed"]
        churn_at = in_period[renewals[-1] + 1 if renewals else 0]

    subscriptions = [e for e in ordered if e.type == "subscription.changed" and e.time < end]
    mrr: dict[str, Decimal] = {}
    for event in subscriptions:
        if event.time >= start:
            break
        mrr[str(event.data.get("subscription_id"))] = _mrr(event.data)
    if subscriptions:
        for event in subscriptions:  # first seen in the period: its previous_mrr is the start
            sub = str(event.data.get("subscription_id"))
            if sub not in mrr and event.time >= start:
                previous = event.data.get("previous_mrr")
                mrr[sub] = Decimal(str(previous)) if previous is not None else Decimal(0)
        starting = MONTHS * sum(mrr.values(), Decimal(0))
    else:
        starting = info.arr  # no subscription events: the registry ARR, flat over the period
    if starting <= 0:
        return None  # new business is not part of the retention cohort

    movement = Movement(starting_arr=starting, accounts=1)
    current = starting
    for event in subscriptions:
        if event.time < start or (churn_at is not None and event.order >= churn_at.order):
            continue
        sub = str(event.data.get("subscription_id"))
        new = _mrr(event.data)
        delta = MONTHS * (new - mrr.get(sub, Decimal(0)))
        mrr[sub] = new
        if delta > 0:
            kind = event.data.get("expansion_kind") or UNSPECIFIED
            movement.expansion[kind if kind in movement.expansion else UNSPECIFIED] += delta
        elif delta < 0:
            movement.contraction += -delta
        current += delta
    if churn_at is not None:
        movement.churn = max(current, Decimal(0))
        movement.churned_accounts = 1
    for event in ordered:
        if not start <= event.time < end:
            continue
        if event.type == "survey.responded" and event.data.get("survey", "nps") == "nps":
            score = int(event.data.get("score", 0))
            movement.responses += 1
            movement.promoters += score >= PROMOTER
            movement.detractors += score <= DETRACTOR
        elif event.type == "engagement.recorded" and event.data.get("kind") == "qbr":
            movement.qbrs_scheduled += 1
            movement.qbrs_held += event.data.get("outcome") == "held"
    return movement


def group_key(info: AccountInfo, by: str) -> str:
    if by == "owner":
        return info.owner or "(no owner)"
    if by == "tier":
        return info.tier
    if by == "segment":
        return info.segment or "(no segment)"
    return info.id


def revenue_report(
    accounts: dict[str, AccountInfo],
    events: dict[str, list[Ev]],
    start: datetime,
    end: datetime,
    by: str | None,
) -> dict[str, Any]:
    """Portfolio totals per currency, and groups (owner, tier, segment or account) per currency.
    No currency conversion: amounts in different currencies are never added."""
    totals: dict[str, Movement] = defaultdict(Movement)
    groups: dict[tuple[str, str], Movement] = defaultdict(Movement)
    for account_id in sorted(accounts):
        info = accounts[account_id]
        movement = account_movement(info, events.get(account_id, []), start, end)
        if movement is None:
            continue
        totals[info.currency].add(movement)
        if by:
            groups[(group_key(info, by), info.currency)].add(movement)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "by": by,
        "totals": [{"currency": c, **totals[c].view()} for c in sorted(totals)],
        "groups": [
            {"key": key, "currency": currency, **groups[(key, currency)].view()}
            for key, currency in sorted(groups)
        ],
    }


def account_info(row: Any) -> AccountInfo:
    """A registry row (services.signals.models.Account) as the figures read it (exact ARR)."""
    record = json.loads(row.record)
    return AccountInfo(
        id=row.id,
        name=row.name,
        arr=Decimal(str(record.get("arr", row.arr))),
        currency=row.currency,
        tier=row.tier,
        segment=row.segment,
        owner=row.owner_name or row.owner_email,
    )


def compute(
    session: Session, start: datetime, end: datetime, by: str | None, account: str | None = None
) -> dict[str, Any]:
    """The revenue report of the live registry (or of one `account`) over [start, end)."""
    accounts = {row.id: account_info(row) for row in repository.live_accounts(session, account)}
    events: dict[str, list[Ev]] = defaultdict(list)
    for row in repository.events_for_revenue(session, start, end, account):
        if row.account_id in accounts:
            data = json.loads(row.payload).get("data", {})
            events[row.account_id].append(
                Ev(row.account_id, row.type, row.event_time, row.source, row.event_id, data)
            )
    return revenue_report(accounts, events, start, end, by)


def refresh_gauges(session: Session, now: datetime, days: int = 90) -> bool:
    """The portfolio's trailing-`days` figures as Prometheus gauges (per currency); False when
    no account is in the cohort (nothing to show yet)."""
    report = compute(session, now - timedelta(days=days), now, None)
    metrics.REVENUE_ARR.clear()
    metrics.REVENUE_RETENTION.clear()
    for total in report["totals"]:
        currency = total["currency"]
        for component in ("starting_arr", "contraction", "churn", "ending_arr"):
            metrics.REVENUE_ARR.labels(component, currency).set(float(total[component]))
        for kind, amount in total["expansion_by_kind"].items():
            metrics.REVENUE_ARR.labels(f"expansion_{kind}", currency).set(float(amount))
        for ratio in ("nrr", "grr"):
            if total[ratio] is not None:
                metrics.REVENUE_RETENTION.labels(ratio, currency).set(float(total[ratio]))
    return bool(report["totals"])
