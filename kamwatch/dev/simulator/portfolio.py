"""The simulated portfolio: accounts, the people around them, and each account's hidden fate.

Pure and deterministic: everything derives from the seed through per-account `random.Random`
instances seeded with strings (sha512-based, so independent of PYTHONHASHSEED).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

DAY = timedelta(days=1)

COMPANY_HEADS = (
    "Northwind", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Acme", "Hooli", "Vandelay",
    "Tyrell", "Cyberdyne", "Soylent", "Wonka", "Aperture", "Oscorp", "Massive", "Monarch",
    "Dunder", "Bluth", "Prestige", "Sterling", "Gekko", "Nakatomi", "Zorg", "Virtucon", "Krusty",
)  # fmt: skip
COMPANY_TAILS = (
    "Logistics", "Health", "Retail", "Bank", "Energy", "Foods", "Systems", "Labs", "Insurance",
    "Motors", "Media", "Pharma", "Telecom", "Airlines", "Analytics", "Freight", "Robotics",
)  # fmt: skip
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Lukas", "Sofia", "Chen", "Olivia", "Mateo", "Priya", "Noah",
    "Elena", "Kenji", "Fatima", "Jonas", "Grace", "Omar", "Hannah", "Diego", "Ingrid", "Samuel",
)  # fmt: skip
LAST_NAMES = (
    "Schmidt", "Okafor", "Rossi", "Nguyen", "Johansson", "Garcia", "Kowalski", "Tanaka", "Dubois",
    "Patel", "Müller", "Brown", "Haddad", "Silva", "Novak", "O'Brien", "Lindqvist", "Costa",
)  # fmt: skip
TIMEZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago", "Asia/Singapore")
CHURN_REASONS = (
    "moved to a competitor",
    "budget cut after a reorganisation",
    "new executive consolidated vendors",
    "product no longer fits the workflow",
    "champion left and nobody took over",
)


@dataclass(frozen=True)
class Plan:
    """The hidden trajectory of one account: how its health moves and what happens when."""

    kind: str  # healthy | scare | decline | sudden | spotlight
    fate: str  # renew | churn (at the first renewal date)
    baseline: float
    trough: float = 1.0
    fall_from: datetime | None = None
    fall_to: datetime | None = None  # health reaches the trough here
    recover_to: datetime | None = None  # scares: back to baseline here
    moments: dict[str, datetime] = field(default_factory=dict)
    product_lag: timedelta = timedelta(0)  # the product follows the relationship this much later

    def product_health(self, at: datetime) -> float:
        """The product side (usage, tickets, payments) erodes after the relationship does."""
        return self.health(at - self.product_lag)

    def health(self, at: datetime) -> float:
        """The latent health (about 1 = thriving, 0 = gone) before noise."""
        if self.fall_from is None or self.fall_to is None or at <= self.fall_from:
            return self.baseline
        drop = self.baseline - self.trough
        if at < self.fall_to:
            return self.baseline - drop * _share(at, self.fall_from, self.fall_to)
        if self.recover_to is None:
            return self.trough
        if at >= self.recover_to:
            return self.baseline
        return self.trough + drop * _share(at, self.fall_to, self.recover_to)


def _share(at: datetime, start: datetime, end: datetime) -> float:
    return (at - start) / (end - start)


@dataclass(frozen=True)
class Contact:
    """A person at the customer (only an id and a role: no personal data is simulated)."""

    id: str
    role: str
    executive: bool = False


@dataclass(frozen=True)
class Account:
    index: int
    id: str
    name: str
    arr: Decimal
    currency: str
    tier: str
    segment: str
    renewal_date: date
    owner: dict[str, Any]
    manager: dict[str, Any]
    executive_sponsor: dict[str, Any]
    stripe_id: str
    zendesk_id: str
    daily_usage: float
    seats: int
    ticket_rate: float
    billing_day: int
    rhythm: int  # day offset of the account's QBR / NPS / meeting cycles
    late_payer: bool  # accounts payable pays weeks late, whatever the relationship
    ticket_heavy: bool  # many power users: lots of tickets, urgent ones too, whatever the health
    contacts: tuple[Contact, ...]
    plan: Plan

    def next_renewal(self, as_of: datetime | None) -> date:
        """The renewal date the registry shows at `as_of` (renewed accounts roll over a year)."""
        renewal = self.renewal_date
        if as_of is not None and self.plan.fate == "renew":
            while renewal < as_of.date():
                renewal += timedelta(days=365)
        return renewal

    def record(self, as_of: datetime | None = None) -> dict[str, Any]:
        """The registry entry (shared.contracts.AccountRecord fields) as known at `as_of`."""
        return {
            "id": self.id,
            "name": self.name,
            "arr": str(self.arr),
            "currency": self.currency,
            "tier": self.tier,
            "segment": self.segment,
            "renewal_date": self.next_renewal(as_of).isoformat(),
            "owner": self.owner,
            "manager": self.manager,
            "executive_sponsor": self.executive_sponsor,
            "external_ids": {"stripe": self.stripe_id, "zendesk": self.zendesk_id},
        }


@dataclass(frozen=True)
class Timeline:
    start: datetime
    live_start: datetime
    end: datetime
    future_renewals: bool = False  # every renewal after `end`: warnings visible, no outcome yet


def person(rng: random.Random, domain: str = "example.com") -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    handle = re.sub(r"[^a-z.]", "", f"{first}.{last}".lower().replace("ü", "ue"))
    return {
        "name": f"{first} {last}",
        "email": f"{handle}@{domain}",
        "slack_handle": f"@{handle}",
        "timezone": rng.choice(TIMEZONES),
    }


def kam_team(
    seed: int, accounts: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Owners (KAMs), their managers and the executive sponsors on our side."""
    rng = random.Random(f"{seed}/team")
    owners = [person(rng) for _ in range(max(3, min(12, accounts // 6)))]
    managers = [person(rng) for _ in range(2)]
    sponsors = [person(rng) for _ in range(2)]
    return owners, managers, sponsors


def build_portfolio(seed: int, count: int, timeline: Timeline, spotlight: int = 0) -> list[Account]:
    """`count` accounts; the first `spotlight` ones decline visibly early in the live phase."""
    owners, managers, sponsors = kam_team(seed, count)
    used: set[str] = set()
    accounts = []
    for index in range(count):
        rng = random.Random(f"{seed}/account/{index}")
        name, account_id = _company(rng, used)
        owner_no = rng.randrange(len(owners))
        arr = _arr(rng, big=index < spotlight)
        renewal = _renewal(rng, timeline)
        if index < spotlight:
            plan, renewal = _spotlight_plan(rng, timeline, index, spotlight)
        else:
            plan = _plan(rng, timeline, renewal)
        accounts.append(
            Account(
                index=index,
                id=account_id,
                name=name,
                arr=arr,
                currency=rng.choice(("USD", "USD", "EUR", "EUR", "GBP")),
                tier="strategic" if arr >= 500_000 else "key" if arr >= 150_000 else "growth",
                segment="enterprise" if arr >= 250_000 else "mid-market",
                renewal_date=renewal.date(),
                owner=owners[owner_no],
                manager=managers[owner_no % len(managers)],
                executive_sponsor=sponsors[owner_no % len(sponsors)],
                stripe_id=f"cus_{rng.getrandbits(48):012x}",
                zendesk_id=str(360000000 + rng.randrange(10**8)),
                daily_usage=float(arr) / 1000 * rng.uniform(20, 60),
                seats=max(5, int(float(arr) / 4000 * rng.uniform(0.5, 1.5))),
                ticket_rate=rng.uniform(0.12, 0.45) * (1.5 if arr >= 500_000 else 1.0),
                billing_day=rng.randint(1, 28),
                rhythm=rng.randrange(91),
                contacts=_contacts(rng),
                plan=plan,
                late_payer=rng.random() < 0.25,
                ticket_heavy=rng.random() < 0.2,
            )
        )
    return accounts


def _company(rng: random.Random, used: set[str]) -> tuple[str, str]:
    name = f"{rng.choice(COMPANY_HEADS)} {rng.choice(COMPANY_TAILS)}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    account_id, n = slug, 2
    while account_id in used:
        account_id, n = f"{slug}-{n}", n + 1
    used.add(account_id)
    return (name if account_id == slug else f"{name} {n - 1}"), account_id


def _arr(rng: random.Random, big: bool) -> Decimal:
    value = (
        rng.uniform(600_000, 1_500_000) if big else min(3_000_000, max(40_000, rng.lognormvariate(12.1, 0.8)))
    )
    return Decimal(int(value / 1000) * 1000).quantize(Decimal("0.01"))


def _renewal(rng: random.Random, timeline: Timeline) -> datetime:
    """Spread renewals so that many fall inside the simulated span (labelled outcomes)."""
    first = timeline.start + 45 * DAY
    if timeline.future_renewals:
        first = midnight_of(timeline.end) + 20 * DAY
    last = max(timeline.end, first + DAY) + 150 * DAY
    days = rng.randrange((last - first).days)
    return first + days * DAY + 10 * timedelta(hours=1)


def midnight_of(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _contacts(rng: random.Random) -> tuple[Contact, ...]:
    roles = [("executive_sponsor", True), ("champion", False), ("decision_maker", rng.random() < 0.5)]
    roles += [("technical_evaluator", False)] + [("user", False)] * rng.randint(1, 4)
    roles += [("influencer", False)] * rng.randint(0, 2)
    return tuple(Contact(f"ct_{rng.getrandbits(40):010x}", role, executive) for role, executive in roles)


def _plan(rng: random.Random, timeline: Timeline, renewal: datetime) -> Plan:
    baseline = rng.uniform(0.86, 1.0)
    roll = rng.random()
    if roll < 0.07:
        return _sudden_churn(rng, baseline, renewal)
    if roll < 0.33:
        return _declining_churn(rng, baseline, renewal)
    if roll < 0.56:
        return _scare(rng, baseline, timeline)
    return _healthy(rng, baseline, timeline)


def _healthy(rng: random.Random, baseline: float, timeline: Timeline) -> Plan:
    """Thriving, though people still change jobs: some lose a champion and find a new one."""
    span_days = max(1, (timeline.end - timeline.start).days)
    moments: dict[str, datetime] = {}
    if rng.random() < 0.2:
        moments["champion_left"] = timeline.start + rng.randrange(span_days) * DAY
        moments["new_champion"] = moments["champion_left"] + rng.randint(10, 40) * DAY
    if rng.random() < 0.06:
        moments["new_executive"] = timeline.start + rng.randrange(span_days) * DAY
    return Plan(kind="healthy", fate="renew", baseline=baseline, moments=_at_hour(rng, moments))


def _sudden_churn(rng: random.Random, baseline: float, renewal: datetime) -> Plan:
    """Churns with little warning: a short, mild dip only weeks before the renewal."""
    fall_from = renewal - rng.randint(8, 20) * DAY
    return Plan(
        kind="sudden",
        fate="churn",
        baseline=baseline,
        trough=baseline - rng.uniform(0.1, 0.22),
        fall_from=fall_from,
        fall_to=renewal - 2 * DAY,
    )


def _declining_churn(rng: random.Random, baseline: float, renewal: datetime) -> Plan:
    """The classic story: health erodes for weeks to months, with the signals along the way."""
    lead = rng.randint(35, 150) * DAY
    fall_from = renewal - lead
    moments: dict[str, datetime] = {}
    if rng.random() < 0.65:
        moments["champion_left"] = fall_from + lead * rng.uniform(0.15, 0.6)
    if rng.random() < 0.3:
        moments["sponsor_left"] = fall_from + lead * rng.uniform(0.1, 0.7)
    if rng.random() < 0.6:
        moments["new_executive"] = fall_from + lead * rng.uniform(0.0, 0.5)
    if rng.random() < 0.35:
        moments["downgrade"] = renewal - rng.randint(25, 70) * DAY
    if rng.random() < 0.5:
        moments["cancel_notice"] = renewal - rng.randint(8, 40) * DAY
    fall_to = renewal - lead * rng.uniform(0.05, 0.3)
    return Plan(
        kind="decline",
        fate="churn",
        baseline=baseline,
        trough=rng.uniform(0.22, 0.55),
        fall_from=fall_from,
        fall_to=fall_to,
        moments=_at_hour(rng, moments),
        # Relationships erode first (meetings, NPS, people); usage and payments follow.
        product_lag=(fall_to - fall_from) * rng.uniform(0.3, 0.6),
    )


def _scare(rng: random.Random, baseline: float, timeline: Timeline) -> Plan:
    """A healthy account that wobbles for a few weeks, then recovers and renews."""
    span_days = max(1, (timeline.end - timeline.start).days)
    fall_from = timeline.start + rng.randrange(span_days) * DAY
    length = rng.randint(16, 45) * DAY
    moments: dict[str, datetime] = {}
    if rng.random() < 0.35:
        moments["champion_left"] = fall_from + length * 0.2
        moments["new_champion"] = fall_from + length * rng.uniform(0.5, 0.9)
    return Plan(
        kind="scare",
        fate="renew",
        baseline=baseline,
        trough=rng.uniform(0.45, 0.7),
        fall_from=fall_from,
        fall_to=fall_from + length / 2,
        recover_to=fall_from + length,
        moments=_at_hour(rng, moments),
    )


def _spotlight_plan(rng: random.Random, timeline: Timeline, index: int, count: int) -> tuple[Plan, datetime]:
    """Demo accounts: already sliding when the live phase starts, then the critical signals land
    one after another early in the live phase (staggered across the spotlight accounts)."""
    live = timeline.live_start
    span = max(timeline.end - live, timedelta(hours=1))
    first = span * (0.05 + 0.5 * index / max(1, count))
    moments = {
        "urgent_ticket": live + first,
        "champion_left": live + first + span * 0.04,
        "overdue_notice": live + first + span * 0.08,
        "urgent_ticket_2": live + first + span * 0.12,
    }
    if index % 2 == 0:
        moments["sponsor_left"] = live + first + span * 0.16
    renewal = live + rng.randint(40, 80) * DAY + 10 * timedelta(hours=1)
    plan = Plan(
        kind="spotlight",
        fate="churn",
        baseline=rng.uniform(0.9, 1.0),
        trough=0.65,
        fall_from=live - 21 * DAY,
        fall_to=live,
        moments={k: v.replace(microsecond=0) for k, v in moments.items()},
    )
    return plan, renewal


def _at_hour(rng: random.Random, moments: dict[str, datetime]) -> dict[str, datetime]:
    """Moments happen during office hours, on whole seconds."""
    out = {}
    for name, when in moments.items():
        day = when.replace(hour=0, minute=0, second=0, microsecond=0)
        out[name] = day + timedelta(seconds=rng.randrange(8 * 3600, 18 * 3600))
    return out
