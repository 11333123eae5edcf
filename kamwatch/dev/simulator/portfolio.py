"""The simulated portfolio: accounts, the people around them, and each account's hidden fate.

Pure and deterministic: everything derives from the seed through per-account `random.Random`
instances seeded with strings (sha512-based, so independent of PYTHONHASHSEED).
"""

from __future__ import annotations

import random
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from kamwatch.dev.simulator.satisfaction import Fate, health_of, simulate_path

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
UNRELATED_REASONS = (  # churns that no signal foretells
    "acquired; the new owner uses another vendor",
    "global budget freeze",
    "group-wide vendor consolidation",
)


CHANNELS = ("usage", "tickets", "billing", "contacts", "engagement")
CHANNEL_PROFILES = (  # (share of accounts, the channels they send)
    (0.55, CHANNELS),
    (0.15, ("usage",)),
    (0.12, ("usage", "billing")),
    (0.10, ("usage", "tickets", "billing")),
    (0.08, ("tickets", "billing", "contacts", "engagement")),
)
METRICS = (  # (name, daily quantity per 1000 ARR, share of active users)
    ("reports_run", 0.6, 0.5),
    ("dashboards_viewed", 2.5, 0.8),
    ("exports", 0.15, 0.2),
    ("integrations_synced", 1.2, 0.1),
    ("workflows_executed", 4.0, 0.3),
)
PRODUCT_LAG_DAYS = 18.0  # time constant of the product side following the relationship
EARLY_UNRELATED = 0.5  # share of unrelated churns that end the contract before its renewal


@dataclass(frozen=True)
class Metric:
    name: str
    daily: float  # quantity on an ordinary weekday at health 1
    users: float  # share of the account's seats that use it
    core: bool  # used every day; the others come and go with the account's health


@dataclass(frozen=True, eq=False)
class Plan:
    """The hidden trajectory of one account: how its health moves and what happens when.

    Ordinary accounts follow their satisfaction path (satisfaction.py);
    the demo's spotlight accounts follow a scripted fall from `fall_from` to `fall_to`.
    """

    kind: str  # satisfaction | spotlight
    churn_renewal: int | None  # the renewal at which it churns (0 = the first), None: renews
    baseline: float
    trough: float = 1.0
    fall_from: datetime | None = None
    fall_to: datetime | None = None  # health reaches the trough here
    moments: dict[str, datetime] = field(default_factory=dict)
    product_lag: timedelta = timedelta(0)  # the product follows the relationship this much later
    origin: datetime | None = None  # day 0 of `path`
    path: Sequence[float] = ()  # the relationship's health per day (satisfaction plans)
    product_path: Sequence[float] = ()  # the product's health per day: follows with a lag
    cause: str = ""  # why it churns: "signals", "unrelated" or "scripted"
    early_churn: datetime | None = None  # an unrelated churn before the renewal (contract ended)

    @property
    def fate(self) -> str:
        return "renew" if self.churn_renewal is None else "churn"

    def product_health(self, at: datetime) -> float:
        """The product side (usage, tickets, payments) erodes after the relationship does."""
        if self.product_path:
            return self._on(self.product_path, at)
        return self.health(at - self.product_lag)

    def health(self, at: datetime) -> float:
        """The latent health (about 1 = thriving, 0 = gone) before the channels' noise."""
        if self.path:
            return self._on(self.path, at)
        if self.fall_from is None or self.fall_to is None or at <= self.fall_from:
            return self.baseline
        drop = self.baseline - self.trough
        if at < self.fall_to:
            return self.baseline - drop * _share(at, self.fall_from, self.fall_to)
        return self.trough

    def _on(self, path: Sequence[float], at: datetime) -> float:
        assert self.origin is not None
        index = min(len(path) - 1, max(0, (at - self.origin).days))
        return path[index]


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
    channels: frozenset[str] = frozenset(CHANNELS)  # what this account's systems send us
    metrics: tuple[Metric, ...] = ()  # usage metrics; the first is the core one

    def next_renewal(self, as_of: datetime | None) -> date:
        """The renewal date the registry shows at `as_of` (renewed accounts roll over a year)."""
        renewal, number = self.renewal_date, 0
        while as_of is not None and renewal < as_of.date() and number != self.plan.churn_renewal:
            renewal, number = renewal + timedelta(days=365), number + 1
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
            plan = _plan(seed, index, timeline, renewal)
        daily_usage = float(arr) / 1000 * rng.uniform(20, 60)
        extras = random.Random(f"{seed}/channels/{index}")
        channels = frozenset(CHANNELS) if index < spotlight else _channels(extras)
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
                daily_usage=daily_usage,
                seats=max(5, int(float(arr) / 4000 * rng.uniform(0.5, 1.5))),
                ticket_rate=rng.uniform(0.12, 0.45) * (1.5 if arr >= 500_000 else 1.0),
                billing_day=rng.randint(1, 28),
                rhythm=rng.randrange(91),
                contacts=_contacts(rng),
                plan=plan,
                late_payer=rng.random() < 0.25,
                ticket_heavy=rng.random() < 0.2,
                channels=channels,
                metrics=_metrics(extras, arr, daily_usage),
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
    """Yearly contracts: renewals spread evenly over the first simulated year, so a one-year
    span sees every account's renewal once (the demo: all after its end)."""
    first, spread = timeline.start, 365
    if timeline.future_renewals:
        first, spread = midnight_of(timeline.end) + 20 * DAY, 150
    return midnight_of(first) + rng.randrange(spread) * DAY + 10 * timedelta(hours=1)


def midnight_of(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _contacts(rng: random.Random) -> tuple[Contact, ...]:
    roles = [("executive_sponsor", True), ("champion", False), ("decision_maker", rng.random() < 0.5)]
    roles += [("technical_evaluator", False)] + [("user", False)] * rng.randint(1, 4)
    roles += [("influencer", False)] * rng.randint(0, 2)
    return tuple(Contact(f"ct_{rng.getrandbits(40):010x}", role, executive) for role, executive in roles)


def _plan(seed: int, index: int, timeline: Timeline, renewal: datetime) -> Plan:
    """An ordinary account: its satisfaction path decides its health, its moments and its fate."""
    rng = random.Random(f"{seed}/satisfaction/{index}")
    origin = midnight_of(timeline.start)
    days = max(1, (timeline.end - origin).days + 1)
    renewals = [renewal + year * 365 * DAY for year in range(days // 365 + 2)]
    z, fate = simulate_path(rng, origin, days, renewals)
    path = array("d", (health_of(value) for value in z))
    product = array("d")
    level = path[0]
    for value in path:  # usage, tickets and payments follow the relationship weeks later
        level += (value - level) / PRODUCT_LAG_DAYS
        product.append(level)
    moments = _shock_moments(rng, fate, origin)
    if fate.cause == "signals" and fate.churn_renewal is not None:
        moments.update(_leaving_moments(rng, renewals[fate.churn_renewal]))
    if rng.random() < 0.15:  # people change jobs in happy accounts too
        moments["champion_left"] = origin + rng.randrange(days) * DAY
        moments["new_champion"] = moments["champion_left"] + rng.randint(10, 40) * DAY
    early = None
    if fate.cause == "unrelated" and fate.churn_renewal is not None and rng.random() < EARLY_UNRELATED:
        # An acquisition or a bankruptcy does not wait for the renewal: the contract ends early.
        candidate = renewals[fate.churn_renewal] - rng.randint(10, 300) * DAY
        early = candidate if candidate > origin + DAY else None
    return Plan(
        kind="satisfaction",
        churn_renewal=fate.churn_renewal,
        baseline=path[0],
        moments=_at_hour(rng, moments),
        origin=origin,
        path=path,
        product_path=product,
        cause=fate.cause,
        early_churn=early,
    )


def _shock_moments(rng: random.Random, fate: Fate, origin: datetime) -> dict[str, datetime]:
    """Some shocks have a visible cause (a champion leaves, an outage, a new executive); others
    (a failed project, a competitor's pitch) show only through the channels."""
    moments: dict[str, datetime] = {}
    for number, shock in enumerate(fate.shocks):
        when = origin + shock.day * DAY
        roll = rng.random()
        if shock.kind == "shock" and roll < 0.3:
            moments[f"champion_left_{number}"] = when
            if rng.random() < 0.6:
                moments[f"new_champion_{number}"] = when + rng.randint(15, 60) * DAY
        elif shock.kind == "shock" and roll < 0.6:
            for n in range(rng.randint(1, 3)):
                moments[f"urgent_ticket_{number}_{n}"] = when + n * DAY
        elif shock.kind == "shift" and shock.size < 0 and roll < 0.5:
            name = "new_executive" if roll < 0.3 else "sponsor_left"
            moments[f"{name}_{number}"] = when
    return moments


def _leaving_moments(rng: random.Random, renewal: datetime) -> dict[str, datetime]:
    """A customer that decided to leave on its satisfaction may say so before the renewal."""
    moments: dict[str, datetime] = {}
    if rng.random() < 0.25:
        moments["cancel_notice"] = renewal - rng.randint(8, 40) * DAY
    if rng.random() < 0.25:
        moments["downgrade"] = renewal - rng.randint(25, 55) * DAY
    if rng.random() < 0.25:
        moments["champion_left_leaving"] = renewal - rng.randint(10, 60) * DAY
    return moments


def _channels(rng: random.Random) -> frozenset[str]:
    roll = rng.random()
    for share, channels in CHANNEL_PROFILES:
        if roll < share:
            return frozenset(channels)
        roll -= share
    return frozenset(CHANNELS)


def _metrics(rng: random.Random, arr: Decimal, daily_usage: float) -> tuple[Metric, ...]:
    extra = rng.sample(METRICS, rng.randint(1, 4))
    thousands = float(arr) / 1000
    metrics = [Metric("api_calls", daily_usage, 1.0, True)]
    metrics += [Metric(n, per_k * thousands * rng.uniform(0.3, 1.7), u, False) for n, per_k, u in extra]
    return tuple(metrics)


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
        churn_renewal=0,
        cause="scripted",
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
