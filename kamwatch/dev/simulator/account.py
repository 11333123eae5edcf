"""One simulated account, stepped a day at a time: its latent health drives every event type.

Pure and deterministic: the account's own `random.Random`, no wall clock, no uuid4.
"""

from __future__ import annotations

import heapq
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kamwatch.dev.simulator.portfolio import CHURN_REASONS, DAY, UNRELATED_REASONS, Account, Contact, Metric
from shared.events import CloudEvent, make_event, rfc3339

if TYPE_CHECKING:
    from kamwatch.dev.simulator.generator import SimConfig

SOURCE = "kamwatch/simulator"
HOUR = timedelta(hours=1)
WEEKLY = (1.0, 1.06, 1.04, 1.0, 0.9, 0.32, 0.24)  # Monday .. Sunday
RESOLVE_HOURS = {"urgent": 6.0, "high": 20.0, "normal": 48.0, "low": 96.0}
OVERDUE_NOTICES = (1, 15, 30, 45, 60, 90)
_CORE = Metric("api_calls", 0.0, 1.0, True)
CHANNEL_OF = {
    "usage": "usage",
    "ticket": "tickets",
    "invoice": "billing",
    "payment": "billing",
    "subscription": "billing",
    "contact": "contacts",
    "engagement": "engagement",
    "survey": "engagement",
}


def channel_of(event_type: str) -> str:
    """The channel (source system) an event type comes from; outcomes are always known."""
    return CHANNEL_OF.get(event_type.partition(".")[0], "outcome")


def midnight(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class AccountSim:
    """One account's state; `step(day)` returns that day's events."""

    def __init__(self, account: Account, config: SimConfig, prefix: str) -> None:
        self.account = account
        self.plan = account.plan
        self.config = config
        self.rng = random.Random(f"{config.seed}/events/{account.index}")
        self.prefix = f"{prefix}-{account.index:05d}"
        self.count = 0
        self.noise = 0.0
        self.health = self.plan.baseline  # the relationship: meetings, QBRs, NPS, people
        self.product = self.plan.baseline  # the product: usage, tickets, payments
        self.agenda: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.contacts = {c.id: c for c in account.contacts}
        self.channels = account.channels | {"outcome"}
        self.mrr = (account.arr / 12).quantize(Decimal("0.01"))
        self.renewal = datetime.combine(account.renewal_date, datetime.min.time(), UTC) + 10 * HOUR
        self.renewals = 0
        self.gone = False
        self.moments = sorted((when, name) for name, when in self.plan.moments.items())
        self._schedule_eager_moments()

    # --- plumbing -----------------------------------------------------------------------
    def at(self, when: datetime, event_type: str, data: dict[str, Any]) -> None:
        """Put an event on this account's agenda (it is emitted on its day), unless the account's
        systems do not send that channel (the outcome is always known)."""
        self.count += 1
        if channel_of(event_type) not in self.channels:
            return
        heapq.heappush(self.agenda, (when.replace(microsecond=0), self.count, event_type, data))

    def subject(self, event_type: str) -> str:
        if self.config.aliases and event_type.startswith(("invoice.", "payment.", "subscription.")):
            return f"stripe:{self.account.stripe_id}"
        if self.config.aliases and event_type.startswith("ticket."):
            return f"zendesk:{self.account.zendesk_id}"
        return self.account.id

    def step(self, day: datetime) -> list[CloudEvent]:
        if self.gone:
            return []
        self._move_health(day)
        if day == midnight(self.config.start):
            self._run_moments(until=self.config.start)  # before the span: the state only
            self._opening(day)
        self._run_moments(until=day + DAY)
        for generate in (self._usage, self._tickets, self._billing, self._contacts, self._engagement):
            generate(day)
        self._renewal(day)
        return self._due(day + DAY)

    def _due(self, until: datetime) -> list[CloudEvent]:
        out = []
        while self.agenda and self.agenda[0][0] < until:
            when, number, event_type, data = heapq.heappop(self.agenda)
            if self.config.start <= when < self.config.end:
                out.append(self._event(when, number, event_type, data))
            if event_type == "account.churned":
                self.gone = True
                self.agenda.clear()
        return out

    def _event(self, when: datetime, number: int, event_type: str, data: dict[str, Any]) -> CloudEvent:
        return make_event(
            event_type,
            data,
            id=f"{self.prefix}-{number:07d}",
            source=SOURCE,
            time=when,
            subject=self.subject(event_type),
        )

    def _move_health(self, day: datetime) -> None:
        self.noise = 0.8 * self.noise + self.rng.gauss(0, 0.035)
        noon = day + 12 * HOUR
        self.health = min(1.1, max(0.03, self.plan.health(noon) + self.noise))
        self.product = min(1.1, max(0.03, self.plan.product_health(noon) + self.noise))

    def _decline(self, product: bool = True) -> float:
        """How far below a thriving account this one is today (0 .. 1)."""
        return max(0.0, min(1.0, 1.0 - (self.product if product else self.health)))

    def _office_time(self, day: datetime) -> datetime:
        return day + timedelta(seconds=self.rng.randrange(8 * 3600, 19 * 3600))

    # --- the opening: who is there, what they pay ------------------------------------------
    def _opening(self, day: datetime) -> None:
        for n, contact in enumerate(list(self.contacts.values())):
            self.at(day + 7 * HOUR + n * timedelta(minutes=3), "contact.joined", _contact(contact))
        self._subscription(day + 7 * HOUR, self.mrr, None)

    def _subscription(self, when: datetime, mrr: Decimal, previous: Decimal | None, **extra: Any) -> None:
        data: dict[str, Any] = {
            "subscription_id": f"sub_{self.account.stripe_id[4:]}",
            "status": extra.pop("status", "active"),
            "mrr": str(mrr),
            "currency": self.account.currency,
            **extra,
        }
        if previous is not None:
            data["previous_mrr"] = str(previous)
        self.at(when, "subscription.changed", data)
        self.mrr = mrr

    # --- usage ---------------------------------------------------------------------------
    def _usage(self, day: datetime) -> None:
        """One `usage.recorded` per metric used that day. The core metric is used every day;
        the others come and go, less often as the product side erodes (breadth shrinks)."""
        weekday = WEEKLY[day.weekday()]
        engaged = (self.health + self.product) / 2  # seats go when people lose interest
        users = self.account.seats * min(1.0, engaged + 0.05) * min(1.0, weekday + 0.15)
        minute = (self.account.index * 7) % 50
        for number, metric in enumerate(self.account.metrics or (_CORE,)):
            used = min(0.97, 1.1 * self.product**2 * min(1.0, weekday + 0.1))
            if not metric.core and self.rng.random() > used:
                continue
            spread = 0.12 if metric.core else 0.35
            strength = self.product ** (1.0 if metric.core else 1.6)
            level = strength * weekday * self.rng.lognormvariate(0, spread)
            daily = self.account.daily_usage if metric.core else metric.daily
            data = {
                "metric": metric.name,
                "quantity": round(daily * level, 1),
                "active_users": max(0, round(users * metric.users * self.rng.uniform(0.85, 1.05))),
            }
            when = day + 23 * HOUR + timedelta(minutes=minute, seconds=number)
            self.at(when, "usage.recorded", data)

    # --- support tickets ---------------------------------------------------------------------
    def _tickets(self, day: datetime) -> None:
        decline = self._decline()
        weekday_factor = 1.0 if day.weekday() < 5 else 0.3
        heavy = 2.5 if self.account.ticket_heavy else 1.0
        rate = self.account.ticket_rate * heavy * weekday_factor * (1 + 3.0 * decline)
        for _ in range(_poisson(self.rng, rate)):
            self._ticket(self._office_time(day), self._priority(decline))

    def _priority(self, decline: float) -> str:
        roll = self.rng.random()
        urgent = (0.05 if self.account.ticket_heavy else 0.015) + 0.22 * decline**1.5
        high = urgent + 0.1 + 0.2 * decline
        return "urgent" if roll < urgent else "high" if roll < high else "low" if roll > 0.8 else "normal"

    def _ticket(self, opened: datetime, priority: str) -> None:
        decline = self._decline()
        ticket = f"{self.account.zendesk_id[-4:]}{self.count:05d}"
        base = {"ticket_id": ticket, "priority": priority, "opened_at": rfc3339(opened)}
        hours = RESOLVE_HOURS[priority] * (1 + 2.0 * decline) * self.rng.lognormvariate(0, 0.5)
        closed = opened + timedelta(hours=max(0.3, hours))
        self.at(opened, "ticket.opened", {**base, "status": "new"})
        if self.rng.random() < 0.5:
            self.at(opened + (closed - opened) * 0.3, "ticket.updated", {**base, "status": "pending"})
        self.at(closed, "ticket.closed", {**base, "status": "solved", **self._csat(decline)})
        if self.rng.random() < 0.04 + 0.18 * decline:
            reopened = closed + timedelta(hours=self.rng.uniform(6, 72))
            self.at(reopened, "ticket.updated", {**base, "status": "open", "reopened": True})
            self.at(reopened + (closed - opened) * 0.6, "ticket.closed", {**base, "status": "closed"})

    def _csat(self, decline: float) -> dict[str, Any]:
        if self.rng.random() > 0.35:
            return {}
        score = round(5 - 4 * decline + self.rng.gauss(0, 0.7))
        return {"csat": min(5, max(1, score))}

    # --- billing -------------------------------------------------------------------------
    def _billing(self, day: datetime) -> None:
        if day.day != self.account.billing_day:
            return
        issued = day + 8 * HOUR
        invoice = {
            "invoice_id": f"in_{self.account.stripe_id[4:10]}{self.count:06d}",
            "amount": str(self.mrr),
            "currency": self.account.currency,
            "due_date": (day + 30 * DAY).date().isoformat(),
        }
        self.at(issued, "invoice.issued", invoice)
        self._settle(invoice, due=day + 30 * DAY + 17 * HOUR)
        self._resize(issued + HOUR)

    def _resize(self, when: datetime) -> None:
        """Unhappy customers cut seats now and then (contraction); thriving ones add some."""
        decline = self._decline()
        roll = self.rng.random()
        if self.mrr > 0 and roll < 0.12 * decline**1.5:
            factor = Decimal(str(round(self.rng.uniform(0.7, 0.92), 2)))
            self._subscription(when, (self.mrr * factor).quantize(Decimal("0.01")), self.mrr)
        elif self.mrr > 0 and roll > 1 - 0.02 * max(0.0, self.product - 0.85) / 0.25:
            factor = Decimal(str(round(self.rng.uniform(1.05, 1.2), 2)))
            self._subscription(when, (self.mrr * factor).quantize(Decimal("0.01")), self.mrr)

    def _settle(self, invoice: dict[str, Any], due: datetime) -> None:
        decline = self._decline()
        if self.rng.random() < 0.04 + 0.28 * decline:
            failed = due - timedelta(hours=self.rng.uniform(2, 60))
            reason = self.rng.choice(("card_declined", "insufficient_funds", "expired_card"))
            data = {k: invoice[k] for k in ("invoice_id", "amount", "currency", "due_date")}
            self.at(failed, "payment.failed", {**data, "failure_reason": reason})
        if self.rng.random() < 0.06 + 0.75 * decline**1.2:
            late = max(1, round(self.rng.expovariate(1 / (4 + 55 * decline))))
        else:
            late = -self.rng.randint(0, 20)
        if self.account.late_payer:
            late = max(late, round(self.rng.lognormvariate(3.0, 0.45)))  # about 20 days, often 30+
        for notice in (n for n in OVERDUE_NOTICES if n < late):
            self.at(due + notice * DAY, "invoice.overdue", {**invoice, "days_overdue": notice})
        paid = due + late * DAY + timedelta(minutes=self.rng.randrange(600))
        self.at(paid, "invoice.paid", {**invoice, "days_overdue": max(0, late)})

    # --- the relationship map -------------------------------------------------------------
    def _contacts(self, day: datetime) -> None:
        decline = self._decline(product=False)
        if self.rng.random() < 0.005:
            self._join(self._office_time(day), self.rng.choice(("user", "user", "influencer")))
        users = [c for c in self.contacts.values() if c.role in ("user", "influencer")]
        if users and self.rng.random() < 0.003 + 0.012 * decline:
            self._leave(self._office_time(day), self.rng.choice(users))
        if users and self.rng.random() < 0.0015:
            promoted = self.rng.choice(users)
            self._role_change(self._office_time(day), promoted, "technical_evaluator")

    def _join(self, when: datetime, role: str, executive: bool = False) -> None:
        contact = Contact(f"ct_{self.rng.getrandbits(40):010x}", role, executive)
        self.contacts[contact.id] = contact
        self.at(when, "contact.joined", _contact(contact))

    def _leave(self, when: datetime, contact: Contact) -> None:
        self.contacts.pop(contact.id, None)
        self.at(when, "contact.left", _contact(contact))

    def _leave_role(self, when: datetime, role: str) -> None:
        for contact in self.contacts.values():
            if contact.role == role:
                self._leave(when, contact)
                return

    def _role_change(self, when: datetime, contact: Contact, role: str) -> None:
        changed = Contact(contact.id, role, contact.executive)
        self.contacts[contact.id] = changed
        self.at(when, "contact.role_changed", {**_contact(changed), "previous_role": contact.role})

    # --- engagement: QBRs, meetings, NPS ------------------------------------------------------
    def _engagement(self, day: datetime) -> None:
        cycle = (day - midnight(self.config.start)).days + self.account.rhythm
        if cycle % 91 == 0:
            self._meeting(day, "qbr")
        elif cycle % 14 == 7:
            self._meeting(day, "meeting")
        if cycle % 91 == 45:
            self._nps(day)

    def _meeting(self, day: datetime, kind: str) -> None:
        if day.weekday() >= 5:
            day += (7 - day.weekday()) * DAY
        held = 0.35 + 0.65 * self.health**1.5 if kind == "qbr" else 0.2 + 0.8 * self.health**2
        roll = self.rng.random()
        outcome = "held" if roll < held else "declined" if roll < held + (1 - held) * 0.6 else "no_show"
        data = {"kind": kind, "outcome": outcome, "scheduled_for": day.date().isoformat()}
        self.at(self._office_time(day), "engagement.recorded", data)

    def _nps(self, day: datetime) -> None:
        contacts = sorted(self.contacts)
        for contact_id in self.rng.sample(contacts, min(len(contacts), self.rng.randint(1, 3))):
            score = round(10.5 * self.health - 1 + self.rng.gauss(0, 1.4))
            data = {"score": min(10, max(0, score)), "survey": "nps", "contact_id": contact_id}
            self.at(self._office_time(day), "survey.responded", data)

    # --- the plan's moments and the renewal ----------------------------------------------------
    def _schedule_eager_moments(self) -> None:
        """Moments whose events start long before the moment itself go on the agenda up front."""
        for when, name in self.moments:
            if name == "overdue_notice":
                self._long_overdue(when)
        self.moments = [(when, name) for when, name in self.moments if name != "overdue_notice"]

    def _run_moments(self, until: datetime) -> None:
        while self.moments and self.moments[0][0] < until:
            when, name = self.moments.pop(0)
            self._moment(name, when)

    def _moment(self, name: str, when: datetime) -> None:
        if name.startswith("champion_left"):
            self._leave_role(when, "champion")
        elif name.startswith("sponsor_left"):
            self._leave_role(when, "executive_sponsor")
        elif name.startswith("new_executive"):
            self._join(when, "decision_maker", executive=True)
        elif name.startswith("new_champion"):
            self._join(when, "champion")
        elif name == "downgrade":
            self._subscription(when, (self.mrr * Decimal("0.7")).quantize(Decimal("0.01")), self.mrr)
        elif name == "cancel_notice":
            self.at(when, "subscription.changed", self._cancel_notice())
        elif name.startswith("urgent_ticket"):
            self._ticket(when, "urgent")

    def _cancel_notice(self) -> dict[str, Any]:
        return {
            "subscription_id": f"sub_{self.account.stripe_id[4:]}",
            "status": "active",
            "mrr": str(self.mrr),
            "currency": self.account.currency,
            "cancel_at_period_end": True,
        }

    def _long_overdue(self, when: datetime) -> None:
        """A big invoice left unpaid: its notices ran through the backfill, the 47-day one is live."""
        due = when - 47 * DAY
        invoice = {
            "invoice_id": f"in_{self.account.stripe_id[4:10]}q{self.count:05d}",
            "amount": str(self.mrr * 3),
            "currency": self.account.currency,
            "due_date": due.date().isoformat(),
        }
        self.at(due - 30 * DAY, "invoice.issued", invoice)
        for days in (1, 15, 47):
            self.at(due + days * DAY, "invoice.overdue", {**invoice, "days_overdue": days})

    def _renewal(self, day: datetime) -> None:
        early = self.plan.early_churn
        if early is not None and day <= early < day + DAY:
            self._churn(early)  # an unrelated churn that does not wait for the renewal
            return
        if not day <= self.renewal < day + DAY:
            return
        if self.plan.churn_renewal == self.renewals:
            self._churn(self.renewal)
            return
        arr = str((self.mrr * 12).quantize(Decimal("0.01")))
        self.at(self.renewal, "account.renewed", {"arr": arr, "currency": self.account.currency})
        self.renewals += 1
        self.renewal += 365 * DAY

    def _churn(self, when: datetime) -> None:
        arr = str((self.mrr * 12).quantize(Decimal("0.01")))
        reasons = UNRELATED_REASONS if self.plan.cause == "unrelated" else CHURN_REASONS
        reason = reasons[self.account.index % len(reasons)]
        self._subscription(when - HOUR, Decimal("0.00"), self.mrr, status="canceled")
        self.at(when, "account.churned", {"reason": reason, "arr": arr, "currency": self.account.currency})


def _contact(contact: Contact) -> dict[str, Any]:
    return {"contact_id": contact.id, "role": contact.role, "executive": contact.executive}


def _poisson(rng: random.Random, rate: float) -> int:
    """Knuth's method (rates here are small)."""
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
